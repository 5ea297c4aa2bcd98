"""Leaderboards: run records -> pandas -> leaderboard.md, leaderboard.csv, PNG plots and index.html.

A leaderboard is a pure view over the records in `<dir>/records/`: regenerating it from the same records gives
byte-identical files (no timestamps, seeded bootstrap, fixed float formats, PNGs without a software/date stamp).
Which records rank together is selection.py's; the columns, columns.py's (one list drives the CSV and both
pages); the plots, plots.py's. This module builds the page (leaderboard.md and index.html are two renderings of
it) and writes the files.

`blockbench leaderboard SUITE` reads `results/<suite>/<current version>/` below the *current directory* (run it
from the repository root); `blockbench leaderboard DIR` reads `DIR/records/` (or DIR itself when it has no
records/ subdirectory) and writes into DIR unless `--out` says otherwise. `blockbench leaderboard --index results/`
writes the landing page over all of them instead (index.py).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from blockbench import stats
from blockbench.records import comparable_overrides, execution_modes
from blockbench.safeio import UnsafeFileError, check_writable_target, read_guarded
from blockbench.untrusted import md, md_code, plain
from blockbench.views import columns as C
from blockbench.views import headline, page
from blockbench.views.columns import joined
from blockbench.views.plots import curves_frame, plot_bars, plot_curves, seconds_plot_note
from blockbench.views.selection import (
    LeaderboardError,
    group_failures,
    ranked_records,
    ranked_table,
    resolve_target,
    speed_not_comparable,
)

TEXT_COLUMNS = frozenset({"item", "value"})  # the setup table's words
# Every leaderboard's files; runs on a GPU add SECONDS_FIGURES (on a shared CPU seconds do not compare: no plot).
OUTPUT_FILES = ("leaderboard.md", "leaderboard.csv", "loss_vs_steps.png", "loss_vs_flops.png", "params.png",
                "index.html")


def budget_text(record: dict[str, Any]) -> str:
    """The budget of a record's suite as the pages write it: `steps=400`."""
    return ", ".join(f"{k}={v}" for k, v in sorted(record["config"]["budget"].items()))


def header_items(kept: list[dict[str, Any]], left_out: int, failed: int = 0) -> list[tuple[str, str]]:
    """The setup table's (item, value) rows, as page Markdown: every value read from the records is escaped
    (untrusted.md), the hashes are code spans."""
    first = kept[0]
    config = first["config"]
    budget = budget_text(first)
    overrides = comparable_overrides(first)
    items = [
        ("suite", f"{first['suite']['name']} v{first['suite']['version']}"),
        ("suite hash", first["suite"]["hash"]),
        ("blockbench version", joined(r["blockbench_version"] for r in kept)),
        ("baseline variant", config.get("baseline", "-")),
        ("target", target_text(kept)),
        ("budget", budget),
        ("seeds", joined(r["seed"] for r in kept)),
        ("corpus", f"{first['data']['corpus']}, {first['data']['tokenizer']} tokenizer, "
                   f"vocab {first['data']['vocab_size']}"),
        ("corpus fingerprint", first["data"]["fingerprint"]),
        ("model", ", ".join(f"{k}={v}" for k, v in config["model"].items())),
        *position_items(kept),
        *override_items(overrides),
        ("device", joined(f"{r['env']['device_name']} ({r['env']['device']}, {r['env']['threads']} threads)"
                         for r in kept)),
        *setup_facts(kept),
        ("torch", joined(r["env"]["torch"] for r in kept)),
        ("commit", joined((r["git"]["commit"] or "unknown") + (" (dirty)" if r["git"]["dirty"] else "")
                         for r in kept)),
        ("records", f"{len(kept)} ranked, {left_out} left out" + (f", {failed} failed runs (failures/)"
                                                                      if failed else "")),
    ] + ([("speed probe", facts)]
         if (facts := stats.probe_facts(kept)) is not None and speed_not_comparable(kept) is None else []) + (
        [("speed", f"speed ratios (interleaved probe) not shown: {note}")]
        if (note := speed_not_comparable(kept) or stats.probe_disturbed_note(kept)) is not None else [])
    # Every value above is plain text built from record fields: escaped as a whole. The hashes go in as code.
    return [(k, md_code(v) if k in CODE_ITEMS else md(v)) for k, v in items]


