"""Where the command line lives: every subcommand in its own module under blockbench/commands/, the views free of
argument parsing, and no module named after a standard-library module (a `profile.py` in the package shadowed the
standard library's `profile` for anything run from its folder)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import blockbench
from blockbench.cli import build_parser, command_modules

ROOT = Path(blockbench.__file__).resolve().parent


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of its code (`import a.b` and `from a.b import c` give a.b)."""
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def argparse_importers(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(ROOT.parent)) for path in folder.rglob("*.py")
                  if any(name.partition(".")[0] == "argparse" for name in imported_modules(path)))


def stdlib_shadows(folder: Path) -> list[str]:
    """Modules and packages below `folder` whose name is a standard-library module's."""
    return sorted(str(path.relative_to(ROOT.parent)) for path in folder.rglob("*")
                  if (path.suffix == ".py" and path.stem != "__init__" or path.is_dir() and (path / "__init__.py")
                      .exists()) and path.stem in sys.stdlib_module_names)


def test_views_parse_no_arguments() -> None:
    found = argparse_importers(ROOT / "views")
    assert not found, f"argparse imported under blockbench/views/ (a command's parsing goes to commands/): {found}"


def test_no_module_is_named_after_the_standard_library() -> None:
    found = stdlib_shadows(ROOT)
    assert not found, f"modules named after a standard-library module: {found}"


def test_every_subcommand_has_its_module() -> None:
    """`blockbench --help` lists exactly the subcommands command_modules registers, one module each under
    commands/."""
    commands = command_modules()
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {Path(m.__file__).resolve().parent for m in commands} == {ROOT / "commands"}
    assert len(sub.choices) == len(commands)
    assert sorted(p.stem for p in (ROOT / "commands").glob("*.py")) == sorted(
        ["__init__", "common", *(m.__name__.rpartition(".")[2] for m in commands)])
