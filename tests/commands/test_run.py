"""`blockbench run` end to end (in-process runs to keep it fast) and its bad-input contract."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from blockbench.cli import main
from blockbench.records import load_record
from blockbench.runner import run_suite
from blockbench.suite import load_suite
from tests.tiny_suite import write_suite

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "blockbench", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_run_writes_one_record_per_variant_and_seed(tmp_path, capsys):
    suite = write_suite(tmp_path)
    out = tmp_path / "out"
    assert main(["run", "--suite", str(suite), "--out", str(out), "--seeds", "0,1", "--quiet", "--in-process"]) == 0
    names = sorted(p.name for p in (out / "records").iterdir())
    assert names == ["pre_ln-seed0.json", "pre_ln-seed1.json", "sas_p-seed0.json", "sas_p-seed1.json"]
    record = load_record(out / "records" / "sas_p-seed1.json")
    assert record["seed"] == 1 and record["config"]["overrides"] == {"seeds": [0, 1]}
    assert record["speed"]["method"] == "interleaved" and record["speed"]["baseline"] == "pre_ln"
    printed = capsys.readouterr().out
    assert "speedup (interleaved probe)" in printed and "sas_p" in printed


def test_isolated_run_matches_in_process_run(tmp_path):
    suite = load_suite(str(write_suite(tmp_path))).with_overrides(variants=["sas_p"])
    [isolated] = run_suite(suite, tmp_path / "iso", isolate=True)
    [inline] = run_suite(suite, tmp_path / "inline", isolate=False)
    a, b = load_record(isolated), load_record(inline)
    assert [p["eval_loss"] for p in a["curve"]] == [p["eval_loss"] for p in b["curve"]]


def test_interrupt_keeps_finished_records_and_writes_no_partial_one(tmp_path):
    suite = load_suite(str(write_suite(tmp_path)))

    def interrupt_second(kind, info):
        if kind == "progress" and info["variant"] == "sas_p":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, tmp_path / "out", isolate=False, on_event=interrupt_second)
    assert sorted(p.name for p in (tmp_path / "out" / "records").iterdir()) == ["pre_ln-seed0.json"]


def test_existing_records_are_never_overwritten(tmp_path):
    suite = write_suite(tmp_path)
    out = tmp_path / "out"
    assert main(["run", "--suite", str(suite), "--out", str(out), "--variants", "sas_p", "--quiet",
                 "--in-process"]) == 0
    before = (out / "records" / "sas_p-seed0.json").read_bytes()
    result = run_cli("run", "--suite", str(suite), "--out", str(out), "--variants", "sas_p", "--quiet")
    assert result.returncode == 2 and "never overwritten" in result.stderr
    assert (out / "records" / "sas_p-seed0.json").read_bytes() == before


def test_out_dir_with_runs_of_another_suite_or_other_overrides_is_refused(tmp_path):
    suite = write_suite(tmp_path)
    out = tmp_path / "out"
    assert main(["run", "--suite", str(suite), "--out", str(out), "--variants", "sas_p", "--quiet",
                 "--in-process"]) == 0
    before = sorted((out / "records").iterdir())
    result = run_cli("run", "--suite", str(suite), "--out", str(out), "--variants", "pre_ln", "--target-loss", "1.0",
                     "--quiet")
    assert result.returncode == 2 and "made with other overrides" in result.stderr
    result = run_cli("run", "--suite", "smoke", "--out", str(out), "--quiet")
    assert result.returncode == 2 and "holds records of suite" in result.stderr
    assert sorted((out / "records").iterdir()) == before


@pytest.mark.parametrize("args,needle", [
    (["run", "--suite", "nope"], "unknown suite 'nope'"),
    (["run", "--suite", "SUITE", "--variants", "nope"], "unknown variant 'nope'"),
    (["run", "--suite", "SUITE", "--budget-steps", "0"], "budget steps must be a positive number"),
    (["run", "--suite", "SUITE", "--budget-seconds", "-1"], "budget seconds must be a positive number"),
    (["run", "--suite", "SUITE", "--target-loss", "0"], "target loss must be a positive number"),
    pytest.param(["run", "--suite", "SUITE", "--device", "cuda"], "CUDA is not available",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
    (["run", "--suite", "SUITE", "--out", "/proc/forbidden"], "not writable"),
    (["run", "--suite", "SUITE", "--seeds", "a,b"], "--seeds"),
    (["run", "--suite", "SUITE", "--budget-steps", "3", "--budget-tokens", "9"], "not allowed with"),
    (["run", "--suite", "BAD"], "malformed TOML"),
])
def test_run_bad_input_is_one_line_exit_2(tmp_path, args, needle):
    suite = write_suite(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text("[suite\n")
    args = [str(suite) if a == "SUITE" else str(bad) if a == "BAD" else a for a in args]
    result = run_cli(*args, "--quiet", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert not list(tmp_path.glob("runs/*/*/*/records/*.json"))


def test_record_json_is_valid_for_external_readers(tmp_path):
    suite = write_suite(tmp_path)
    out = tmp_path / "out"
    assert main(["run", "--suite", str(suite), "--out", str(out), "--variants", "pre_ln", "--quiet",
                 "--in-process", "--budget-steps", "2"]) == 0
    data = json.loads((out / "records" / "pre_ln-seed0.json").read_text())
    assert data["summary"]["steps"] == 2 and data["config"]["overrides"]["budget"] == {"steps": 2}
