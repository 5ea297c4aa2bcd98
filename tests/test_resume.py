"""Finishing an interrupted suite in place (`--resume`). A killed or terminated driver: tests/faults/."""

import os
from pathlib import Path

from blockbench.cli import main
from blockbench.records import load_record
from tests.tiny_suite import write_suite

REPO = Path(__file__).resolve().parents[1]


def no_temp_files(out: Path) -> bool:
    return not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_resume_refuses_empty_foreign_and_other_override_directories(tmp_path, capsys):
    suite = write_suite(tmp_path)
    out = tmp_path / "out"
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "empty", tmp_path / "missing"):
        assert main(["run", "--suite", str(suite), "--out", str(target), "--resume", "--quiet"]) == 2
        assert "nothing to resume there" in capsys.readouterr().err
    assert main(["run", "--suite", str(suite), "--out", str(out), "--variants", "sas_p", "--quiet",
                 "--in-process"]) == 0
    capsys.readouterr()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(["run", "--suite", "smoke", "--out", str(out), "--resume", "--quiet"]) == 2
    assert "holds records of suite 'tiny'" in capsys.readouterr().err
    assert main(["run", "--suite", str(suite), "--out", str(out), "--target-loss", "1.0", "--resume",
                 "--quiet"]) == 2
    assert "made with other overrides" in capsys.readouterr().err
    assert main(["run", "--suite", str(suite), "--resume", "--quiet"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_resume_reruns_failed_runs_and_clears_their_failure_files(tmp_path, monkeypatch, capsys):
    suite = write_suite(tmp_path)
    out = tmp_path / "out"
    args = ["--block", "tests.user_blocks:flaky_block", "run", "--suite", str(suite), "--out", str(out),
            "--variants", "pre_ln,flaky_block", "--quiet", "--in-process"]
    monkeypatch.setenv("BLOCKBENCH_TEST_RAISE", "1")
    assert main(args) == 3
    assert "1 run(s) failed (flaky_block seed 0)" in capsys.readouterr().err
    assert (out / "failures" / "flaky_block-seed0.json").exists()
    kept = (out / "records" / "pre_ln-seed0.json").read_bytes()

    main(["leaderboard", str(out)])  # a failed run is shown as failed, never as missing
    board = (out / "leaderboard.md").read_text()
    assert "| flaky_block | failed | 1 |" in board and "1 failed runs (failures/)" in board

    monkeypatch.delenv("BLOCKBENCH_TEST_RAISE")
    (out / "records" / ".pre_ln-seed0.json.deadbeef.tmp").write_text("{")  # what a killed writer leaves
    assert main([*args, "--resume"]) == 0
    assert sorted(p.name for p in (out / "records").iterdir()) == ["flaky_block-seed0.json", "pre_ln-seed0.json"]
    assert (out / "records" / "pre_ln-seed0.json").read_bytes() == kept
    assert not (out / "failures" / "flaky_block-seed0.json").exists() and no_temp_files(out)


def test_resume_of_a_finished_suite_runs_nothing_and_a_damaged_record_is_named(tmp_path, capsys):
    suite = write_suite(tmp_path)
    out = tmp_path / "out"
    args = ["run", "--suite", str(suite), "--out", str(out), "--variants", "sas_p", "--quiet", "--in-process"]
    assert main(args) == 0
    assert main([*args, "--resume"]) == 0
    assert "0 to run (1 already finished: kept)" in capsys.readouterr().out
    damaged = out / "records" / "sas_p-seed0.json"
    damaged.write_text(damaged.read_text()[:-20])
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "sas_p-seed0.json" in err and "move the file away" in err
    os.unlink(damaged)
    assert main([*args, "--resume"]) == 0
    assert load_record(damaged)["variant"] == "sas_p"
