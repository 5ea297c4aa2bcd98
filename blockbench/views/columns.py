"""The leaderboard's columns, declared once: `COLUMNS` drives leaderboard.csv and the Markdown and HTML tables.

Each `Column` says what it reads from a run record (`runs`: the per-run numbers, one row per run), how its values
are computed from a variant's runs (`compute`; the rank and the stability columns are filled once the table is
ranked), its names in the CSV (`names`, in the list's order) and, where the pages show it, its header and cell in
the ranking table (`ranking`) and in the time-to-target table (`target`), in the list's order. A workload adds its
own columns, one per metric it declares (Workload.metrics, `workloads.Metric`), after the column each names. What a
column means (`meaning`, and the landing page's `brief`) is on it too: the leaderboard's and the landing page's
reading guides and docs/leaderboards.md's table render from it, their thresholds from the statistics' constants.
`blockbench run`'s closing table (one row per run, progress.py) shows each column's `terminal` cell, in the list's
order.
Adding a column is one entry here (and, for a new record field, records/schema.py); adding a workload metric is one
declaration in its workload.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from blockbench import stats
from blockbench.stats import bootstrap_speedup, t_interval
from blockbench.suite import SpeedConfig
from blockbench.untrusted import csv as csv_text
from blockbench.untrusted import md
from blockbench.views import page
from blockbench.workloads import Metric, workload_class, workload_of

TO_TARGET = ("steps", "tokens", "flops", "seconds")
MEMORY_KINDS = {"cpu_peak_rss_growth": "CPU RSS growth", "cuda_max_allocated": "CUDA max allocated"}


# ---------------------------------------------------------------------------------------------------------------
# Cell formatting

def _is_missing(value: Any) -> bool:
    try:

        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def joined(values: Any) -> str:
    """The distinct present values, sorted, comma-separated: what all of a variant's runs (or records) hold."""
    return ", ".join(sorted({str(v) for v in values if not _is_missing(v)}))


def fmt(value: Any, spec: str, inf: str = "miss") -> str:
    """`inf` names an infinite value: a missed target for to-target numbers, "inf" for ratios."""
    if _is_missing(value):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return inf if value > 0 else "-" + inf
    return format(value, spec)


def seeds_phrase(what: str, k: int, n: int) -> str:
    """The one status vocabulary of every view: `what` alone for a single seed, else `what on k/n seeds`."""
    return what if n == 1 else f"{what} on {k}/{n} seeds"


def loss_cell(row: Any) -> str:
    """The eval loss cell: mean ± half-width, or why the variant is not ranked (failed, diverged, plateau)."""
    n = row["n_seeds"]
    if row["status"] == "failed":
        return seeds_phrase("failed", row["n_failed"], n)
    if row["status"] != "ok":
        return seeds_phrase("diverged", row["n_diverged"], n)
    plateau = f" ({seeds_phrase('plateau', row['n_plateau'], n)})" if row["n_plateau"] else ""
    if _is_missing(row["eval_loss_ci_low"]):
        return fmt(row["eval_loss_mean"], ".4f") + plateau
    return (f"{row['eval_loss_mean']:.4f} ± {(row['eval_loss_ci_high'] - row['eval_loss_ci_low']) / 2:.4f}"
            + plateau)


def _bound(value: float) -> str:
    # A zero bound is a resample whose median candidate run missed; an infinite one, the baseline's.
    return "miss" if value == 0 else "∞" if math.isinf(value) else f"{value:.3f}"


def _ci_cell(point: Any, low: Any, high: Any) -> str:
    """A time-to-target speedup: `miss` where the variant's median run missed the target (an interval whose lower
    end is `miss` is censored there, never a zero) and `baseline missed` where the baseline's did, so no finite
    ratio exists."""
    if _is_missing(point):
        return "-"
    if math.isinf(point):
        return "baseline missed"
    if point == 0:
        return "miss"
    if _is_missing(low):
        return f"{point:.3f}"
    return f"{point:.3f} [{_bound(low)}, {_bound(high)}]"


def _speed_numbers(v: Runs) -> tuple[float, ...]:
    """The speed column's numbers: median ratio and IQR as before, and (issue 36) the interval of the median ratio
    and the A/A floor of the probe, from the section of the variant's median-ratio run. Ratios that do not compare
    (several device types or modes) are left out with their spread; an untrusted probe's ratio and interval are
    left out, its spread kept, so the cell can say why. The baseline has no interval: its ratio to itself is 1 by
    construction (the A/A control is what measures the probe's noise)."""
    shown = v.speed_comparable and v.speed_trusted
    section = stats.variant_speed([{"variant": v.variant, "speed": s} for s in v.g["speed"] if isinstance(s, dict)],
                                  v.variant) if shown else None
    floor = stats.speed_floor(section) or (math.nan, math.nan)

    def end(key: str) -> float:
        if section is None or section.get(key) is None or v.variant == v.baseline:
            return math.nan
        return float(section[key])

    return (v.g["speedup_vs_baseline"].astype(float).median() if shown else math.nan,
            v.g["speedup_iqr"].astype(float).median() if v.speed_comparable else math.nan,
            end("ci_low"), end("ci_high"), *floor)


