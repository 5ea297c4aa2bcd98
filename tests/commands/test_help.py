"""Issue 26: `--help` names every default and the built-in suites; diagnose takes the suite's shape; `run
--speed-rounds` reaches the interleaved probe."""

import argparse
import re
from importlib import resources

import pytest

from blockbench.cli import build_parser, main
from blockbench.records import load_record
from blockbench.suite import load_suite
from tests.tiny_suite import write_suite

# Flags whose meaning is "on when given": their default (off) goes without saying.
FLAGS = (argparse._HelpAction, argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction,
         argparse._VersionAction)
DEFAULT = re.compile(r"%\(default\)s|\bdefault\b", re.IGNORECASE)


def parsers(parser: argparse.ArgumentParser, path: str = "blockbench"):
    """(command path, parser) for the parser and every subparser below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, f"{path} {name}")


def options(parser: argparse.ArgumentParser):
    """The arguments that have a default to state: every option but on/off flags, and optional positionals."""
    for action in parser._actions:
        if isinstance(action, (*FLAGS, argparse._SubParsersAction)):
            continue
        if action.option_strings or action.nargs in ("?", "*"):
            yield action


def test_every_option_states_its_default():
    missing = [f"{path} {'/'.join(a.option_strings) or a.dest}: {a.help!r}"
               for path, parser in parsers(build_parser()) for a in options(parser)
               if not DEFAULT.search(a.help or "")]
    assert not missing, "help without its default:\n" + "\n".join(missing)


def test_the_walk_reaches_every_command():
    paths = {path for path, _ in parsers(build_parser())}
    assert {"blockbench run", "blockbench sweep", "blockbench diagnose", "blockbench profile",
            "blockbench compare", "blockbench leaderboard", "blockbench report"} <= paths


def test_suite_help_lists_every_shipped_suite():
    shipped = sorted(p.name.removesuffix(".toml") for p in (resources.files("blockbench") / "suites").iterdir()
                     if p.name.endswith(".toml"))
    assert {"default", "smoke", "paper-cpu"} <= set(shipped)
    suite_options = [(path, a) for path, parser in parsers(build_parser()) for a in parser._actions
                     if "--suite" in a.option_strings]
    assert {path for path, _ in suite_options} >= {"blockbench run", "blockbench sweep", "blockbench diagnose",
                                                   "blockbench profile"}
    for path, action in suite_options:
        for name in shipped:
            assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", action.help), f"{path} --suite: no {name}"


def test_diagnose_defaults_to_the_suites_depth(tmp_path, monkeypatch):
    from blockbench.commands import diagnose

    seen = {}
    real = diagnose.diagnose

    def spy(variants, suite, layers, **kwargs):
        seen["layers"] = layers
        return real(variants, suite, layers, **kwargs)

    monkeypatch.setattr(diagnose, "diagnose", spy)
    assert main(["diagnose", "pre_ln", "--suite", "smoke", "--out", str(tmp_path), "--json"]) == 0
    assert seen["layers"] is None  # no depth of its own: the suite's
    import json

    result = json.loads((tmp_path / "diagnose.json").read_text())
    depth = load_suite("smoke").model.n_layers
    assert result["model"]["n_layers"] == depth and len(result["variants"]["pre_ln"]["cosine"]) == depth + 1


@pytest.mark.parametrize("rounds", [4, 0])
def test_run_speed_rounds_reaches_the_probe(tmp_path, rounds):
    suite = write_suite(tmp_path)  # its [speed] rounds = 3
    out = tmp_path / "out"
    assert main(["run", "--suite", str(suite), "--out", str(out), "--variants", "pre_ln,sas_p", "--speed-rounds",
                 str(rounds), "--quiet", "--in-process"]) == 0
    record = load_record(out / "records" / "sas_p-seed0.json")
    assert record["config"]["overrides"]["speed_rounds"] == rounds
    if rounds:
        # the minimum of rounds; the probe goes on until its intervals are tight or its time cap
        assert record["speed"]["method"] == "interleaved" and record["speed"]["min_rounds"] == rounds
        assert record["speed"]["rounds"] >= rounds and record["speed"]["stop_reason"] in ("interval tight",
                                                                                         "time cap")
    else:
        assert record["speed"]["method"] is None  # 0 turns the probe off, as in the suite file


def test_run_speed_rounds_must_be_a_count(tmp_path, capsys):
    assert main(["run", "--suite", str(write_suite(tmp_path)), "--speed-rounds", "-1", "--out",
                 str(tmp_path / "o")]) == 2
    assert "--speed-rounds" in capsys.readouterr().err
    assert main(["run", "--suite", str(write_suite(tmp_path)), "--speed-rounds", "2", "--out",
                 str(tmp_path / "o")]) == 2  # below the probe's minimum of 3 rounds
    err = capsys.readouterr().err
    assert "--speed-rounds" in err and len(err.strip().splitlines()) == 1
