"""`blockbench report DIR`: the seed paper's claims checked against a results directory (views/report.py)."""

from __future__ import annotations

import argparse
from typing import Any

from blockbench.commands import common
from blockbench.views.report import DEFAULT_MARGIN, generate_report


def cmd_report(args: argparse.Namespace) -> int:
    path = generate_report(args.target, args.out, args.margin)
    print(f"report written to {path}")
    return 0


def add_parser(sub: Any) -> None:
    p = common.add_command(sub, "report", cmd_report,
                           help="check the paper's claims against a results directory; write REPORT.md/.html",
                           description="Write REPORT.md, REPORT.html (the same text as a web page) and "
                                       "report_claims.png next to a leaderboard: each claim of the "
                                       "seed paper (spec section 8) with the paper's figure, blockbench's figure with "
                                       "its uncertainty, and a verdict.")
    p.add_argument("target", metavar="SUITE_OR_DIR", help="results directory (or built-in suite name)")
    p.add_argument("--out", metavar="DIR", help="write here (default: into the results directory)")
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                   help=f"parity margin in nats/token (default {DEFAULT_MARGIN})")

