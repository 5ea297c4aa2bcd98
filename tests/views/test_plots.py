"""Issue 26: one colour per variant in every plot, curves hidden under others named, and every variant in the
last-half panel. Colours are read from what the plotting code passes to matplotlib, never from pixels."""

from pathlib import Path

import pandas as pd
import pytest
from matplotlib.axes import Axes

from blockbench.blocks.zoo import PRESETS
from blockbench.suite import builtin_suites, load_suite
from blockbench.views import plots, plotstyle, report, selection

RESULTS = Path(__file__).resolve().parents[2] / "results"


def spy_plots(monkeypatch) -> list[dict]:
    """Every Axes.plot / errorbar / barh call: its label, colour(s) and x values."""
    calls: list[dict] = []
    for name in ("plot", "errorbar", "barh"):
        original = getattr(Axes, name)

        def spy(self, *args, _original=original, _name=name, **kwargs):
            calls.append({"kind": _name, "ax": self, "label": kwargs.get("label"), "color": kwargs.get("color"),
                          "x": list(args[0]) if args and hasattr(args[0], "__len__") else [],
                          "y": list(args[1]) if len(args) > 1 and hasattr(args[1], "__len__") else []})
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Axes, name, spy)
    return calls


def curve_colours(calls: list[dict]) -> dict[str, str]:
    """variant -> colour of its whole-run curve (the labelled line; its label may carry a note)."""
    return {c["label"].split()[0]: c["color"] for c in calls if c["kind"] == "plot" and c["label"]}


def published_curves(directory: Path):
    records = [r for _, r in selection.load_entries(directory)]
    ranked = sorted({r["variant"] for r in records})
    return plots.curves_frame(records), ranked


# ---------------------------------------------------------------------------------------------------------------
# one colour per variant

def test_presets_take_the_palette_in_registry_order_and_users_come_after():
    for i, variant in enumerate(PRESETS):
        assert plotstyle.variant_style(variant.name)["color"] == plotstyle.PALETTE[i]
    styles = {n: plotstyle.variant_style(n, ["zeta", "pre_ln", "alpha"]) for n in ("alpha", "zeta")}
    assert styles["alpha"]["color"] == plotstyle.PALETTE[len(PRESETS)]  # sorted: alpha first, after every preset
    assert styles["zeta"]["color"] == plotstyle.PALETTE[len(PRESETS) + 1]
    preset_colours = {plotstyle.variant_style(v.name)["color"] for v in PRESETS}
    assert len(preset_colours) == len(PRESETS) and not preset_colours & {s["color"] for s in styles.values()}
    assert "tab:gray" not in plotstyle.PALETTE and "tab:grey" not in plotstyle.PALETTE  # grey is the target line's


@pytest.mark.parametrize("a,b", [(a, b) for a in builtin_suites() for b in builtin_suites() if a < b])
def test_a_variant_has_the_same_style_in_every_pair_of_suites(a, b):
    suite_a, suite_b = list(load_suite(a).variants), list(load_suite(b).variants)
    for name in set(suite_a) & set(suite_b):
        assert plotstyle.variant_style(name, suite_a) == plotstyle.variant_style(name, suite_b)
    for names in (suite_a, suite_b):  # and different variants of one suite never share a style
        assert len({tuple(plotstyle.variant_style(n, names).items()) for n in names}) == len(names)


def test_a_variant_has_the_same_colour_in_two_suites_plots(monkeypatch):
    """paper-cpu/2 ranks pre_ln first, smoke/1 ranks it elsewhere; both pages draw it in one colour, and so do the
    bar plots. The report's claims figure is the exception: it colours a claim by its verdict, never by variant."""
    calls = spy_plots(monkeypatch)
    colours = []
    for directory in (RESULTS / "paper-cpu" / "2", RESULTS / "smoke" / "1"):
        curves, order = published_curves(directory)
        order = order[::-1] if directory.parent.name == "smoke" else order  # another rank order, same colours
        calls.clear()
        plots.plot_curves(curves, order, "step", "steps", "t", None)
        colours.append(curve_colours(calls))
    shared = set(colours[0]) & set(colours[1])
    assert {"pre_ln", "sas", "sas_p"} <= shared
    for name in shared:
        assert colours[0][name] == colours[1][name] == plotstyle.variant_style(name)["color"], name

    calls.clear()
    table = pd.DataFrame({"variant": ["sas_p", "pre_ln"], "params_total": [1.0, 2.0]})
    plots.plot_bars(table, "params_total", "params", "t")
    [bars] = [c for c in calls if c["kind"] == "barh"]
    assert list(bars["color"]) == [colours[0]["pre_ln"], colours[0]["sas_p"]]  # drawn bottom-up

    calls.clear()
    figure = {"speed": {"pre_ln": (1.0, float("nan")), "sas_p": (1.1, 0.02)},
              "speed_verdicts": (report.REPRODUCED, report.NOT_APPLICABLE)}
    report.plot_claims([], figure)
    drawn = {float(c["y"][0]): c["color"] for c in calls if c["kind"] in ("plot", "errorbar") and c["y"]}
    # rows in reverse name order: the claim (sas_p) in its verdict's colour, pre_ln black (context)
    assert drawn == {0.0: report.VERDICT_COLOURS[report.REPRODUCED], 1.0: "black"}


