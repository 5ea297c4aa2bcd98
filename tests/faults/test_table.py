"""The reliability table in docs/reliability.md is the one the fault tests declare."""

from pathlib import Path

from tests.faults.table import BEGIN, END, render

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


def test_the_docs_carry_the_generated_fault_table():
    text = DOC.read_text()
    assert BEGIN in text and END in text, "docs/reliability.md has no fault table; paste `python -m tests.faults.table`"
    current = text[text.index(BEGIN):text.index(END) + len(END)]
    assert current == render(), \
        "docs/reliability.md's fault table is stale; regenerate it with `python -m tests.faults.table`"
