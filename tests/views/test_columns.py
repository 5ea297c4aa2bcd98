"""One column list (views/columns.py COLUMNS) drives leaderboard.csv, leaderboard.md and index.html (issue 25):
a column added to the list, and nowhere else, shows in all three."""

import io
from csv import DictReader
from pathlib import Path

from rich.console import Console

from blockbench.progress import RunDisplay
from blockbench.suite import load_suite
from blockbench.views import columns, leaderboard, page, selection

REPO = Path(__file__).resolve().parents[2]


def _outputs(results: Path) -> tuple[str, str, str]:
    kept, _ = selection.ranked_records(results)
    records = [r for _, r in kept]
    table, st = selection.ranked_table(records)
    doc = leaderboard.build_page(table, records, [], 0, st.line(), [])
    return (columns.render_csv(table, columns.columns_for(records)), page.to_markdown(doc), page.to_html(doc))


def test_a_column_added_to_the_list_shows_in_the_csv_and_both_pages(monkeypatch):
    dummy = columns.Column(
        ("dummy_seed_sum",), (columns.RunField("dummy_seed", lambda r: r["seed"] + 1000),),
        lambda v: int(v.g["dummy_seed"].sum()),
        ranking=columns.Cell("dummy seeds", lambda r, view: f"dummy={r['dummy_seed_sum']}"),
        target=columns.Cell("dummy target", lambda r, view: f"target-dummy={r['dummy_seed_sum']}"))
    before = _outputs(REPO / "results" / "smoke" / "1")
    monkeypatch.setattr(columns, "COLUMNS", [*columns.COLUMNS, dummy])
    csv, md, html = _outputs(REPO / "results" / "smoke" / "1")

    header = csv.splitlines()[0].split(",")
    assert header[-1] == "dummy_seed_sum" and header[:-1] == before[0].splitlines()[0].split(",")
    rows = list(DictReader(io.StringIO(csv)))
    assert rows and all(int(row["dummy_seed_sum"]) >= 1000 for row in rows)
    for text in (md, html):
        assert "dummy seeds" in text and f"dummy={rows[0]['dummy_seed_sum']}" in text
        assert "dummy target" in text and f"target-dummy={rows[0]['dummy_seed_sum']}" in text
    assert "dummy" not in "".join(before)


def _run_table(records: list[dict], failures: list[dict] = ()) -> list[str]:
    """`blockbench run`'s closing table for these records, as printed (its header row first)."""
    out = io.StringIO()
    display = RunDisplay(load_suite("smoke"), quiet=True, console=Console(file=out, width=300))
    display.records, display.failures = records, list(failures)
    display.summary("out")
    return [line for line in out.getvalue().splitlines() if line.startswith(("┃", "│"))]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip("┃│").replace("┃", "│").split("│")]


def test_a_column_added_to_the_list_shows_in_the_run_table(monkeypatch):
    """The terminal table reads its columns from the list too: a column with a terminal cell, added there and
    nowhere else, shows in `blockbench run`'s closing table, with "-" on a failed run's row."""
    kept, _ = selection.ranked_records(REPO / "results" / "smoke" / "1")
    records = [r for _, r in kept]
    failed = [{"variant": "broken", "seed": 7}]
    before = _run_table(records, failed)
    headers = _cells(before[0])
    shown = [c.terminal.header for c in columns.columns_for(records) if c.terminal is not None]
    assert headers == ["variant", "seed", "status", "steps", *shown] and "bpb" in headers  # the workload's own
    assert "peak mem MiB" in headers
    dummy = columns.Column(terminal=columns.RunCell("dummy steps", lambda r, c: f"dummy={r['summary']['steps'] + 1}"))
    monkeypatch.setattr(columns, "COLUMNS", [*columns.COLUMNS, dummy])
    after = _run_table(records, failed)
    assert _cells(after[0]) == [*headers, "dummy steps"]
    steps = records[0]["summary"]["steps"]
    assert sum(f"dummy={steps + 1}" in line for line in after) == len(records)
    failed_row = next(line for line in after if "broken" in line)
    assert _cells(failed_row)[-1] == "-"
    assert "dummy" not in "".join(before)


