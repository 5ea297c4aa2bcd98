"""Who wins, by how much and how sure: the sentence every leaderboard, report and the landing page open with.

Everything here is read from the ranking the leaderboard already made (selection.ranked_table: its rank ranges are
the groups the interval test separates) and from the records' final eval losses: a variant's difference to the
baseline is paired by seed (stats.difference_interval), the same test the claims report uses. The sentence names
a group of tied variants as tied, never as an order, and a one-seed ranking as one whose ties cannot be judged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from blockbench import stats
from blockbench.untrusted import md
from blockbench.views.columns import seeds_phrase


@dataclass(frozen=True)
class Delta:
    """A variant's final eval loss minus the baseline's, in nats, with its 95% interval (NaN with one seed)."""

    mean: float
    low: float = math.nan
    high: float = math.nan

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def text(self) -> str:
        point = f"{self.mean:+.3f}"
        return f"{point} [{self.low:+.3f}, {self.high:+.3f}]" if self.has_interval else point


def deltas(records: list[dict[str, Any]], baseline: str | None) -> dict[str, Delta]:
    """Each variant's difference to the baseline at the budget (the baseline itself has none)."""
    losses = stats.seed_losses(records)
    if baseline is None or baseline not in losses:
        return {}
    out = {}
    for variant, by_seed in losses.items():
        if variant == baseline:
            continue
        mean, low, high, _ = stats.difference_interval(losses[baseline], by_seed)
        out[variant] = Delta(mean, low, high)
    return out


@dataclass
class Result:
    """What one ranked result says, in the parts the sentence and the cross-suite views need."""

    baseline: str | None
    groups: list[list[str]]                 # ranked variants, best group first; a group's order is not resolved
    deltas: dict[str, Delta]
    n_seeds: int
    setup: str                              # "8 seeds x 400 steps, L=8 d=128, Intel Xeon (2 threads)"
    settled: bool
    unranked: list[str] = field(default_factory=list)  # "x (diverged on 1/3 seeds)"
    not_converged: dict[str, str] = field(default_factory=dict)  # variant -> "plateau on 2/3 seeds"


def setup_text(records: list[dict[str, Any]], n_seeds: int) -> str:
    """The scale of a result in a few words: seeds, budget, shape and hardware."""
    first = records[0]
    budget = first["config"]["budget"]
    amount = " + ".join(f"{v:,} {k}" if k != "steps" else f"{v:,} steps" for k, v in sorted(budget.items()))
    model = first["config"]["model"]
    shape = f"L={model.get('n_layers')} d={model.get('d_model')}"
    devices = sorted({(r["env"]["device_name"], r["env"]["device"], r["env"].get("threads")) for r in records})
    where = "; ".join(f"{name}, {threads} CPU threads" if kind == "cpu" else name for name, kind, threads in devices)
    seeds = "1 seed" if n_seeds == 1 else f"{n_seeds} seeds"
    return md(f"{seeds} x {amount}, {shape}, {where}")


def summarise(records: list[dict[str, Any]], table: Any, st: stats.Stability) -> Result:
    """A result's groups, differences and scale, from the leaderboard's own ranking table and stability."""
    unranked = [f"{row['variant']} ({_status_words(row)})" for _, row in table[table["status"] != "ok"].iterrows()]
    stuck = {row["variant"]: seeds_phrase("plateau", int(row["n_plateau"]), int(row["n_seeds"]))
             for _, row in table[(table["status"] == "ok") & (table["n_plateau"] > 0)].iterrows()}
    baseline = records[0]["config"].get("baseline")
    return Result(baseline, st.groups(), deltas(records, baseline), st.n_seeds, setup_text(records, st.n_seeds),
                  st.settled, unranked, stuck)


def _status_words(row: Any) -> str:
    if row["status"] == "failed":
        return seeds_phrase("failed", int(row["n_failed"]), int(row["n_seeds"]))
    return seeds_phrase("diverged", int(row["n_diverged"]), int(row["n_seeds"]))


def _named(result: Result, variant: str) -> str:
    """`sas_p +0.012 [-0.004, +0.028]`, `pre_ln (baseline)`, and a plateau said where it happened."""
    if variant == result.baseline:
        text = f"{md(variant)} (baseline)"
    elif variant in result.deltas:
        text = f"{md(variant)} {result.deltas[variant].text()}"
    else:
        text = md(variant)
    if variant in result.not_converged:
        text += f" (not converged: {result.not_converged[variant]})"
    return text


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _group_words(result: Result, group: list[str], first: bool) -> str:
    names = _and([_named(result, v) for v in group])
    if len(group) == 1:
        return f"{names} {'leads' if first else ''}".rstrip()
    # "Tie" would overstate it: the group is a chain of adjacent pairs whose order is not resolved, and its ends
    # may differ (each variant's own interval against the baseline says by how much).
    return f"{names} share {'first' if first else 'the next'} place (order not resolved)"


def sentence(result: Result) -> str:
    """The headline: the groups best first with each variant's difference to the baseline, then the scale."""
    if not result.groups:
        return "Nothing ranked: " + (_and(result.unranked) if result.unranked else "no run ended well") + "."
    unit = (f"eval-loss difference to {md(result.baseline)} in nats" if result.baseline and result.deltas
            else "eval loss")
    if result.n_seeds < 2:
        order = ", ".join(_named(result, v) for group in result.groups for v in group)
        body = f"One seed, so no interval and ties cannot be judged; in order: {order}"
        unit += ", one seed"
    else:
        body = "; then ".join(_group_words(result, g, i == 0) for i, g in enumerate(result.groups))
        unit += ", 95% CI"
        if not result.settled:
            body += ", but the order between these groups was still changing when the budget ended"
    if result.unranked:
        body += "; not ranked: " + _and(result.unranked)
    return f"{body} — {unit}; {result.setup}."
