"""Command-line helpers shared by `run` (cli.py) and `sweep` (sweep.py): a value as TOML reads it, a comma-separated
list, the exit for failed runs, the --device/--budget-* flags."""

from __future__ import annotations

import argparse
import sys
import tomllib
from typing import Any

from blockbench.errors import BlockbenchError


def parse_value(text: str) -> Any:
    """A command-line value as TOML would read it (numbers, booleans, inline tables), else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def split_list(text: str | None, what: str, kind: type = str) -> list | None:
    if text is None:
        return None
    try:
        items = [kind(item.strip()) for item in text.split(",") if item.strip()]
    except ValueError:
        raise BlockbenchError(f"{what}: expected a comma-separated list, got {text!r}") from None
    if not items:
        raise BlockbenchError(f"{what}: empty list")
    return items


def failed_exit(result: Any, out: Any) -> int:
    """Exit 3 when some runs failed, naming how many and where their failure files are; else 0."""
    if not result.failures:
        return 0
    n = len(result.failures)
    names = ", ".join(f"{f['variant']} seed {f['seed']}" for f in result.failures[:5]) + (", ..." if n > 5 else "")
    unwritten = sum(1 for f in result.failures if f.get("failure_file") is False)
    where = f"see {out}/failures/" if not unwritten else (
        f"{unwritten} failure file(s) could not be written: the FAILED line(s) above say where each record and "
        f"error went" + (f"; see {out}/failures/ for the others" if unwritten < n else ""))
    print(f"blockbench: {n} run(s) failed ({names}); {where} (--resume --out {out} reruns them)", file=sys.stderr)
    return 3


def add_run_shape_args(parser: argparse.ArgumentParser) -> None:
    """--device and the --budget-* flags, shared by `run` and `sweep`."""
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"),
                        help="where to train (default: the suite's runtime.device; auto = CUDA when available)")
    budget = parser.add_mutually_exclusive_group()
    replaces = ("default: the suite's {} budget, if any; a value replaces it (its other budgets still apply; the "
                "first one reached stops a run)")
    budget.add_argument("--budget-steps", type=int, metavar="N", help="optimiser steps; " + replaces.format("steps"))
    budget.add_argument("--budget-tokens", type=int, metavar="N",
                        help="training tokens (sequences x length); " + replaces.format("tokens"))
    budget.add_argument("--budget-seconds", type=float, metavar="S",
                        help="training seconds, evaluation excluded; " + replaces.format("seconds"))
    budget.add_argument("--budget-flops", type=float, metavar="F",
                        help="training FLOPs (forward + backward, 2 per multiply-add); " + replaces.format("flops"))
