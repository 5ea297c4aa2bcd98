"""Every statistic the views use, once: intervals, Welch, paired differences, Kendall tau, rankings along the
curves, the bootstrap over seeds, the settled/unsettled rule and the unigram-plateau detector.

leaderboard, compare, report, sweep and display import these; nothing here reads files or prints. Everything is
deterministic: a bootstrap small enough is enumerated exactly (no RNG at all), a larger one draws from an RNG
seeded from a key, so the same records give the same numbers and the published views regenerate byte for byte.

The stability rule (stated again in the leaderboard's reading notes) judges the order between the ranking's
groups, the runs of adjacent variants whose order is not resolved (their shared rank range, `tied_ranks`):
- with >= 2 seeds a ranking is **settled** when no pair of variants in different groups was the other way round
  (the later group's variant strictly ahead by mean eval loss) at 50% or at 75% of the budget. No tolerance:
  the groups are already separated at the end by a resolved difference, so a pair that was the other way round
  at a checkpoint crossed within the last half of the budget, and the gap that separates them is younger than
  the run: the final order is a snapshot, not a verdict (**unsettled**). A near tie at a checkpoint that kept
  its sign (or an exact tie) is no crossing and does not unsettle. Swaps inside a group do not unsettle: their
  order is not resolved at the end either. One group only: **all tied**, nothing to order;
- with one seed there is no interval test, so ties cannot be judged and neither can the order between groups:
  the word is **not judged** (the line still gives the taus below and the one-seed curve rule);
- Kendall's tau-b between the ranking at 50% (75%) of the budget and the final one is given beside the word as
  supporting information (`curve_settled` keeps the older rule on it: tau(50%) >= TAU_HALF_MIN, tau(75%) >=
  TAU_THREE_QUARTERS_MIN), but no longer decides it: it counts swaps inside tied groups, which the interval test
  says nothing about;
- a **pair's order** is resolved with >= 2 seeds when the bootstrap over seeds puts it in that order with
  probability >= ORDER_PROB_MIN (0.9) *and* the 95% Student-t interval of the difference of final losses (paired
  by seed when both ran the same seeds, else Welch) excludes zero: with 2-3 seeds the bootstrap has only 3-10
  distinct resamples, and a sign that holds on every seed gives it probability 1 however small the difference,
  so the interval guards the small-sample case. With one seed, a pair is resolved when it is in the same order
  at 50%, 75% and 100% of the budget (the curves are all a single seed has). Adjacent variants whose order is
  not resolved share a rank range (`2-5`); compare and report call such a difference "not resolvable at this
  budget".
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blockbench.untrusted import md

BOOTSTRAP_RESAMPLES = 10_000
EXACT_BOOTSTRAP_MAX = 10_000  # resample multisets: up to 8 seeds (6,435) the bootstrap is enumerated exactly
TAU_HALF_MIN = 0.8
TAU_THREE_QUARTERS_MIN = 0.9
TAU_ROUNDING = 1e-9
ORDER_PROB_MIN = 0.9
CHECKPOINTS = (0.5, 0.75)
INTERVAL_TAIL = 0.025  # each tail a percentile-bootstrap 95% interval leaves out

# The unigram plateau: a run whose eval loss improved by less than PLATEAU_TOLERANCE nats over at least the last
# PLATEAU_WINDOW of its steps while ending above the plateau level. The level is the suite's
# `[eval] plateau_loss`, else PLATEAU_LEVEL_FRACTION * ln(vocab): a unigram model's loss (the plateau) lies at
# 0.6-0.8 ln(V) for the corpora and tokenizers here (bytes of code ~0.6, BPE-4096 ~0.79), so 0.55 ln(V) sits
# below every plateau, while runs that learnt context are below it (0.45-0.5 ln(V) on bytes after 200 steps).
PLATEAU_TOLERANCE = 0.05
PLATEAU_WINDOW = 1 / 3
PLATEAU_LEVEL_FRACTION = 0.55


# ---------------------------------------------------------------------------------------------------------------
# Intervals and tests

def _scipy_stats() -> Any:
    """scipy.stats, imported on first use."""
    # deferred: scipy takes about a second to import, and every run's process imports this module (through records)
    # before it reports that it started, under the stall watchdog's clock
    from scipy import stats

    return stats


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """95% Student-t interval of the mean; NaN bounds for fewer than two values."""
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(_scipy_stats().t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return mean - half, mean + half


def t_quantile(df: float) -> float:
    return float(_scipy_stats().t.ppf(0.975, df))


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan


def difference_interval(ref: Mapping[int, float], cand: Mapping[int, float]) -> tuple[float, float, float, str]:
    """cand - ref over seeds: (mean, low, high, method). The same seeds on both sides (same data order and init
    seed) give the paired Student-t 95% interval of the per-seed differences; otherwise Welch's."""
    if set(ref) == set(cand):
        diffs = [cand[s] - ref[s] for s in sorted(ref)]
        mean, sd = mean_sd(diffs)
        half = t_quantile(len(diffs) - 1) * sd / math.sqrt(len(diffs)) if len(diffs) > 1 else math.nan
        return mean, mean - half, mean + half, f"paired over seeds {', '.join(map(str, sorted(ref)))}"
    (ma, sa), (mb, sb) = mean_sd(list(ref.values())), mean_sd(list(cand.values()))
    na, nb = len(ref), len(cand)
    mean = mb - ma
    if na > 1 and nb > 1:
        va, vb = sa * sa / na, sb * sb / nb
        se = math.sqrt(va + vb)
        df = (va + vb) ** 2 / (va * va / (na - 1) + vb * vb / (nb - 1)) if va + vb > 0 else 1.0
        half = t_quantile(df) * se
    else:
        half = math.nan
    return mean, mean - half, mean + half, f"Welch, {na} vs {nb} seeds"


