"""Interleaved speed probe: the step-time ratio of every variant to the baseline, measured in one process.

Shared machines drift (CPU steal here changes a matmul's time by several x within a minute), so absolute
tokens/s of runs made minutes apart do not compare. The probe builds every variant in one process and times
training steps round-robin, rotating the order each round; the ratio baseline/variant is taken per round, so
drift common to a round cancels, and the median over rounds is reported.
"""

from __future__ import annotations

import statistics
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import torch


def interleaved_step_times(steps: dict[str, Callable[[], Any]], rounds: int, steps_per_round: int,
                           warmup: int = 2, cuda: bool = False,
                           failed: dict[str, BaseException] | None = None,
                           fails: Callable[[BaseException], bool] | None = None) -> dict[str, list[float]]:
    """Seconds per step for each named step function, per round, timed round-robin with rotating order.

    With `failed`, a step function that raises (an exception for which `fails` says True; any Exception by
    default) leaves the probe: its exception goes into `failed[name]`, its times are dropped, and the other
    functions' rounds go on. Without it, the exception propagates (one broken step sinks the probe)."""
    fails = fails or (lambda exc: isinstance(exc, Exception))
    live = list(steps)

    def guarded(name: str, count: int) -> None:
        try:
            for _ in range(count):
                steps[name]()
        except BaseException as exc:
            if failed is None or not fails(exc):
                raise
            failed[name] = exc
            live.remove(name)
            # Its frames hold the failed step's tensors (an out-of-memory's activations): free them now, keep
            # the traceback's text.
            traceback.clear_frames(exc.__traceback__)
            if cuda:  # a CUDA out-of-memory leaves the allocator's cache full; the next variant needs it back
                torch.cuda.empty_cache()

    for name in list(live):
        guarded(name, warmup)
    times: dict[str, list[float]] = {name: [] for name in live}
    for r in range(rounds):
        names = list(live)
        if not names:
            break
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            guarded(name, steps_per_round)
            if cuda:
                torch.cuda.synchronize()
            if name in live:
                times[name].append((time.perf_counter() - start) / steps_per_round)
    # A variant that left mid-way has fewer rounds than the others: its partial times would pair with the wrong
    # rounds of the baseline, so it leaves the result entirely.
    return {name: values for name, values in times.items() if name in live}


# What a record carries when the suite turned the probe off (speed.rounds = 0).
NO_PROBE: dict[str, Any] = {"method": None, "baseline": None, "rounds": 0, "step_time_median": None,
                            "speedup_vs_baseline": None, "speedup_iqr": None}


def round_ratios(times: dict[str, Sequence[float]], baseline: str) -> dict[str, list[float]]:
    """Per variant, baseline_time / variant_time of each round (> 1: faster); empty without the baseline."""
    return {name: [b / v for b, v in zip(times[baseline], values)] if baseline in times else []
            for name, values in times.items()}


def speed_summary(times: dict[str, Sequence[float]], baseline: str) -> dict[str, dict[str, Any]]:
    """Per variant: median step time, and the median over rounds of baseline_time / variant_time (> 1: faster)."""
    out = {}
    for name, ratios in round_ratios(times, baseline).items():
        values = times[name]
        q = statistics.quantiles(ratios, n=4) if len(ratios) >= 4 else None
        out[name] = {
            "method": "interleaved",
            "baseline": baseline if baseline in times else None,
            "rounds": len(values),
            "step_time_median": statistics.median(values),
            "speedup_vs_baseline": statistics.median(ratios) if ratios else None,
            "speedup_iqr": (q[2] - q[0]) if q else None,
        }
    return out
