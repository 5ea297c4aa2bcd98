"""Interleaved speed probe: the step-time ratio of every variant to the baseline, measured in one process.

Shared machines drift (CPU steal here changes a matmul's time by several x within a minute), so absolute
tokens/s of runs made minutes apart do not compare. The probe builds every variant in one process and times
training steps round-robin, rotating the order each round; the ratio baseline/variant is taken per round, so
drift common to a round cancels, and the median over rounds is reported.

Its own noise floor (issue 36): the probe also times an A/A control, the baseline built a second time (its own
initialisation draw, parameters and optimiser state) under the reserved name `<baseline>~copy` (a '~' is in no
variant's name), in the same rounds and order rotation. The control's ratio to the baseline is 1 by construction,
so where its rounds put it is the floor below which this probe, on this machine at this moment, cannot see a
difference. Each ratio carries a distribution-free 95% interval of its median (`median_interval`), and the probe
runs past its minimum of rounds until every interval is narrower than a target half-width or a time cap is reached
(`stop_rule`); stats.speed_verdict turns the numbers into the words every view prints.
"""

from __future__ import annotations

import math
import statistics
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

# The A/A control's name: the baseline's with this suffix; '~' is in no variant's name (blocks.zoo.name_problem),
# so the control never collides with a variant and never becomes one in a view.
CONTROL_SUFFIX = "~copy"
# The interval's nominal confidence (its target half-width and the time cap are the suite's: suite.SpeedConfig).
CONFIDENCE = 0.95


def interleaved_step_times(steps: dict[str, Callable[[], Any]], rounds: int, steps_per_round: int,
                           warmup: int = 2, cuda: bool = False,
                           failed: dict[str, BaseException] | None = None,
                           fails: Callable[[BaseException], bool] | None = None,
                           until: Callable[[dict[str, list[float]], float], str | None] | None = None,
                           stopped: dict[str, Any] | None = None) -> dict[str, list[float]]:
    """Seconds per step for each named step function, per round, timed round-robin with rotating order.

    `rounds` rounds at least; with `until`, more rounds until until(times so far, seconds since the first timed
    round) returns why to stop (stop_rule). `stopped`, when given, receives `reason` (that answer, or "fixed
    rounds" without `until`) and `seconds` (the timed rounds' wall time).

    With `failed`, a step function that raises (an exception for which `fails` says True; any Exception by
    default) leaves the probe: its exception goes into `failed[name]`, its times are dropped, and the other
    functions' rounds go on. Without it, the exception propagates (one broken step sinks the probe)."""
    live = list(steps)
    guarded = _guarded(steps, live, failed, fails or (lambda exc: isinstance(exc, Exception)), cuda)
    for name in list(live):
        guarded(name, warmup)
    times: dict[str, list[float]] = {name: [] for name in live}
    began, reason, r = time.perf_counter(), "fixed rounds", 0
    while True:
        names = list(live)
        if not names:
            reason = "every step failed"
            break
        if r >= rounds:
            if until is None:
                break
            why = until({name: times[name] for name in names}, time.perf_counter() - began)
            if why:
                reason = why
                break
        _time_round(names[r % len(names):] + names[:r % len(names)], guarded, live, times, steps_per_round, cuda)
        r += 1
    if stopped is not None:
        stopped.update(reason=reason, seconds=time.perf_counter() - began)
    # A variant that left mid-way has fewer rounds than the others: its partial times would pair with the wrong
    # rounds of the baseline, so it leaves the result entirely.
    return {name: values for name, values in times.items() if name in live}


def _guarded(steps: Mapping[str, Callable[[], Any]], live: list[str], failed: dict[str, BaseException] | None,
             fails: Callable[[BaseException], bool], cuda: bool) -> Callable[[str, int], None]:
    """run(name, count) calls steps[name] count times; with `failed`, a step that fails (by `fails`) goes into
    `failed` and leaves `live` instead of raising."""
    def run(name: str, count: int) -> None:
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

    return run


def _time_round(order: Sequence[str], run: Callable[[str, int], None], live: list[str],
                times: dict[str, list[float]], steps_per_round: int, cuda: bool) -> None:
    """One round: seconds per step of each name in `order`; a step that failed in it (left `live`) gets no time."""
    for name in order:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        run(name, steps_per_round)
        if cuda:
            torch.cuda.synchronize()
        if name in live:
            times[name].append((time.perf_counter() - start) / steps_per_round)


# What a record carries when the suite turned the probe off (speed.rounds = 0).
NO_PROBE: dict[str, Any] = {"method": None, "baseline": None, "rounds": 0, "step_time_median": None,
                            "speedup_vs_baseline": None, "speedup_iqr": None}


def round_ratios(times: dict[str, Sequence[float]], baseline: str) -> dict[str, list[float]]:
    """Per variant, baseline_time / variant_time of each round (> 1: faster); empty without the baseline."""
    return {name: [b / v for b, v in zip(times[baseline], values)] if baseline in times else []
            for name, values in times.items()}