def _speed_words(v: Runs) -> str:
    """The speed cell (stats.speed_verdict, the words of every view)."""
    if not v.speed_comparable:
        return "-"
    sections = [s for s in v.g["speed"] if isinstance(s, dict)]
    if not v.speed_trusted:
        if not any(s.get("speedup_vs_baseline") is not None for s in sections):
            return "-"
        if v.variant == v.baseline:
            return "baseline (untrusted probe)"
        iqr = v.g["speedup_iqr"].astype(float).median()
        return stats.untrusted_cell(None if _is_missing(iqr) else float(iqr))
    section = stats.variant_speed([{"variant": v.variant, "speed": s} for s in sections], v.variant)
    return stats.speed_verdict(section, baseline=v.variant == v.baseline).text


def _mib(value: Any) -> str:
    return "-" if _is_missing(value) else f"{value / 2**20:.1f}"


def _run_text(value: Any, spec: str) -> str:
    """A record's number in the run table: "-" where the record has none."""
    return "-" if value is None else format(value, spec)


def _first(values) -> Any:
    """The value every run of a variant shares (params, FLOPs); NaN when no run of it finished."""
    present = [v for v in values if not _is_missing(v)]
    return int(present[0]) if present else math.nan


# ---------------------------------------------------------------------------------------------------------------
# What a column is

@dataclass(frozen=True)
class RunField:
    """A per-run number a column reads from a run record; a failed run (no record) has `if_failed`."""

    name: str
    of: Callable[[dict[str, Any]], Any]
    if_failed: Any = None


@dataclass
class Runs:
    """One variant's runs (its rows of the runs frame) and what several columns read of them."""

    variant: str
    g: Any  # the runs frame's rows of this variant
    baseline: str | None
    has_target: bool
    speed_comparable: bool
    speed_trusted: bool
    base_seconds: list[float]

    def __post_init__(self) -> None:
        g = self.g
        self.n = len(g)
        self.failed = int((g["status"] == "failed").sum())
        self.diverged = int((g["status"] == "diverged").sum())
        self.losses = ([float(v) for v in g["eval_loss"] if not _is_missing(v)]
                       if self.diverged + self.failed == 0 else [])
        self.misses = int(np.isinf(g["seconds_to_target"]).sum())


@dataclass(frozen=True)
class View:
    """What a page cell may depend on besides its row: the whole ranked table, the baseline and the target."""

    table: Any
    baseline: str | None
    has_target: bool

    @property
    def multi(self) -> bool:
        return int(self.table["n_seeds"].max()) >= 2


@dataclass(frozen=True)
class Cell:
    """A column of a page table (Markdown and HTML alike): its header (or a function of the view giving it), its
    cell text for a row, whether the view shows it, and whether it is words (left-aligned) or a number."""

    header: str | Callable[[View], str]
    text_of: Callable[[Any, View], str]
    shown: Callable[[View], bool] = lambda view: True
    words: bool = False

    def title(self, view: View) -> str:
        return self.header(view) if callable(self.header) else self.header


@dataclass(frozen=True)
class RunContext:
    """What a run table cell may depend on besides its run record: whether the speed probe that measured the run
    (its rung's, in a ladder: each rung has its own) is untrusted."""

    untrusted: Callable[[dict[str, Any]], bool] = lambda record: False


@dataclass(frozen=True)
class RunCell:
    """A column of `blockbench run`'s closing table, one row per run: its header, its cell for a run record, the
    cell of the A/A control's row (`control`, from the probe's section; None: "-"), and whether it is words
    (left-aligned) or a number. A failed run has "-" in every such cell."""

    header: str
    text_of: Callable[[dict[str, Any], RunContext], str]
    control: Callable[[dict[str, Any]], str] | None = None
    words: bool = False


@dataclass(frozen=True)
class Column:
    """One leaderboard column: table names (`names`, written to the CSV unless `in_csv` is false), the per-run
    fields it reads, how a variant's values are computed (one value per name; a tuple for several; None: filled
    when the table is ranked, `stability` from the ranking's Stability), and its page cells."""

    names: tuple[str, ...] = ()
    runs: tuple[RunField, ...] = ()
    compute: Callable[[Runs], Any] | None = None
    stability: Callable[[str, stats.Stability], Any] | None = None
    ranking: Cell | None = None
    target: Cell | None = None
    in_csv: bool = True
    optional: bool = False  # left out (CSV and pages) when blank on every row
    integer: bool = False  # an integer count that stays one (nullable) when some variant has none
    after: str = ""  # a workload's column: the CSV column it follows
    # What the column means, as the leaderboard's reading guide ("How to read this") and docs/leaderboards.md say
    # it: `label` (Markdown; by default its ranking header in bold), ": ", then `meaning`. `brief` is the landing
    # page's shorter entry after the same label. Numbers in them are the statistics' constants, never literals.
    meaning: str = ""
    label: str = ""
    brief: str = ""
    terminal: RunCell | None = None  # its cell in `blockbench run`'s closing table (progress.py)

    def lead(self) -> str:
        if self.label:
            return self.label
        header = self.ranking.header if self.ranking is not None else None
        return f"**{header if isinstance(header, str) else self.names[0]}**"

    def explained(self, brief: bool = False) -> str:
        """The guide's entry for this column (the landing page's with `brief`); empty when it has none."""
        text = self.brief if brief else self.meaning
        return f"{self.lead()}: {text}" if text else ""


