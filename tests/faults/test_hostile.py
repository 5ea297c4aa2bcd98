"""Fault injection, part two (issue 24): hostile names, blocks that fail late in the speed probe, a user block's
own KeyboardInterrupt or SystemExit, an unreachable RAY_ADDRESS, and the chaos soak (benchmarks/scripts/chaos.py)
on Ray.

Like test_faults.py, each test is one row of docs/reliability.md's reliability table (tests/faults/table.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from blockbench.records import load_failure, load_record
from tests.faults.table import fault
from tests.faults.test_faults import ENV, REPO, cli, intact, one_line
from tests.tiny_suite import TINY_SUITE, write_suite

PROBE8 = TINY_SUITE.replace("rounds = 3", "rounds = 8")  # the hostile blocks fail after 5 calls: past step 1
NO_PROBE = TINY_SUITE.replace("rounds = 3", "rounds = 0")
HOSTILE = "tests.faults.hostile_blocks"


def probe_entry(out: Path, variant: str) -> dict:
    probes = json.loads((out / "probe.json").read_text())["probes"]
    return next(iter(probes.values()))[variant]


# ---------------------------------------------------------------------------------------------------------------
# a block that fails after the probe's first step

@fault("a user block raises in a later probe round (after 5 calls), then --resume once it is fixed", "3, then 0",
       "blockbench: 1 run(s) failed (late_raise seed 0); ... (its failure: '... (in the speed probe)')",
       "the other variants' records with their speed ratios; a failure file with the traceback; after --resume "
       "the fixed block's record, re-probed against the baseline, and no failure file")
def test_block_fails_in_a_later_probe_round(tmp_path):
    out = tmp_path / "out"
    args = ("--block", f"{HOSTILE}:late_raise", "run", "--suite", str(write_suite(tmp_path, PROBE8)), "--out",
            str(out), "--variants", "pre_ln,late_raise,sas_p", "--quiet")
    result = cli(*args)
    assert result.returncode == 3 and "1 run(s) failed (late_raise seed 0)" in one_line(result.stderr)
    assert intact(out) == ["pre_ln-seed0.json", "sas_p-seed0.json"]
    assert load_record(out / "records" / "sas_p-seed0.json")["speed"]["rounds"] >= 8  # its rounds went on
    failure = load_failure(out / "failures" / "late_raise-seed0.json")
    assert failure["error_type"] == "RuntimeError" and failure["message"].endswith("(in the speed probe)")
    assert "boom after a few calls" in failure["traceback"] and not failure["retryable"]
    assert "boom after a few calls" in probe_entry(out, "late_raise")["error"]

    fixed = cli(*args, "--resume", env={**ENV, "BLOCKBENCH_TEST_FIXED": "1"})
    assert fixed.returncode == 0, fixed.stderr
    assert intact(out) == ["late_raise-seed0.json", "pre_ln-seed0.json", "sas_p-seed0.json"]
    assert not list((out / "failures").glob("*.json"))
    speed = load_record(out / "records" / "late_raise-seed0.json")["speed"]
    assert speed["method"] == "interleaved" and speed["speedup_vs_baseline"] > 0
    assert probe_entry(out, "late_raise")["speed"] == speed and "error" not in probe_entry(out, "late_raise")


@fault("a user block asks for 4 TB in a later probe round", 3,
       "blockbench: 1 run(s) failed (late_huge seed 0); ...",
       "the other records; a failure file naming the allocation (RuntimeError on CPU, OutOfMemoryError on CUDA)")
def test_block_runs_out_of_memory_in_the_probe(tmp_path):
    out = tmp_path / "out"
    result = cli("--block", f"{HOSTILE}:late_huge", "run", "--suite", str(write_suite(tmp_path, PROBE8)),
                 "--out", str(out), "--variants", "pre_ln,late_huge", "--quiet")
    assert result.returncode == 3 and "1 run(s) failed (late_huge seed 0)" in one_line(result.stderr)
    assert intact(out) == ["pre_ln-seed0.json"]
    failure = load_failure(out / "failures" / "late_huge-seed0.json")
    assert "allocate" in failure["message"] and "(in the speed probe)" in failure["message"]


@fault("the same late probe failure with --executor ray, then --resume once fixed", "3, then 0",
       "blockbench: 1 run(s) failed (late_raise seed 0); ...",
       "as with the local executor: a failure file, then the fixed block's record; no Ray process left")
def test_block_fails_in_the_probe_on_ray(tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    args = ("--block", f"{HOSTILE}:late_raise", "run", "--suite",
            str(write_suite(tmp_path, PROBE8.replace("threads = 2", "threads = 1"))), "--out", str(out),
            "--variants", "pre_ln,late_raise", "--executor", "ray", "--quiet")
    env = {k: v for k, v in ENV.items() if k != "RAY_ADDRESS"}
    result = cli(*args, env=env)
    assert result.returncode == 3 and "1 run(s) failed (late_raise seed 0)" in one_line(result.stderr)
    assert intact(out) == ["pre_ln-seed0.json"]
    assert load_failure(out / "failures" / "late_raise-seed0.json")["executor"] == "ray"
    fixed = cli(*args, "--resume", env={**env, "BLOCKBENCH_TEST_FIXED": "1"})
    assert fixed.returncode == 0, fixed.stderr
    assert intact(out) == ["late_raise-seed0.json", "pre_ln-seed0.json"]


# ---------------------------------------------------------------------------------------------------------------
# a user block's own KeyboardInterrupt or SystemExit

@fault("a user block raises KeyboardInterrupt (in its run) or SystemExit (in the probe)", 3,
       "blockbench: 2 run(s) failed (exit_block seed 0, late_keyboard seed 0); ...",
       "failure files with error_type KeyboardInterrupt / SystemExit and the block's traceback; attempt 1, not "
       "retried (only a real signal to the worker is WorkerDied)")
def test_user_keyboard_interrupt_and_system_exit(tmp_path):
    out = tmp_path / "out"
    result = cli("--block", f"{HOSTILE}:late_keyboard", "--block", f"{HOSTILE}:exit_block", "run", "--suite",
                 str(write_suite(tmp_path, NO_PROBE)), "--out", str(out), "--variants",
                 "pre_ln,late_keyboard,exit_block", "--quiet")
    assert result.returncode == 3, result.stderr
    assert "2 run(s) failed (exit_block seed 0, late_keyboard seed 0)" in one_line(result.stderr)
    assert intact(out) == ["pre_ln-seed0.json"]
    keyboard = load_failure(out / "failures" / "late_keyboard-seed0.json")
    assert keyboard["error_type"] == "KeyboardInterrupt" and keyboard["attempt"] == 1
    assert not keyboard["retryable"] and "raise KeyboardInterrupt" in keyboard["traceback"]
    exits = load_failure(out / "failures" / "exit_block-seed0.json")
    assert exits["error_type"] == "SystemExit" and "raise SystemExit(7)" in exits["traceback"]


# ---------------------------------------------------------------------------------------------------------------
# names that would leave their directory

HOSTILE_NAMES = {
    "variant ../../evil in the suite": ("toml", '[variants."../../evil"]\npreset = "pre_ln"\n'),
    "variant a/b in the suite": ("toml", '[variants."a/b"]\npreset = "pre_ln"\n'),
    "suite name ../../esc": ("head", 'name = "../../esc"'),
    "suite version ../x": ("head", 'version = "../x"'),
    "--variants ../x": ("flag", "--variants"),
    "--block ../x=module:factory": ("flag", "--block"),
}


@pytest.mark.parametrize("case", HOSTILE_NAMES)
@fault("a variant, suite or version named ../../evil, a/b, ../x (TOML, --variants, --block NAME=)", 2,
       "blockbench: error: ...: variant name '../../evil' starts with '.' / 'a/b': use only letters, digits and "
       "'_', '.', '+', '-' ...", "nothing: no directory made, nothing written outside OUT or runs/")
def test_names_that_would_leave_their_directory(tmp_path, case):
    kind, text = HOSTILE_NAMES[case]
    suite = TINY_SUITE + text if kind == "toml" else TINY_SUITE
    if kind == "head":
        suite = suite.replace('name = "tiny"' if "name" in text else 'version = "1"', text)
    work = tmp_path / "a" / "b" / "work"  # the default --out (runs/SUITE/VERSION/...) is made under here
    work.mkdir(parents=True)
    args = ["run", "--suite", str(write_suite(tmp_path, suite)), "--quiet"]
    if kind == "flag":
        args = (["--block", "../x=tests.user_blocks:nan_block", *args] if text == "--block"
                else [*args, "--variants", "pre_ln,../x"])
    before = sorted(tmp_path.rglob("*"))
    result = subprocess.run([sys.executable, "-m", "blockbench", *args], cwd=work, capture_output=True, text=True,
                            env={**ENV, "PYTHONPATH": str(REPO)}, timeout=120)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "'../" in line or "'a/b'" in line, line
    assert sorted(tmp_path.rglob("*")) == before  # no directory made, anywhere


# ---------------------------------------------------------------------------------------------------------------
# Ray's address from the environment

@fault("RAY_ADDRESS (the environment variable) where no Ray cluster answers", 2,
       "blockbench: error: RAY_ADDRESS 127.0.0.1:1: cannot reach a Ray cluster there (Connection refused)",
       "nothing (no OUT made); seconds, not Ray's minutes of retries")
def test_unreachable_ray_address_from_the_environment(tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    result = cli("run", "--suite", str(write_suite(tmp_path)), "--out", str(out), "--executor", "ray", "--quiet",
                 env={**ENV, "RAY_ADDRESS": "127.0.0.1:1"}, timeout=60)
    assert result.returncode == 2
    assert "RAY_ADDRESS 127.0.0.1:1: cannot reach a Ray cluster there" in one_line(result.stderr)
    assert not out.exists()



# ---------------------------------------------------------------------------------------------------------------
# the chaos soak

@fault("chaos soak (benchmarks/scripts/chaos.py): 40 tiny runs on a local Ray cluster (2 CPUs), a random worker "
       "SIGKILLed every ~7 s, the driver SIGKILLed once midway and restarted with --resume (runs with "
       "BLOCKBENCH_CHAOS=1)",
       "0 or 3 (3 iff failures)",
       "blockbench: N run(s) failed (...) when some run was killed more than --max-retries 2 times",
       "every (variant, seed) exactly one valid record or one failure file: 0 lost, 0 duplicated, 0 damaged, one "
       "probe, no temporary file; no Ray process left", ci=False)
def test_chaos_soak(tmp_path):
    # 3 to 5 minutes on 2 busy cores: more than CI's share for one test, so it runs when asked for.
    if os.environ.get("BLOCKBENCH_CHAOS") != "1":
        pytest.skip("the chaos soak runs with BLOCKBENCH_CHAOS=1 (or: python benchmarks/scripts/chaos.py)")
    pytest.importorskip("ray")
    sys.path.insert(0, str(REPO / "benchmarks" / "scripts"))
    try:
        import chaos
    finally:
        sys.path.remove(str(REPO / "benchmarks" / "scripts"))
    figures = chaos.soak(seeds=20, kill_every=7.0, max_retries=2, out=tmp_path, seed=1)
    assert chaos.verdict(figures) == [], figures
    assert figures["runs"] >= 40 and figures["worker_kills"] >= 5 and figures["driver_kills"] == 1, figures
