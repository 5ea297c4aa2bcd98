"""`blockbench leaderboard`: one suite's leaderboard (views/leaderboard.py), or with --index the landing page over a
whole results directory (views/index.py, which ranks through views/leaderboard.py)."""

from __future__ import annotations

import argparse
from typing import Any

from blockbench.commands import common
from blockbench.views.index import write_index
from blockbench.views.leaderboard import generate
from blockbench.views.selection import LeaderboardError


def cmd_leaderboard(args: argparse.Namespace) -> int:
    if args.index is not None:
        if args.target is not None:
            raise LeaderboardError("--index writes the page over a whole results directory: give no SUITE_OR_DIR")
        out_dir, names = write_index(args.index, args.out)
        print(f"results index written to {out_dir}/: {', '.join(names)}")
        return 0
    out_dir, names = generate(args.target or "default", args.out)
    print(f"leaderboard written to {out_dir}/: {', '.join(names)}")
    return 0


def add_parser(sub: Any) -> None:
    p = common.add_command(sub, "leaderboard", cmd_leaderboard,
                           help="regenerate leaderboard.md/.csv, plots and index.html from run records",
                           description="Regenerate a results dir's leaderboard from its records/ alone. SUITE means "
                                       "results/SUITE/<its current version>/ below the current directory; DIR is a "
                                       "results or run directory holding records/. Running it twice gives identical "
                                       "files.")
    p.add_argument("target", nargs="?", default=None, metavar="SUITE_OR_DIR",
                   help="built-in suite name, suite .toml, or results/run directory (default: default)")
    p.add_argument("--out", metavar="DIR", help="write the outputs here (default: into the results directory)")
    p.add_argument("--index", metavar="RESULTS_DIR",
                   help="instead of one leaderboard, write RESULTS_DIR/index.html and README.md: every suite "
                        "version with its ranking and links to its leaderboard and report, from the records and "
                        "RESULTS_DIR/provenance.toml (default: not written)")