def _to_target_run(k: str) -> RunField:
    # A diverged run is a miss even if it passed the target before it blew up (AlgoPerf's rule).
    return RunField(f"{k}_to_target", lambda r: (math.inf if r["to_target"][k] is None or r["status"] != "ok"
                                                 else float(r["to_target"][k])), math.inf)


def _to_target(k: str, header: str, spec: str) -> Column:
    return Column((f"{k}_to_target",), (_to_target_run(k),),
                  lambda v: float(v.g[f"{k}_to_target"].median()) if v.has_target else math.nan,
                  target=Cell(header, lambda r, view: fmt(r[f"{k}_to_target"], spec)))


def _target_status(v: Runs) -> str:
    if not v.has_target:
        return "no target"
    if v.failed:
        return seeds_phrase("failed", v.failed, v.n)
    if v.diverged:
        return seeds_phrase("diverged", v.diverged, v.n)
    return "ok" if v.misses == 0 else seeds_phrase("target missed", v.misses, v.n)


def _ttt(v: Runs) -> tuple[float, float, float]:
    """The time-to-target speedup against the baseline with its bootstrap interval; the baseline's own is 1 by
    definition (NaN when it missed), with no interval: resampling it against itself measures nothing."""
    if v.has_target and v.variant == v.baseline:
        return (math.nan if math.isinf(float(v.g["seconds_to_target"].median())) else 1.0, math.nan, math.nan)
    if v.has_target and v.base_seconds:
        return bootstrap_speedup(v.base_seconds, list(v.g["seconds_to_target"]), f"{v.baseline}/{v.variant}")
    return (math.nan,) * 3


def _eval_loss(v: Runs) -> tuple[float, float, float, float]:
    low, high = t_interval(v.losses)
    return (float(np.mean(v.losses)) if v.losses else math.nan,
            float(np.std(v.losses, ddof=1)) if len(v.losses) > 1 else math.nan, low, high)


def _ttt_cell(r, view: View) -> str:
    """A variant's time-to-target speedup against the baseline; the baseline's own row says `baseline` (an
    interval of the baseline against itself would be a resampling artefact, not a measurement)."""
    base = view.table[view.table["variant"] == view.baseline]
    base_missed = view.has_target and not base.empty and math.isinf(float(base["seconds_to_target"].iloc[0]))
    if r["variant"] == view.baseline:
        return "baseline (missed)" if base_missed else "baseline"
    if base_missed and math.isinf(r["seconds_to_target"]) and _is_missing(r["ttt_speedup"]):
        return "both missed"
    return _ci_cell(r["ttt_speedup"], r["ttt_speedup_ci_low"], r["ttt_speedup_ci_high"])


def _rank_probability_cell(r, view: View) -> str:
    """`0.93 (in 1-3)`: the probability that the variant's rank lies in its listed range; `0.97 (at 4)` for a
    rank of its own."""
    if _is_missing(r["rank_range_probability"]) or not r["rank_range"]:
        return "-"
    where = f"in {r['rank_range']}" if "-" in r["rank_range"] else f"at {r['rank_range']}"
    return f"{r['rank_range_probability']:.2f} ({where})"


def _memory_header(view: View) -> str:
    kinds = sorted({k for k in view.table["peak_memory_kind"] if k})
    # An unknown kind is a record's own text: escaped like every such text.
    return "peak mem MiB" + (f" ({MEMORY_KINDS.get(kinds[0], md(kinds[0]))})" if len(kinds) == 1 else "")


def _static(key: str) -> RunField:
    return RunField(key, lambda r: r["static"][key])


def _summary(key: str, name: str = "") -> RunField:
    return RunField(name or key, lambda r: r["summary"][key])


def _commit(r: dict[str, Any]) -> str:
    git = r["git"]
    return (git["commit"] or "unknown")[:12] + ("-dirty" if git["dirty"] else "")


def _median(name: str) -> Callable[[Runs], Any]:
    return lambda v: v.g[name].astype(float).median()


def _varies(name: str) -> Callable[[View], bool]:
    """Shown only where it differs between rows (else the setup table has it)."""
    return lambda view: view.table[name].nunique() > 1


def _integer(name: str, header: str = "") -> Column:
    return Column((name,), (_static(name),), lambda v: _first(v.g[name]), integer=True,
                  ranking=Cell(header, lambda r, view: fmt(r[name], ",")) if header else None)


def _speed_run(r: dict[str, Any], context: RunContext) -> str:
    """A run's speed cell: the one rule of every view (stats.speed_verdict), a ratio from an untrusted probe no
    number at all."""
    return stats.speed_verdict(r["speed"], baseline=r["variant"] == r["speed"].get("baseline"),
                               untrusted=context.untrusted(r)).text


