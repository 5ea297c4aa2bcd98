"""Leaderboards from real run records: aggregation, byte-identical regeneration, grouping, and bad input (exit 2).

The records come from one in-process run of a tiny suite per test session (`make_tiny_run`, shared with
test_compare.py); variations (a stale suite hash, other overrides, a diverged variant) are derived copies.
"""

import csv
import io
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from blockbench import stats
from blockbench.cli import main
from blockbench.records import seal
from blockbench.views import leaderboard, page

TINY_SUITE = """\
[suite]
name = "tiny"
version = "1"
description = "test suite: two variants, three seeds, a few steps"
baseline = "pre_ln"
seeds = [0, 1, 2]

[model]
n_layers = 1
d_model = 32
n_heads = 2
seq_len = 32

[data]
corpus = "sympy"
tokenizer = "bytes"

[optim]
lr = 1e-2
batch_size = 8

[budget]
steps = 16

[eval]
every_tokens = 1024
windows = 4
target_loss = 4.5

[runtime]
threads = 2
warmup_steps = 1

[speed]
rounds = 4
steps_per_round = 1

[variants.pre_ln]
[variants.sas]
"""


REPO = Path(__file__).resolve().parents[2]


def make_tiny_run(base: Path) -> Path:
    """Run the tiny suite once (in-process) into base/tiny_run and return that run dir; later calls reuse it."""
    from blockbench.runner import run_suite
    from blockbench.suite import load_suite

    run_dir = base / "tiny_run"
    if not (run_dir / "done").exists():
        suite_file = base / "tiny.toml"
        suite_file.write_text(TINY_SUITE)
        shutil.rmtree(run_dir, ignore_errors=True)
        run_suite(load_suite(str(suite_file)), run_dir, isolate=False)
        (run_dir / "done").touch()
    return run_dir


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    return make_tiny_run(tmp_path_factory.getbasetemp())


def copy_records(src: Path, dst: Path, change=None, only=None) -> Path:
    """A results dir at dst holding src's records, each passed through change(record) (None drops it)."""
    (dst / "records").mkdir(parents=True, exist_ok=True)
    for path in sorted((src / "records").glob("*.json")):
        record = json.loads(path.read_text())
        if only is not None and not only(record):
            continue
        if change is not None:  # a derived record stands for another real run: sealed like one
            record = seal(change(record))
        (dst / "records" / path.name).write_text(json.dumps(record, indent=1, sort_keys=True))
    return dst


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def quiet_probe(record):
    """The probe as a quiet machine makes it: a tiny run's rounds on a loaded one disagree, and the probe rule
    (stats.probe_disturbed_note) then rightly shows no ratio."""
    record["speed"]["step_time_median"] = record["summary"]["step_time_median"]
    if record["speed"].get("speedup_iqr") is not None:
        record["speed"]["speedup_iqr"] = min(record["speed"]["speedup_iqr"], 0.05)
    return record


def test_leaderboard_files_header_and_aggregation(tiny_run, tmp_path, capsys):
    results = copy_records(tiny_run, tmp_path / "results", change=quiet_probe)
    assert main(["leaderboard", str(results)]) == 0
    for name in leaderboard.OUTPUT_FILES:
        assert (results / name).stat().st_size > 0, name
    assert (results / "loss_vs_steps.png").read_bytes().startswith(b"\x89PNG")

    rows = read_csv(results / "leaderboard.csv")
    assert sorted(r["variant"] for r in rows) == ["pre_ln", "sas"]
    assert [r["rank"] for r in rows] == ["1", "2"]
    records = [json.loads(p.read_text()) for p in sorted((results / "records").glob("*.json"))]
    for row in rows:
        losses = [r["summary"]["final_eval_loss"] for r in records if r["variant"] == row["variant"]]
        assert float(row["eval_loss_mean"]) == pytest.approx(sum(losses) / 3, rel=1e-6)
        assert float(row["eval_loss_ci_low"]) < float(row["eval_loss_mean"]) < float(row["eval_loss_ci_high"])
        assert row["n_seeds"] == "3" and row["status"] == "ok"
    assert float(rows[0]["eval_loss_mean"]) <= float(rows[1]["eval_loss_mean"])
    sas = next(r for r in rows if r["variant"] == "sas")
    assert float(sas["speedup_vs_baseline"]) == pytest.approx(
        next(r for r in records if r["variant"] == "sas")["speed"]["speedup_vs_baseline"], rel=1e-6)

    md = (results / "leaderboard.md").read_text()
    first = records[0]
    for needle in ("tiny v1", first["suite"]["hash"], first["blockbench_version"], "eval loss 4.5",
                   "steps=16", first["data"]["fingerprint"], "6 ranked, 0 left out"):
        assert needle in md, needle
    html = (results / "index.html").read_text()
    assert 'href="leaderboard.csv"' in html and 'src="loss_vs_flops.png"' in html
    assert "leaderboard written to" in capsys.readouterr().out


