"""One colour and marker per variant in every plot of every page, and the rule for curves that hide each other.

A variant's style is keyed by its name, never by its rank or its position in a suite, so that Pre-LN is the same
colour on every leaderboard, report and diagnosis and two pages compare at a glance.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from blockbench.blocks.zoo import PRESETS

# The presets take these colours in their registry order (blocks/zoo.py PRESETS): pre_ln blue, post_ln brown,
# parallel cyan, naive_skipless olive, vskipinit purple, vskipinit_eq4 pink, sas orange, sas_p green,
# sas_p_nonorm red. The order is chosen so that the variants the paper suites run get tab10's most distinct hues.
# Grey is left out: reference lines (the target, ratio 1) are grey. User blocks come after the presets and take
# the darker colours at the end, then the palette repeats (with another marker).
PALETTE = ("tab:blue", "tab:brown", "tab:cyan", "tab:olive", "tab:purple", "tab:pink", "tab:orange", "tab:green",
           "tab:red", "black", "#8c6d31", "#393b79", "#843c39", "#637939", "#7b4173", "#6b6ecf", "#e7969c",
           "#b5cf6b", "#bd9e39", "#3182bd", "#e6550d")
# Colour and marker both differ between variants, so curves that lie on top of each other still show.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")


def _preset_names() -> list[str]:
    return [v.name for v in PRESETS]


def style_index(name: str, names: Iterable[str] = ()) -> int:
    """The variant's place in the palette: a preset's registry position; a user block (a name that is no preset)
    after every preset, in sorted order among the user blocks of `names` (the variants the plot shows)."""
    presets = _preset_names()
    if name in presets:
        return presets.index(name)
    users = sorted({n for n in names if n not in presets} | {name})
    return len(presets) + users.index(name)


def variant_style(name: str, names: Iterable[str] = ()) -> dict[str, Any]:
    """Matplotlib keyword arguments (color, marker) of one variant; `names` are all variants of the plot, which
    only user blocks need (their order among themselves)."""
    i = style_index(name, names)
    return {"color": PALETTE[i % len(PALETTE)], "marker": MARKERS[i % len(MARKERS)]}


# Two curves coincide in a panel when one hides the other: the same number of points, and every pair of
# corresponding points (the i-th of each) closer than COINCIDE_TOL of the panel's x span and of its y span. At the
# sizes the views draw (panels of ~500 x 350 pixels, markers ~6 pixels wide) 1% is less than a marker.
COINCIDE_TOL = 0.01


def coincide(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]], x_span: float, y_span: float,
             tol: float = COINCIDE_TOL) -> bool:
    """Whether curves a and b (lists of (x, y) points as plotted) coincide in a panel whose axes span x_span and
    y_span; a NaN matches only a NaN (a point neither curve draws)."""
    if len(a) != len(b) or not a:
        return False
    for (xa, ya), (xb, yb) in zip(a, b):
        for u, v, span in ((xa, xb, x_span), (ya, yb, y_span)):
            if math.isnan(u) or math.isnan(v):
                if not (math.isnan(u) and math.isnan(v)):
                    return False
            elif abs(u - v) > tol * span:
                return False
    return True


def coincide_notes(order: list[str], panels: list[tuple[str, dict[str, list[tuple[float, float]]], float, float]]
                   ) -> dict[str, str]:
    """Legend notes for series hidden under others. `panels` are (where, {variant: points}, x_span, y_span);
    a series drawn later lies on top, so the note goes on the earlier one and names the later ones, e.g.
    {"sas": "coincides with sas_p"}; "in <where>" is added when it holds in some panels only."""
    notes = {}
    for i, name in enumerate(order):
        hits: dict[str, list[str]] = {}
        for where, curves, x_span, y_span in panels:
            for other in order[i + 1:]:
                if name in curves and other in curves and coincide(curves[name], curves[other], x_span, y_span):
                    hits.setdefault(other, []).append(where)
        if not hits:
            continue
        every = [o for o, w in hits.items() if len(w) == len(panels)]
        some = [f"{o} in {' and '.join(w)}" for o, w in hits.items() if len(w) < len(panels)]
        notes[name] = "coincides with " + ", ".join(every + some)
    return notes