_TTT_HEADER = ("time-to-target speedup{} (wall-clock; see caveat)")  # seconds-based: the header says so


# ---------------------------------------------------------------------------------------------------------------
# What the columns mean: the guides' words, each threshold read from the constant the statistic applies

def percent(fraction: float) -> str:
    """A fraction as the guides write it: 0.5 -> `50%`, 0.025 -> `2.5%`."""
    return f"{100 * fraction:g}%"


_PART = {1 / 2: "half", 1 / 3: "third"}  # a constant changed to a fraction without a word here fails at import
_HALF, _THREE_QUARTERS = stats.CHECKPOINTS
_SPEED = SpeedConfig()  # the suite's defaults for the probe

_EVAL_LOSS = (
    "the final evaluation loss at the budget in nats/token (bits per byte in the CSV), the mean over seeds ± the "
    "half-width of a 95% Student-t interval; a single seed has no interval. Lower is better and the rank is by this "
    "mean. A variant with a diverged or failed seed (`diverged on k/n seeds`, `failed on k/n seeds`) is listed but "
    "not ranked. `plateau on k/n seeds`: k of n seeds ended stuck on the unigram plateau (eval loss improved by less "
    f"than {stats.PLATEAU_TOLERANCE:g} nats over at least the last {_PART[stats.PLATEAU_WINDOW]} of the run while "
    f"above the suite's plateau level, by default {stats.PLATEAU_LEVEL_FRACTION:g} ln(vocab)): such a run has not "
    "learnt from context and is not converged.")
_EVAL_LOSS_BRIEF = (
    "nats per token on the suite's fixed evaluation windows after the budget (bits per byte in the CSV); mean and "
    "95% t-interval over seeds. Lower is better. With one seed there is no interval: differences of a few "
    "hundredths are within seed-to-seed noise.")
_STABILITY = (
    "whether the order between the ranking's groups had stopped moving. The groups are the rank ranges (`1-3`): "
    "adjacent variants whose order is not resolved share one. With >= 2 seeds the ranking is **settled** when no "
    "pair of variants in different groups was the other way round (by mean eval loss) at "
    f"{' or at '.join(percent(f) for f in stats.CHECKPOINTS)} of the budget, and **unsettled** when one was: that pair "
    f"crossed in the last {_PART[1 - stats.CHECKPOINTS[0]]} of the budget, so the order between groups is a "
    "snapshot, not a verdict (the line names the pairs). Swaps inside a group do not unsettle: their order is not "
    "resolved at the end either. **all tied**: one group, nothing to order between groups. **not judged**: one "
    "seed, so there is no interval test and ties cannot be judged. Kendall's tau-b between the ranking at "
    f"{percent(_HALF)} ({percent(_THREE_QUARTERS)}) of the budget and the final one is given as supporting "
    "information; it counts swaps inside tied groups too.")
_RANK = (
    "adjacent variants whose order is not resolved share one. With >= 2 seeds a pair is resolved when a bootstrap "
    "over seeds (resampled jointly, as seeds share data order; enumerated exactly up to "
    f"{stats.exact_bootstrap_seeds()} seeds) puts it in order with probability >= {stats.ORDER_PROB_MIN:g} and the "
    "95% interval of the difference (paired by seed) excludes zero: with 2-3 seeds the bootstrap alone gives "
    "probability 1 to any sign that holds on every seed. With one seed a pair is resolved when it is in the same "
    f"order at {', '.join(percent(f) for f in stats.CHECKPOINTS)} and 100% of the budget.")
_RANK_PROBABILITY = (
    "the bootstrap's probability that the variant lands inside its listed rank range: `0.93 (in 1-3)` anywhere in "
    "ranks 1-3, `0.97 (at 4)` at rank 4 for a variant with a rank of its own. A range's ends are pairs the "
    f"bootstrap orders with probability >= {stats.ORDER_PROB_MIN:g}, so a value well below that flags a boundary "
    "that barely holds.")
_SPEED_WORDS = (
    "baseline step time / variant step time (> 1 is faster), measured before training by one process that times "
    "all variants round-robin, beside an A/A control (the baseline built again, from another initialisation draw) "
    "whose ratio is 1 by construction: how far the control's 95% interval reaches from 1, either way, is the "
    "probe's floor (`A/A floor ±x%`, the baseline's row and the setup table). The probe runs at least the suite's "
    "`[speed] rounds`, then more, until every ratio's 95% interval of its median (order statistics of the "
    "per-round ratios, distribution-free) is within the suite's target half-width "
    f"(±{percent(_SPEED.target_half_width)} by default), or until its time cap ({percent(_SPEED.max_share)} of the "
    "suite's estimated training time by default); the setup table says how many rounds ran and why it stopped. "
    "`1.120x [1.090, 1.150]`: the interval lies outside the floor, a measured difference; `no measurable "
    "difference (within ±x%)`: it does not, and x is how far from 1 either interval reaches; `untrusted (IQR x)`: "
    "the probe was disturbed, no ratio. Records made before the control existed say `no A/A control in this probe` "
    "beside their median and IQR, and are no verdict. Machine drift cancels in this ratio: compare these, not "
    "tokens/s.")
