"""One column list (views/columns.py COLUMNS) drives leaderboard.csv, leaderboard.md and index.html (issue 25):
a column added to the list, and nowhere else, shows in all three."""

import io
from csv import DictReader
from pathlib import Path

from blockbench.views import columns, leaderboard, page, selection

REPO = Path(__file__).resolve().parents[1]


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


def test_the_pages_and_the_csv_read_no_other_column_list():
    """Every CSV column and every page header comes from a COLUMNS entry (no second list to keep in step)."""
    kept, _ = selection.ranked_records(REPO / "results" / "mlm-smoke" / "1")
    records = [r for _, r in kept]
    listed = {n for c in columns.columns_for(records) for n in c.names if c.in_csv}
    csv, _, _ = _outputs(REPO / "results" / "mlm-smoke" / "1")
    header = csv.splitlines()[0].split(",")
    assert set(header) <= listed and "eval_accuracy_mean" in header  # the masked_lm workload's own column
    assert header.index("eval_accuracy_mean") == header.index("eval_bpb_mean") + 1
    smoke_csv = _outputs(REPO / "results" / "smoke" / "1")[0]
    assert "eval_accuracy_mean" not in smoke_csv  # a causal_lm leaderboard keeps its shape
