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


# Where the repository's own prose and code name a file of the repository by path, that file exists: a moved test
# or script takes its references along (published results are records of their day and are left as they were).
NAMED_PATH = re.compile(r"\b((?:tests|ci|benchmarks|docs)/[\w./-]+\.(?:py|md|sh|yml))\b")
WHERE_PATHS_ARE_NAMED = ("README.md", "docs", "ci", "benchmarks", "blockbench", "tests", ".ci", "pyproject.toml")
RULES_OWN_EXAMPLES = "tests/architecture"  # the rules' tests plant paths that must not exist


def dangling_paths(repo: Path) -> list[str]:
    found = []
    for top in WHERE_PATHS_ARE_NAMED:
        for path in sorted([repo / top] if (repo / top).is_file() else (repo / top).rglob("*")):
            if not path.is_file() or path.suffix not in (".py", ".md", ".toml", ".sh", ".yml", "") \
                    or "__pycache__" in path.parts or path.relative_to(repo).as_posix().startswith(RULES_OWN_EXAMPLES):
                continue
            for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                found += [f"{path.relative_to(repo)}:{lineno} {name}" for name in NAMED_PATH.findall(line)
                          if not (repo / name).exists()]
    return found


def test_paths_the_repository_names_exist() -> None:
    found = dangling_paths(REPO)
    assert not found, "files named by path that do not exist: " + "; ".join(found)


def test_a_dangling_path_is_found(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_here.py").touch()
    (tmp_path / "docs" / "page.md").write_text("see tests/test_here.py and tests/test_gone.py\n")
    assert dangling_paths(tmp_path) == ["docs/page.md:1 tests/test_gone.py"]
