"""The fault tests' shared fixture: one finished tiny run that tests copy and damage."""

from pathlib import Path

import pytest

from blockbench.cli import main
from tests.tiny_suite import write_suite


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished tiny run (two records and its probe) to damage copies of."""
    base = tmp_path_factory.mktemp("finished")
    suite = write_suite(base)
    assert main(["run", "--suite", str(suite), "--out", str(base / "run"), "--quiet", "--in-process"]) == 0
    return base / "run"
