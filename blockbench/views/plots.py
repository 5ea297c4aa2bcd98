"""The leaderboard's plots: Figure objects without pyplot, so no global backend or state is touched."""

from __future__ import annotations

import io
import math
import textwrap
from typing import Any, NamedTuple

import pandas as pd
from matplotlib.figure import Figure

from blockbench.untrusted import mpl
from blockbench.views import plotstyle


def curves_frame(records: list[dict[str, Any]]):
    """Eval points of every run, averaged over seeds per (variant, step)."""
    rows = [{"variant": r["variant"], "seed": r["seed"], "diverged": r["status"] != "ok", "step": p["step"],
             "flops": p["flops"], "train_seconds": p["train_seconds"], "eval_loss": p["eval_loss"]}
            for r in records for p in r["curve"] if p["eval_loss"] is not None]
    frame = pd.DataFrame(rows, columns=["variant", "seed", "diverged", "step", "flops", "train_seconds",
                                        "eval_loss"])
    return (frame.groupby(["variant", "step"], sort=True)
            .agg(flops=("flops", "mean"), train_seconds=("train_seconds", "mean"), eval_loss=("eval_loss", "mean"),
                 diverged=("diverged", "any"), n=("seed", "count"), loss_min=("eval_loss", "min"),
                 loss_max=("eval_loss", "max"))
            .reset_index())



def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    # No Software/date stamp, so identical plots give identical bytes.
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def new_figure(title: str):
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return fig, ax


TAIL_FRACTION = 0.5  # the right panel shows the last half of each variant's training, where the verdict is
SECONDS_PLOT_NOTE = ("Caveat: seconds come from runs made one after another on a shared machine, so they carry its "
                     "drift and do not compare across variants; the interleaved probe's speedup is the speed to "
                     "trust.")
GPU_SECONDS_PLOT_NOTE = ("Caveat: seconds come from runs made one after another on a GPU, where clock boost, "
                         "temperature and host load still drift between runs, so they do not compare across variants; "
                         "the interleaved probe's speedup is the speed to trust.")


def seconds_plot_note(records: list[dict[str, Any]]) -> str:
    """The seconds plots' caveat, in the words of the device the runs trained on (what drifts differs)."""
    return GPU_SECONDS_PLOT_NOTE if all(r["env"]["device"] == "cuda" for r in records) else SECONDS_PLOT_NOTE


def axis_scale(largest: float) -> tuple[float, str]:
    """(divisor, label suffix) that puts large values in units of 10^(3k) named in the axis label, instead of
    matplotlib's multiplier in the axis corner, which readers miss."""
    if not largest or largest < 1e4 or not math.isfinite(largest):
        return 1.0, ""
    power = int(math.floor(math.log10(largest) / 3)) * 3
    return 10.0 ** power, rf" ($\times 10^{{{power}}}$)"


def _points(xs, ys) -> list[tuple[float, float]]:
    return [(float(a), float(b)) for a, b in zip(xs, ys)]


def plot_curves(curves, order: list[str], x: str, xlabel: str, title: str, target: float | None,
                off_scale: frozenset[str] = frozenset(), note: str = "") -> bytes:
    """Left: whole curves (means over seeds). Right: the last half of each variant's own training on its own
    y-scale, so that the differences the ranking rests on are visible, with a band from the lowest to the highest
    seed. The window is per variant because on a seconds or FLOPs axis variants end at different x: one window
    from the longest run would leave the others out. Variants in `off_scale` (every seed on the unigram plateau)
    and diverged ones set neither scale: one would squash the others flat. Curves that hide one another are named
    in the legend (plotstyle.coincide). The legend sits outside both panels so that it hides no curve; `note` goes
    under the figure."""
    fig = Figure(figsize=(13.5, 5.0), layout="constrained")
    ax, tail = fig.subplots(1, 2, width_ratios=[1, 1])
    fig.suptitle(title)
    x_end = float(curves[x].max()) if not curves.empty else 0.0
    scale, unit = axis_scale(x_end)
    x_end /= scale
    series, lows, highs, starts = _curve_series(curves, order, x, scale, off_scale)
    tail_start = min(starts) if starts else TAIL_FRACTION * x_end
    tail_end = x_end * 1.01 if x_end > 0 else 1.0
    finite = [v for v in curves["eval_loss"] if math.isfinite(v)]
    y_span = max(finite) - min(finite) if finite else 0.0
    pad = 0.05 * max(max(highs) - min(lows), 1e-3) if lows else 0.0
    y_low, y_high = (min(lows) - pad, max(highs) + pad) if lows else (0.0, y_span)
    # The spans the panels show, for the rule that names curves hidden under others.
    notes = plotstyle.coincide_notes([s.variant for s in series], [
        ("the whole run", {s.variant: _points(s.xs, s.whole["eval_loss"]) for s in series}, x_end, y_span),
        ("the last half", {s.variant: _points(s.tail_xs, s.tail["eval_loss"]) for s in series},
         tail_end - tail_start, y_high - y_low)])
    _draw_curves(ax, tail, series, notes)
    if target is not None:
        for a in (ax, tail):
            a.axhline(target, color="grey", linestyle=":", linewidth=1, label=f"target {target}" if a is ax else None)
    tail_title = "each variant's last half (own scale; band: lowest to highest seed)"
    if lows:
        tail.set_ylim(y_low, y_high)
        shown = [v for v in order if v in off_scale and not curves[curves["variant"] == v].empty]
        if shown:  # in the title, where it can cover no curve
            tail_title += f"\noff scale (unigram plateau): {mpl(', '.join(shown))}"
    tail.set_xlim(tail_start, tail_end)
    for a in (ax, tail):
        a.grid(True, alpha=0.3)
        a.set_xlabel(xlabel + unit)
    ax.set_ylabel("eval loss (nats/token), mean over seeds")
    ax.set_title("whole run", fontsize="medium")
    tail.set_title(tail_title, fontsize="medium")
    fig.legend(loc="outside right upper", fontsize="small", title="variant (rank order)")
    if note:
        fig.supxlabel(note, fontsize="small", color="dimgrey")
    return png_bytes(fig)


