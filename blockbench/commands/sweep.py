"""`blockbench sweep`: run the sweep driver (sweep.py) over a grid and print each variant's choice."""

from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from blockbench import stats
from blockbench.cli_args import split_list
from blockbench.commands import common
from blockbench.errors import BlockbenchError
from blockbench.executors import add_executor_args, executor_from_args
from blockbench.runner import isolate_default
from blockbench.suite import Suite, load_suite
from blockbench.sweep import DEFAULT_RULE, RULES, grid_points, next_to_failure, parse_grid, point_label, run_sweep


def cmd_sweep(args: argparse.Namespace) -> int:
    suite, grid, budget, seeds = _sweep_suite(args)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path("runs") / suite.name / suite.version / f"sweep-{stamp}"
    command = " ".join(["blockbench sweep", "--suite", shlex.quote(args.suite)]
                       + [f"--grid {shlex.quote(g)}" for g in args.grid]
                       + [f"--budget-{k} {v}" for k, v in budget.items()]
                       + ([f"--variants {args.variants}"] if args.variants else [])
                       + [f"--seeds {','.join(map(str, seeds))}"])
    console = Console(stderr=True)
    if args.resume and not args.out:
        raise BlockbenchError("--resume needs --out DIR: the directory of the interrupted sweep")
    executor = None
    try:
        executor = executor_from_args(args, in_process=not isolate_default())
        choice, path, result = run_sweep(suite, grid, out, isolate=isolate_default(), block_paths=args.block,
                                         on_event=_event_printer(console), command=command, executor=executor,
                                         resume=args.resume, max_retries=args.max_retries, rule=args.choice)
    except KeyboardInterrupt as exc:
        code, what = common.interrupt_exit(exc)
        print(f"blockbench: sweep {what}; finished records kept under {out} (--resume --out {out} finishes it)",
              file=sys.stderr)
        return code
    finally:
        if executor is not None:
            executor.close()
    if result.failures:
        console.print("no choice written: some runs failed")
        return common.failed_exit(result, out)
    _print_choice(console, suite, grid, choice)
    _print_notes(console, suite, grid, choice, args.choice)
    console.print(f"suite overrides: {path}")
    return 0


def _sweep_suite(args: argparse.Namespace) -> tuple[Suite, dict[str, list[Any]], dict[str, Any], list[int]]:
    """The suite as the sweep's options change it (checked against the grid's first point), the grid, the budget
    overrides and the seeds."""
    suite = load_suite(args.suite)
    # A ladder's learning rates are chosen at its reference shape ([model]); the rungs follow by its rule.
    suite = dataclasses.replace(suite, ladder=None)
    budget = common.budget_overrides(args)
    grid = parse_grid(args.grid or [])
    # The speed probe answers nothing a sweep asks, so it is off unless asked for.
    seeds = split_list(args.seeds, "--seeds", int) or [suite.seeds[0]]
    suite = suite.with_overrides(budget=budget or None, variants=split_list(args.variants, "--variants"),
                                 seeds=seeds, threads=args.threads,
                                 device=args.device, speed_rounds=args.speed_rounds)
    suite.with_overrides(fields={axis: values[0] for axis, values in grid.items()})  # fail early on a bad axis
    return suite, grid, budget, seeds


def _event_printer(console: Any) -> Any:
    """The sweep's progress lines: each grid point, and each run's end."""
    def on_event(kind: str, info: dict[str, Any]) -> None:
        if kind == "point":
            console.print(f"[bold]grid point {info['point']}[/bold]"
                          + (" (all records already there: reused)" if info["skipped"] else ""))
        elif kind == "failed":
            console.print(f"  {info['label']}: {info['variant']} seed {info['seed']}: FAILED ({info['error_type']}: "
                          f"{info['message']})", markup=False)
        elif kind == "retry":
            console.print(f"  {info['label']}: {info['variant']} seed {info['seed']}: {info['message']}; retrying",
                          markup=False)
        elif kind == "done":
            r = info["record"]
            loss = r["summary"]["final_eval_loss"]
            status = "not converged (unigram plateau)" if stats.plateau_steps(r) is not None else r["status"]
            console.print(f"  {r['variant']} seed {r['seed']}: {status}, {r['summary']['steps']} steps, "
                          f"eval loss {'-' if loss is None else f'{loss:.4f}'}")

    return on_event


