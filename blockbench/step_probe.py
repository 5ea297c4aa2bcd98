"""Harness training steps, probed: where a step's time goes, what it costs, and how fast one variant's step is
against another's. The harness side of the measures in measure/components.py and measure/cost.py: here the
harness's own training step (train.Trainer) is built, marked and run. `blockbench profile` (commands/profiling.py)
prints what these functions return; the GPU check and asv call them directly.

`profile_variants` runs harness training steps under torch.profiler and splits their wall time into the
components the model marks with `blockbench.blocks.ranges.scope` (embeddings; per block the norms, the Q/K(/V)
GEMM, the attention kernel, the shaped-attention extras, the projection, the MLP GEMMs and activation, the
residual and gain arithmetic; head and loss), plus backward, optimiser and the step's remaining bookkeeping.
Each component's time is its range's own time (its duration less the ranges nested in it), so the components
add up to the step. Next to the time share it puts the FLOP share of the same component, counted in the same
ranges by a dispatch mode over torch's FLOP formulas.

`step_cost` / `compare_costs` count one harness training step with the step-cost model (measure/cost.py):
what `blockbench profile --cost` prints.

`speed_ratio` is the interleaved probe of measure/throughput.py applied to two variants of one suite: the same
timing path as a run's speed probe, for scripts and asv.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from blockbench.blocks import get_variant, ranges
from blockbench.errors import BlockbenchError
from blockbench.measure.components import (
    COMPONENTS,
    DESCRIPTIONS,
    attribute_events,
    count_component_flops,
    subtree,
)
from blockbench.measure.cost import RATIO_METRICS, count_cost
from blockbench.measure.graph import compile_graph
from blockbench.measure.throughput import interleaved_step_times, round_ratios, speed_summary
from blockbench.suite import Suite, VariantEntry
from blockbench.train import Trainer, make_optimizer

OPTIMIZER_NOTE = "AdamW fused=True (the kernel the harness uses on CUDA)"


def suite_at_shape(base: Suite, variants: list[str], *, n_layers: int | None = None, d_model: int | None = None,
                   n_heads: int | None = None, seq_len: int | None = None, batch_size: int | None = None,
                   threads: int | None = None, dtype: str | None = None) -> Suite:
    """`base` with another model shape, batch, thread count, dtype and a subset of its variants (for measurement
    only: the result keeps the base suite's hash, so it must never write records). A zoo variant the suite does not
    list joins with the suite's default optimiser (e.g. transformer_pp timed at a paper suite's shape)."""
    shape = {k: v for k, v in (("n_layers", n_layers), ("d_model", d_model), ("n_heads", n_heads),
                                ("seq_len", seq_len)) if v is not None}
    missing = [v for v in variants if v not in base.variants]
    for name in missing:
        get_variant(name)  # an unknown name is an error naming the known ones
    entries = {**base.variants, **{v: VariantEntry(v, v) for v in missing}}
    optim = base.optim if batch_size is None else dataclasses.replace(base.optim, batch_size=batch_size)
    runtime = dataclasses.replace(base.runtime, **{k: v for k, v in (("threads", threads), ("dtype", dtype))
                                                   if v is not None})
    return dataclasses.replace(base, model=dataclasses.replace(base.model, **shape), optim=optim, runtime=runtime,
                               variants={v: entries[v] for v in variants})


def harness_step(suite: Suite, variant: str, data: Any, seed: int | None = None) -> Callable[[], Any]:
    """The harness's own training step (Trainer.train_step) on one fixed batch, as the speed probe times it."""
    trainer = Trainer(suite, variant, suite.seeds[0] if seed is None else seed, data, None, measure_static=False)
    trainer.compile_model()  # runtime.compile, as a run's warm-up applies it
    optimizer, scheduler = trainer.new_optimizer()
    batch = next(trainer.batches())

    def step() -> Any:
        return trainer.train_step(optimizer, scheduler, *batch)

    step.trainer = trainer  # type: ignore[attr-defined]
    step.optimizer = optimizer  # type: ignore[attr-defined]
    return step


def speed_ratio(steps: dict[str, Callable[[], Any]], baseline: str, rounds: int, steps_per_round: int,
                warmup: int = 2) -> dict[str, dict[str, Any]]:
    """Interleaved probe over named step functions: per name the median step time and the median over rounds of
    baseline_time / time (> 1: faster than the baseline), its IQR and the per-round ratios."""
    cuda = torch.cuda.is_available() and any(
        getattr(getattr(fn, "trainer", None), "device", torch.device("cpu")).type == "cuda" for fn in steps.values())
    times = interleaved_step_times(steps, rounds, steps_per_round, warmup=warmup, cuda=cuda)
    summary = speed_summary(times, baseline)
    for name, ratios in round_ratios(times, baseline).items():
        q = statistics.quantiles(ratios, n=4) if len(ratios) >= 4 else [None, None, None]
        summary[name].update(ratios=ratios, speedup_q1=q[0], speedup_q3=q[2])
    return summary


