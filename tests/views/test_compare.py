"""`blockbench compare`: verdicts and exit codes on real records of a tiny suite and on derived copies.

Injected regressions are derived from the real records: +0.1 nat eval loss, and a 15% slowdown as the in-run
speed ratio to the baseline variant divided by 1.15 (a variant whose step takes 15% longer). Nothing here asserts
wall-clock times.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from blockbench.cli import main
from blockbench.records import seal
from blockbench.views import leaderboard
from blockbench.views.compare import Thresholds, compare_paths
from tests.views.test_leaderboard import copy_records, make_tiny_run, read_csv

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    return make_tiny_run(tmp_path_factory.getbasetemp())


def run_compare(capsys, *args: str) -> tuple[int, dict]:
    code = main(["compare", *args, "--json"])
    out = capsys.readouterr().out
    return code, (json.loads(out) if out.strip() else {})


def verdicts(result: dict, metric: str) -> dict[str, str]:
    return {r["variant"]: r["verdict"] for r in result["rows"] if r["metric"].startswith(metric)}


def worse_loss(delta: float, variant: str = "sas"):
    def change(record):
        if record["variant"] == variant and record["summary"]["final_eval_loss"] is not None:
            record["summary"]["final_eval_loss"] += delta
            record["curve"][-1]["eval_loss"] = record["summary"]["final_eval_loss"]  # the summary is the curve's end
        return record
    return change


def slower(factor: float):
    """Every non-baseline variant's step takes `factor` times as long, relative to the baseline variant."""
    def change(record):
        speed = record["speed"]
        if record["variant"] != speed["baseline"] and speed["speedup_vs_baseline"] is not None:
            for key in ("speedup_vs_baseline", "ci_low", "ci_high"):
                if speed.get(key) is not None:
                    speed[key] /= factor
        return record
    return change


def test_identical_runs_pass(tiny_run, tmp_path, capsys):
    # A quiet machine's probe on both sides: a tiny run's rounds on a loaded machine disagree, and the probe rule
    # (stats.probe_disturbed_note) rightly shows no ratio then.
    base = copy_records(tiny_run, tmp_path / "base", change=clean_probe)
    copy = copy_records(tiny_run, tmp_path / "copy", change=clean_probe)
    code, result = run_compare(capsys, str(base), str(copy))
    assert code == 0 and result["exit_code"] == 0 and not result["regressions"]
    assert set(verdicts(result, "eval loss").values()) == {"same"}
    assert set(verdicts(result, "params").values()) == {"same"}
    assert verdicts(result, "speedup") == {"pre_ln": "n/a", "sas": "ok"}


def test_table_output(tiny_run, capsys):
    assert main(["compare", str(tiny_run), str(tiny_run)]) == 0
    out = capsys.readouterr().out
    assert "eval loss" in out and "speedup vs pre_ln" in out and "no regression" in out


@pytest.mark.parametrize("seeds,method", [((0, 1, 2), "Welch"), ((0, 1), "limit")])
def test_worse_loss_is_a_regression(tiny_run, tmp_path, capsys, seeds, method):
    only = lambda r: r["seed"] in seeds  # noqa: E731
    base = copy_records(tiny_run, tmp_path / "base", only=only)
    cand = copy_records(tiny_run, tmp_path / "cand", change=worse_loss(0.1), only=only)
    code, result = run_compare(capsys, str(base), str(cand))
    assert code == 1
    row = next(r for r in result["rows"] if r["variant"] == "sas" and r["metric"] == "eval loss")
    assert row["verdict"] == "regression" and method in row["detail"] and row["delta"] == pytest.approx(0.1)
    assert verdicts(result, "eval loss")["pre_ln"] == "same"
    assert any(line.startswith("sas eval loss") for line in result["regressions"])
    # The same change the other way round is an improvement, not a failure.
    code, result = run_compare(capsys, str(cand), str(base))
    assert code == 0 and verdicts(result, "eval loss")["sas"] == "improved"


