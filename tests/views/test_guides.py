"""The reading guides say what the code does: the columns' meanings live on `COLUMNS` and their thresholds are the
statistics' constants, so a page, the landing page and the docs cannot state a rule the code does not apply."""

from __future__ import annotations

import ast
import difflib
from pathlib import Path

from blockbench import stats
from blockbench.views import columns as C
from blockbench.views import index, leaderboard

VIEWS = Path(C.__file__).parent


def _rendered_thresholds() -> list[str]:
    """Each threshold as the guides write it, from its constant."""
    return [f"{stats.PLATEAU_TOLERANCE:g} nats", f"{stats.PLATEAU_LEVEL_FRACTION:g} ln(vocab)",
            f">= {stats.ORDER_PROB_MIN:g}", f"{stats.BOOTSTRAP_RESAMPLES:,} seeded",
            f"up to {stats.exact_bootstrap_seeds()} seeds", f"{100 * stats.INTERVAL_TAIL:g}% of resamples"]


def test_docs_column_table_is_rendered_from_columns():
    doc = C.COLUMNS_DOC.read_text(encoding="utf-8")
    assert C.DOC_BEGIN in doc and C.DOC_END in doc, f"{C.COLUMNS_DOC}: the markers of the columns' table are gone"
    expected = C.with_columns_table(doc)
    diff = "\n".join(difflib.unified_diff(doc.splitlines(), expected.splitlines(), "docs", "COLUMNS", lineterm=""))
    assert doc == expected, ("docs/leaderboards.md's table of the columns differs from COLUMNS; rewrite it with "
                             f"`python3 -m blockbench.views.columns`:\n{diff}")


def test_guides_state_the_constants():
    text = " ".join(leaderboard.READING_GUIDE)
    missing = [t for t in _rendered_thresholds() if t not in text]
    assert not missing, f"the leaderboard's guide no longer states: {missing}"
    assert all(c.explained() in text for c in C.COLUMNS if c.meaning)  # every meaning reaches the page
    assert all(c.explained(brief=True) in " ".join(index.READING_GUIDE) for c in C.COLUMNS if c.brief)


def test_no_threshold_written_as_a_literal_in_the_views():
    """A guide's number is formatted from its constant: a literal copy in a view's text would not follow it."""
    found = []
    for path in sorted(VIEWS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found += [f"{path.name}:{node.lineno}: {t!r}" for t in _rendered_thresholds() if t in node.value]
    assert not found, "thresholds written as literals (format them from blockbench.stats): " + "; ".join(found)


def test_docs_state_the_speed_probe_rule_the_code_applies():
    """docs/leaderboards.md's prose on when a probe is trusted cannot run code: it must carry the constants' values."""
    doc = " ".join(C.COLUMNS_DOC.read_text(encoding="utf-8").split())
    for said in (f"at most {stats.PROBE_DISTURBED_RATIO:g}x the same variant's training steps",
                 f"interquartile range is at most {stats.PROBE_IQR_MAX:g}"):
        assert said in doc, f"docs/leaderboards.md no longer says {said!r} (blockbench/stats.py applies it)"
