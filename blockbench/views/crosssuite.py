"""Across suites: each variant's difference to its suite's baseline in every current result, as a table and a
figure on the landing page, and a page per variant (every published result for it, its recipe, its speed on every
device measured).

Suites disagree (Pre-LN is first on one, tied on another, last on a third): this is where a reader sees that at
once. Every number is the one the suite's own leaderboard shows, read through the same functions
(selection.ranked_table, headline.deltas, stats.speed_verdict); nothing is pooled across suites, because their
baselines, budgets and shapes differ.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blockbench.blocks import get_variant
from blockbench.blocks.spec import SpecError
from blockbench.untrusted import md, md_code, mpl
from blockbench.views import headline, page
from blockbench.views.plots import new_figure, png_bytes
from blockbench.views.selection import group_failures, ranked_records, ranked_table

FIGURE = "cross_suite.png"
VARIANTS_DIR = "variants"
# A variant page's file is named after the variant: only names that are safe as a file name get one.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class SuiteResult:
    """One current suite result, as its leaderboard ranks it."""

    key: str                                 # "paper-cpu/2", relative to the results root
    directory: Path
    records: list[dict[str, Any]]
    table: Any
    summary: headline.Result

    @property
    def baseline(self) -> str | None:
        return self.summary.baseline

    def rank_text(self, variant: str) -> str:
        """The variant's rank range as its leaderboard shows it (`1-3`), out of the ranked variants."""
        ranked = self.table[self.table["status"] == "ok"]
        rows = ranked[ranked["variant"] == variant]
        return f"{rows['rank_range'].iloc[0]} of {len(ranked)}" if len(rows) else "not ranked"


def load_result(directory: Path, root: Path) -> SuiteResult:
    kept, _ = ranked_records(directory)
    records = [r for _, r in kept]
    table, st = ranked_table(records, group_failures(directory, kept))
    return SuiteResult(directory.relative_to(root).as_posix(), directory, records, table,
                       headline.summarise(records, table, st))


def delta_cell(result: SuiteResult, variant: str) -> str:
    if variant == result.baseline:
        return "baseline"
    if variant in result.summary.deltas:
        return result.summary.deltas[variant].text()
    return "not ranked" if variant in set(result.table["variant"]) else ""


def variants_of(results: list[SuiteResult]) -> list[str]:
    """Every variant of the results, in the order of the first result that ranks it (flagship first)."""
    seen: dict[str, None] = {}
    for result in results:
        for variant in [*[v for g in result.summary.groups for v in g], *sorted(result.table["variant"])]:
            seen.setdefault(str(variant), None)
    return list(seen)


def gpu_speed_cell(gpu: dict[str, Any] | None, variant: str, mode: str) -> str:
    if not gpu:
        return ""
    ratio = gpu.get("speed", {}).get(mode, {}).get(variant)
    return "" if ratio is None else f"{ratio:.3f}x"


def cross_table(results: list[SuiteResult], gpu: dict[str, Any] | None, link: Any) -> page.Table:
    """Rows: variants; columns: each current result's difference to its baseline (nats, 95% CI), then the GPU
    check's speed against Pre-LN in each of its execution modes."""
    modes = sorted(gpu.get("speed", {})) if gpu else []
    header = ["variant", *[f"{md(r.key)} (vs {md(r.baseline or '-')})" for r in results],
              *[f"{md(gpu.get('card', 'GPU'))} speed vs pre_ln, {md(m)}" for m in modes]]  # type: ignore[union-attr]
    rows = []
    for variant in variants_of(results):
        name = link(variant)
        rows.append([name, *[delta_cell(r, variant) for r in results],
                     *[gpu_speed_cell(gpu, variant, m) for m in modes]])
    return page.table(header, rows, frozenset({"variant"}))