def test_small_loss_change_under_the_threshold_passes(tiny_run, tmp_path, capsys):
    only = lambda r: r["seed"] in (0, 1)  # noqa: E731
    base = copy_records(tiny_run, tmp_path / "base", only=only)
    cand = copy_records(tiny_run, tmp_path / "cand", change=worse_loss(0.02), only=only)
    code, result = run_compare(capsys, str(base), str(cand))
    assert code == 0 and verdicts(result, "eval loss")["sas"] == "ok"
    code, _ = run_compare(capsys, str(base), str(cand), "--max-loss-increase", "0.01")
    assert code == 1


def clean_probe(record, spread: float = 0.02):
    """A quiet machine's probe (ratio 0.9, small round-to-round spread, its 95% interval ± `spread` and an A/A
    floor of ±1%), fixed so the verdicts do not depend on how loaded the machine was when the session's records
    were made."""
    baseline = record["variant"] == record["speed"]["baseline"]
    ratio = 1.0 if baseline else 0.9
    low, high = (1.0, 1.0) if baseline else (ratio * (1 - spread), ratio * (1 + spread))
    record["speed"].update(speedup_vs_baseline=ratio, speedup_iqr=0.0 if baseline else 0.03, rounds=12,
                           step_time_median=record["summary"]["step_time_median"], ci_low=low, ci_high=high,
                           confidence=0.96, half_width=(high - low) / 2 / ratio,
                           control={"name": "pre_ln~copy", "rounds": 12, "speedup_vs_baseline": 1.0, "ci_low": 0.99,
                                    "ci_high": 1.01, "confidence": 0.96, "half_width": 0.01})
    return record


def legacy_probe(record):
    """clean_probe as a record made before the A/A control: no interval, no control (the IQR rule decides)."""
    record = clean_probe(record)
    for key in ("ci_low", "ci_high", "confidence", "half_width", "control", "min_rounds", "stop_reason",
                "target_half_width", "time_cap_seconds", "time_cap", "probe_seconds"):
        record["speed"].pop(key, None)
    return record


def test_slowdown_of_15_percent_is_a_regression(tiny_run, tmp_path, capsys):
    base = copy_records(tiny_run, tmp_path / "base", change=clean_probe)
    cand = copy_records(base, tmp_path / "cand", change=slower(1.15))
    code, result = run_compare(capsys, str(base), str(cand))
    assert code == 1
    assert verdicts(result, "speedup") == {"pre_ln": "n/a", "sas": "regression"}
    row = next(r for r in result["rows"] if r["variant"] == "sas" and r["metric"].startswith("speedup"))
    assert row["ratio"] == pytest.approx(1 / 1.15)
    assert any(line.startswith("sas speedup vs pre_ln") for line in result["regressions"])


def test_slowdown_without_a_control_is_judged_by_the_iqr(tiny_run, tmp_path, capsys):
    base = copy_records(tiny_run, tmp_path / "base", change=legacy_probe)
    cand = copy_records(base, tmp_path / "cand", change=slower(1.15))
    code, result = run_compare(capsys, str(base), str(cand))
    assert code == 1 and verdicts(result, "speedup")["sas"] == "regression"
    row = next(r for r in result["rows"] if r["variant"] == "sas" and r["metric"].startswith("speedup"))
    assert "no A/A control in this probe (baseline and candidate)" in row["detail"]


def test_slowdown_inside_the_probes_intervals_is_inconclusive(tiny_run, tmp_path, capsys):
    """The gate uses the interval, not the median alone: a 15% drop whose interval reaches the A/A floors."""
    base = copy_records(tiny_run, tmp_path / "base", change=lambda r: clean_probe(r, spread=0.12))
    cand = copy_records(base, tmp_path / "cand", change=slower(1.15))
    code, result = run_compare(capsys, str(base), str(cand))
    row = next(r for r in result["rows"] if r["variant"] == "sas" and r["metric"].startswith("speedup"))
    assert code == 0 and row["verdict"] == "inconclusive" and "reaches into the probes' floors" in row["detail"]
    assert "baseline no measurable difference (within ±" in row["detail"] and "candidate 0.783x [" in row["detail"]
    code, result = run_compare(capsys, str(base), str(cand), "--speed-z", "0")  # the noise guard off
    assert code == 1


