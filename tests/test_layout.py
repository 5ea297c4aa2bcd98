"""The package's layout rules that a reader relies on, read from the source with `ast` (issue 25):

- no function over MAX_FUNCTION_LINES lines (def to last line) in the driver and the big views;
- no module outside blockbench/workloads/ names a workload in code: the workloads own their names (the CLI's
  choices come from the registry) and what differs between them (docstrings and comments may describe them);
- no module but a workload's own names one of the metrics it declares (its summary key or its column): records,
  columns and the progress display read the declaration (Workload.metrics).
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import blockbench
from blockbench.workloads import workload_class, workload_names

ROOT = Path(blockbench.__file__).resolve().parent
MAX_FUNCTION_LINES = 60
# Modules held to the function length (paths under blockbench/; the views may live in a views/ package).
SHORT_FUNCTION_MODULES = ("runner.py", "sweep.py", "suite.py", "report.py", "leaderboard.py", "index.py", "headline.py",
                          "crosssuite.py", "gpu_page.py", "page.py")
WORKLOAD_NAMES = workload_names()


def _module(name: str) -> Path:
    matches = [p for p in (ROOT / name, ROOT / "views" / name) if p.exists()]
    assert matches, f"blockbench/{name} (or blockbench/views/{name}) not found"
    return matches[0]


def long_functions(path: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > limit]


@pytest.mark.parametrize("name", SHORT_FUNCTION_MODULES)
def test_no_long_functions(name: str) -> None:
    found = long_functions(_module(name))
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines: {', '.join(found)}"


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                ids.add(id(first.value))
    return ids


def names_in_code(path: Path, names: tuple[str, ...]) -> list[str]:
    """Each string constant (f-string parts included, docstrings not) that contains one of `names`."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = _docstrings(tree)
    return [f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.value[:60]!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            and any(name in node.value for name in names)]


def workload_names_in_code(path: Path) -> list[str]:
    return names_in_code(path, WORKLOAD_NAMES)


def test_only_workloads_name_workloads() -> None:
    found = [hit for path in sorted(ROOT.rglob("*.py")) if "workloads" not in path.relative_to(ROOT).parts[:1]
             for hit in workload_names_in_code(path)]
    assert not found, f"a workload named outside blockbench/workloads/: {'; '.join(found)}"

    assert set(WORKLOAD_NAMES) >= {"causal_lm", "masked_lm"}


def metric_names() -> dict[Path, tuple[str, ...]]:
    """Per workload module, the names of the metrics its workload declares: summary keys and column names."""
    found: dict[Path, tuple[str, ...]] = {}
    for name in WORKLOAD_NAMES:
        cls = workload_class(name)
        path = Path(inspect.getsourcefile(cls)).resolve()
        found[path] = found.get(path, ()) + tuple(n for m in cls.metrics for n in (m.key, m.column))
    return found


def test_only_a_workload_names_its_metrics() -> None:
    declared = metric_names()
    found = [hit for own, names in declared.items() for path in sorted(ROOT.rglob("*.py"))
             if path.resolve() != own for hit in names_in_code(path, names)]
    assert not found, f"a workload's metric named outside its module: {'; '.join(found)}"

    every = {n for names in declared.values() for n in names}
    assert {"final_eval_bpb", "eval_bpb_mean", "final_eval_accuracy", "eval_accuracy_mean"} <= every
    for own, names in declared.items():  # the declaration itself is found where it is made
        assert all(names_in_code(own, (n,)) for n in names), own