_SPEED_WORDS_BRIEF = (
    "the training-step speed of a variant relative to the baseline variant, measured round-robin in one process "
    "before training, so drift of the shared machine cancels. A probe beside an A/A control (the baseline built "
    "twice) says `1.120x [1.090, 1.150]` when the 95% interval of the median lies outside the control's floor and "
    "`no measurable difference (within ±x%)` when it does not; the directories published before that control say "
    "`no A/A control in this probe` beside the median and the IQR over rounds. This is the speed number to trust "
    "here. Absolute tokens/s of runs made minutes apart are shown but are not comparable on a shared machine.")
_TTT = (
    "the baseline's median training seconds to the target / the variant's, with a percentile-bootstrap 95% "
    f"interval over seeds ({stats.BOOTSTRAP_RESAMPLES:,} seeded resamples; two or more seeds only). A miss counts "
    "as infinite: `miss` when the variant's median run missed the target (`[miss, x]`: censored, in over "
    f"{percent(stats.INTERVAL_TAIL)} of resamples the median run missed), `baseline missed` when the baseline's "
    "did (no finite ratio: the variant is faster by an unknown factor), `both missed` when neither reached it. "
    "Seconds-based: see the caveat.")
_TARGET_STATUS = (
    "`ok`; `target missed on k/n seeds` (never reached within the budget; the median is `miss` once half the seeds "
    "or more missed); `diverged on k/n seeds` (a diverged run counts as a miss even if it passed the target "
    "before); `failed on k/n seeds` (no record: see failures/).")
_TO_TARGET_BRIEF = (
    "steps, tokens, FLOPs and training seconds until the eval loss first reaches the suite's target, interpolated "
    "between evaluations; `miss` when never reached (counted as infinite in medians). The time-to-target speedup "
    "in the ranking is wall-clock, so it carries the machine's drift: see each page's caveat.")
_PEAK_MEMORY = (
    "on CPU the growth of the process's peak resident set over the measured steps (gradients, optimiser state, "
    "activations, and allocator effects; comparable only between CPU runs); on CUDA the allocator's peak (max "
    "allocated), weights included.")
_PEAK_MEMORY_BRIEF = (
    "CPU peak resident-set growth over a run (includes one-time library allocations); comparable only between CPU "
    "runs of the same suite.")
_TOKENS_PER_SECOND = (
    "median over seeds of each run's training tokens / training seconds (evaluation excluded); a seconds-based "
    "figure.")
_MFU = "model FLOPs per second / the device's peak dense FLOP/s; shown only where a peak is known for the device."