def test_slowdown_within_a_noisy_probe_is_inconclusive_not_a_failure(tiny_run, tmp_path, capsys):
    def noisy(record):
        record = legacy_probe(record)
        if record["variant"] != "pre_ln":
            record["speed"]["speedup_iqr"] = 0.5
        return record

    base = copy_records(tiny_run, tmp_path / "base", change=noisy)
    cand = copy_records(base, tmp_path / "cand", change=slower(1.15))
    code, result = run_compare(capsys, str(base), str(cand))
    assert code == 0 and verdicts(result, "speedup")["sas"] == "inconclusive"
    code, result = run_compare(capsys, str(base), str(cand), "--speed-z", "0")  # pure threshold
    assert code == 1


def test_small_slowdown_passes(tiny_run, tmp_path, capsys):
    base = copy_records(tiny_run, tmp_path / "base", change=clean_probe)
    cand = copy_records(base, tmp_path / "cand", change=slower(1.05))
    code, result = run_compare(capsys, str(base), str(cand))
    assert code == 0 and verdicts(result, "speedup")["sas"] == "ok"
    code, result = run_compare(capsys, str(base), str(cand), "--max-slowdown", "0.01", "--speed-z", "0")
    assert code == 1


def test_every_variant_faster_points_at_the_baseline_variant(tiny_run, tmp_path, capsys):
    base = copy_records(tiny_run, tmp_path / "base", change=clean_probe)
    for path in sorted((base / "records").glob("sas-*.json")):  # a second non-baseline variant
        record = json.loads(path.read_text())
        record["variant"] = "sas_twin"
        (path.parent / path.name.replace("sas-", "sas_twin-")).write_text(json.dumps(seal(record)))
    cand = copy_records(base, tmp_path / "cand", change=slower(1 / 1.3))
    code, result = run_compare(capsys, str(base), str(cand))
    assert code == 0 and verdicts(result, "speedup") == {"pre_ln": "n/a", "sas": "improved", "sas_twin": "improved"}
    assert any("baseline variant itself may have slowed down" in note for note in result["notes"])


def test_changed_params_fail_only_under_strict(tiny_run, tmp_path, capsys):
    def more_params(record):
        if record["variant"] == "sas":
            record["static"]["params_total"] += 64
        return record

    cand = copy_records(tiny_run, tmp_path / "cand", change=more_params)
    code, result = run_compare(capsys, str(tiny_run), str(cand))
    assert code == 0 and verdicts(result, "params")["sas"] == "changed"
    code, result = run_compare(capsys, str(tiny_run), str(cand), "--strict")
    assert code == 1


def test_missing_variant_fails_only_under_strict(tiny_run, tmp_path, capsys):
    cand = copy_records(tiny_run, tmp_path / "cand", only=lambda r: r["variant"] == "pre_ln")
    code, result = run_compare(capsys, str(tiny_run), str(cand))
    assert code == 0 and verdicts(result, "variant") == {"sas": "missing"}
    assert main(["compare", str(tiny_run), str(cand), "--strict", "--json"]) == 1
    capsys.readouterr()


def test_diverging_candidate_is_a_regression(tiny_run, tmp_path, capsys):
    def diverge(record):
        if record["variant"] == "sas" and record["seed"] == 0:
            record["status"] = "diverged"
            record["summary"]["final_eval_loss"] = record["summary"]["final_eval_bpb"] = None
        return record

    cand = copy_records(tiny_run, tmp_path / "cand", change=diverge)
    code, result = run_compare(capsys, str(tiny_run), str(cand))
    assert code == 1 and verdicts(result, "eval loss")["sas"] == "regression"


def test_single_record_files_compare(tiny_run):
    record = tiny_run / "records" / "sas-seed0.json"
    result = compare_paths(str(record), str(record), Thresholds())
    assert result["exit_code"] == 0 and result["baseline"]["records"] == 1


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert captured.out == ""
    return lines[0]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _set_version(version: str, variant: str | None = None):
    def change(record):
        if variant is None or record["variant"] == variant:
            record["suite"]["version"] = version
        return record
    return change