# ---------------------------------------------------------------------------------------------------------------
# coinciding curves

def test_coincide_rule():
    a = [(0.0, 5.0), (10.0, 3.0), (20.0, 2.5)]
    assert plotstyle.coincide(a, list(a), 20.0, 2.5)
    # Within 1% of each span: hidden; beyond it in either axis: visible.
    assert plotstyle.coincide(a, [(x + 0.19, y - 0.024) for x, y in a], 20.0, 2.5)
    assert not plotstyle.coincide(a, [(x, y + 0.03) for x, y in a], 20.0, 2.5)
    assert not plotstyle.coincide(a, [(x + 0.21, y) for x, y in a], 20.0, 2.5)
    assert not plotstyle.coincide(a, a[:2], 20.0, 2.5)  # a shorter curve leaves points uncovered
    assert not plotstyle.coincide([], [], 20.0, 2.5)
    nan = float("nan")
    assert plotstyle.coincide([(0.0, nan)], [(0.0, nan)], 1.0, 1.0)
    assert not plotstyle.coincide([(0.0, nan)], [(0.0, 1.0)], 1.0, 1.0)


def test_coincide_notes_name_the_hidden_series_and_the_panel():
    same = [(0.0, 3.0), (1.0, 2.0)]
    panels = [("the whole run", {"sas": same, "sas_p": same, "pre_ln": [(0.0, 3.0), (1.0, 2.5)]}, 1.0, 1.0),
              ("the last half", {"sas": same, "sas_p": [(0.0, 3.0), (1.0, 2.2)], "pre_ln": same[1:]}, 1.0, 1.0)]
    # sas is drawn before sas_p (rank order), so sas is the one hidden: the note is on sas and names sas_p.
    assert plotstyle.coincide_notes(["sas", "sas_p", "pre_ln"], panels) == {
        "sas": "coincides with sas_p in the whole run"}
    panels[1][1]["sas_p"] = same
    assert plotstyle.coincide_notes(["sas", "sas_p", "pre_ln"], panels) == {"sas": "coincides with sas_p"}


def frame(points: dict[str, list[tuple[float, float]]]):
    """A curves_frame-like table: variant -> [(x, loss)], x in every x column, one seed."""
    rows = [{"variant": v, "step": x, "flops": x, "train_seconds": x, "eval_loss": y, "diverged": False, "n": 1,
             "loss_min": y, "loss_max": y} for v, pts in points.items() for x, y in pts]
    return pd.DataFrame(rows)


def test_a_curve_hidden_under_another_is_named_in_the_legend(monkeypatch):
    calls = spy_plots(monkeypatch)
    curve = [(s, 5.0 - s / 100) for s in range(0, 401, 50)]
    curves = frame({"pre_ln": [(s, y + 0.3) for s, y in curve], "sas": curve,
                    "sas_p": [(s, y + 1e-4) for s, y in curve]})
    plots.plot_curves(curves, ["sas", "sas_p", "pre_ln"], "step", "steps", "t", None)
    labels = [c["label"].replace("\n", " ") for c in calls if c["kind"] == "plot" and c["label"]]
    assert labels == ["sas (coincides with sas_p)", "sas_p", "pre_ln"]


def test_every_variant_is_in_the_last_half_panel(monkeypatch):
    """On a seconds axis variants end at different times; the right panel shows each one's own last half, so the
    one that finished first is not cut off by a window taken from the longest run."""
    calls = spy_plots(monkeypatch)
    curves = frame({"fast": [(t, 5.0 - t / 50) for t in range(0, 81, 10)],
                    "slow": [(t, 5.0 - t / 100) for t in range(0, 201, 20)]})
    plots.plot_curves(curves, ["fast", "slow"], "train_seconds", "seconds", "t", None)
    tails = [c for c in calls if c["kind"] == "plot" and not c["label"]]  # the right panel's lines
    assert len(tails) == 2
    left, right = tails[0]["ax"].get_xlim()
    for tail in tails:  # each variant has its last half (and more than one point) inside the panel
        inside = [x for x in tail["x"] if left <= x <= right]
        assert len(inside) >= 2 and max(tail["x"]) / 2 >= left
    assert left == pytest.approx(40.0)  # the earliest finish's half, not the longest run's (100)