def marked_step(trainer: Any, optimizer: torch.optim.Optimizer, scheduler: Any, x: torch.Tensor,
                y: torch.Tensor) -> torch.Tensor:
    """Trainer.train_step for a whole batch in one micro-batch, with the step's phases marked as ranges."""
    with ranges.scope("step"):
        with trainer.autocast or contextlib.nullcontext():
            loss = trainer.step_model(x, y)
        with ranges.scope("backward"):
            (trainer.scaler.scale(loss) if trainer.scaler else loss).backward()
        with ranges.scope("clip"):
            if trainer.scaler:
                trainer.scaler.unscale_(optimizer)
            if trainer.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), trainer.optim.grad_clip)
        with ranges.scope("optimizer"):
            if trainer.scaler:
                trainer.scaler.step(optimizer)
                trainer.scaler.update()
            else:
                optimizer.step()
        with ranges.scope("scheduler"):
            scheduler.step()
        with ranges.scope("zero_grad"):
            optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def step_cost(suite: Suite, variant: str, data: Any, seed: int | None = None) -> dict[str, Any]:
    """One harness training step of `variant` counted: ops, casts, bytes, saved bytes and FLOPs per component
    and phase (see measure/cost.py's docstring). The whole batch is one micro-batch, on one process."""
    trainer = Trainer(suite, variant, suite.seeds[0] if seed is None else seed, data, None, measure_static=False)
    if trainer.micro_batch != trainer.local_batch or trainer.dist.enabled:
        raise BlockbenchError("the cost model counts the whole batch in one micro-batch on one process")
    model = trainer.model
    # CUDA's optimizer, whatever the device: the fused kernel runs on CPU too, so the count is what CUDA runs.
    optimizer = make_optimizer(model, trainer.optim, torch.device("cuda"))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    x, y = next(trainer.batches())
    # The first step also creates the optimizer's state; every later step is alike, so count the second.
    marked_step(trainer, optimizer, scheduler, x, y)
    cost = count_cost(lambda: marked_step(trainer, optimizer, scheduler, x, y),
                      [*model.parameters(), *model.buffers()])
    return {"variant": variant, "device": trainer.device.type, "dtype": trainer.dtype,
            "autocast": trainer.autocast is not None, "execution": "eager", "optimizer": OPTIMIZER_NOTE,
            "shape": suite.model.shape(), "batch_size": len(x), "positions": model.positions, **cost,
            "compiled_forward": compile_graph(model, (x, y), trainer.autocast)}