def test_regenerating_gives_identical_bytes(tiny_run, tmp_path):
    results = copy_records(tiny_run, tmp_path / "results")
    leaderboard.generate(results)
    first = {name: (results / name).read_bytes() for name in leaderboard.OUTPUT_FILES}
    leaderboard.generate(results)
    assert {name: (results / name).read_bytes() for name in leaderboard.OUTPUT_FILES} == first
    # Elsewhere, from a copy: the outputs depend on the records alone, not on the directory's location.
    other = copy_records(tiny_run, tmp_path / "elsewhere" / "results")
    leaderboard.generate(other)
    assert {name: (other / name).read_bytes() for name in leaderboard.OUTPUT_FILES} == first


def test_one_seed_has_no_interval(tiny_run, tmp_path):
    results = copy_records(tiny_run, tmp_path / "results", only=lambda r: r["seed"] == 0)
    leaderboard.generate(results)
    rows = read_csv(results / "leaderboard.csv")
    assert all(r["n_seeds"] == "1" and r["eval_loss_ci_low"] == "" and r["ttt_speedup_ci_low"] == ""
               for r in rows)


def test_stale_hash_and_other_overrides_are_left_out_with_a_message(tiny_run, tmp_path):
    results = copy_records(tiny_run, tmp_path / "results")
    stale = json.loads((results / "records" / "sas-seed0.json").read_text())
    stale["suite"]["hash"] = "0" * 64
    (results / "records" / "sas-seed9.json").write_text(json.dumps(seal(stale)))
    other = json.loads((results / "records" / "sas-seed1.json").read_text())
    other["config"]["overrides"] = {"budget": {"steps": 3}}
    (results / "records" / "sas-seed8.json").write_text(json.dumps(seal(other)))
    selection = json.loads((results / "records" / "pre_ln-seed0.json").read_text())
    selection["seed"] = 7
    selection["config"]["overrides"] = {"variants": ["pre_ln"], "seeds": [7]}  # what was run, not how: kept
    (results / "records" / "pre_ln-seed7.json").write_text(json.dumps(seal(selection)))

    messages = []
    leaderboard.generate(results, warn=messages.append)
    assert len(messages) == 2
    assert any("sas-seed9.json" in m and "hash" in m for m in messages)
    assert any("sas-seed8.json" in m and "overrides" in m for m in messages)
    rows = {r["variant"]: r for r in read_csv(results / "leaderboard.csv")}
    assert rows["sas"]["n_seeds"] == "3" and rows["pre_ln"]["n_seeds"] == "4"
    md = (results / "leaderboard.md").read_text()
    assert "## Left out" in md and "records/sas-seed9.json" in md and "7 ranked, 2 left out" in md


def test_diverged_variant_is_listed_not_ranked(tiny_run, tmp_path):
    def diverge(record):
        if record["variant"] == "sas" and record["seed"] == 1:
            record["status"] = "diverged"
            record["summary"]["final_eval_loss"] = record["summary"]["final_eval_bpb"] = None
        return record

    results = copy_records(tiny_run, tmp_path / "results", change=diverge)
    leaderboard.generate(results)
    rows = {r["variant"]: r for r in read_csv(results / "leaderboard.csv")}
    assert rows["sas"]["status"] == "diverged" and rows["sas"]["rank"] == "" and rows["sas"]["n_diverged"] == "1"
    assert rows["sas"]["eval_loss_mean"] == ""
    assert rows["pre_ln"]["rank"] == "1"
    assert "diverged on 1/3 seeds" in (results / "leaderboard.md").read_text()
    assert rows["sas"]["to_target_status"] == "diverged on 1/3 seeds"