def welch_one_sided(cand: Sequence[float], base: Sequence[float]) -> tuple[float, float]:
    """(p that cand's mean is greater, p that it is less): Welch's t-test; NaN when neither side has spread."""
    worse = float(_scipy_stats().ttest_ind(cand, base, equal_var=False, alternative="greater").pvalue)
    better = float(_scipy_stats().ttest_ind(cand, base, equal_var=False, alternative="less").pvalue)
    return worse, better


def _ratio(a: Any, b: Any) -> Any:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(a, dtype=float) / np.asarray(b, dtype=float)


def bootstrap_speedup(base: list[float], cand: list[float], key: str) -> tuple[float, float, float]:
    """median(base)/median(cand) with a percentile-bootstrap 95% CI; misses are inf (a miss on the candidate's side
    gives 0, on both sides NaN). The RNG is seeded from `key`, so the same records give the same interval."""
    if not base or not cand:
        return math.nan, math.nan, math.nan
    b, c = np.asarray(base, dtype=float), np.asarray(cand, dtype=float)
    point = float(_ratio(np.median(b), np.median(c)))
    if len(b) < 2 or len(c) < 2:
        return point, math.nan, math.nan
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    mb = np.median(rng.choice(b, size=(BOOTSTRAP_RESAMPLES, len(b))), axis=1)
    mc = np.median(rng.choice(c, size=(BOOTSTRAP_RESAMPLES, len(c))), axis=1)
    ratios = _ratio(mb, mc)
    if np.isnan(ratios).all():
        return point, math.nan, math.nan
    low, high = np.nanquantile(ratios, [INTERVAL_TAIL, 1 - INTERVAL_TAIL], method="inverted_cdf")
    return point, float(low), float(high)


# ---------------------------------------------------------------------------------------------------------------
# Kendall tau and rankings along the curves

def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either sequence handled); NaN with fewer than two items or a constant side."""
    if len(x) < 2:
        return math.nan
    tau = _scipy_stats().kendalltau(list(x), list(y)).statistic
    return float(tau)


def tau_between(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """tau-b between two score maps (lower is better) over the variants both have (a missing run drops out)."""
    common = sorted(k for k in set(a) & set(b) if math.isfinite(a[k]) and math.isfinite(b[k]))
    return kendall_tau([a[k] for k in common], [b[k] for k in common])


# A speed probe is trusted only when its steps ran about as fast as the same variant's steps in training: the probe
# interleaves variants so that drift cancels, but a machine loaded far beyond its cores (threads of several jobs
# spinning against each other) makes every round's ratio noise. Healthy probes on these machines take 0.9-1.2x
# the training step; a probe made during a burst of other work took 20-45x (results/paper-cpu/2).
PROBE_DISTURBED_RATIO = 2.0
# ... and only when its rounds agree: the interquartile range of a variant's per-round ratios is at most 0.19 in
# every healthy published probe, while a default suite run beside two other jobs on a 2-core machine gave
# 1.1-2.5 (issue 23) with a training step no slower than the probe's, so the first rule alone passed it. An IQR
# above half a ratio's own size cannot tell 0.8x from 1.2x.
PROBE_IQR_MAX = 0.5


def probe_disturbance(records: Iterable[Mapping[str, Any]]) -> float | None:
    """The largest ratio, over variants, of the speed probe's median step time to the median training step time
    of the same variant's runs; None when no record has both. Above PROBE_DISTURBED_RATIO the probe's speed
    ratios are not to be trusted (the views say so instead of printing them as a verdict)."""
    probe: dict[str, float] = {}
    train: dict[str, list[float]] = {}
    for r in records:
        speed, step = (r.get("speed") or {}).get("step_time_median"), r["summary"].get("step_time_median")
        if speed and step:
            probe[r["variant"]] = float(speed)
            train.setdefault(r["variant"], []).append(float(step))
    ratios = [probe[v] / sorted(t)[len(t) // 2] for v, t in train.items()]
    return max(ratios) if ratios else None


def probe_spread(records: Iterable[Mapping[str, Any]]) -> float | None:
    """The largest interquartile range, over records, of the probe's per-round speed ratios; None without one."""
    spreads = [float(iqr) for r in records if (iqr := (r.get("speed") or {}).get("speedup_iqr")) is not None]
    return max(spreads) if spreads else None


def probe_disturbed_note(records: Iterable[Mapping[str, Any]]) -> str | None:
    """One sentence when the probe is not to be trusted (run on an overloaded machine, or rounds that disagree),
    else None. Every view that shows a speed ratio asks this first: an untrusted probe's ratios are shown as
    `untrusted (IQR x)` or left out, never plotted, never turned into a verdict or a share of a bound."""
    records = list(records)
    ratio = probe_disturbance(records)
    if ratio is not None and ratio > PROBE_DISTURBED_RATIO:
        return (f"the interleaved probe's steps took {ratio:.0f}x as long as the same steps in training (more than "
                f"{PROBE_DISTURBED_RATIO:g}x): the machine was overloaded while it ran, so its speed ratios are not "
                "trusted and are not shown as a verdict")
    spread = probe_spread(records)
    if spread is not None and spread > PROBE_IQR_MAX:
        return (f"the interleaved probe's per-round ratios spread over an interquartile range of up to {spread:.2f} "
                f"(more than {PROBE_IQR_MAX:g}): its rounds disagree, so its speed ratios are not trusted and are "
                "not shown as a verdict")
    return None