def _reason(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def compare_costs(suite: Suite, variants: list[str], data: Any, baseline: str | None = None,
                  seed: int | None = None) -> dict[str, Any]:
    """step_cost of each variant, and each one's ratios to `baseline` (ops, casts, saved bytes, non-matmul
    bytes, FLOPs). A variant that cannot be counted (its block raises, or cannot run under the counter) is
    kept in `errors` with its one-line reason; the others are counted all the same."""
    costs: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for name in variants:
        try:
            costs[name] = step_cost(suite, name, data, seed)
        except Exception as exc:  # noqa: BLE001 - any failure of a (user) block is that variant's result
            errors[name] = _reason(exc)
    ratios: dict[str, dict[str, float | None]] = {}
    if baseline in costs:
        base = costs[baseline]["totals"]
        for name, cost in costs.items():
            if name != baseline:
                ratios[name] = {m: cost["totals"][m] / base[m] if base[m] else None for m in RATIO_METRICS}
    return {"baseline": baseline, "variants": list(variants), "costs": costs, "errors": errors, "ratios": ratios}


class _Profiled:
    """One variant's harness step, warmed up, ready to be profiled step by step."""

    def __init__(self, suite: Suite, variant: str, data: Any, warmup: int, seed: int | None) -> None:
        self.variant = variant
        self.step = harness_step(suite, variant, data, seed)
        self.trainer, self.optimizer = self.step.trainer, self.step.optimizer  # type: ignore[attr-defined]
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: 1.0)
        self.x, self.y = next(self.trainer.batches())
        if self.trainer.micro_batch != len(self.x) or self.trainer.dist.enabled:
            raise ValueError("profile needs the whole batch in one micro-batch on one process")
        self.cuda = self.trainer.device.type == "cuda"
        for _ in range(warmup):
            self.step()
        self.walls: list[float] = []
        self.plain: list[float] = []
        self.attributed: list[dict[str, Any]] = []

    def plain_step(self) -> None:
        _sync(self.cuda)
        start = time.perf_counter()
        self.step()
        _sync(self.cuda)
        self.plain.append(time.perf_counter() - start)

    def profiled_step(self) -> None:
        """One marked step inside the caller's profiler session; its wall time, perf_counter around it."""
        _sync(self.cuda)
        start = time.perf_counter()
        marked_step(self.trainer, self.optimizer, self.scheduler, self.x, self.y)
        _sync(self.cuda)
        self.walls.append(time.perf_counter() - start)

    def summary(self) -> dict[str, Any]:
        """Per component the median over profiled steps (robust to a step that a busy machine slowed down)."""
        flops = count_component_flops(self.trainer.model, self.x, self.y)
        measured = statistics.median(self.walls)
        total_flops = sum(sum(p.values()) for p in flops.values()) or 1
        rows = []
        for component in COMPONENTS:
            f = statistics.median(a["forward"].get(component, 0.0) for a in self.attributed)
            b = statistics.median(a["backward"].get(component, 0.0) for a in self.attributed)
            fl = flops["forward"].get(component, 0) + flops["backward"].get(component, 0)
            if f or b or fl:
                rows.append({"component": component, "description": DESCRIPTIONS[component], "forward_s": f,
                             "backward_s": b, "seconds": f + b, "time_share": (f + b) / measured,
                             "flops": fl, "flop_share": fl / total_flops})
        summed = sum(r["seconds"] for r in rows)
        blocks = sorted({b for a in self.attributed for b in a["per_block"]})
        per_block = {b: {c: statistics.median(a["per_block"].get(b, {}).get(c, 0.0) for a in self.attributed)
                         for c in COMPONENTS if any(c in a["per_block"].get(b, {}) for a in self.attributed)}
                     for b in blocks}
        suite = self.trainer.suite
        return {
            "variant": self.variant, "device": self.trainer.device.type, "threads": torch.get_num_threads(),
            "shape": suite.model.shape(), "batch_size": len(self.x), "profiled_steps": len(self.walls),
            "step_seconds_profiled": measured, "step_seconds_unprofiled": statistics.median(self.plain),
            "components_seconds": summed,
            # per step, the part of its wall time no component covers; the median over steps
            "unattributed_share": statistics.median(
                (wall - sum(sum(a[phase].get(c, 0.0) for c in COMPONENTS) for phase in ("forward", "backward")))
                / wall for wall, a in zip(self.walls, self.attributed)),
            "components": rows, "per_block": per_block,
            "flops_forward": flops["forward"], "flops_backward": flops["backward"],
        }


def profile_variants(suite: Suite, variants: list[str], data: Any, steps: int = 5, warmup: int = 2,
                     seed: int | None = None) -> list[dict[str, Any]]:
    """Each variant's training step split into components. The variants' steps alternate (plain and profiled,
    A B A B) so that a slow spell of a shared machine hits them alike; each figure is a median over `steps`.

    Per component: forward and backward seconds, time share of the profiled step, FLOPs (forward + backward)
    and FLOP share. `unattributed_share` is the part of the step no component covers."""
    states = [_Profiled(suite, v, data, warmup, seed) for v in variants]
    orders = [states[r % len(states):] + states[:r % len(states)] for r in range(steps)]
    for order in orders:
        for state in order:
            state.plain_step()
    # One profiler session for all profiled steps (starting one costs seconds on a busy machine); each step's
    # events are then told apart by the `bb.step` range at their root.
    executed = [state for order in orders for state in order]
    cuda = any(state.cuda for state in states)
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        for state in executed:
            state.profiled_step()
    events = list(prof.events())
    roots = sorted((e for e in events if e.name == ranges.PREFIX + "step"), key=lambda e: e.time_range.start)
    if len(roots) != len(executed):
        raise RuntimeError(f"profiler saw {len(roots)} steps, {len(executed)} were run")
    for state, root in zip(executed, roots):
        state.attributed.append(attribute_events(subtree(root)))
    return [state.summary() for state in states]


def profile_variant(suite: Suite, variant: str, data: Any, steps: int = 5, warmup: int = 2,
                    seed: int | None = None) -> dict[str, Any]:
    """profile_variants for one variant."""
    return profile_variants(suite, [variant], data, steps, warmup, seed)[0]


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()