# The list. CSV order is the order of `names` here; each page table's order is the order of its cells here.
COLUMNS: list[Column] = [
    Column(("rank",)),  # filled when ranked: 1, 2, ... by mean eval loss among the variants that ended ok
    Column(("rank_range",), stability=lambda v, st: st.range_text(v) if v in st.rank_range else "",
           ranking=Cell("rank", lambda r, view: r["rank_range"] or "-"), label="**rank** ranges (`2-5`)",
           meaning=_RANK),
    # The bootstrap's probability that the variant lands inside its listed rank range (for `1-3`, anywhere in 1-3;
    # for a rank of its own, at it): the cell names the range it is the probability of.
    Column(("rank_range_probability",), stability=lambda v, st: st.rank_range_prob.get(v, math.nan),
           ranking=Cell("P(rank)", _rank_probability_cell, lambda view: view.multi),
           label="**P(rank)** (>= 2 seeds only)", meaning=_RANK_PROBABILITY),
    Column(("ranking",), stability=lambda v, st: st.word, label="**rank stability** (the line under the ranking)",
           meaning=_STABILITY),
    Column(("tau_50_final",), stability=lambda v, st: st.taus.get(_HALF, math.nan)),
    Column(("tau_75_final",), stability=lambda v, st: st.taus.get(_THREE_QUARTERS, math.nan)),
    # Variant, device and commit come from the records: their page cells are escaped (untrusted.md).
    Column(("variant",), compute=lambda v: v.variant,
           ranking=Cell("variant", lambda r, view: md(r["variant"]), words=True),
           target=Cell("variant", lambda r, view: md(r["variant"]), words=True)),
    Column(("status",), compute=lambda v: "failed" if v.failed else "diverged" if v.diverged else "ok"),
    Column(("n_seeds",), compute=lambda v: v.n),
    Column(("n_diverged",), compute=lambda v: v.diverged),
    Column(("n_failed",), compute=lambda v: v.failed, in_csv=False),
    Column(("seeds",), compute=lambda v: " ".join(str(s) for s in sorted(v.g["seed"]))),
    Column(("eval_loss_mean", "eval_loss_std", "eval_loss_ci_low", "eval_loss_ci_high"),
           (_summary("final_eval_loss", "eval_loss"),), _eval_loss,
           ranking=Cell(lambda view: "eval loss, mean ± 95% CI" if view.multi
                        else "eval loss (one seed: no interval)", lambda r, view: loss_cell(r)),
           label="**eval loss**", meaning=_EVAL_LOSS, brief=_EVAL_LOSS_BRIEF,
           terminal=RunCell("eval loss", lambda r, c: _run_text(r["summary"]["final_eval_loss"], ".4f"))),
    # (a workload's columns go here, e.g. the decoder's bits per byte: columns_for places each after eval_loss_mean)
    Column(ranking=Cell("seeds", lambda r, view: str(r["n_seeds"]))),
    Column(("speedup_vs_baseline", "speedup_iqr"),
           (RunField("speedup_vs_baseline", lambda r: r["speed"].get("speedup_vs_baseline")),
            RunField("speedup_iqr", lambda r: r["speed"].get("speedup_iqr")),
            RunField("speed", lambda r: r["speed"])),
           lambda v: _speed_numbers(v)[:2]),
    # The interval of the median ratio and the probe's A/A floor: blank (and so left out) for records made before
    # the probe measured them (issue 36).
    Column(("speedup_ci_low", "speedup_ci_high", "speed_floor_low", "speed_floor_high"),
           compute=lambda v: _speed_numbers(v)[2:], optional=True),
    Column(("speed_words",), compute=_speed_words, in_csv=False,
           ranking=Cell("speedup, interleaved probe", lambda r, view: r["speed_words"]), meaning=_SPEED_WORDS,
           brief=_SPEED_WORDS_BRIEF,
           terminal=RunCell("speedup (interleaved probe)", _speed_run,
                            control=lambda probe: stats.floor_words(probe).split(" (")[0])),
    Column(("ttt_speedup", "ttt_speedup_ci_low", "ttt_speedup_ci_high"), compute=_ttt,
           ranking=Cell(lambda view: _TTT_HEADER.format(" [95% CI]" if view.multi else ""), _ttt_cell,
                        lambda view: view.has_target), label="**time-to-target speedup**", meaning=_TTT),
    Column(("to_target_status",), compute=_target_status,
           target=Cell("status", lambda r, view: r["to_target_status"], words=True),
           label="**time to target** status", meaning=_TARGET_STATUS),
    Column(("to_target_misses",), compute=lambda v: v.misses if v.has_target else math.nan),
    replace(_to_target("steps", "steps (median)", ".1f"), label="**to target**", brief=_TO_TARGET_BRIEF,
            terminal=RunCell("steps to target", lambda r, c: _run_text(r["to_target"]["steps"], ".1f"))),
    _to_target("tokens", "tokens (median)", ",.0f"),
    _to_target("flops", "FLOPs (median)", ".4g"),
    _to_target("seconds", "train seconds (median)", ".2f"),
    replace(_integer("params_total", "params"),
            terminal=RunCell("params", lambda r, c: f"{r['static']['params_total']:,}")),
    _integer("params_block_matrices"),
    _integer("flops_fwd_per_token"),
    _integer("flops_train_per_token", "train FLOPs/token"),
    Column(("peak_memory_bytes", "peak_memory_kind"),
           (_summary("peak_memory_bytes"), _summary("peak_memory_kind")),
           lambda v: (v.g["peak_memory_bytes"].astype(float).median(), joined(v.g["peak_memory_kind"])),
           ranking=Cell(_memory_header, lambda r, view: _mib(r["peak_memory_bytes"])), label="**peak mem**",
           meaning=_PEAK_MEMORY, brief=_PEAK_MEMORY_BRIEF,
           terminal=RunCell("peak mem MiB", lambda r, c: _mib(r["summary"]["peak_memory_bytes"]))),
    Column(("tokens_per_second",), (_summary("tokens_per_second"),),
           lambda v: float(v.g["tokens_per_second"].median()),
           ranking=Cell("tokens/s", lambda r, view: fmt(r["tokens_per_second"], ",.0f")),
           meaning=_TOKENS_PER_SECOND,
           terminal=RunCell("tok/s", lambda r, c: f"{r['summary']['tokens_per_second']:,.0f}")),
    Column(("mfu",), (_summary("mfu"),), _median("mfu"),
           ranking=Cell("MFU", lambda r, view: "-" if _is_missing(r["mfu"]) else f"{100 * r['mfu']:.1f}%",
                        lambda view: view.table["mfu"].notna().any()), meaning=_MFU),
    Column(("train_seconds",), (_summary("train_seconds"),), lambda v: float(v.g["train_seconds"].median())),
    Column(("device",), (RunField("device", lambda r: r["env"]["device_name"]),), lambda v: joined(v.g["device"]),
           ranking=Cell("device", lambda r, view: md(r["device"]), _varies("device"), words=True)),
    Column(("commit",), (RunField("commit", _commit),), lambda v: joined(v.g["commit"]),
           ranking=Cell("commit", lambda r, view: md(r["commit"]), _varies("commit"), words=True)),
    Column(("n_plateau",), (RunField("plateau", lambda r: stats.plateau_steps(r) is not None, False),),
           lambda v: int(v.g["plateau"].sum())),
]