@pytest.mark.parametrize("make_candidate,needle", [
    (lambda run, d: d / "nowhere", "no such file or directory"),
    (lambda run, d: (d / "empty").mkdir() or d / "empty", "no run records"),
    (lambda run, d: (copy_records(run, d / "c"), _write(d / "c" / "records" / "bad.json", "{not json"))[0],
     "not valid JSON"),
    (lambda run, d: (copy_records(run, d / "c"), _write(d / "c" / "records" / "x.json", '{"schema_version": 7}'))[0],
     "schema_version 7"),
    (lambda run, d: (copy_records(run, d / "c"), _write(d / "c" / "records" / "y.json", "[1, 2]"))[0],
     "not a JSON object"),
    (lambda run, d: copy_records(run, d / "c", change=_set_version("2", "sas")), "several suite versions"),
    (lambda run, d: copy_records(run, d / "c", change=_set_version("2")), "nothing comparable"),
    (lambda run, d: copy_records(run, d / "c", change=lambda r: {**r, "suite": {**r["suite"], "hash": "f" * 64}}),
     "hash"),
    (lambda run, d: copy_records(run, d / "c", change=lambda r: {**r, "variant": "other_" + r["variant"]}),
     "no variant in common"),
])
def test_unusable_input_exits_2_with_one_line(tiny_run, tmp_path, capsys, make_candidate, needle):
    candidate = make_candidate(tiny_run, tmp_path)
    assert main(["compare", str(tiny_run), str(candidate), "--json"]) == 2
    line = _one_error_line(capsys)
    assert needle in line and line.startswith("blockbench: error:"), line


def test_duplicate_records_in_one_side_exit_2(tiny_run, tmp_path, capsys):
    cand = copy_records(tiny_run, tmp_path / "cand")
    copy_records(tiny_run, tmp_path / "cand" / "records" / "again")
    assert main(["compare", str(tiny_run), str(cand)]) == 2
    assert "two records of variant" in _one_error_line(capsys)


def test_cli_exit_codes_through_the_console_entry(tiny_run, tmp_path):
    cand = copy_records(tiny_run, tmp_path / "cand", change=worse_loss(0.1))
    bad = tmp_path / "bad"
    _write(bad / "records" / "r.json", "garbage")
    codes = []
    for candidate in (cand, bad):  # exit 0 is covered in-process above; each subprocess costs a torch import
        result = subprocess.run([sys.executable, "-m", "blockbench", "compare", str(tiny_run), str(candidate)],
                                capture_output=True, text=True, cwd=REPO, timeout=300)
        codes.append(result.returncode)
        if result.returncode == 2:
            assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert codes == [1, 2]


def other_device(record):
    record["env"]["device_name"] = "Another CPU"
    return record


def test_speed_ratios_of_different_device_types_are_never_compared_or_mixed(tiny_run, tmp_path, capsys):
    cand = copy_records(tiny_run, tmp_path / "cand", change=other_device)
    code, result = run_compare(capsys, str(tiny_run), str(cand))
    assert code == 0
    row = next(r for r in result["rows"] if r["variant"] == "sas" and r["metric"].startswith("speedup"))
    assert row["verdict"] == "n/a" and "different device types" in row["detail"]
    assert verdicts(result, "eval loss") == {"pre_ln": "same", "sas": "same"}  # loss still compares

    mixed = copy_records(tiny_run, tmp_path / "mixed", change=lambda r: other_device(r) if r["variant"] == "sas"
                         else r)
    leaderboard.generate(mixed, warn=lambda message: None)
    rows = {r["variant"]: r for r in read_csv(mixed / "leaderboard.csv")}
    assert rows["sas"]["speedup_vs_baseline"] == "" and rows["pre_ln"]["speedup_vs_baseline"] == ""
    assert "speed ratios (interleaved probe) not shown" in (mixed / "leaderboard.md").read_text()