def untrusted_cell(iqr: float | None) -> str:
    """How a view shows a ratio from an untrusted probe: the word and the spread that makes it so, no ratio."""
    return "untrusted" if iqr is None or not math.isfinite(iqr) else f"untrusted (IQR {iqr:.2f})"


def probe_untrusted_words(records: Iterable[Mapping[str, Any]]) -> str | None:
    """Why the probe is untrusted (probe_disturbed_note's two tests) in a few words, for a verdict's cause:
    `probe untrusted (IQR 1.80)`, `probe untrusted (its steps took 44x as long as in training)`, or both causes
    in one bracket; None when it is trusted."""
    records = list(records)
    why = []
    ratio = probe_disturbance(records)
    if ratio is not None and ratio > PROBE_DISTURBED_RATIO:
        why.append(f"its steps took {ratio:.0f}x as long as in training")
    spread = probe_spread(records)
    if spread is not None and spread > PROBE_IQR_MAX:
        why.append(f"IQR {spread:.2f}")
    return f"probe untrusted ({'; '.join(why)})" if why else None


def share_of_bound(ratio: float, bound: float) -> str | None:
    """'x% of the blocks' bound' for a speed-up; None below 1x (a slow-down is no share of a speed-up bound: the
    -87% and -141% the views once printed read as numbers and meant nothing)."""
    if not (ratio > 1 and bound > 1):
        return None
    return f"{(ratio - 1) / (bound - 1):.0%} of the blocks' bound"


# ---------------------------------------------------------------------------------------------------------------
# Speed verdicts: the interleaved probe's ratio in words, one rule for every view (issue 36)
#
# A probe times an A/A control beside the variants (measure/throughput.py): the baseline built again, whose true
# ratio to the baseline is 1. How far the control's 95% interval reaches from 1, either way, is the probe's floor
# (`A/A floor ±x%`): the band of ratios this probe could not tell from no difference. A variant is faster
# (slower) only when its own 95% interval of the median ratio lies entirely above (below) that band (and so also
# excludes 1): then its words are the ratio and the interval, `1.120x [1.090, 1.150]`. Otherwise there is `no
# measurable difference (within ±x%)`, x the farthest either interval reaches from 1. A record made before the
# control existed has no interval and says so (NO_CONTROL).

NO_CONTROL = "no A/A control in this probe"
SPEED_CONFIDENCE = 0.95


@dataclass(frozen=True)
class SpeedVerdict:
    """One variant's speed in words. kind: "faster", "slower", "no difference", "baseline", "no control" (a record
    without an interval), "untrusted" or "none" (no probe); text: what every view prints; low and high: the
    interval the words rest on (None without one); within: the ±fraction of a "no difference"."""

    kind: str
    text: str
    low: float | None = None
    high: float | None = None
    within: float | None = None

    @property
    def differs(self) -> bool:
        return self.kind in ("faster", "slower")


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.1f}%" if fraction < 0.1 else f"{100 * fraction:.0f}%"


