"""The package's layout rules that a reader relies on, read from the source with `ast` (issue 25):

- no function over MAX_FUNCTION_LINES lines (def to last line) in any module of the package (issue 35), except
  where LONG_FUNCTION_EXCEPTIONS gives a module and its reason;
- no module outside blockbench/workloads/ names a workload in code: the workloads own their names (the CLI's
  choices come from the registry) and what differs between them (docstrings and comments may describe them);
- tests mirror the package: a directory under tests/ is a package directory's twin or one listed with its reason,
  and a test file is named after what it tests, not after an issue.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import blockbench
from blockbench.workloads import workload_names

ROOT = Path(blockbench.__file__).resolve().parent
MAX_FUNCTION_LINES = 60
# Modules whose functions may be longer (paths from the repository root), each with why.
LONG_FUNCTION_EXCEPTIONS = {
    "blockbench/blocks/kernels.py": "Triton kernels: a kernel is one GPU program whose loads, running sums and stores "
                                    "share one tile loop; cut into @triton.jit helpers it would change code whose "
                                    "numerics are checked only where Triton is installed (test_shaped_mix.py, "
                                    "test_cuda.py), not on the CPU machines that run most of the tests",
}
MODULES = sorted(ROOT.rglob("*.py"))
WORKLOAD_NAMES = workload_names()


def _name(path: Path) -> str:
    return path.relative_to(ROOT.parent).as_posix()


def long_functions(path: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [f"{_name(path)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > limit]


@pytest.mark.parametrize("path", [p for p in MODULES if _name(p) not in LONG_FUNCTION_EXCEPTIONS], ids=_name)
def test_no_long_functions(path: Path) -> None:
    found = long_functions(path)
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines: {', '.join(found)}"


@pytest.mark.parametrize("name", sorted(LONG_FUNCTION_EXCEPTIONS))
def test_long_function_exceptions_are_needed(name: str) -> None:
    """An exception goes once its module has no long function left (or is gone): it cannot outlive its reason."""
    path = ROOT.parent / name
    assert path.exists(), f"{name} is excepted from the {MAX_FUNCTION_LINES}-line rule but does not exist"
    assert long_functions(path), f"{name} has no function over {MAX_FUNCTION_LINES} lines: drop its exception"


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                ids.add(id(first.value))
    return ids


def workload_names_in_code(path: Path) -> list[str]:
    """Each string constant (f-string parts included, docstrings not) that contains a workload's name."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = _docstrings(tree)
    return [f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.value[:60]!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            and any(name in node.value for name in WORKLOAD_NAMES)]


def test_only_workloads_name_workloads() -> None:
    found = [hit for path in sorted(ROOT.rglob("*.py")) if "workloads" not in path.relative_to(ROOT).parts[:1]
             for hit in workload_names_in_code(path)]
    assert not found, f"a workload named outside blockbench/workloads/: {'; '.join(found)}"

    assert set(WORKLOAD_NAMES) >= {"causal_lm", "masked_lm"}


# Test directories that mirror no package directory, each with why.
TEST_DIRS_OF_THEIR_OWN = {
    "architecture": "rules over the whole package (imports, layout, the design document)",
    "faults": "fault injection across modules: one test per row of docs/reliability.md's table",
    "bench": "pytest-benchmark micro-benchmarks",
    "data": "expected outputs the tests compare against, no tests",
    "benchmarks": "the asv benchmarks' inputs (benchmarks/ at the repository's top)",
    "ci": "the scripts under ci/ at the repository's top",
}


def misplaced_tests(tests_root: Path, package_root: Path) -> list[str]:
    """Test directories that mirror no package directory (and are not listed as their own), and test files named
    after an issue rather than after what they test."""
    found = []
    for directory in sorted(p for p in tests_root.rglob("*") if p.is_dir() and p.name != "__pycache__"):
        rel = directory.relative_to(tests_root)
        if rel.parts[0] not in TEST_DIRS_OF_THEIR_OWN and not (package_root / rel).is_dir():
            found.append(f"tests/{rel}/ mirrors no blockbench/{rel}/")
    found += [f"tests/{p.relative_to(tests_root)} is named after an issue"
              for p in sorted(tests_root.rglob("test_*.py"))
              if any(word.isdigit() or word.startswith("issue") for word in p.stem.split("_"))]
    return found


def test_tests_mirror_the_package() -> None:
    found = misplaced_tests(Path(__file__).resolve().parents[1], ROOT)
    assert not found, "; ".join(found)


def test_misplaced_tests_are_found(tmp_path: Path) -> None:
    (tmp_path / "tests" / "blocks").mkdir(parents=True)
    (tmp_path / "tests" / "widgets").mkdir()
    (tmp_path / "tests" / "test_issue35.py").touch()
    (tmp_path / "blockbench" / "blocks").mkdir(parents=True)
    assert misplaced_tests(tmp_path / "tests", tmp_path / "blockbench") == [
        "tests/widgets/ mirrors no blockbench/widgets/", "tests/test_issue35.py is named after an issue"]