def test_the_pages_and_the_csv_read_no_other_column_list():
    """Every CSV column and every page header comes from a COLUMNS entry (no second list to keep in step)."""
    kept, _ = selection.ranked_records(REPO / "results" / "mlm-smoke" / "1")
    records = [r for _, r in kept]
    listed = {n for c in columns.columns_for(records) for n in c.names if c.in_csv}
    csv, _, _ = _outputs(REPO / "results" / "mlm-smoke" / "1")
    header = csv.splitlines()[0].split(",")
    assert set(header) <= listed and "eval_accuracy_mean" in header  # the masked_lm workload's own column
    # each workload's metric column follows the eval loss; an encoder has no bits per byte
    assert header.index("eval_accuracy_mean") == header.index("eval_loss_ci_high") + 1
    assert "eval_bpb_mean" not in header
    smoke_csv = _outputs(REPO / "results" / "smoke" / "1")[0]
    assert "eval_accuracy_mean" not in smoke_csv  # a causal_lm leaderboard keeps its shape
    smoke_header = smoke_csv.splitlines()[0].split(",")
    assert smoke_header.index("eval_bpb_mean") == smoke_header.index("eval_loss_ci_high") + 1


def _baseline_row(results: Path) -> tuple[dict, str, dict]:
    """(the baseline's CSV row, the Markdown ranking row of the baseline, the cells of that row by header)."""
    kept, _ = selection.ranked_records(results)
    records = [r for _, r in kept]
    baseline = records[0]["config"]["baseline"]
    csv, md, _ = _outputs(results)
    row = next(r for r in DictReader(io.StringIO(csv)) if r["variant"] == baseline)
    ranking = md.split("## Ranking")[1]
    lines = [line for line in ranking.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    cells = next([c.strip() for c in line.strip("|").split("|")] for line in lines[2:] if f"| {baseline} |" in line)
    return row, baseline, dict(zip(header, cells, strict=True))


def test_the_baseline_row_shows_no_interval_of_itself_against_itself():
    """paper-cpu/2 (8 seeds, a target): the baseline's time-to-target speedup was `1.000 [0.919, 1.089]`, a bootstrap
    of the baseline's seconds against themselves. Its row says `baseline`; the CSV has 1 and no interval."""
    row, baseline, cells = _baseline_row(REPO / "results" / "paper-cpu" / "2")
    assert baseline == "pre_ln"
    assert cells["time-to-target speedup [95% CI] (wall-clock; see caveat)"] == "baseline"
    assert float(row["ttt_speedup"]) == 1.0 and row["ttt_speedup_ci_low"] == row["ttt_speedup_ci_high"] == ""
    assert cells["speedup, interleaved probe"] == "baseline (untrusted probe)"  # the probe was disturbed there


def test_a_baseline_that_missed_the_target_says_so_on_its_own_row():
    row, _, cells = _baseline_row(REPO / "results" / "smoke" / "1")
    assert cells["time-to-target speedup [95% CI] (wall-clock; see caveat)"] == "baseline (missed)"
    assert row["ttt_speedup"] == "" and row["ttt_speedup_ci_low"] == ""


def test_p_rank_is_the_probability_of_the_listed_range_and_says_which():
    assert columns._rank_probability_cell({"rank_range_probability": 0.934, "rank_range": "1-3"}, None) == \
        "0.93 (in 1-3)"
    assert columns._rank_probability_cell({"rank_range_probability": 0.97, "rank_range": "4"}, None) == "0.97 (at 4)"
    assert columns._rank_probability_cell({"rank_range_probability": float("nan"), "rank_range": "2"}, None) == "-"
    row, _, cells = _baseline_row(REPO / "results" / "paper-cpu" / "2")
    assert cells["P(rank)"] == "1.00 (in 1-3)" and float(row["rank_range_probability"]) == 1.0
    assert "rank_probability" not in row  # the point-position probability is no column: a tied range has none
    assert row["ranking"] == "settled"
