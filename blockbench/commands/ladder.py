"""`blockbench ladder OUT`: fit a ladder suite's records and write its page (views/ladder.py)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from blockbench.commands import common
from blockbench.untrusted import plain
from blockbench.views.ladder import FILES, headline, write_ladder


def cmd_ladder(args: argparse.Namespace) -> int:
    dest, data = write_ladder(args.out_dir, args.out)
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return 0
    print(headline(data, plain))
    for line in data["left_out"]:
        print(f"left out: {plain(line)}")
    print(f"ladder written to {dest}/: {', '.join(FILES)}")
    return 0


def add_parser(sub: Any) -> None:
    p = common.add_command(sub, "ladder", cmd_ladder,
                           help="fit a ladder's records: loss-compute law, compute multipliers with intervals",
                           description="Read the records of a ladder suite's run (OUT/RUNG/records/), fit the "
                                       "baseline's law L(C) = E + A C^-alpha, and give each variant's compute "
                                       "multiplier against the baseline (pooled over rungs and at the largest rung, "
                                       "in FLOPs, tokens and wall-clock) with a bootstrap and a Student-t interval "
                                       "and a verdict in words. Writes ladder.md, ladder.html, ladder.json and "
                                       "ladder.png. Exit 0 ok, 2 unusable records.")
    p.add_argument("out_dir", metavar="OUT", help="the --out directory of `blockbench run --suite LADDER`")
    p.add_argument("--out", metavar="DIR", help="write the outputs here (default: into OUT)")
    p.add_argument("--json", action="store_true", help="print ladder.json to stdout as well")