def plot_cross_suite(results: list[SuiteResult]) -> bytes:
    """Each variant's difference to its suite's baseline with its 95% interval, one row per variant, one marker
    per suite: where the suites agree the markers line up."""
    variants = variants_of(results)
    fig, ax = new_figure("eval loss minus the suite's baseline (nats, 95% CI; left of 0 is better)")
    fig.set_size_inches(8, 0.45 * len(variants) + 1.8)
    offsets = {r.key: (i - (len(results) - 1) / 2) * 0.12 for i, r in enumerate(results)}
    markers = "osD^vP*Xh<>p"
    for i, result in enumerate(results):
        ys, xs, lo, hi = [], [], [], []
        for row, variant in enumerate(variants):
            d = result.summary.deltas.get(variant)
            if variant == result.baseline:
                d = headline.Delta(0.0)
            if d is None or not math.isfinite(d.mean):
                continue
            ys.append(row + offsets[result.key])
            xs.append(d.mean)
            lo.append(d.mean - d.low if d.has_interval else 0.0)
            hi.append(d.high - d.mean if d.has_interval else 0.0)
        ax.errorbar(xs, ys, xerr=[lo, hi], fmt=markers[i % len(markers)], capsize=2,
                    label=mpl(f"{result.key} (vs {result.baseline})"))
    ax.axvline(0.0, color="grey", linewidth=0.8)
    ax.set_yticks(range(len(variants)), [mpl(v) for v in variants])
    ax.invert_yaxis()
    ax.legend(fontsize="small", loc="best")
    return png_bytes(fig)


def variant_page_name(variant: str) -> str | None:
    return f"{variant}.html" if SAFE_NAME.match(variant) else None


def recipe_rows(variant: str) -> list[list[str]] | None:
    """The preset's description and block spec (what `blockbench show` prints), or None for a name that is not a
    registered variant here (a user block of someone else's)."""
    try:
        preset = get_variant(variant)
    except SpecError:
        return None
    rows = [["description", md(preset.description)]]
    if preset.spec is not None:
        rows += [[md_code(f.name), md(str(getattr(preset.spec, f.name)))] for f in dataclasses.fields(preset.spec)]
    return rows


def speed_text(result: SuiteResult, variant: str) -> str:
    """The interleaved probe's words for the variant in this result, as its leaderboard says them."""
    rows = result.table[result.table["variant"] == variant]
    return str(rows["speed_words"].iloc[0]) if len(rows) and "speed_words" in rows else "-"


def variant_page(variant: str, results: list[SuiteResult], gpu: dict[str, Any] | None, up: str) -> page.Page:
    """One variant across every published result: where it ranks, its difference to each baseline, its speed on
    each device measured, and its recipe."""
    mine = [r for r in results if variant in set(r.table["variant"])]
    doc = page.Page(f"Variant: {md(variant)}")
    ranks = "; ".join(f"{md(r.key)}: rank {r.rank_text(variant)}" + ("" if variant == r.baseline else
                      f", {delta_cell(r, variant)} nats vs {md(r.baseline or '-')}") for r in mine)
    doc.add(page.Para(f"{md(variant)} in {len(mine)} current published results: {ranks}.", "headline"))
    rows = [[f"[{md(r.key)}]({up}{r.key}/index.html)", r.rank_text(variant), delta_cell(r, variant),
             md(speed_text(r, variant)), r.summary.setup] for r in mine]
    doc.add(page.Heading("Published results", css="ranking"),
            page.table(["result", "rank", "Δ eval loss vs baseline, nats [95% CI]", "speed vs baseline (probe)",
                        "scale"], rows, frozenset({"result", "scale", "speed vs baseline (probe)"})))
    if gpu and any(variant in m for m in gpu.get("speed", {}).values()):
        doc.add(page.Heading("Speed on a GPU"),
                page.table(["GPU check", "mode", "speed vs pre_ln"],
                           [[f"[{md(gpu.get('date', '-'))}]({up}{gpu['key']}/index.html)", md(m),
                             gpu_speed_cell(gpu, variant, m)] for m in sorted(gpu["speed"])
                            if variant in gpu["speed"][m]], frozenset({"GPU check", "mode"})))
    recipe = recipe_rows(variant)
    doc.add(page.Heading("Recipe"))
    if recipe is None:
        doc.add(page.Para(f"{md(variant)} is not a variant registered in this package (a user block): its records "
                          "carry its spec."))
    else:
        doc.add(page.Para("The preset as `blockbench show " + md(variant) + "` prints it: a suite may override "
                          "fields (see each leaderboard's setup)."), page.table(["field", "value"], recipe,
                                                                                frozenset({"field", "value"})))
    doc.add(page.Para(f"[All published results]({up}index.html)."))
    return doc