def column_named(name: str, columns: Sequence[Column] = COLUMNS) -> Column:
    return next(c for c in columns if name in c.names)


def reading_guide(order: Sequence[str | tuple[str, ...]], columns: Sequence[Column] = COLUMNS,
                  brief: bool = False) -> tuple[str, ...]:
    """A reading guide's bullets, in a page's order: each entry of `order` is the page's own note (a str, as is)
    or the CSV names of columns whose entries share one bullet; any other column with an entry follows, in the
    list's order, so a new column's meaning reaches the guides without editing them."""
    named = {n for item in order if not isinstance(item, str) for n in item}
    bullets = [item if isinstance(item, str) else " ".join(column_named(n, columns).explained(brief) for n in item)
               for item in order]
    return (*bullets, *(c.explained(brief) for c in columns
                        if c.explained(brief) and not named.intersection(c.names)))


COLUMNS_DOC = Path(__file__).resolve().parents[2] / "docs" / "leaderboards.md"
DOC_BEGIN = "<!-- the columns: columns_table() writes this table; tests/views/test_guides.py checks it -->"
DOC_END = "<!-- end of the columns -->"


def columns_table(columns: Sequence[Column] = COLUMNS) -> str:
    """The docs' table of what each column means (Markdown cannot run code: a test checks the copy in
    docs/leaderboards.md against this, and `python3 -m blockbench.views.columns` rewrites it)."""
    rows = ["| column | in leaderboard.csv | what it means |", "|---|---|---|"]
    for c in columns:
        if c.meaning:
            names = ", ".join(f"`{n}`" for n in c.names) if c.in_csv else "- (pages only)"
            rows.append(f"| {c.lead()} | {names} | {c.meaning.replace('|', '&#124;')} |")
    return "\n".join(rows) + "\n"


def with_columns_table(doc: str) -> str:
    """`doc` (docs/leaderboards.md's text) with the table between its markers as columns_table renders it."""
    head, _, rest = doc.partition(DOC_BEGIN + "\n")
    _, _, tail = rest.partition(DOC_END)
    return f"{head}{DOC_BEGIN}\n{columns_table()}{DOC_END}{tail}"


# How a metric's per-seed values become one number per variant (workloads.vocabulary.AGGREGATES names them).
_AGGREGATES: dict[str, Callable[[Any], float]] = {"mean": lambda values: float(values.astype(float).mean())}


def metric_column(metric: Metric) -> Column:
    """A workload metric's column: its aggregate over a variant's seeds, for a variant with final losses."""
    run = f"run:{metric.column}"
    aggregate_of = _AGGREGATES[metric.aggregate]

    def value(v: Runs) -> float:
        values = v.g[run]
        return aggregate_of(values) if v.losses and values.notna().any() else math.nan

    return Column((metric.column,), (RunField(run, lambda r: r["summary"].get(metric.key)),), value,
                  ranking=Cell(metric.header, lambda r, view: fmt(r[metric.column], metric.spec))
                  if metric.header else None,
                  optional=not metric.always_listed, after=metric.after, meaning=metric.meaning,
                  terminal=RunCell(metric.label, lambda r, c: _run_text(r["summary"].get(metric.key),
                                                                        metric.label_spec)))


def columns_for(records: Sequence[dict[str, Any]]) -> list[Column]:
    """COLUMNS with the records' workload's own columns (one per metric it declares), each after the column it
    names."""
    return with_metrics(workload_class(workload_of(records[0])).metrics)


def with_metrics(metrics: Sequence[Metric]) -> list[Column]:
    """COLUMNS with a workload's own columns, one per metric it declares, each after the column it names."""
    extras = [metric_column(m) for m in metrics]
    out: list[Column] = []
    for column in COLUMNS:
        out.append(column)
        out += [e for e in extras if e.after in column.names]
    return out + [e for e in extras if e not in out]  # one whose anchor is not in the list: at the end


# ---------------------------------------------------------------------------------------------------------------
# Records -> runs -> one row per variant

def runs_frame(records: list[dict[str, Any]], failures: list[dict[str, Any]] | None = None,
               columns: Sequence[Column] | None = None):
    """One row per record, and per failed run (status "failed", no numbers): the flat per-run numbers the
    columns are computed from."""
    fields = [f for c in (columns if columns is not None else COLUMNS) for f in c.runs]
    rows = [{"variant": f["variant"], "seed": f["seed"], "status": "failed", **{x.name: x.if_failed for x in fields}}
            for f in failures or []]
    rows += [{"variant": r["variant"], "seed": r["seed"], "status": r["status"], **{x.name: x.of(r) for x in fields}}
             for r in records]
    frame = pd.DataFrame(rows)
    return frame.sort_values(["variant", "seed"], kind="stable").reset_index(drop=True)


def csv_columns(table, columns: Sequence[Column]) -> list[str]:
    """The CSV's columns, in the list's order; an optional one only where the table has it."""
    return [n for c in columns if c.in_csv for n in c.names if not c.optional or n in table.columns]