def test_misses_count_as_infinite_and_are_named_as_misses(tiny_run, tmp_path):
    def miss(record):
        if record["variant"] == "sas" and record["seed"] in (0, 1):
            record["to_target"].update(steps=None, tokens=None, flops=None, seconds=None)
        if record["variant"] == "pre_ln" and record["seed"] == 2:
            record["to_target"].update(steps=None, tokens=None, flops=None, seconds=None)
        return record

    results = copy_records(tiny_run, tmp_path / "results", change=miss)
    leaderboard.generate(results)
    rows = {r["variant"]: r for r in read_csv(results / "leaderboard.csv")}
    assert rows["sas"]["to_target_status"] == "target missed on 2/3 seeds" and rows["sas"]["steps_to_target"] == "inf"
    assert rows["sas"]["ttt_speedup"] == "0"  # the baseline's median reaches it, the candidate's does not
    assert rows["pre_ln"]["to_target_status"] == "target missed on 1/3 seeds"
    md = (results / "leaderboard.md").read_text()
    assert "| sas | target missed on 2/3 seeds | miss |" in md and "invalid" not in md


def test_a_missed_baseline_is_named_not_printed_as_infinity(tiny_run, tmp_path):
    def miss(record):
        if record["variant"] == "pre_ln":
            record["to_target"].update(steps=None, tokens=None, flops=None, seconds=None)
        return record

    results = copy_records(tiny_run, tmp_path / "results", change=miss)
    leaderboard.generate(results)
    md = (results / "leaderboard.md").read_text()
    ranking = md.split("## Ranking")[1].split("## Time to target")[0]
    assert "baseline missed" in ranking and "inf" not in ranking


def test_bootstrap_is_seeded_and_brackets_the_point():
    base, cand = [10.0, 11.0, 12.0, 10.5], [8.0, 8.5, 9.0, 8.2]
    point, low, high = stats.bootstrap_speedup(base, cand, "a/b")
    assert low <= point <= high and point == pytest.approx(10.75 / 8.35)
    assert stats.bootstrap_speedup(base, cand, "a/b") == (point, low, high)


def test_suite_argument_means_results_below_the_current_directory(tiny_run, tmp_path, monkeypatch):
    suite_file = tmp_path / "tiny.toml"
    suite_file.write_text(TINY_SUITE)
    copy_records(tiny_run, tmp_path / "results" / "tiny" / "1")
    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard", str(suite_file)]) == 0
    assert (tmp_path / "results" / "tiny" / "1" / "leaderboard.md").exists()


def _one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


def test_mixed_suite_versions_exit_2_and_write_nothing(tiny_run, tmp_path, capsys):
    def bump(record):
        if record["variant"] == "sas":
            record["suite"]["version"] = "2"
        return record

    results = copy_records(tiny_run, tmp_path / "results", change=bump)
    assert main(["leaderboard", str(results)]) == 2
    assert "several suite versions" in _one_error_line(capsys)
    assert not (results / "leaderboard.md").exists()


@pytest.mark.parametrize("setup,needle", [
    (lambda d: d.mkdir(), "no run records"),
    (lambda d: (d / "records").mkdir(parents=True), "no run records"),
    (lambda d: None, "no such directory"),
    (lambda d: ((d / "records").mkdir(parents=True), (d / "records" / "x.json").write_text("{oops")), "not valid JSON"),
    (lambda d: ((d / "records").mkdir(parents=True), (d / "records" / "x.json").write_text('{"schema_version": 9}')),
     "schema_version 9"),
])
def test_bad_directories_exit_2_with_one_line(tmp_path, capsys, setup, needle):
    target = tmp_path / "results"
    setup(target)
    assert main(["leaderboard", str(target)]) == 2
    assert needle in _one_error_line(capsys)


