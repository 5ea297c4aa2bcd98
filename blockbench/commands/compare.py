"""`blockbench compare BASELINE CANDIDATE`: the comparison of views/compare.py as a table or JSON, and its exit
code (0 no regression, 1 a regression, 2 unusable input)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from blockbench.commands import common
from blockbench.records.store import finite_or_none
from blockbench.views.compare import (
    MIN_SEEDS_FOR_TEST,
    CompareError,
    Thresholds,
    compare_paths,
    print_table,
)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


def cmd_compare(args: argparse.Namespace) -> int:
    if not 0 < args.alpha < 1:
        raise CompareError(f"--alpha must be between 0 and 1, got {args.alpha}")
    if args.max_slowdown >= 1:
        raise CompareError(f"--max-slowdown is a fraction below 1 (0.10 = 10%), got {args.max_slowdown}")
    t = Thresholds(max_slowdown=args.max_slowdown, max_loss_increase=args.max_loss_increase,
                   max_memory_increase=args.max_memory_increase, alpha=args.alpha, speed_z=args.speed_z,
                   strict=args.strict)
    result = compare_paths(args.baseline, args.candidate, t)
    if args.json:
        print(json.dumps(finite_or_none(result), indent=1, sort_keys=True))
    else:
        print_table(result)
    sys.stdout.flush()
    return result["exit_code"]


def add_parser(sub: Any) -> None:
    p = common.add_command(sub, "compare", cmd_compare,
                           help="compare two sets of run records: deltas, verdicts, exit 0/1/2",
                           description="Compare CANDIDATE with BASELINE (each a results dir, a run dir holding "
                                       "records/, or one record file). Exit 0: no regression, 1: regression, "
                                       "2: unusable input.")
    p.add_argument("baseline", metavar="BASELINE", help="the reference records: a results dir, a run dir or a record")
    p.add_argument("candidate", metavar="CANDIDATE", help="the records judged against BASELINE (same forms)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON instead of a table")
    p.add_argument("--max-slowdown", type=_fraction, default=0.10, metavar="F",
                   help="largest allowed relative drop of a variant's speed ratio to the baseline variant, from "
                        "the interleaved probe (default 0.10)")
    p.add_argument("--max-loss-increase", type=_fraction, default=0.05, metavar="NATS",
                   help="largest allowed increase of the mean eval loss when either side has fewer than "
                        f"{MIN_SEEDS_FOR_TEST} seeds (default 0.05); with more, a one-sided Welch t-test decides")
    p.add_argument("--max-memory-increase", type=_fraction, default=0.25, metavar="F",
                   help="largest allowed relative increase of peak memory (default 0.25)")
    p.add_argument("--alpha", type=float, default=0.01, help="significance level of the t-test (default 0.01)")
    p.add_argument("--speed-z", type=_fraction, default=2.0, metavar="Z",
                   help="for probes without an A/A control (records made before it): a speed change beyond "
                        "--max-slowdown fails only if it is Z standard errors of the two probes' medians (from "
                        "their IQRs) away, else it is 'inconclusive' (default 2); with a control, the interval "
                        "of the change must clear the probes' A/A floors; 0: neither check, the limit alone decides")
    p.add_argument("--strict", action="store_true",
                   help="also fail on changed params/FLOPs and on variants missing from the candidate")