def speed_summary(times: dict[str, Sequence[float]], baseline: str, control: str | None = None,
                  probe: Mapping[str, Any] | None = None,
                  confidence: float = CONFIDENCE) -> dict[str, dict[str, Any]]:
    """Per variant: median step time, and the median over rounds of baseline_time / variant_time (> 1: faster)
    with its interquartile range and its distribution-free interval (`ci_low`, `ci_high`, at `confidence`; the
    relative `half_width`).

    With `control` (the A/A control's name, control_name(baseline)), the control has no entry of its own: every
    variant's carries it as `control` (its ratio and interval: the probe's floor), or None when the control's
    steps failed. Without it the entries have no `control` key at all: a probe without a control, as every probe
    was before issue 36. `probe`: the probe's own facts every entry repeats (min_rounds, stop_reason,
    target_half_width, time_cap_seconds)."""
    ratios_of = round_ratios(times, baseline)
    out = {}
    for name, ratios in ratios_of.items():
        if name == control:
            continue
        values = times[name]
        q = statistics.quantiles(ratios, n=4) if len(ratios) >= 4 else None
        out[name] = {
            "method": "interleaved",
            "baseline": baseline if baseline in times else None,
            "rounds": len(values),
            "step_time_median": statistics.median(values),
            "speedup_vs_baseline": statistics.median(ratios) if ratios else None,
            "speedup_iqr": (q[2] - q[0]) if q else None,
            **interval_fields(ratios, confidence),
            **dict(probe or {}),
        }
    if control is not None:
        floor = None
        if control in times and ratios_of.get(control):
            ratios = ratios_of[control]
            floor = {"name": control, "rounds": len(ratios), "speedup_vs_baseline": statistics.median(ratios),
                     **interval_fields(ratios, confidence)}
        for entry in out.values():
            entry["control"] = floor
    return out


# ---------------------------------------------------------------------------------------------------------------
# The A/A control, the interval of a median ratio, and when to stop

def control_name(baseline: str) -> str:
    return baseline + CONTROL_SUFFIX


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float] | None:
    """A distribution-free interval for the median of `values` (independent draws): the order statistics x_(k) and
    x_(n+1-k), k the largest with P(Binomial(n, 1/2) <= k-1) <= (1 - confidence) / 2, so that it covers the true
    median with probability >= `confidence` whatever the distribution. Returns (low, high, the confidence it
    achieves); below 6 values no k reaches 95%, and (min, max) comes back with its own, lower, confidence
    (1 - 2^(1-n)). None for fewer than 2 values."""
    n = len(values)
    if n < 2:
        return None
    xs = sorted(values)
    tail = (1 - confidence) / 2
    below, k = 0, 1  # below: P(B <= j) 2^n as j grows; [x_(j+1), x_(n-j)] covers with 1 - 2 P(B <= j)
    for j in range((n + 1) // 2):
        below += math.comb(n, j)
        if below / 2**n > tail:
            break
        k = j + 1
    achieved = 1 - 2 * sum(math.comb(n, j) for j in range(k)) / 2**n
    return xs[k - 1], xs[n - k], achieved


def interval_fields(ratios: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """What a speed entry records of its ratios' interval: its ends, the confidence they reach, and the relative
    half-width ((high - low) / 2 / median); None each with fewer than 2 rounds."""
    interval = median_interval(ratios, confidence)
    if interval is None:
        return {"ci_low": None, "ci_high": None, "confidence": None, "half_width": None}
    low, high, achieved = interval
    median = statistics.median(ratios)
    return {"ci_low": low, "ci_high": high, "confidence": achieved,
            "half_width": (high - low) / 2 / median if median > 0 else None}


def tight(ratios: Sequence[float], target: float, confidence: float = CONFIDENCE) -> bool:
    """Whether the ratios' interval reaches `confidence` and its relative half-width is at most `target`."""
    fields = interval_fields(ratios, confidence)
    return (fields["confidence"] is not None and fields["confidence"] >= confidence
            and fields["half_width"] is not None and fields["half_width"] <= target)


def stop_rule(baseline: str, target_half_width: float, time_cap: Callable[[dict[str, list[float]]], float],
              confidence: float = CONFIDENCE, agree: Callable[[bool, bool], tuple[bool, bool]] | None = None
              ) -> Callable[[dict[str, list[float]], float], str | None]:
    """`until` for interleaved_step_times: after the minimum of rounds, stop once every ratio to the baseline (each
    variant's and the A/A control's) has an interval reaching `confidence` with a relative half-width at most
    `target_half_width` ("interval tight"), else once another round would take the timed rounds past
    time_cap(times) seconds ("time cap"); without the baseline's times there is no ratio to wait for ("baseline
    failed"). `agree` makes processes that time in step (torchrun ranks) take one decision: (all tight, any
    capped) from each one's own."""

    def until(times: dict[str, list[float]], seconds: float) -> str | None:
        if baseline not in times:
            return "baseline failed"
        ratios = round_ratios(times, baseline)
        done = all(tight(values, target_half_width, confidence) for name, values in ratios.items()
                   if name != baseline)
        rounds = len(times[baseline])
        # Capped when the next round, as long as the rounds so far on average, would end past the cap.
        capped = seconds + (seconds / rounds if rounds else 0.0) > time_cap(times)
        if agree is not None:
            done, capped = agree(done, capped)
        return "interval tight" if done else "time cap" if capped else None

    return until