def _values(column: Column, runs: Runs) -> dict[str, Any]:
    values = column.compute(runs)  # type: ignore[misc] - only columns with a compute
    return dict(zip(column.names, values if len(column.names) > 1 else (values,), strict=True))


def aggregate(runs, baseline: str | None, has_target: bool, speed_comparable: bool = True,
              speed_trusted: bool = True, columns: Sequence[Column] | None = None):
    """One row per variant (the columns' computed values), ranked by mean eval loss at budget; diverged variants
    are unranked. Speed ratios that do not compare (several device types or execution modes) are left out with
    their spread; an untrusted probe's ratios are left out and their spread kept, so the cell can say why
    (`untrusted (IQR x)`)."""
    columns = list(columns if columns is not None else COLUMNS)
    base_seconds = list(runs.loc[runs["variant"] == baseline, "seconds_to_target"]) if baseline else []
    rows = []
    for variant, g in runs.groupby("variant", sort=True):
        v = Runs(str(variant), g, baseline, has_target, speed_comparable, speed_trusted, base_seconds)
        row: dict[str, Any] = {}
        for column in columns:
            if column.compute is not None:
                row.update(_values(column, v))
        rows.append(row)
    table = pd.DataFrame(rows)
    ranked = table["status"] == "ok"
    order = table[ranked].sort_values(["eval_loss_mean", "variant"], kind="stable").index
    table["rank"] = pd.Series(range(1, len(order) + 1), index=order, dtype="Int64")
    table["_order"] = table["rank"].astype("Float64").fillna(math.inf)
    table = table.sort_values(["_order", "variant"], kind="stable").drop(columns="_order").reset_index(drop=True)
    for column in columns:
        for name in column.names:
            if column.optional and name in table.columns and not table[name].notna().any():
                table = table.drop(columns=name)
            elif column.integer and table[name].isna().any():  # a variant none of whose runs finished
                table[name] = table[name].astype("Int64")
    return table[[c for c in csv_columns(table, columns) if c in table.columns] + _hidden(columns)]


def _hidden(columns: Sequence[Column]) -> list[str]:
    """The table's columns that are not in the CSV (the pages read them)."""
    return [n for c in columns if not c.in_csv for n in c.names]


def add_stability(table, st: stats.Stability, columns: Sequence[Column] | None = None):
    """The stability columns: shared rank ranges, each variant's bootstrap probability of landing in its rank
    range, and the ranking's stability word and taus (the same on every row, so the CSV carries the stability
    line's verdict)."""
    columns = list(columns if columns is not None else COLUMNS)
    table = table.copy()
    for column in columns:
        if column.stability is not None:
            for name in column.names:
                table[name] = [column.stability(v, st) for v in table["variant"]]
    return table[[*csv_columns(table, columns), *_hidden(columns)]]


# ---------------------------------------------------------------------------------------------------------------
# Rendering: the CSV, and the pages' tables

def render_csv(table, columns: Sequence[Column]) -> str:
    """The CSV: every number unrounded; every text cell (variant, device, commit... from the records) made inert
    for spreadsheet programs (untrusted.csv). Only str cells are touched: a negative number stays a number."""
    buf = io.StringIO()
    frame = table[csv_columns(table, columns)].copy()
    for name in frame.columns:
        # Text columns only (object or pandas' str dtype); a numeric column is never touched.
        if not pd.api.types.is_numeric_dtype(frame[name]) and not pd.api.types.is_bool_dtype(frame[name]):
            frame[name] = frame[name].map(lambda v: csv_text(v) if isinstance(v, str) else v)
    frame.to_csv(buf, index=False, float_format="%.8g", lineterminator="\n")
    return buf.getvalue()


def _page_table(view: View, cells: list[Cell]) -> page.Table:
    header = [c.title(view) for c in cells]
    rows = [[c.text_of(row, view) for c in cells] for _, row in view.table.iterrows()]
    return page.table(header, rows, frozenset(h for h, c in zip(header, cells, strict=True) if c.words))


def ranking_cells(view: View, columns: Sequence[Column]) -> list[Cell]:
    """The ranking table's columns; one that would be blank on every row (P(rank) with one seed, MFU without a
    known peak), repeat one value on every row (device, commit: the setup table has them) or that the table
    lacks (an optional column) is left out."""
    return [c.ranking for c in columns if c.ranking is not None and c.ranking.shown(view)
            and (not c.optional or all(n in view.table.columns for n in c.names))]


def ranking_table(view: View, columns: Sequence[Column]) -> tuple[page.Table, list[str]]:
    """The ranking table, and its headers (what the page says about columns it left out reads them)."""
    cells = ranking_cells(view, columns)
    return _page_table(view, cells), [c.title(view) for c in cells]


def target_table(view: View, columns: Sequence[Column]) -> page.Table:
    return _page_table(view, [c.target for c in columns if c.target is not None and c.target.shown(view)])


if __name__ == "__main__":  # rewrite docs/leaderboards.md's table of the columns after changing a meaning
    COLUMNS_DOC.write_text(with_columns_table(COLUMNS_DOC.read_text(encoding="utf-8")), encoding="utf-8")