def _print_choice(console: Any, suite: Suite, grid: dict[str, list[Any]], choice: dict[str, dict[str, Any]]) -> None:
    """The table of every variant's score at every point, the chosen one bold, and what "not converged" means."""
    table = Table(title=f"sweep of {suite.name} v{suite.version}: final eval loss, mean over seeds {list(suite.seeds)}")
    table.add_column("variant")
    labels = [point_label(p) for p in grid_points(grid)]
    for label in labels:
        table.add_column(label, justify="right")
    for variant, c in choice.items():
        best = point_label(c["best"])
        cells = []
        for label in labels:
            value = c["scores"][label]
            # +inf is any not-converged run: diverged, unevaluated or stuck on the unigram plateau
            text = f"{value:.4f}" if math.isfinite(value) else "not converged"
            cells.append(f"[bold green]{text}[/bold green]" if label == best and c["resolved"] else text)
        table.add_row(variant, *cells)
    Console().print(table)
    if any(not math.isfinite(v) for c in choice.values() for v in c["scores"].values()):
        console.print("not converged: diverged, unevaluated, or stuck on the unigram plateau (see each run's line)")


def _print_notes(console: Any, suite: Suite, grid: dict[str, list[Any]], choice: dict[str, dict[str, Any]],
                 rule: str) -> None:
    """Notes on the choice: a best point on the grid's edge, a safer neighbour taken, a best point next to a
    failure, a variant with no finished point."""
    edge = [v for v, c in choice.items() if c["resolved"] and any(
        len(vals) > 1 and c["best"][axis] in (vals[0], vals[-1]) for axis, vals in grid.items())]
    if edge:
        console.print(f"note: best point on the edge of the grid for {', '.join(edge)}; consider widening it")
    for variant, c in choice.items():
        if c.get("moved_from"):
            console.print(f"note: {variant}: chose {point_label(c['best'])}, the safer neighbour of "
                          f"{c['moved_from']} ({c['why']}; rule {rule})")
    for variant, label in next_to_failure(choice, grid).items():
        console.print(f"note: {variant}'s best point is one grid step from one that did not converge ({label}); "
                      f"with {len(suite.seeds)} seed(s) it may diverge on others: sweep more seeds (--seeds) or "
                      "take the safer neighbour")
    unresolved = [v for v, c in choice.items() if not c["resolved"]]
    if unresolved:
        console.print(f"warning: no grid point finished for {', '.join(unresolved)}")


def add_parser(sub: Any) -> None:
    p = common.add_command(sub, "sweep", cmd_sweep,
                           help="tune optimiser or BlockSpec fields per variant on a grid; write the choice",
                           description="Run the suite once per grid point (the product of every --grid axis), then "
                                       "pick each variant's point with the lowest final eval loss averaged over the "
                                       "sweep's seeds (a diverged or plateaued run never wins) and write the choice, "
                                       "with its provenance, to OUT/sweep.toml; `blockbench run --overrides "
                                       "OUT/sweep.toml` trains with the choice. Exit codes as for run.")
    common.add_suite_arg(p)
    p.add_argument("--grid", action="append", metavar="FIELD=V1,V2,...",
                   help="a grid axis: any optimiser field (lr, weight_decay, ...) or BlockSpec field (beta_ff, ...); "
                        "repeatable, the grid is their product; at least one is needed (no default)")
    common.add_variants_arg(p)
    p.add_argument("--seeds", help="comma-separated seeds (default: the suite's first seed)")
    p.add_argument("--choice", choices=tuple(RULES), default=DEFAULT_RULE,
                   help=f"how a variant's point is chosen (default {DEFAULT_RULE}: "
                        f"{RULES[DEFAULT_RULE]}); named in sweep.toml")
    common.add_run_shape_args(p)
    p.add_argument("--speed-rounds", type=int, default=0, metavar="N",
                   help="rounds of the interleaved probe per point (default 0: no probe; it answers nothing a "
                        "sweep asks)")
    common.add_threads_arg(p)
    p.add_argument("--out", help="output directory (default: runs/SUITE/VERSION/sweep-TIMESTAMP)")
    add_executor_args(p)