def test_a_failed_write_keeps_the_previous_outputs(tiny_run, tmp_path, capsys, monkeypatch):
    results = copy_records(tiny_run, tmp_path / "results")
    leaderboard.generate(results)
    before = {p.name: p.read_bytes() for p in results.iterdir() if p.is_file()}
    real_open, opened = os.open, []

    def failing_open(path, *args, **kwargs):
        opened.append(path)
        if len(opened) == 4:  # partway through: three new temp files already exist
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(leaderboard.os, "open", failing_open)
    assert main(["leaderboard", str(results)]) == 2
    assert "Permission denied" in _one_error_line(capsys)
    assert {p.name: p.read_bytes() for p in results.iterdir() if p.is_file()} == before  # no temp files either


def test_read_only_output_dir_exit_2(tiny_run, tmp_path, capsys):
    results = copy_records(tiny_run, tmp_path / "results")
    leaderboard.generate(results)
    before = {p.name: p.read_bytes() for p in results.iterdir() if p.is_file()}
    results.chmod(0o555)
    try:
        if os.access(results, os.W_OK):
            pytest.skip("running as root: permission bits do not stop writes (covered by the test above)")
        assert main(["leaderboard", str(results)]) == 2
        assert "cannot write" in _one_error_line(capsys)
    finally:
        results.chmod(0o755)
    assert {p.name: p.read_bytes() for p in results.iterdir() if p.is_file()} == before


def test_one_seed_says_so_and_shows_no_interval_columns(tiny_run, tmp_path):
    results = copy_records(tiny_run, tmp_path / "results", only=lambda r: r["seed"] == 0)
    leaderboard.generate(results)
    for name in ("leaderboard.md", "index.html"):
        text = (results / name).read_text()
        assert "eval loss (one seed: no interval)" in text and "One seed per variant" in text, name
        assert "P(rank)</th>" not in text and "| P(rank) |" not in text and "mean ± 95% CI" not in text, name
        assert "[95% CI]" not in text, name
    ranking = (results / "leaderboard.md").read_text().split("## Ranking")[1].split("rank stability")[0]
    rows = [line for line in ranking.splitlines() if "| pre_ln |" in line or "| sas |" in line]
    # the speed cell may say "A/A floor ±x%" or "within ±x%": that is the probe's floor, not a loss interval
    assert len(rows) == 2 and not any("±" in re.sub(r"(floor|within) ±", "", row) for row in rows)


def test_html_carries_the_guide_headings_and_a_link_to_every_artefact(tiny_run, tmp_path):
    """index.html says what leaderboard.md says: the reading guide, the section and table headings, and a link to
    each file the directory holds, the other commands' included."""
    results = copy_records(tiny_run, tmp_path / "results")
    for name in ("REPORT.md", "REPORT.html", "diagnose.json"):
        (results / name).write_text("{}\n")
    for name in ("report_claims.png", "diagnose.png"):
        (results / name).write_bytes(b"\x89PNG")
    leaderboard.generate(results)
    html = (results / "index.html").read_text()
    md = (results / "leaderboard.md").read_text()
    # The setup is collapsed below the plots: a <details> in the page, a section in the Markdown.
    assert '<details id="setup">\n<summary>Setup</summary>' in html and "## Setup\n" in md
    headings = ("Ranking: final eval loss at the budget", "Time to target: eval loss ≤ 4.5 nats/token",
                "The paper's claims", "Plots", "How to read this")
    for heading in headings:
        assert f'id="{page.anchor(heading)}"' in html and f">{heading}</h2>" in html and f"## {heading}\n" in md, \
            heading
    # The guide and the claims report are linked from the top, before the first section.
    for text in (html.split("<h2")[0], md.split("\n## ")[0]):
        assert "#how-to-read-this" in text and "REPORT.html" in text
    for column in ("rank", "P(rank)", "variant", "eval loss, mean ± 95% CI", "speedup, interleaved probe",
                   "time-to-target speedup [95% CI] (wall-clock; see caveat)", "peak mem MiB (CPU RSS growth)",
                   "status", "steps (median)", "train seconds (median)"):
        assert f">{column}</th>" in html and f"| {column} |" in md, column
    for item in leaderboard.READING_GUIDE:  # every guide item, with its Markdown turned into HTML
        assert page.inline_html(item) in html and item in md
    artefacts = ["REPORT.md", "REPORT.html", "report_claims.png", "diagnose.png", "diagnose.json", "records/",
                 *leaderboard.OUTPUT_FILES]
    for name in artefacts:
        assert f'href="{name}"' in html or f'src="{name}"' in html, name
        assert f"]({name})" in md, name
    # CPU runs made one after another: the seconds caveat once (the to-target table), and no seconds plots.
    assert html.count("Seconds do not compare across variants") == 1
    assert "No seconds plots: these runs trained one after another on a shared CPU" in html
    assert "loss_vs_seconds.png" not in html and not (results / "loss_vs_seconds.png").exists()
    assert 'class="caveat"' in html
    # The headline opens the page, and the ranking carries each variant's paired difference to the baseline.
    assert html.split("<h2")[0].count('<p class="headline">') == 1 and ">Δ vs pre_ln, nats [95% CI]</th>" in html


