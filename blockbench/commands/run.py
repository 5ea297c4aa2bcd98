"""`blockbench run`: train every (variant, seed) of a suite under its budget and write one record per run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from blockbench import distributed
from blockbench.cli_args import split_list
from blockbench.commands import common
from blockbench.errors import BlockbenchError
from blockbench.executors import add_executor_args, check_executor_args, executor_from_args
from blockbench.progress import RunDisplay
from blockbench.runner import default_out_dir, isolate_default, run, run_ladder
from blockbench.suite import Suite, load_suite


def run_suite(args: argparse.Namespace) -> Suite:
    """The suite as the command line changes it: budget, target, variants, seeds, device, threads, probe rounds,
    an overrides file."""
    suite = load_suite(args.suite).with_overrides(
        budget=common.budget_overrides(args) or None, target_loss=args.target_loss,
        variants=split_list(args.variants, "--variants"), seeds=split_list(args.seeds, "--seeds", int),
        device=args.device, threads=args.threads, speed_rounds=args.speed_rounds)
    return suite.with_override_file(args.overrides) if args.overrides else suite


def cmd_run(args: argparse.Namespace) -> int:
    suite = run_suite(args)
    dist = distributed.from_env()
    if dist.enabled and not args.out:
        raise BlockbenchError("under torchrun, give --out (every rank must write to the same directory)")
    if args.resume and not args.out:
        raise BlockbenchError("--resume needs --out DIR: the directory of the interrupted run")
    out = Path(args.out) if args.out else default_out_dir(suite)
    in_process = args.in_process or not isolate_default()
    check_executor_args(args, in_process, dist)
    if suite.ladder is not None and dist.enabled:
        raise BlockbenchError(f"{suite.name} is a ladder: run it with the local or Ray executor, not under torchrun")
    display = RunDisplay(suite, quiet=args.quiet or not dist.is_main, silent=not dist.is_main)
    try:
        with display:
            if suite.ladder is not None:
                result = _run_ladder(suite, out, args, in_process, display)
            else:
                result = run(suite, out, make_executor=lambda: executor_from_args(args, in_process, dist),
                             block_paths=args.block, on_event=display.event, dist=dist, resume=args.resume,
                             max_retries=args.max_retries)
    except KeyboardInterrupt as exc:
        display.summary(str(out))
        code, what = common.interrupt_exit(exc)
        print(f"blockbench: {what}; {len(display.records)} finished record(s) kept in {out}/records "
              f"(--resume --out {out} finishes the suite)", file=sys.stderr)
        return code
    display.summary(str(out))
    distributed.shutdown(dist)
    return common.failed_exit(result, out)


def _run_ladder(suite: Any, out: Any, args: argparse.Namespace, in_process: bool, display: Any) -> Any:
    """Every rung of a ladder suite into OUT/RUNG/ through one executor (runner.run_ladder)."""
    executor = executor_from_args(args, in_process)
    try:
        return run_ladder(suite, out, executor=executor, block_paths=args.block, on_event=display.event,
                          resume=args.resume, max_retries=args.max_retries)
    finally:
        executor.close()


def add_parser(sub: Any) -> None:
    p = common.add_command(sub, "run", cmd_run,
                           help="train every variant of a suite under its budget and write run records",
                           description="Train every (variant, seed) of a suite under identical conditions for a fixed "
                                       "budget, one fresh process per run, and write one record per run to "
                                       "OUT/records/. Exit 0 ok, 2 unusable input, 3 some runs failed, 130/143 "
                                       "interrupted.")
    common.add_suite_arg(p)
    common.add_variants_arg(p)
    p.add_argument("--seeds", help="comma-separated seeds (default: the suite's)")
    common.add_run_shape_args(p)
    p.add_argument("--target-loss", type=float, metavar="X",
                   help="eval loss (nats/token) for the to-target metrics (default: the suite's eval.target_loss)")
    p.add_argument("--speed-rounds", type=int, metavar="N",
                   help="the interleaved probe's minimum of rounds before training: 0 (no probe) or at least 3; it "
                        "goes on until its intervals are tight or its time cap (default: the suite's [speed] rounds)")
    p.add_argument("--overrides", metavar="FILE",
                   help="a suite-override file, e.g. the sweep.toml that `blockbench sweep` writes (default: none)")
    p.add_argument("--out", help="output directory (default: runs/SUITE/VERSION/TIMESTAMP)")
    common.add_threads_arg(p)
    p.add_argument("--quiet", action="store_true", help="plain log lines instead of progress bars")
    p.add_argument("--in-process", action="store_true", help="run every variant in this process (no isolation)")
    add_executor_args(p)
