"""No private helper is imported across modules: a name with a leading underscore is its module's own; another
module that needs it gets a public name (a helper shared is part of its module's interface)."""

from __future__ import annotations

import ast
from pathlib import Path

import blockbench

PACKAGE = Path(blockbench.__file__).parent


def _module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_from(node: ast.ImportFrom, path: Path) -> str:
    """The absolute module an import statement names (relative imports resolved against `path`'s package)."""
    if not node.level:
        return node.module or ""
    package = _module_of(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[:len(package) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def private_imports(root: Path = PACKAGE) -> list[str]:
    """`from blockbench.x import _y` (or relative) anywhere in a module, at its top or inside a function, where x is
    another module of the package."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _imported_from(node, path)
            if not source.startswith("blockbench") or source == _module_of(path):
                continue
            found += [f"{path.relative_to(root.parent)}:{node.lineno}: {source}.{a.name}" for a in node.names
                      if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def test_no_private_helper_imported_across_modules():
    found = private_imports()
    assert not found, "private helpers imported across modules (make them public): " + "; ".join(found)