def test_published_leaderboards_regenerate_byte_identically(tmp_path):
    """Every published results/<suite>/<version>/ is exactly what `blockbench leaderboard` makes of its records
    and the files beside them."""
    published = sorted(p.parent for p in (REPO / "results").glob("*/*/index.html") if (p.parent / "records").is_dir())
    assert published, "no published leaderboard"
    for directory in published:
        copy_dir = tmp_path / directory.parent.name / directory.name
        shutil.copytree(directory, copy_dir)
        for name in leaderboard.OUTPUT_FILES:
            (copy_dir / name).unlink()
        leaderboard.generate(copy_dir, warn=lambda message: None)
        for name in leaderboard.OUTPUT_FILES:
            assert (copy_dir / name).read_bytes() == (directory / name).read_bytes(), f"{directory}/{name}"


def test_the_seconds_caveat_names_the_device_the_records_ran_on():
    from blockbench.records import load_records

    records = load_records(REPO / "results" / "smoke" / "1" / "records")
    cpu = leaderboard.seconds_caveat(records)
    assert "(cpu)" in cpu and "shared machine" in cpu
    for r in records:
        r["env"].update(device="cuda", device_name="NVIDIA H200")
    gpu = leaderboard.seconds_caveat(records)
    assert "NVIDIA H200 (cuda)" in gpu and "on a GPU" in gpu and "CPU result" not in gpu
    assert gpu.startswith("**Seconds do not compare across variants here.**")


def test_the_seconds_plots_caveat_names_the_device():
    from blockbench.views.plots import GPU_SECONDS_PLOT_NOTE, SECONDS_PLOT_NOTE, seconds_plot_note

    assert seconds_plot_note([{"env": {"device": "cuda"}}] * 2) == GPU_SECONDS_PLOT_NOTE
    assert seconds_plot_note([{"env": {"device": "cpu"}}]) == SECONDS_PLOT_NOTE
    assert "shared machine" not in GPU_SECONDS_PLOT_NOTE


def test_a_superseded_version_says_why_at_the_top(tmp_path):
    results = tmp_path / "smoke1"
    shutil.copytree(REPO / "results" / "smoke" / "1" / "records", results / "records")
    (results / leaderboard.SUPERSEDED).write_text("Replaced by [v2](../2/index.html):\nits budget is longer.\n")
    leaderboard.generate(results, warn=lambda message: None)
    md = (results / "leaderboard.md").read_text()
    assert md.split("\n\n")[1] == "**Superseded:** Replaced by [v2](../2/index.html): its budget is longer."
    # A stranger's note keeps no javascript: link: it is shown as text.
    (results / leaderboard.SUPERSEDED).write_text("see [x](javascript:alert(1))")
    leaderboard.generate(results, warn=lambda message: None)
    assert 'href="javascript' not in (results / "index.html").read_text()


def test_overrides_are_setup_rows_not_json():
    assert leaderboard.override_items({}) == [("overrides", "none")]
    assert leaderboard.override_items({"override_file": {"path": "s.toml", "sha256": "ab"}, "speed_rounds": 0}) == [
        ("override override_file.path", "s.toml"), ("override override_file.sha256", "ab"),
        ("override speed_rounds", "0")]
