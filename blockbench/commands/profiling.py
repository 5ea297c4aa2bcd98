"""`blockbench profile VARIANT [--compare OTHER] [--cost]`: one or two variants' training steps, timed per component
under torch.profiler (the default) or counted by the step-cost model (--cost); the measures are step_probe.py's.
(Named profiling, not profile: `profile` is a standard-library module.)"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from blockbench.commands import common
from blockbench.data import load_data
from blockbench.measure.components import COMPONENTS
from blockbench.measure.cost import format_cost_table
from blockbench.step_probe import OPTIMIZER_NOTE, compare_costs, profile_variants, suite_at_shape
from blockbench.suite import Suite, load_suite


def format_table(profiles: list[dict[str, Any]]) -> str:
    """Plain-text table: per component, each variant's ms per step (forward / backward), time and FLOP shares."""
    names = [p["variant"] for p in profiles]
    by = [{r["component"]: r for r in p["components"]} for p in profiles]
    components = [c for c in COMPONENTS if any(c in b for b in by)]
    head = f"{'component':<12}" + "".join(f" | {n + ' ms (fwd+bwd)':>24} {'time%':>6} {'FLOP%':>6}" for n in names)
    lines = [head, "-" * len(head)]
    for c in components:
        cells = []
        for b in by:
            r = b.get(c)
            if r is None:
                cells.append(f" | {'-':>24} {'':>6} {'':>6}")
            else:
                ms = f"{1e3 * r['seconds']:.1f} ({1e3 * r['forward_s']:.1f}+{1e3 * r['backward_s']:.1f})"
                cells.append(f" | {ms:>24} {100 * r['time_share']:>5.1f}% {100 * r['flop_share']:>5.1f}%")
        lines.append(f"{c:<12}" + "".join(cells))
    lines.append("-" * len(head))
    lines.append(f"{'sum':<12}" + "".join(f" | {1e3 * p['components_seconds']:>24.1f} "
                                          f"{100 * p['components_seconds'] / p['step_seconds_profiled']:>5.1f}% "
                                          f"{'':>6}" for p in profiles))
    lines.append(f"{'step':<12}" + "".join(f" | {1e3 * p['step_seconds_profiled']:>24.1f} {'':>6} {'':>6}"
                                           for p in profiles))
    lines.append(f"{'unprofiled':<12}" + "".join(f" | {1e3 * p['step_seconds_unprofiled']:>24.1f} {'':>6} {'':>6}"
                                                 for p in profiles))
    return "\n".join(lines)


def cost_command(suite: Suite, names: list[str], data: Any, baseline: str | None, as_json: bool) -> int:
    """`--cost`: exit 0 when every variant was counted, 3 when some could not be (each with its reason), 2 when
    none could."""
    result = compare_costs(suite, names, data, baseline)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        m = suite.model
        counted = next(iter(result["costs"].values()), None)
        where = (f"{counted['device']}, dtype {counted['dtype']}" + (" (autocast)" if counted["autocast"] else "")
                 if counted else "")
        print(f"suite {suite.name} v{suite.version}: L={m.n_layers} d={m.d_model} H={m.n_heads} T={m.seq_len}, "
              f"batch {suite.optim.batch_size}, {where}; one training step counted, eager, {OPTIMIZER_NOTE}")
        print(format_cost_table(result))
    if not result["costs"]:
        return 2
    return 3 if result["errors"] else 0


def profile_command(args: argparse.Namespace) -> int:
    """The table (or --json) of one or two variants' steps, timed (the default) or counted (--cost)."""
    names = [args.variant] + ([args.compare] if args.compare and args.compare != args.variant else [])
    suite = load_suite(args.suite).with_overrides(variants=names, device=args.device, threads=args.threads)
    suite = suite_at_shape(suite, names, n_layers=args.layers, d_model=args.width, n_heads=args.heads,
                           seq_len=args.seq_len, batch_size=args.batch, dtype=args.dtype)
    if suite.runtime.threads:
        torch.set_num_threads(suite.runtime.threads)
    data = load_data(suite.data)
    if args.cost:
        return cost_command(suite, names, data, args.compare, args.json)
    profiles = profile_variants(suite, names, data, steps=args.steps)
    if args.json:
        print(json.dumps(profiles if len(profiles) > 1 else profiles[0], indent=2))
        return 0
    m = suite.model
    print(f"suite {suite.name} v{suite.version}: L={m.n_layers} d={m.d_model} H={m.n_heads} T={m.seq_len}, "
          f"batch {suite.optim.batch_size}, {profiles[0]['device']}, {torch.get_num_threads()} threads; "
          f"medians of {args.steps} profiled steps, interleaved")
    print(format_table(profiles))
    for p in profiles:
        print(f"{p['variant']}: components cover {100 * (1 - p['unattributed_share']):.1f}% of the profiled step; "
              f"profiler overhead x{p['step_seconds_profiled'] / p['step_seconds_unprofiled']:.2f}")
    return 0


def add_parser(sub: Any) -> None:
    p = common.add_command(sub, "profile", profile_command,
                           help="where one training step's time goes, per component (torch.profiler)",
                           description="Profile training steps of VARIANT under the suite's conditions and split the "
                                       "step's time into components (embeddings, norms, attention GEMMs and kernel, "
                                       "shaped-attention extras, MLP, residual arithmetic, head, loss; forward and "
                                       "backward), next to each component's share of the step's FLOPs.")
    p.add_argument("variant", help="the preset (or --block) to profile, e.g. sas_p")
    p.add_argument("--compare", metavar="VARIANT",
                   help="a second variant, side by side (e.g. pre_ln; default: none, VARIANT alone)")
    common.add_suite_arg(p)
    p.add_argument("--steps", type=int, default=5,
                   help="profiled steps per variant; every figure is a median over them (default 5)")
    p.add_argument("--json", action="store_true", help="print the breakdown as JSON instead of a table")
    p.add_argument("--cost", action="store_true",
                   help="instead of timing, count one training step: kernel launches (dispatched ATen ops), dtype "
                        "casts, non-matmul bytes, bytes saved for backward and matmul FLOPs per component, with "
                        "ratios to --compare (exact, the same on any machine; exit 3 when some variant cannot be "
                        "counted, each with its reason)")
    p.add_argument("--dtype", choices=("auto", "fp32", "bf16", "fp16"),
                   help="training dtype (default: the suite's; bf16/fp16 are autocast, on CPU too)")
    common.add_device_arg(p, "where to profile (default: the suite's device, auto: CUDA when available)")
    common.add_threads_arg(p)
    common.add_shape_args(p, lambda field: "default: the suite's", skip=("--vocab",))
    p.add_argument("--batch", type=int, help="sequences per step (default: the suite's batch_size)")
