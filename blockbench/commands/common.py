"""What the subcommands share: one definition of each argument two of them take (--suite, --threads, --device,
the budgets, the model's shape), the registration of a subcommand, and the exits of a suite run (failed runs,
an interrupt)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from blockbench.errors import Terminated
from blockbench.suite import THREADS_HELP, suite_help

DEVICES = ("auto", "cpu", "cuda")
BUDGETS = ("steps", "tokens", "seconds", "flops")
# The model's shape flags: (flag, what it sets, the ModelConfig field its default comes from).
SHAPE_FLAGS = (("--layers", "number of blocks L", "n_layers"), ("--width", "model width d", "d_model"),
               ("--heads", "attention heads H", "n_heads"), ("--vocab", "vocabulary size V", "vocab_size"),
               ("--seq-len", "sequence length T", "seq_len"))


def add_command(sub: Any, name: str, func: Callable[[argparse.Namespace], int], help: str,
                description: str) -> argparse.ArgumentParser:
    """Register subcommand `name`, run by `func`; the caller adds its arguments to the parser returned."""
    parser = sub.add_parser(name, help=help, description=description)
    parser.set_defaults(func=func)
    return parser


def add_suite_arg(parser: argparse.ArgumentParser, what: str = "") -> None:
    parser.add_argument("--suite", default="default", help=suite_help(what))


def add_variants_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variants", help="comma-separated variants (default: the suite's)")


def add_threads_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, help=THREADS_HELP)


def add_device_arg(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--device", choices=DEVICES, help=help)


def add_shape_args(parser: argparse.ArgumentParser, default: Callable[[str], str],
                   skip: tuple[str, ...] = ()) -> None:
    """The shape flags in SHAPE_FLAGS order, less `skip`; `default(field)` words each one's default."""
    for flag, what, field in SHAPE_FLAGS:
        if flag not in skip:
            parser.add_argument(flag, type=int, help=f"{what} ({default(field)})")


def add_run_shape_args(parser: argparse.ArgumentParser) -> None:
    """--device and the --budget-* flags, shared by `run` and `sweep`."""
    add_device_arg(parser, "where to train (default: the suite's runtime.device; auto = CUDA when available)")
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


def budget_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The --budget-* values given, by kind (at most one: they are mutually exclusive)."""
    given = {kind: getattr(args, f"budget_{kind}") for kind in BUDGETS}
    return {kind: value for kind, value in given.items() if value is not None}


def interrupt_exit(exc: KeyboardInterrupt) -> tuple[int, str]:
    """The exit code of an interrupted suite and the word for it: SIGTERM 143 (terminated), Ctrl-C 130."""
    return (143, "terminated") if isinstance(exc, Terminated) else (130, "interrupted")


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
