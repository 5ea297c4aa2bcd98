"""The README's reliability table is the one the fault tests declare."""

from pathlib import Path

from tests.faults.table import BEGIN, END, render

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_carries_the_generated_fault_table():
    text = README.read_text()
    assert BEGIN in text and END in text, "README.md has no fault table; paste `python -m tests.faults.table`"
    current = text[text.index(BEGIN):text.index(END) + len(END)]
    assert current == render(), "README.md's fault table is stale; regenerate it with `python -m tests.faults.table`"
