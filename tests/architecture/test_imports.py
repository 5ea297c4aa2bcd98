"""The package's own import graph has no cycles (docs/architecture.md: arrows point down).

The graph is read from the source with `ast`, not by importing: every `import` and `from ... import` of a
blockbench module counts, at module level, inside functions and under `if TYPE_CHECKING:` alike (a deferred import
still makes two modules depend on each other). `from blockbench.x import y` is an import of the submodule
blockbench.x.y when y is one, else of blockbench.x (its `__init__`).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import blockbench

PACKAGE = "blockbench"
ROOT = Path(blockbench.__file__).resolve().parent


def module_files() -> dict[str, Path]:
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = (PACKAGE, *path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a `from` import names (relative imports resolved against `module`)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node)
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            for target in targets:
                # `import blockbench.a.b` of a name that is not a module: its longest module prefix.
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iteratively: every component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    return components


def a_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """One cycle through the component's first module, as a path that returns to where it starts."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node] & component):
                if child == start:
                    return paths[node] + [start]
                if child not in paths:
                    paths[child] = paths[node] + [child]
                    nxt.append(child)
        frontier = nxt
    raise AssertionError(f"no cycle in {component}")


def test_graph_sees_the_package():
    graph = import_graph()
    assert "blockbench.train" in graph["blockbench.runner"]
    # `from blockbench.blocks import shaped` imports the submodule, not the package's __init__.
    assert graph["blockbench.blocks.gains"] == {"blockbench.blocks.shaped"}


def test_no_import_cycles():
    graph = import_graph()
    cycles = strongly_connected(graph)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(a_cycle(graph, c)) for c in cycles)


def test_cycle_finder_names_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(graph) == [{"a", "b", "c"}]
    assert a_cycle(graph, {"a", "b", "c"}) == ["a", "b", "c", "a"]


# The package's floors, bottom first (docs/architecture.md, "Floors and arrows", states the same list): a module
# imports only from its own floor or below. A submodule is on its package's floor; a new top-level module must be
# placed here.
FLOORS = [
    {"errors", "safeio", "untrusted", "stats", "data", "distributed", "cuda_graph", "cli_args",
     "scaling"},
    {"workloads"},
    {"blocks"},
    {"model", "suite", "ladder", ""},  # "": the package's own __init__ (its public names)
    {"measure", "rungs"},
    {"records"},
    {"train", "views"},
    {"executors", "step_probe", "diagnose", "progress"},
    {"runner"},
    {"sweep"},
    {"commands", "cli", "__main__"},
]


def floor_of(module: str) -> int:
    area = module.removeprefix(PACKAGE).removeprefix(".").partition(".")[0]
    for level, names in enumerate(FLOORS):
        if area in names:
            return level
    raise AssertionError(f"{module}: on no floor of FLOORS (tests/architecture/test_imports.py); place it there")


def test_imports_point_down():
    graph = import_graph()
    upward = [f"{a} -> {b}" for a, targets in sorted(graph.items()) for b in sorted(targets)
              if floor_of(b) > floor_of(a)]
    assert not upward, "imports that point up: " + "; ".join(upward)


# What `blockbench --help` must not pay for: each of these takes from 0.3 s to several seconds to import.
HEAVY_FOR_STARTUP = ("scipy", "matplotlib", "pandas", "datasets", "ray", "fvcore", "transformers", "triton")


def test_the_command_line_starts_without_heavy_imports() -> None:
    code = ("import sys, blockbench.cli; "
            f"print(' '.join(m for m in {HEAVY_FOR_STARTUP!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert not loaded, f"importing blockbench.cli loads {', '.join(loaded)}: defer it to the command that needs it"


def undeclared_deferred_imports(path: Path, root: Path = ROOT.parent) -> list[str]:
    """Imports inside a function without a `# deferred: <reason>` comment on their first line or in the comment
    lines right above it."""
    lines = path.read_text().splitlines()
    found = []
    for function in ast.walk(ast.parse("\n".join(lines), str(path))):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                above = node.lineno - 2  # the comment block right above the import, if any
                while above >= 0 and lines[above].strip().startswith("#"):
                    above -= 1
                said = " ".join([lines[node.lineno - 1].partition("#")[2], *lines[above + 1:node.lineno - 1]])
                if "deferred:" not in said:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {lines[node.lineno - 1].strip()}")
    return found


def test_imports_inside_functions_say_why() -> None:
    found = [hit for path in module_files().values() for hit in undeclared_deferred_imports(path)]
    assert not found, ("imports inside functions with no `# deferred: <reason>` (an optional dependency, a heavy "
                       "import kept off the start-up path): move them to the module's top or say why: "
                       + "; ".join(found))


def test_an_undeclared_deferred_import_is_found(tmp_path: Path) -> None:
    module = tmp_path / "mod.py"
    module.write_text("def f():\n    import os\n\n\ndef g():\n    import ray  # deferred: optional\n\n\n"
                      "def h():\n    # deferred: heavy,\n    # and more\n    import scipy\n\n\n"
                      "def k():\n    # deferred: said too far up\n\n    import numpy\n")
    assert undeclared_deferred_imports(module, tmp_path) == ["mod.py:2 import os", "mod.py:18 import numpy"]
