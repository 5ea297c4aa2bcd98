"""Where the scripts outside the package live (issue 35): `ci/` holds what CI and a GPU session run, each file
named in ci/README.md; the measurement scripts run by hand are in benchmarks/scripts/, each in benchmarks/README.md's
table, and asv's discovery never reaches them."""

from __future__ import annotations

import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "benchmarks" / "scripts"


def _undocumented(directory: Path, readme: Path) -> list[str]:
    text = readme.read_text()
    return [p.name for p in sorted(directory.iterdir())
            if p.is_file() and p.name != "README.md" and not re.search(rf"`(ci/)?{re.escape(p.name)}`", text)]


def test_every_ci_file_is_documented() -> None:
    missing = _undocumented(REPO / "ci", REPO / "ci" / "README.md")
    assert not missing, f"in ci/ but not named in ci/README.md: {', '.join(missing)}"


def test_every_measurement_script_is_in_the_table() -> None:
    assert sorted(SCRIPTS.glob("*.py")), "benchmarks/scripts/ holds no script"
    missing = _undocumented(SCRIPTS, REPO / "benchmarks" / "README.md")
    assert not missing, f"in benchmarks/scripts/ but not in benchmarks/README.md's table: {', '.join(missing)}"


def _asv_modules(directory: Path, prefix: str) -> Iterator[str]:
    """The modules asv imports from its benchmark directory: the package and every module and subpackage under it,
    walked like asv_runner.discovery.disc_modules (pkgutil.iter_modules, recursing into packages only)."""
    for info in pkgutil.iter_modules([str(directory)], prefix):
        yield info.name
        if info.ispkg:
            yield from _asv_modules(directory / info.name.rpartition(".")[2], info.name + ".")


def test_asv_discovery_skips_the_scripts() -> None:
    modules = list(_asv_modules(REPO / "benchmarks", "benchmarks."))
    assert "benchmarks.training" in modules  # the walk finds the benchmarks themselves
    reached = [m for m in modules if m.startswith("benchmarks.scripts")]
    assert not reached, f"asv would import {', '.join(reached)} as benchmarks: benchmarks/scripts/ must not be a " \
                        "package (no __init__.py)"