def speed_floor(speed: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """The probe's floor from a speed section: 1 ± the farthest the A/A control's interval reaches from 1 (either
    way: a copy that came out 2% slow says a copy could as well come out 2% fast); None when the probe had no
    control (or its control failed, or had no interval)."""
    control = (speed or {}).get("control")
    if not isinstance(control, Mapping) or control.get("ci_low") is None or control.get("ci_high") is None:
        return None
    reach = max(float(control["ci_high"]) - 1, 1 - float(control["ci_low"]), 0.0)
    return 1 - reach, 1 + reach


def floor_words(speed: Mapping[str, Any] | None) -> str:
    """How a view shows the A/A control's own row: the floor, never a speed-up."""
    floor = speed_floor(speed)
    if floor is None:
        return NO_CONTROL
    control = speed["control"]  # type: ignore[index] - speed_floor found it
    reach = max(floor[1] - 1, 1 - floor[0])
    return (f"A/A floor ±{_percent(reach)} ({control['name']}: {control['speedup_vs_baseline']:.3f} "
            f"[{control['ci_low']:.3f}, {control['ci_high']:.3f}] over {control['rounds']} rounds)")


def speed_verdict(speed: Mapping[str, Any] | None, *, baseline: bool = False,
                  untrusted: bool = False) -> SpeedVerdict:
    """The words for a variant's speed section (a record's `speed`): the one rule every view prints (above).
    `baseline`: the variant the ratios are relative to; `untrusted`: the probe is disturbed
    (probe_disturbed_note), so no ratio is shown at all."""
    speed = speed or {}
    ratio = speed.get("speedup_vs_baseline")
    if ratio is None:
        return SpeedVerdict("none", "-")
    iqr = speed.get("speedup_iqr")
    if untrusted:
        return SpeedVerdict("untrusted", untrusted_cell(iqr))
    floor = speed_floor(speed)
    low, high = speed.get("ci_low"), speed.get("ci_high")
    if baseline:
        if floor is None:
            return SpeedVerdict("baseline", f"1.000 (baseline; {NO_CONTROL})")
        return SpeedVerdict("baseline", f"1.000 (baseline; {floor_words(speed).split(' (')[0]})")
    if low is None or high is None:  # a record made before issue 36: the median and its IQR, no verdict
        spread = f"IQR {iqr:.2f}; " if iqr is not None and iqr > 0 else ""
        return SpeedVerdict("no control", f"{ratio:.3f} ({spread}{NO_CONTROL})")
    band_low, band_high = floor if floor is not None else (1.0, 1.0)
    tail = "" if floor is not None else f"; {NO_CONTROL}"
    confidence = speed.get("confidence")
    if confidence is not None and confidence < SPEED_CONFIDENCE - 1e-9:
        tail = f"; a {confidence:.0%} interval: {speed.get('rounds')} rounds" + tail
    if low > band_high or high < band_low:
        return SpeedVerdict("faster" if low > band_high else "slower",
                            f"{ratio:.3f}x [{low:.3f}, {high:.3f}]" + (f" ({tail[2:]})" if tail else ""),
                            low, high)
    within = max(high - 1, 1 - low, band_high - 1, 1 - band_low)
    return SpeedVerdict("no difference", f"no measurable difference (within ±{_percent(within)}{tail})",
                        low, high, within)


def probe_facts(records: Iterable[Mapping[str, Any]]) -> str | None:
    """How the records' speed probe went: its rounds, why it stopped and its A/A floor, or that it had no control;
    None when no record has a ratio."""
    speeds = [r["speed"] for r in records if (r.get("speed") or {}).get("speedup_vs_baseline") is not None]
    if not speeds:
        return None
    speed = max(speeds, key=lambda s: s["rounds"])
    if "stop_reason" not in speed:
        return (f"{NO_CONTROL} (recorded before the probe measured its floor): its ratios are medians over "
                f"{speed['rounds']} rounds with their IQR, not verdicts")
    cap = speed.get("time_cap_seconds")
    return (f"{speed['rounds']} interleaved rounds (at least {speed.get('min_rounds', '?')}), stopped: "
            f"{speed['stop_reason']} (target ±{_percent(speed.get('target_half_width') or 0)}"
            + (f", time cap {cap:.3g} s" if cap is not None else "") + f"); {floor_words(speed)}")


def variant_speed(records: Iterable[Mapping[str, Any]], variant: str) -> Mapping[str, Any] | None:
    """The speed section a variant's records carry (one probe for all its seeds; with several, the one of median
    ratio); None when none of them has a ratio."""
    sections = sorted((r["speed"] for r in records if r["variant"] == variant
                       and (r.get("speed") or {}).get("speedup_vs_baseline") is not None),
                      key=lambda s: s["speedup_vs_baseline"])
    return sections[len(sections) // 2] if sections else None


# ---------------------------------------------------------------------------------------------------------------
# Convergence of a pair: plateaus and divergences

def plateaued(records: Iterable[Mapping[str, Any]], variant: str) -> tuple[int, int]:
    """(runs of `variant` that ended ok but stuck on the unigram plateau, runs of it that ended ok)."""
    ok = [r for r in records if r["variant"] == variant and r["status"] == "ok"]
    return sum(plateau_steps(r) is not None for r in ok), len(ok)


def not_converged_note(records: Sequence[Mapping[str, Any]], variants: Iterable[str]) -> str | None:
    """'a plateau on k/n seeds, b ...' for the variants of a pair any of whose runs ended on the unigram plateau;
    None when none did. Such a pair's difference measures where each run was stuck, not what the blocks learn:
    its verdict is "not converged", never "not resolvable" (a +2.4-nat gap is no noise)."""
    parts = []
    for v in variants:
        stuck, n = plateaued(records, v)
        if stuck:
            parts.append(f"{v} on the unigram plateau at the end " + (f"on {stuck}/{n} seeds" if n > 1 else ""))
    return "; ".join(p.strip() for p in parts) or None


def curve_points(record: Mapping[str, Any]) -> list[tuple[float, float]]:
    """(step, eval loss) of every evaluated point of a run."""
    return [(float(p["step"]), float(p["eval_loss"])) for p in record["curve"] if p.get("eval_loss") is not None]


def loss_at(points: Sequence[tuple[float, float]], fraction: float) -> float:
    """The eval loss at `fraction` of the run's last evaluated step, linear between the evaluations around it."""
    if not points:
        return math.nan
    end = points[-1][0] * fraction
    for (s0, l0), (s1, l1) in itertools.pairwise(points):
        if s0 <= end <= s1:
            return l0 if s1 == s0 else l0 + (end - s0) / (s1 - s0) * (l1 - l0)
    return points[-1][1] if end >= points[-1][0] else points[0][1]


def seed_losses(records: Iterable[Mapping[str, Any]], fraction: float = 1.0) -> dict[str, dict[int, float]]:
    """variant -> seed -> eval loss at `fraction` of the budget, for the runs that ended well (status ok)."""
    out: dict[str, dict[int, float]] = {}
    for r in records:
        if r["status"] != "ok":
            continue
        points = curve_points(r)
        loss = (r["summary"]["final_eval_loss"] if fraction == 1.0 else loss_at(points, fraction))
        if loss is not None and math.isfinite(loss):
            out.setdefault(r["variant"], {})[r["seed"]] = float(loss)
    return out


def means(losses: Mapping[str, Mapping[int, float]]) -> dict[str, float]:
    return {v: sum(s.values()) / len(s) for v, s in losses.items() if s}


def order(scores: Mapping[str, float]) -> list[str]:
    """Best first; equal scores by name, as the leaderboard sorts."""
    return sorted(scores, key=lambda v: (scores[v], v))


def rankings_per_eval(records: Iterable[Mapping[str, Any]]) -> list[tuple[int, list[str]]]:
    """(step, variants best first by mean eval loss over the seeds evaluated there) at every evaluated step of
    the runs that ended well."""
    by_step: dict[int, dict[str, list[float]]] = {}
    for r in records:
        if r["status"] != "ok":
            continue
        for step, loss in curve_points(r):
            by_step.setdefault(int(step), {}).setdefault(r["variant"], []).append(loss)
    return [(step, order({v: sum(ls) / len(ls) for v, ls in by_step[step].items()})) for step in sorted(by_step)]


# ---------------------------------------------------------------------------------------------------------------
# Bootstrap over seeds

def _compositions(n: int) -> Iterable[tuple[int, ...]]:
    """Every way to draw n seeds from n with replacement, as counts per seed."""
    for bars in itertools.combinations(range(2 * n - 1), n - 1):
        edges = (-1, *bars, 2 * n - 1)
        yield tuple(edges[i + 1] - edges[i] - 1 for i in range(n))


def bootstrap_is_exact(n: int) -> bool:
    """Whether the bootstrap over n seeds enumerates every resample (multiset) rather than drawing them."""
    return math.comb(2 * n - 1, n) <= EXACT_BOOTSTRAP_MAX


def exact_bootstrap_seeds() -> int:
    """The most seeds whose bootstrap is enumerated exactly (what the reading guide says)."""
    n = 1
    while bootstrap_is_exact(n + 1):
        n += 1
    return n


def bootstrap_weights(n: int, key: str) -> tuple[Any, Any]:
    """(counts: resamples x n, probabilities per resample) of the bootstrap over n seeds. Exact (every multiset
    with its multinomial probability) when there are at most EXACT_BOOTSTRAP_MAX of them, so small cases have
    hand-computable answers; else BOOTSTRAP_RESAMPLES draws from an RNG seeded from `key`."""
    if bootstrap_is_exact(n):
        counts = np.array(list(_compositions(n)), dtype=float)
        log_p = (math.lgamma(n + 1) - np.sum([[math.lgamma(c + 1) for c in row] for row in counts], axis=1)
                 - n * math.log(n))
        return counts, np.exp(log_p)
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    counts = rng.multinomial(n, [1 / n] * n, size=BOOTSTRAP_RESAMPLES).astype(float)
    return counts, np.full(BOOTSTRAP_RESAMPLES, 1 / BOOTSTRAP_RESAMPLES)


def _bootstrap_means(losses: Mapping[str, Mapping[int, float]], key: str) -> tuple[list[str], Any, Any]:
    """(variants best first, their mean loss in each resample: variants x resamples, NaN where a resample drew
    none of a variant's seeds, the resamples' probabilities); no resamples (None) without variants or seeds."""
    variants = order(means(losses))
    seeds = sorted({s for v in variants for s in losses[v]})
    if not variants or not seeds:
        return variants, None, None
    counts, probs = bootstrap_weights(len(seeds), key)
    mean_rows = []
    for v in variants:
        have = np.array([s in losses[v] for s in seeds], dtype=float)
        values = np.array([losses[v].get(s, 0.0) for s in seeds], dtype=float)
        weight = counts @ have
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_rows.append(np.where(weight > 0, (counts @ values) / weight, np.nan))
    return variants, np.array(mean_rows), probs


def _resample_ranks(m: Any, probs: Any) -> tuple[Any, Any] | None:
    """(each variant's 0-based rank in each resample that drew a seed of every variant, those resamples'
    probabilities renormalised); None when there is no such resample. The rank is how many have a lower mean,
    ties broken by the point order, as the leaderboard breaks them by name."""
    complete = ~np.isnan(m).any(axis=0)
    total = float(probs[complete].sum())
    if total <= 0:
        return None
    sub = m[:, complete]
    ranks = np.array([(sub < sub[i]).sum(axis=0) + sum((sub[k] == sub[i]) for k in range(i))
                      for i in range(len(sub))])
    return ranks, probs[complete] / total


def bootstrap_orders(losses: Mapping[str, Mapping[int, float]], key: str
                     ) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    """Resampling seeds jointly (the same seed means the same data order and init seed for every variant, so the
    resample keeps that pairing): each variant's probability of its point rank, and for each pair (a, b) with a
    ranked above b at the point estimate, the probability that a's mean loss is below b's (a tie counts half).

    A variant that lacks a drawn seed averages the seeds it has; a resample that drew none of its seeds does not
    count for its pairs (nor for rank probabilities)."""
    variants, m, probs = _bootstrap_means(losses, key)
    if m is None:
        return {}, {}
    defined = ~np.isnan(m)
    pairs: dict[tuple[str, str], float] = {}
    for i, j in itertools.combinations(range(len(variants)), 2):
        both = defined[i] & defined[j]
        total = float(probs[both].sum())
        if total <= 0:
            pairs[(variants[i], variants[j])] = math.nan
            continue
        wins = (m[i] < m[j]) & both
        ties = (m[i] == m[j]) & both
        pairs[(variants[i], variants[j])] = float((probs[wins].sum() + 0.5 * probs[ties].sum()) / total)
    resampled = _resample_ranks(m, probs)
    if resampled is None:
        return {}, pairs
    ranks, weights = resampled
    return {v: float(weights[ranks[i] == i].sum()) for i, v in enumerate(variants)}, pairs


def bootstrap_rank_ranges(losses: Mapping[str, Mapping[int, float]], key: str,
                          ranges: Mapping[str, tuple[int, int]]) -> dict[str, float]:
    """Each variant's bootstrap probability (the resamples of bootstrap_orders) of a rank inside its listed rank
    range `ranges[v]` (1-based, both ends included): for a tied range `1-3`, landing anywhere in 1-3, which is
    what the range claims; for a rank of its own, being at it."""
    variants, m, probs = _bootstrap_means(losses, key)
    resampled = None if m is None else _resample_ranks(m, probs)
    if resampled is None:
        return {}
    ranks, weights = resampled
    out = {}
    for i, v in enumerate(variants):
        if v in ranges:
            lo, hi = ranges[v]
            inside = float(weights[(ranks[i] >= lo - 1) & (ranks[i] <= hi - 1)].sum())
            out[v] = min(1.0, max(0.0, inside))  # a sum of renormalised weights can come out as 1 + 2e-16
    return out


# ---------------------------------------------------------------------------------------------------------------
# Stability of a ranking

SETTLED, UNSETTLED, NOT_JUDGED, ALL_TIED, NOTHING_TO_ORDER = (
    "settled", "unsettled", "not judged", "all tied", "nothing to order")
SWAPS_NAMED = 3  # the stability line names this many cross-group swaps, then counts the rest


@dataclass
class Stability:
    order: list[str]                      # best first, by final mean eval loss
    taus: dict[float, float]              # checkpoint fraction -> tau-b against the final ranking
    n_seeds: int                          # fewest seeds of any ranked variant
    rank_prob: dict[str, float] = field(default_factory=dict)
    pair_prob: dict[tuple[str, str], float] = field(default_factory=dict)
    pair_resolved: dict[tuple[str, str], bool] = field(default_factory=dict)
    rank_range: dict[str, tuple[int, int]] = field(default_factory=dict)
    rank_range_prob: dict[str, float] = field(default_factory=dict)  # P(rank inside its listed range)
    checkpoint_means: dict[float, dict[str, float]] = field(default_factory=dict)  # fraction -> variant -> mean

    @property
    def word(self) -> str:
        """The ranking's stability word (the module's rule): settled, unsettled, not judged (one seed), all tied
        (one group) or nothing to order (fewer than two ranked variants)."""
        if len(self.order) < 2:
            return NOTHING_TO_ORDER
        if self.n_seeds < 2:
            return NOT_JUDGED
        if len(self.groups()) < 2:
            return ALL_TIED
        return UNSETTLED if self.group_swaps() else SETTLED

    @property
    def settled(self) -> bool:
        """Whether nothing between the groups the interval test forms was still moving: the word is settled, all
        tied or nothing to order (no order between groups to move). False when unsettled, and with one seed (not
        judged: no interval test, so no groups to judge); `word` tells those two apart."""
        return self.word in (SETTLED, ALL_TIED, NOTHING_TO_ORDER)

    def groups(self) -> list[list[str]]:
        """The ranking's groups, best first: variants sharing a rank range (their order is not resolved)."""
        ranges = self.rank_range or tied_ranks(self.order, self.pair_resolved)
        out: dict[tuple[int, int], list[str]] = {}
        for v in self.order:
            out.setdefault(ranges[v], []).append(v)
        return list(out.values())

    def group_swaps(self) -> list[tuple[str, str, list[float]]]:
        """(a, b, checkpoints) for each pair in different groups, a's group ahead at the end, where b's mean eval
        loss was below a's at those checkpoints (a variant without a mean there drops out)."""
        groups = self.groups()
        swaps = []
        for i, j in itertools.combinations(range(len(groups)), 2):
            for a, b in itertools.product(groups[i], groups[j]):
                at = [f for f, m in sorted(self.checkpoint_means.items())
                      if math.isfinite(m.get(a, math.nan)) and math.isfinite(m.get(b, math.nan)) and m[b] < m[a]]
                if at:
                    swaps.append((a, b, at))
        return swaps

    def range_text(self, variant: str) -> str:
        lo, hi = self.rank_range[variant]
        return str(lo) if lo == hi else f"{lo}-{hi}"

    def resolved(self, a: str, b: str) -> bool:
        return self.pair_resolved.get((a, b), self.pair_resolved.get((b, a), True))

    def line(self, escape: Callable[[Any], str] = md) -> str:
        """One line: the word and why (the groups and whether they kept their order), the taus, and what the
        bootstrap (or, with one seed, the curves) could say. Variant names go through `escape` (the leaderboard
        puts the line in Markdown; a terminal passes untrusted.plain)."""
        if len(self.order) < 2:
            return "rank stability: one ranked variant, nothing to order" if self.order else (
                "rank stability: no ranked variant, nothing to order")
        taus = ", ".join(f"tau({int(f * 100)}%->final) = {fmt_tau(t)}" for f, t in sorted(self.taus.items()))
        adjacent = list(itertools.pairwise(self.order))
        unresolved = sum(not self.resolved(a, b) for a, b in adjacent)
        if self.n_seeds >= 2:
            how = (f"bootstrap over {self.n_seeds} seeds: {len(adjacent) - unresolved} of {len(adjacent)} adjacent "
                   f"pairs resolved (order probability >= {ORDER_PROB_MIN} and 95% CI of the difference excluding 0)")
        else:
            how = (f"one seed, no bootstrap: {len(adjacent) - unresolved} of {len(adjacent)} adjacent pairs keep "
                   "their order at 50%, 75% and 100% of the budget")
        return f"rank stability: {self._verdict_words(escape)}; {taus}; {how}"

    def _verdict_words(self, escape: Callable[[Any], str]) -> str:
        """The line's first part: the word and its cause."""
        word = self.word
        if word == NOT_JUDGED:
            return ("not judged: one seed: ties cannot be judged (no interval test), so neither can the order "
                    "between groups")
        groups = self.groups()
        listed = " | ".join(", ".join(escape(v) for v in g) for g in groups)
        if word == ALL_TIED:
            return (f"all tied: no adjacent pair's order is resolved, so all {len(self.order)} variants tie "
                    f"({listed}): nothing to order between groups")
        checkpoints = " and ".join(f"{int(f * 100)}%" for f in sorted(self.checkpoint_means)) or "no checkpoint"
        head = f"{len(groups)} groups ({listed})"
        inside = "; inside a group the order is not resolved" if any(len(g) > 1 for g in groups) else ""
        if word == SETTLED:
            return f"settled: {head}, kept their order at {checkpoints} of the budget{inside}"
        swaps = self.group_swaps()
        named = ", ".join(f"{escape(b)} ahead of {escape(a)} at "
                          + " and ".join(f"{int(f * 100)}%" for f in at) for a, b, at in swaps[:SWAPS_NAMED])
        more = f" and {len(swaps) - SWAPS_NAMED} more" if len(swaps) > SWAPS_NAMED else ""
        return (f"UNSETTLED: {head}, did not keep their order: {named}{more} of the budget (the order between "
                f"groups was still changing when the budget ended: not a verdict){inside}")


def fmt_tau(tau: float) -> str:
    return "n/a" if math.isnan(tau) else f"{tau:.2f}"


def curve_settled(taus: Mapping[float, float]) -> bool:
    """The older rule on the taus alone (tau(50%) >= TAU_HALF_MIN and tau(75%) >= TAU_THREE_QUARTERS_MIN), kept
    as supporting information: it counts swaps inside tied groups too, so it no longer decides the stability
    word (Stability.word). NaN (fewer than two variants, or a constant ranking) does not unsettle."""
    half, three = taus.get(0.5, math.nan), taus.get(0.75, math.nan)
    # tau is a ratio of pair counts: 8/10 comes out of scipy as 0.7999999999999999, which is the threshold itself.
    return not (half < TAU_HALF_MIN - TAU_ROUNDING or three < TAU_THREE_QUARTERS_MIN - TAU_ROUNDING)


def pair_order_resolved(a: Mapping[int, float], b: Mapping[int, float], a_curves: Mapping[float, Mapping[int, float]],
                        b_curves: Mapping[float, Mapping[int, float]], key: str) -> tuple[bool, str]:
    """Whether the order of two sets of per-seed final losses is resolved, and why (see the module's rule).
    `*_curves` map a checkpoint fraction to that side's per-seed loss there (for the one-seed rule and the flip
    check)."""
    ma, mb = sum(a.values()) / len(a), sum(b.values()) / len(b)
    if min(len(a), len(b)) >= 2:
        _, pairs = bootstrap_orders({"a": dict(a), "b": dict(b)}, key)
        p = next(iter(pairs.values()), math.nan)
        return seeds_resolve(p, dict(a), dict(b))
    final = (ma > mb) - (ma < mb)
    for fraction in CHECKPOINTS:
        ca, cb = a_curves.get(fraction, {}), b_curves.get(fraction, {})
        if not ca or not cb:
            continue
        ha, hb = sum(ca.values()) / len(ca), sum(cb.values()) / len(cb)
        at = (ha > hb) - (ha < hb)
        if at != 0 and final != 0 and at != final:
            return False, f"one seed, and the order at {int(fraction * 100)}% of the budget was the other way"
    return True, "one seed: the same order at 50%, 75% and 100% of the budget"


def seeds_resolve(p: float, a: Mapping[int, float], b: Mapping[int, float]) -> tuple[bool, str]:
    """The >= 2-seed rule for a pair: bootstrap order probability `p` >= ORDER_PROB_MIN and a 95% interval of
    the difference that excludes zero."""
    _, low, high, method = difference_interval(a, b)
    excludes = low > 0 or high < 0
    ok = not math.isnan(p) and p >= ORDER_PROB_MIN and excludes
    return ok, (f"bootstrap order probability {p:.2f}, difference 95% CI [{low:+.3f}, {high:+.3f}] ({method})")


def stability(records: Sequence[Mapping[str, Any]], key: str, ranked: Iterable[str] | None = None) -> Stability:
    """The stability of the ranking of `records` by final mean eval loss (only variants in `ranked` when given:
    the leaderboard leaves diverged and failed variants unranked)."""
    final = seed_losses(records)
    if ranked is not None:
        keep = set(ranked)
        final = {v: s for v, s in final.items() if v in keep}
    point = means(final)
    ordered = order(point)
    checkpoints = {f: {v: s for v, s in seed_losses(records, f).items() if v in final} for f in CHECKPOINTS}
    taus = {f: tau_between(means(c), point) for f, c in checkpoints.items()}
    n_seeds = min((len(s) for s in final.values()), default=0)
    st = Stability(ordered, taus, n_seeds, checkpoint_means={f: means(c) for f, c in checkpoints.items()})
    if n_seeds >= 2:
        st.rank_prob, st.pair_prob = bootstrap_orders(final, key)
    for a, b in itertools.pairwise(ordered):
        if n_seeds >= 2:
            st.pair_resolved[(a, b)], _ = seeds_resolve(st.pair_prob.get((a, b), math.nan), final[a], final[b])
        else:
            ok, _ = pair_order_resolved(final[a], final[b], {f: c.get(a, {}) for f, c in checkpoints.items()},
                                        {f: c.get(b, {}) for f, c in checkpoints.items()}, f"{key}/{a}/{b}")
            st.pair_resolved[(a, b)] = ok
    st.rank_range = tied_ranks(ordered, st.pair_resolved)
    if n_seeds >= 2:
        st.rank_range_prob = bootstrap_rank_ranges(final, key, st.rank_range)
    return st


def tied_ranks(ordered: Sequence[str], resolved: Mapping[tuple[str, str], bool]) -> dict[str, tuple[int, int]]:
    """Adjacent variants whose order is not resolved share a rank range: runs of such pairs form one group."""
    ranges: dict[str, tuple[int, int]] = {}
    start = 0
    for i in range(len(ordered)):
        last = i == len(ordered) - 1 or resolved.get((ordered[i], ordered[i + 1]), True)
        if last:
            for k in range(start, i + 1):
                ranges[ordered[k]] = (start + 1, i + 1)
            start = i + 1
    return ranges


# ---------------------------------------------------------------------------------------------------------------
# The unigram plateau

def plateau_level(record: Mapping[str, Any]) -> float:
    """The loss above which a flat curve counts as the unigram plateau: the suite's [eval] plateau_loss, else
    PLATEAU_LEVEL_FRACTION * ln(vocab)."""
    level = (record.get("config", {}).get("eval") or {}).get("plateau_loss")
    return float(level) if level is not None else PLATEAU_LEVEL_FRACTION * math.log(record["data"]["vocab_size"])


def plateau_steps_of(points: Sequence[tuple[float, float]], level: float) -> int | None:
    """How many steps at the end of the run the eval loss stayed flat (improved by less than PLATEAU_TOLERANCE
    from the plateau's first evaluation to any later one) while ending above `level`; None when that span is
    shorter than PLATEAU_WINDOW of the run's steps (or the run ended below the level)."""
    if len(points) < 2 or points[-1][0] <= 0 or not points[-1][1] > level:
        return None
    end = points[-1][0]
    for i in range(1, len(points)):  # the first evaluation is at initialisation, never on the plateau
        step, loss = points[i]
        if end - step < PLATEAU_WINDOW * end - 1e-9:
            break
        if loss - min(p[1] for p in points[i:]) < PLATEAU_TOLERANCE:
            return int(end - step)
    return None


def plateau_steps(record: Mapping[str, Any]) -> int | None:
    """summary.plateau_steps when the record has it, else computed from its curve alike (older records)."""
    if "plateau_steps" in record["summary"]:
        return record["summary"]["plateau_steps"]
    if record["status"] != "ok":
        return None
    return plateau_steps_of(curve_points(record), plateau_level(record))


def plateau_escape_step(points: Sequence[tuple[float, float]], level: float) -> float | None:
    """The step at which the eval loss first fell below the plateau `level`, linear between the two evaluations
    around it (as the to-target metrics are); None when it never did. A late escape is what makes one seed of a
    shaped-attention run trail its siblings by a whole plateau's length."""
    for (s0, l0), (s1, l1) in itertools.pairwise(points):
        if l1 < level <= l0:
            return s0 + (l0 - level) / (l0 - l1) * (s1 - s0)
        if l0 < level:  # already below at the first point (never at initialisation in practice)
            return s0
    return None


def plateau_escape(record: Mapping[str, Any]) -> float | None:
    """summary.plateau_escape_step when the record has it, else computed from its curve alike (older records)."""
    if "plateau_escape_step" in record["summary"]:
        return record["summary"]["plateau_escape_step"]
    return plateau_escape_step(curve_points(record), plateau_level(record))


# ---------------------------------------------------------------------------------------------------------------
# Power: how many seeds a paired difference needs

def seeds_for_halfwidth(sd: float, halfwidth: float, max_seeds: int = 1000) -> int | None:
    """The smallest number of seeds n >= 2 whose paired 95% Student-t interval, t(0.975, n-1) * sd / sqrt(n), is
    no wider than +-halfwidth when the per-seed differences have standard deviation `sd`; None past max_seeds."""
    if not (math.isfinite(sd) and sd >= 0 and halfwidth > 0):
        return None
    for n in range(2, max_seeds + 1):
        if t_quantile(n - 1) * sd / math.sqrt(n) <= halfwidth:
            return n
    return None


@dataclass(frozen=True)
class PowerRow:
    """One budget fraction's paired difference `candidate - reference` and the seeds an interval of +-halfwidth
    would need at that spread."""
    fraction: float
    step: float
    n: int
    mean: float
    sd: float
    halfwidth_now: float
    seeds_needed: int | None


def power_rows(records: Sequence[Mapping[str, Any]], reference: str, candidate: str, halfwidth: float,
               fractions: Sequence[float] = (*CHECKPOINTS, 1.0)) -> list[PowerRow]:
    """The paired per-seed differences of eval loss at each budget fraction (over the seeds both variants ran
    well) with their spread and the seeds an interval of +-halfwidth needs at that spread. Reading the rows
    top to bottom shows how the spread shrinks with steps: the steps side of the power calculation."""
    rows = []
    for f in fractions:
        losses = seed_losses(records, f)
        ref, cand = losses.get(reference, {}), losses.get(candidate, {})
        seeds = sorted(set(ref) & set(cand))
        if len(seeds) < 2:
            continue
        diffs = [cand[s] - ref[s] for s in seeds]
        mean, sd = mean_sd(diffs)
        steps = [curve_points(r)[-1][0] * f for r in records if r["variant"] == reference and r["status"] == "ok"]
        halfwidth_now = t_quantile(len(seeds) - 1) * sd / math.sqrt(len(seeds))
        rows.append(PowerRow(f, max(steps), len(seeds), mean, sd, halfwidth_now, seeds_for_halfwidth(sd, halfwidth)))
    return rows