def override_items(overrides: dict[str, Any]) -> list[tuple[str, str]]:
    """One setup row per override, its dotted key beside its value (never a JSON blob)."""
    if not overrides:
        return [("overrides", "none")]
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in sorted(value.items()):
                walk(f"{prefix}.{key}", inner)
        else:
            rows.append((f"override {prefix}", value if isinstance(value, str) else json.dumps(value)))

    for key, value in sorted(overrides.items()):
        walk(key, value)
    return rows


def position_items(kept: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """How each variant knows positions, when not every variant learns an absolute embedding (records made
    before positions belonged to the variant all did, and their pages stay as they were)."""
    schemes: dict[str, str] = {}
    for r in kept:
        spec = r.get("block_spec")
        scheme = "user block" if spec is None else spec.get("positions", "learned")
        if scheme == "rope":
            scheme = f"RoPE (theta {spec.get('rope_theta', 10000):g})"
        schemes[r["variant"]] = scheme
    if set(schemes.values()) <= {"learned"}:
        return []
    return [("positions", "; ".join(f"{v}: {scheme}" for v, scheme in sorted(schemes.items())))]


CODE_ITEMS = frozenset({"suite hash", "corpus fingerprint"})  # setup items shown as code



PEAK_SOURCES = {"table": "spec table", "measured": "measured on this machine by a matmul probe"}


def setup_facts(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """How the steps executed: the execution mode, the training dtype, and the peak FLOP/s that MFU divides by
    (`989.5 TFLOP/s, bf16 dense, spec table`). Every speed figure is relative to these."""
    modes = ", ".join(sorted(execution_modes(records)))
    dtypes = joined(r["config"].get("dtype") or r["config"]["runtime"].get("dtype") for r in records)
    peaks = []
    for r in records:
        peak, source = r["summary"].get("mfu_peak_flops"), r["summary"].get("mfu_peak_source")
        if peak and source:
            dtype = r["config"].get("dtype") or "fp32"
            unit, scale = ("TFLOP/s", 1e12) if peak >= 1e12 else ("GFLOP/s", 1e9)
            peaks.append(f"{peak / scale:.1f} {unit}, {dtype} dense, {PEAK_SOURCES.get(source, source)}")
    peak_text = "; ".join(sorted(set(peaks))) or "none known (no MFU)"
    return [("execution mode", modes), ("dtype", dtypes or "-"), ("MFU peak", peak_text)]


def lowest_loss(records: list[dict[str, Any]]) -> tuple[float, str, int] | None:
    """(loss, variant, seed) of the lowest eval loss any run that ended well reached at any evaluation."""
    best = None
    for r in records:
        if r["status"] != "ok":
            continue
        for _, loss in stats.curve_points(r):
            if math.isfinite(loss) and (best is None or loss < best[0]):
                best = (loss, r["variant"], r["seed"])
    return best


def target_text(records: list[dict[str, Any]]) -> str:
    """The target and who reached it; "target not reached by any variant" with the best loss when nobody did."""
    target = records[0]["to_target"]["target"]
    if target is None:
        return "none"
    reached = sorted({r["variant"] for r in records if r["status"] == "ok" and r["to_target"]["steps"] is not None})
    if reached:
        return f"eval loss {target} nats/token, reached by runs of {', '.join(reached)}"
    best = lowest_loss(records)
    lowest = ("" if best is None else
              f"; the lowest eval loss any run reached was {best[0]:.4f} ({best[1]} seed {best[2]})")
    return f"eval loss {target} nats/token: target not reached by any variant{lowest}"


def seconds_caveat(records: list[dict[str, Any]]) -> str:
    """Why seconds do not compare across variants, naming the device the records trained on: what drifts between
    runs made one after another differs between a shared CPU and a GPU."""
    kinds = {r["env"]["device"] for r in records}
    devices = md(joined(f"{r['env']['device_name']} ({r['env']['device']})" for r in records))
    if kinds == {"cpu"}:
        drift = "on a CPU the other work on its cores moves the step time, a lot on a shared machine"
    elif "cpu" not in kinds:
        drift = ("on a GPU clock boost, temperature and the host's load move the step time: less than on a shared "
                 "CPU, not to zero")
    else:
        drift = "and these runs trained on several device types, whose seconds never compare"
    return ("**Seconds do not compare across variants here.** Each run's seconds were measured in its own process, "
            f"the runs one after another on {devices}, so they carry the machine's drift between runs ({drift}). "
            "The ranking's speedup from the interleaved probe times every variant round-robin in one process, "
            "where drift cancels: it is the speed to trust.")


# "How to read this": the page's own notes (the headline, brackets) and, in this order, the columns' meanings
# (columns.COLUMNS: each column's words and the statistics' thresholds live there).
READING_GUIDE = C.reading_guide((
    "**headline** (the first line): the ranking's groups best first, each variant's difference in final eval loss "
    "to the baseline (paired over seeds, 95% interval) and the scale; a group of variants whose order is not "
    "resolved is named as tied. **Δ vs baseline** in the ranking is the same difference.",
    ("eval_loss_mean",),
    "**Brackets** `[a, b]` always hold a 95% interval; an interquartile range is written `(IQR x)`.",
    ("ranking",), ("rank_range", "rank_range_probability"), ("speed_words",), ("ttt_speedup",),
    ("to_target_status",), ("peak_memory_bytes",), ("tokens_per_second", "mfu")))

# Files other commands write beside a leaderboard, and what a reader finds in them.
ARTEFACTS = {
    "REPORT.html": "the claims report as a web page (the same text as REPORT.md, plots inline)",
    "REPORT.md": "the seed paper's claims checked one by one against these records, each with its uncertainty, "
                 "a direction verdict and, for numeric claims, a magnitude verdict (`blockbench report`)",
    "report_claims.png": "each claim of REPORT.md drawn on the pair of variants its verdict uses",
    "diagnose.png": "signal propagation at initialisation: how alike different tokens' representations are after "
                    "each block, and the activation norm (`blockbench diagnose`)",
    "diagnose.json": "the numbers behind diagnose.png",
    "probe.json": "the interleaved probe's per-round step times, from which the speedups come",
}

FIGURES = {
    "loss_vs_steps.png": "eval loss against optimiser steps (mean over seeds). Right: the last half of each "
                         "variant's own training on its own scale, the band from the lowest to the highest seed; "
                         "dotted: the target. A series hidden under another is named so in the legend.",
    "loss_vs_seconds.png": "eval loss against training seconds (evaluation excluded; mean over seeds), panels as "
                           "above.",
    "loss_vs_flops.png": "eval loss against training FLOPs (forward and backward, 2 per multiply-add); the axis "
                         "unit is in its label. Panels as above.",
    "params.png": "total parameters per variant, embeddings included.",
    "tokens_per_second.png": "median training tokens per second per variant, raw (not drift-corrected).",
}
SECONDS_FIGURES = ("loss_vs_seconds.png", "tokens_per_second.png")  # drawn only where seconds_meaningful


def present_artefacts(directory: Path | None) -> list[str]:
    """The ARTEFACTS files present in `directory`, in a fixed order (the page links what is there)."""
    if directory is None:
        return []
    return [name for name in ARTEFACTS if (directory / name).is_file()]


def report_link(artefacts: list[str]) -> str:
    """REPORT.html for a browser and REPORT.md beside it; REPORT.md alone where no page was written for it."""
    if "REPORT.html" in artefacts:
        return "[REPORT.html](REPORT.html) ([REPORT.md](REPORT.md))"
    return "[REPORT.md](REPORT.md)"


def seconds_meaningful(records: list[dict[str, Any]]) -> bool:
    """Whether the seconds of runs made one after another compare at all: on a GPU they drift a little (shown
    with the caveat); on a shared CPU the drift is as large as the differences, so no seconds plot is drawn."""
    return all(r["env"]["device"] != "cpu" for r in records)


def mfu_absent_text(kept: list[dict[str, Any]]) -> str:
    """Why a page has no MFU column, naming the cause: records made before blockbench recorded a peak (on a CPU
    it is measured by a matmul probe when a run starts), or a device with no known peak."""
    devices = md(joined(f"{r['env']['device_name']} ({r['env']['device']})" for r in kept))
    if not any("mfu_peak_source" in r["summary"] for r in kept):
        return (f"MFU is not shown: these records were made before blockbench recorded a peak FLOP/s with each run "
                f"({devices}), and a page never borrows another run's peak.")
    return f"MFU is not shown: no peak FLOP/s is known for {devices}."


SUPERSEDED = "SUPERSEDED.md"  # a note beside an old version's records: why a newer version replaces it
MAX_NOTICE_BYTES = 1 << 14


def superseded_notice(directory: Path | None) -> str:
    """The text of `SUPERSEDED.md` in a results directory, one paragraph of vetted Markdown (a stranger's file:
    read guarded, a bad link shown as text); empty when there is none."""
    if directory is None or not os.path.lexists(directory / SUPERSEDED):
        return ""
    try:
        text = read_guarded(directory / SUPERSEDED, MAX_NOTICE_BYTES, "superseded note").decode("utf-8", "replace")
    except UnsafeFileError as exc:
        raise LeaderboardError(str(exc)) from None
    return page.vetted_markdown(" ".join(text.split()))


def _opening(doc: page.Page, table, kept: list[dict[str, Any]], st: stats.Stability | None,
             artefacts: list[str], notice: str = "") -> None:
    """The headline, then one line of links: what a reader needs before the ranking."""
    if notice:
        doc.add(page.Para(f"**Superseded:** {notice}", "caveat"))
    if st is not None:
        doc.add(page.Para(headline.sentence(headline.summarise(kept, table, st)), "headline"))
    links = ["[setup](#setup)", "[how to read this](#how-to-read-this)"]
    if "REPORT.md" in artefacts:
        links.insert(0, "**claims report:** " + report_link(artefacts))
    doc.add(page.Para("See also: " + " · ".join(links) + "."))


def _ranking(doc: page.Page, table, kept: list[dict[str, Any]], stability_line: str) -> list[str]:
    """The ranking with each variant's difference to the baseline, the stability line, and why a column is not
    there; returns the headers shown."""
    baseline = kept[0]["config"].get("baseline")
    view = C.View(table, baseline, kept[0]["to_target"]["target"] is not None)
    ranking, shown = C.ranking_table(view, C.columns_for(kept))
    ranking = with_delta_column(ranking, table, headline.deltas(kept, baseline), baseline, view.multi)
    seeds = ("Lower is better; the rank is by the mean over seeds, and ± is the half-width of a 95% interval."
             if view.multi else "Lower is better. **One seed per variant:** a single seed has no interval, so there "
             "is no ± and no P(rank), and differences of a few hundredths of a nat may be seed-to-seed noise.")
    doc.add(page.Heading("Ranking: final eval loss at the budget", css="ranking"), page.Para(seeds), ranking)
    if stability_line:
        doc.add(page.Para(f"**{stability_line}**"))
    absent = [mfu_absent_text(kept) if "MFU" not in shown else "MFU's peak FLOP/s: see the setup table."]
    if not any(c.startswith("device") for c in shown) or not any(c.startswith("commit") for c in shown):
        absent.append("Device and commit are the same for every row: see the setup table.")
    doc.add(page.Para(" ".join(absent)))
    return shown


def with_delta_column(ranking: page.Table, table, deltas: dict[str, headline.Delta], baseline: str | None,
                      multi: bool) -> page.Table:
    """The ranking table with `Δ vs baseline` after the eval loss: the paired difference of final eval loss."""
    if not deltas:
        return ranking
    header = f"Δ vs {md(baseline)}, nats" + (" [95% CI]" if multi else "")
    at = next(i for i, h in enumerate(ranking.header) if h.startswith("eval loss")) + 1
    cells = ["baseline" if v == baseline else deltas[v].text() if v in deltas else "-" for v in table["variant"]]
    rows = tuple((*row[:at], cell, *row[at:]) for row, cell in zip(ranking.rows, cells, strict=True))
    return page.Table((*ranking.header[:at], header, *ranking.header[at:]), rows,
                      (*ranking.align[:at], page.RIGHT, *ranking.align[at:]), ranking.css)


def _figures(doc: page.Page, kept: list[dict[str, Any]], artefacts: list[str]) -> None:
    if "REPORT.md" in artefacts or "diagnose.png" in artefacts:
        doc.add(page.Heading("The paper's claims"))
        if "REPORT.md" in artefacts:
            doc.add(page.Para(f"{report_link(artefacts)}: {ARTEFACTS['REPORT.md']}."))
        for name in ("report_claims.png", "diagnose.png"):
            if name in artefacts:
                doc.add(page.Figure(name, ARTEFACTS[name][0].upper() + ARTEFACTS[name][1:] + "."))
    doc.add(page.Heading("Plots"))
    if seconds_meaningful(kept):
        doc.add(page.Para(seconds_caveat(kept), "caveat"))
    else:
        doc.add(page.Para(SECONDS_LEFT_OUT, "caveat"))
    doc.add(*(page.Figure(name, caption) for name, caption in FIGURES.items()
              if seconds_meaningful(kept) or name not in SECONDS_FIGURES))


SECONDS_LEFT_OUT = ("No seconds plots: these runs trained one after another on a shared CPU, where the machine's "
                    "drift between runs is as large as the differences between blocks. The speed shown is the "
                    "interleaved probe's ratio in the ranking, where drift cancels.")


def build_page(table, kept: list[dict[str, Any]], left_out: list[tuple[str, str]], failed: int = 0,
               stability_line: str = "", artefacts: list[str] | None = None,
               st: stats.Stability | None = None, notice: str = "") -> page.Page:
    """Everything the leaderboard says, once: leaderboard.md and index.html are two renderings of this. Headline
    first, then the ranking, the plots, and the setup (collapsed in HTML)."""
    artefacts = artefacts or []
    suite = kept[0]["suite"]
    target = kept[0]["to_target"]["target"]
    doc = page.Page(f"Leaderboard: suite {md(suite['name'])} v{md(suite['version'])}")
    _opening(doc, table, kept, st, artefacts, notice)
    _ranking(doc, table, kept, stability_line)
    if target is not None:
        view = C.View(table, kept[0]["config"].get("baseline"), True)
        reached = md(target_text(kept))
        missed = (f" **{reached.split(': ', 1)[1]}**: the target lies below what this budget reached, so this table "
                  "ranks nothing." if "target not reached by any variant" in reached else "")
        doc.add(page.Heading(f"Time to target: eval loss ≤ {target} nats/token"),
                page.Para("Medians over seeds of the steps, tokens, FLOPs and training seconds until the eval loss "
                          "first reached the target, interpolated between evaluations; `miss`: the median run "
                          "never reached it within the budget." + missed),
                C.target_table(view, C.columns_for(kept)), page.Para(seconds_caveat(kept), "caveat"))
    _figures(doc, kept, artefacts)
    files = ["[index.html](index.html) and [leaderboard.md](leaderboard.md) (this page)",
             "[leaderboard.csv](leaderboard.csv) (every number, unrounded)"]
    files += [f"[{name}]({name})" for name in artefacts]
    files += ["the plots above", "[records/](records/) (one run record per variant and seed)"]
    doc.add(page.Details("Setup", (
        page.Para("Every variant of the suite trained under identical conditions; every number on this page comes "
                  "from the run records in `records/`. Files: " + "; ".join(files) + "."),
        page.table(["item", "value"], [list(i) for i in header_items(kept, len(left_out), failed)], TEXT_COLUMNS))))
    doc.add(page.Heading("How to read this"), page.Bullets(READING_GUIDE))
    if left_out:
        doc.add(page.Heading("Left out"), page.Bullets(tuple(f"{md_code(p)}: {md(why)}" for p, why in left_out)))
    doc.add(page.Para("Regenerate with `blockbench leaderboard DIR`; every number comes from the files in "
                      "records/."))
    return doc


def build(entries: list[tuple[Path, dict[str, Any]]], left_out: list[tuple[str, str]],
          failures: list[dict[str, Any]] | None = None, artefacts: list[str] | None = None,
          notice: str = "") -> dict[str, bytes]:
    """Every output file's bytes, from the records to rank (all of one group), the left-out list, the failure
    files of runs of the same group that have no record (shown as failed, never as missing) and the names of the
    other commands' files in the output directory (the pages link them)."""
    records = [r for _, r in entries]
    failures = failures or []
    target = records[0]["to_target"]["target"]
    table, st = ranked_table(records, failures)
    line = st.line()
    curves = curves_frame(records)
    order = list(table["variant"])
    off = frozenset(table.loc[(table["n_plateau"] > 0) & (table["n_plateau"] == table["n_seeds"]), "variant"])
    text = build_page(table, records, left_out, len(failures), line, artefacts, st, notice)
    seconds = seconds_meaningful(records)
    return {
        "leaderboard.md": page.to_markdown(text).encode(),
        "leaderboard.csv": C.render_csv(table, C.columns_for(records)).encode(),
        "loss_vs_steps.png": plot_curves(curves, order, "step", "training steps", "eval loss vs steps", target, off),
        **({"loss_vs_seconds.png": plot_curves(curves, order, "train_seconds", "training seconds (mean over seeds)",
                                               "eval loss vs training seconds", target, off,
                                               seconds_plot_note(records))} if seconds else {}),
        "loss_vs_flops.png": plot_curves(curves, order, "flops", "training FLOPs", "eval loss vs FLOPs", target,
                                         off),
        "params.png": plot_bars(table, "params_total", "parameters", "parameters per variant"),
        **({"tokens_per_second.png": plot_bars(table, "tokens_per_second", "tokens/s (median over seeds)",
                                               "training throughput per variant (raw, not drift-corrected)",
                                               seconds_plot_note(records))} if seconds else {}),
        "index.html": page.to_html(text).encode(),
    }


def write_outputs(out_dir: Path, files: dict[str, bytes]) -> None:
    """All files to temporary names first, then renamed into place: a failure leaves the old outputs intact."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LeaderboardError(f"{out_dir}: cannot create output directory ({exc.strerror})") from None
    for name in files:  # a link or a FIFO named like a page is refused, never written through nor replaced
        try:
            check_writable_target(out_dir / name, "page")
        except UnsafeFileError as exc:
            raise LeaderboardError(f"{exc}; existing files were left unchanged") from None
    temps: list[tuple[Path, Path]] = []
    try:
        for name, data in files.items():
            tmp = out_dir / f".{name}.{os.getpid()}.tmp"
            # os.open honours the umask (mkstemp would make the published files 0600).
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            temps.append((tmp, out_dir / name))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        for tmp, final in temps:
            os.replace(tmp, final)
    except OSError as exc:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        raise LeaderboardError(f"{out_dir}: cannot write the leaderboard ({exc.strerror}); "
                               "existing files were left unchanged") from None



def generate(target: str | os.PathLike, out: str | os.PathLike | None = None,
             warn: Callable[[str], None] | None = None) -> tuple[Path, list[str]]:
    """Regenerate a leaderboard; return (output dir, names written). `warn` gets one message per left-out file."""
    # A left-out file's name and reason quote a stranger's text: one printable line (no ESC) on the terminal.
    warn = warn or (lambda message: print(plain(message), file=sys.stderr))
    results, current_hash = resolve_target(str(target))
    kept, left = ranked_records(results, current_hash)
    out_dir = Path(out) if out is not None else results

    def rel(p: Path) -> str:
        # Paths relative to the results dir, so the outputs do not depend on where it was checked out.
        try:
            return p.relative_to(results).as_posix()
        except ValueError:
            return p.as_posix()

    left_out = [(rel(p), why) for p, why in left]
    for p, why in left_out:
        warn(f"blockbench: leaderboard: left out {p}: {why}")
    files = build(kept, left_out, group_failures(results, kept), present_artefacts(out_dir),
                  superseded_notice(results))
    write_outputs(out_dir, files)
    return out_dir, list(files)
