"""The step-cost model: what one training step costs a GPU, counted exactly on any machine.

On a GPU at the paper's width a step is bound by kernel launches and memory passes, not by matmuls
(docs/architecture.md, "Fast on GPUs, checked on CPU"). CI has no GPU, so instead of timing a step we count, for
one training step as the harness runs it (forward under the suite's dtype, backward, grad clip, AdamW step,
zero_grad, scheduler):

- ops: dispatched ATen ops that launch a kernel on CUDA (views and bare allocations left out; .item() counts
  and is also reported as a host sync);
- casts: dtype conversions, and the bytes they move;
- bytes read and written by the ops that are not matmuls;
- bytes saved for backward (model parameters and buffers left out; autocast's copies of them reported apart);
- matmul FLOPs.

Each figure is split by component (the ranges the model marks with blocks.ranges.scope; backward ops go to the
component whose forward made their autograd node) and by phase (forward, backward, optimizer). The counting
is measure/components.py's DispatchCounter, the same dispatch mode that attributes FLOPs in `blockbench profile`.
The harness's step is built and counted by blockbench/step_probe.py (`step_cost`, `compare_costs`, `--cost`).

What CUDA would run, and where this count differs from it:
- the optimizer is AdamW with fused=True, the kernel the harness uses on CUDA (one op for the whole update);
- SDPA dispatches the fused CPU attention kernel, one op forward and one backward, as flash attention does;
- aten's _fused_rms_norm, which the CPU decomposes into a chain, counts as CUDA's fused kernels (components.py's
  CUDA_FUSED_LAUNCHES);
- autocast's cast policy is the CPU one: CUDA autocast also runs softmax, norms, cumsum and a few more in fp32,
  so on CUDA those add casts this count does not show;
- a foreach or fused multi-tensor op counts as one launch (CUDA may split a long tensor list into a few).

The counts depend only on the suite, the variant and the batch's shape: the same number every run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from blockbench.measure.components import COMPONENTS, METRICS, DispatchCounter

PHASES = ("forward", "backward", "optimizer")
RATIO_METRICS = ("ops", "casts", "saved_bytes", "bytes", "flops")


def _zero() -> dict[str, int]:
    return dict.fromkeys(METRICS, 0)


def _add(into: dict[str, int], row: dict[str, int]) -> None:
    for metric, value in row.items():
        into[metric] += value


def summarize(counter: DispatchCounter, top: int = 8) -> dict[str, Any]:
    """A counter's tallies as totals, per phase, per component (all phases) and per phase and component, plus
    the most launched ops of each phase."""
    by_phase = counter.by_component()
    phases = {phase: _zero() for phase in PHASES}
    components: dict[str, dict[str, int]] = {}
    for phase, rows in by_phase.items():
        for component, row in rows.items():
            _add(phases.setdefault(phase, _zero()), row)
            _add(components.setdefault(component, _zero()), row)
    totals = _zero()
    for row in phases.values():
        _add(totals, row)
    order = {c: i for i, c in enumerate(COMPONENTS)}
    top_ops = {}
    for phase in PHASES:
        launches = sorted(((n, k) for (p, n), k in counter.op_launches.items() if p == phase),
                          key=lambda item: (-item[1], item[0]))
        top_ops[phase] = [[name, k] for name, k in launches[:top]]
    return {"totals": totals, "phases": phases,
            "components": dict(sorted(components.items(), key=lambda kv: order.get(kv[0], len(order)))),
            "components_by_phase": {p: dict(sorted(r.items(), key=lambda kv: order.get(kv[0], len(order))))
                                    for p, r in by_phase.items()},
            "top_ops": top_ops}


def count_cost(fn: Callable[[], Any], persistent: Iterable[torch.Tensor] = ()) -> dict[str, Any]:
    """The cost of running `fn()` once: summarize() of a DispatchCounter around it. `persistent` are tensors
    whose storage is not activation memory (parameters, buffers): autograd saving them costs nothing."""
    counter = DispatchCounter(persistent)
    with counter.counting():
        fn()
    return summarize(counter)


def _cells(row: dict[str, int] | None) -> str:
    if row is None:
        return f" | {'-':>7} {'':>6} {'':>9} {'':>8} {'':>7}"
    return (f" | {row['ops']:>7} {row['casts']:>6} {row['bytes'] / 1e6:>9.1f} {row['saved_bytes'] / 1e6:>8.1f} "
            f"{row['flops'] / 1e9:>7.2f}")


def format_cost_table(result: dict[str, Any]) -> str:
    """Per component (rows) each counted variant's ops, casts, non-matmul MB, saved MB and GFLOPs; then the
    totals per phase and of the step, the ratios to the baseline, host syncs and the most launched ops."""
    names = [n for n in result["variants"] if n in result["costs"]]
    costs = [result["costs"][n] for n in names]
    width = len(_cells(None))
    head = f"{'component':<12}" + "".join(f" | {n:^{width - 3}}" for n in names)
    sub = f"{'':<12}" + "".join(f" | {'ops':>7} {'casts':>6} {'bytes MB':>9} {'saved MB':>8} {'GFLOP':>7}"
                                for _ in names)
    lines = [head, sub, "-" * len(sub)]
    components = [c for c in COMPONENTS if any(c in cost["components"] for cost in costs)]
    components += sorted({c for cost in costs for c in cost["components"]} - set(components))
    for c in components:
        lines.append(f"{c:<12}" + "".join(_cells(cost["components"].get(c)) for cost in costs))
    lines.append("-" * len(sub))
    for phase in PHASES:
        lines.append(f"{phase:<12}" + "".join(_cells(cost["phases"][phase]) for cost in costs))
    lines.append(f"{'step':<12}" + "".join(_cells(cost["totals"]) for cost in costs))
    baseline = result["baseline"]
    for name, r in result["ratios"].items():
        parts = [f"{label} {r[m]:.3f}x" if r[m] is not None else f"{label} -"
                 for m, label in (("ops", "ops"), ("casts", "casts"), ("saved_bytes", "saved bytes"),
                                  ("bytes", "non-matmul bytes"), ("flops", "FLOPs"))]
        lines.append(f"{name} vs {baseline}: " + ", ".join(parts))
    schemes = [f"{name} {cost['positions']}" for name, cost in zip(names, costs) if "positions" in cost]
    if schemes:  # RoPE's rotations are counted in the `rope` row; a learned embedding's add in `embed`
        lines.append("positions: " + ", ".join(schemes))
    for name, cost in zip(names, costs):
        t = cost["totals"]
        top = ", ".join(f"{op.removeprefix('aten::')} {k}" for op, k in _top(cost, 6))
        lines.append(f"{name}: {t['syncs']} host syncs, {t['cast_bytes'] / 1e6:.1f} MB cast, "
                     f"{t['saved_weight_bytes'] / 1e6:.1f} MB of saved bytes are autocast weight copies; "
                     f"most launched: {top}")
    for name, cost in zip(names, costs):
        graph = cost.get("compiled_forward")
        if graph and "error" in graph:
            lines.append(f"{name}: compiled forward not traced: {graph['error']}")
        elif graph:
            why = f" (first: {graph['break_reasons'][0]})" if graph["break_reasons"] else ""
            ops = f" ({', '.join(graph['opaque_ops'])})" if graph["opaque_ops"] else ""
            gave_up = ""
            if graph.get("frames_given_up"):  # those frames run eagerly: no graph, and no break in the counts
                first = graph.get("given_up_reasons") or ["reason not given"]
                gave_up = (f"; dynamo gave up on {graph['frames_given_up']} frame(s), which run eagerly (first: "
                           f"{first[0]})")
            lines.append(f"{name}: compiled forward in {graph['graphs']} graph(s), {graph['graph_breaks']} "
                         f"break(s){why}, {graph['opaque_calls']} opaque call(s){ops}{gave_up}")
    for name, reason in result["errors"].items():
        lines.append(f"{name}: not counted: {reason}")
    return "\n".join(lines)


def _top(cost: dict[str, Any], n: int) -> list[tuple[str, int]]:
    total: dict[str, int] = {}
    for rows in cost["top_ops"].values():
        for op, k in rows:
            total[op] = total.get(op, 0) + k
    return sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
