"""docs/architecture.md is the design document: its layout names every module of the package, and its floor table
is the one tests/architecture/test_imports.py enforces."""

import re
from pathlib import Path

from tests.architecture.test_imports import FLOORS

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "architecture.md"


def layout_block() -> str:
    text = DOC.read_text()
    start = text.index("## Layout")
    return text[text.index("```", start) + 3:text.index("```", text.index("```", start) + 3)]


def named_modules(block: str) -> set[str]:
    """package-relative paths of the modules the layout block names (`  name.py` under its directory lines)."""
    named, stack = set(), []
    for line in block.splitlines():
        m = re.match(r"^( *)(\S+)", line)
        if not m:
            continue
        depth, name = len(m.group(1)) // 2, m.group(2)
        stack = stack[:depth]
        if name.endswith("/"):
            stack.append(name.rstrip("/"))
        elif name.endswith(".py"):
            named.add("/".join([*stack, name]))
    return named


def test_every_module_is_named_in_the_layout():
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "blockbench").rglob("*.py")}
    named = named_modules(layout_block())
    assert sorted(modules - named) == [], "modules missing from docs/architecture.md's layout"
    assert sorted(named - modules) == [], "docs/architecture.md names modules that do not exist"


def test_the_floor_table_is_the_enforced_one():
    text = DOC.read_text()
    rows = re.findall(r"^\| (\d+) \| (.+) \|$", text, flags=re.M)
    table = [{n.strip("`/ ") for n in cells.split(", ")} for _, cells in rows]
    expected = [{n or "the package's __init__" for n in floor} for floor in FLOORS]
    table = [{"__init__" if "__init__" in n else n for n in floor} for floor in table]
    expected = [{"__init__" if "__init__" in n else n for n in floor} for floor in expected]
    assert table == expected


def test_the_layout_parser_sees_a_missing_module():
    assert "blockbench/views/page.py" in named_modules(layout_block())
    assert "blockbench/views/page.py" not in named_modules(layout_block().replace("page.py", "pages.py"))
