"""The command line: output shape, user blocks, and one-line errors with exit code 2 for bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from blockbench.cli import main

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "blockbench", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


def test_show_json_has_the_public_fields(capsys):
    assert main(["show", "sas", "--layers", "2", "--width", "64", "--heads", "4", "--vocab", "100",
                 "--seq-len", "16", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    for key in ("variant", "config", "params_total", "params_embedding", "params_block_matrices",
                "params_per_block", "flops_fwd_per_token", "flops_convention"):
        assert key in info
    assert info["params_block_matrices"] == 2 * 10 * 64 * 64 + 64 * 64
    assert info["config"]["n_layers"] == 2 and len(info["params_per_block"]) == 2


def test_show_mlp_ratio_and_set_overrides(capsys):
    assert main(["show", "pre_ln", "--layers", "1", "--width", "32", "--heads", "2", "--mlp-ratio", "2",
                 "--set", "value=identity", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params_block_matrices"] == (3 + 4) * 32 * 32 and info["block_spec"]["value"] == "identity"


def test_list_includes_a_registered_user_block():
    result = run_cli("--block", "examples.swiglu_block:swiglu_pre_ln", "list", "--layers", "1", "--json")
    assert result.returncode == 0, result.stderr
    names = [row["variant"] for row in json.loads(result.stdout)]
    assert "swiglu_pre_ln" in names and "sas_p" in names


@pytest.mark.parametrize("args,needle", [
    (["show", "nope"], "unknown variant 'nope'"),
    (["show", "sas", "--width", "30", "--heads", "4"], "not divisible"),
    (["show", "sas", "--layers", "0"], "positive"),
    (["show", "sas", "--set", "layout=diagonal"], "layout='diagonal'"),
    (["--block", "no_such_module:factory", "list"], "cannot import"),
    (["--block", "examples.swiglu_block:nothing", "list"], "has no attribute"),
    (["--block", "examples.swiglu_block", "list"], "module.path:factory"),
    (["--block", "examples.swiglu_block:__doc__", "list"], "neither a BlockSpec nor a callable"),
    (["--block", "json:dumps", "show", "dumps"], "raised TypeError"),
    (["--block", "os:getcwd", "show", "getcwd"], "raised TypeError"),
    (["--block", "tests.user_blocks:not_a_module", "show", "not_a_module"], "not an nn.Module"),
    (["show"], "required"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle):
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_every_subcommand_has_a_summary_and_every_option_help():
    """`blockbench X --help` alone tells a reader what X does and what each of its options means."""
    import argparse

    from blockbench.cli import build_parser

    missing = []
    [sub] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    for name, parser in sub.choices.items():
        if not parser.description:
            missing.append(f"{name}: no description")
        missing += [f"{name} {'/'.join(a.option_strings) or a.dest}: no help" for a in parser._actions
                    if not isinstance(a, argparse._HelpAction) and not a.help]
    assert not missing, missing