class _Curve(NamedTuple):
    """One variant's curve: the whole run and its tail (from the last evaluation before the tail's cut)."""
    variant: str
    whole: Any  # frame of curves_frame's rows
    xs: Any  # its x, scaled
    tail: Any
    tail_xs: Any
    diverged: bool


def _curve_series(curves, order: list[str], x: str, scale: float, off_scale: frozenset[str]
                  ) -> tuple[list[_Curve], list[float], list[float], list[float]]:
    """Each variant's curve in `order`, and the lowest and highest seed's loss and the cut of every tail that sets
    the right panel's scale (neither diverged nor off scale)."""
    series = []
    lows, highs, starts = [], [], []
    for variant in order:
        g = curves[curves["variant"] == variant]
        if g.empty:
            continue
        diverged = bool(g["diverged"].any())
        xs = g[x] / scale
        start = TAIL_FRACTION * float(xs.max())
        # The tail starts at the last evaluation before the cut, so the window's left edge has a line into it.
        before = xs[xs <= start]
        keep = xs >= (before.max() if not before.empty else start)
        series.append(_Curve(variant, g, xs, g[keep], xs[keep], diverged))
        inside = g[keep][xs[keep] >= start]
        if not diverged and not inside.empty and variant not in off_scale:
            lows.append(float(inside["loss_min"].min()))
            highs.append(float(inside["loss_max"].max()))
            starts.append(start)
    return series, lows, highs, starts


def _draw_curves(ax, tail, series: list[_Curve], notes: dict[str, str]) -> None:
    """Each curve on both panels, in its variant's style, labelled in the legend with its notes."""
    names = [s.variant for s in series]
    for variant, g, xs, t, tx, diverged in series:
        style = plotstyle.variant_style(variant, names)
        line = "--" if diverged else "-"
        words = [w for w in ("diverged" if diverged else "", notes.get(variant, "")) if w]
        # A long note wraps, so that the legend does not take the panels' width. Names come from the records:
        # escaped for mathtext (a `$...$` in one is shown, not parsed).
        label = "\n".join(textwrap.wrap(mpl(f"{variant} ({'; '.join(words)})"), 34)) if words else mpl(variant)
        ax.plot(xs, g["eval_loss"], markersize=4, linestyle=line, label=label, **style)
        tail.plot(tx, t["eval_loss"], markersize=5, linestyle=line, **style)
        if (t["n"] > 1).any():
            tail.fill_between(tx, t["loss_min"], t["loss_max"], color=style["color"], alpha=0.12, linewidth=0)


def plot_bars(table, column: str, xlabel: str, title: str, note: str = "") -> bytes:
    fig, ax = new_figure(title)
    if note:
        fig.set_size_inches(8.5, 4.8)
    rows = table[~table[column].isna()]
    names = list(rows["variant"])[::-1]  # first-ranked at the top
    values = [float(v) for v in rows[column]][::-1]
    scale, unit = axis_scale(max(values, default=0.0))
    # Each bar in its variant's colour, as in the curves, so a variant is found by colour on every plot.
    ax.barh(range(len(names)), [v / scale for v in values],
            color=[plotstyle.variant_style(n, names)["color"] for n in names])
    # Labelled by position, not as categories: the names are record text, shown mathtext-escaped.
    ax.set_yticks(range(len(names)), [mpl(n) for n in names])
    for i, v in enumerate(values):
        ax.annotate(f"{v:,.0f}", (v / scale, i), xytext=(3, 0), textcoords="offset points", va="center",
                    fontsize="small")
    ax.set_xlabel(xlabel + unit)
    ax.margins(x=0.15)
    if note:
        fig.supxlabel(note, fontsize="small", color="dimgrey", wrap=True)
    return png_bytes(fig)
