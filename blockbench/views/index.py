"""`blockbench leaderboard --index results/`: the landing page over every published result.

results/index.html and results/README.md are two renderings of one `page.Page`: every suite directory, its versions,
which one is current, when, where and at which commit each was run, its seeds and budget, and its ranking in one
line (the leaderboard's own tied ranks and stability word, from the same functions), with a link to each
leaderboard and report; then the other artefacts (sweeps, GPU checks). What records cannot say, what each directory
is for and the command lines that made it, is kept by hand in `provenance.toml` beside them, which this reads.
Like a leaderboard, the page is a pure view: the same files give the same bytes (no clock, no absolute path).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from blockbench import stats
from blockbench.errors import BlockbenchError
from blockbench.safeio import UnsafeFileError, expect_type, load_toml_guarded
from blockbench.suite import builtin_suites, load_suite
from blockbench.untrusted import md, md_code
from blockbench.views import crosssuite, headline, page
from blockbench.views.columns import joined, loss_cell, percent, reading_guide
from blockbench.views.gpu_page import gpu_summary, published_checks, write_gpu_page
from blockbench.views.ladder import headline as ladder_headline
from blockbench.views.ladder import ladder_json, load_ladder
from blockbench.views.leaderboard import header_items, write_outputs
from blockbench.views.selection import LeaderboardError, group_failures, ranked_records, ranked_table

PROVENANCE = "provenance.toml"
OUTPUT_FILES = ("index.html", "README.md")

INTRO = (
    "Every directory `<suite>/<suite-version>/` holds the run records of one run of that suite (`records/`, one "
    "immutable JSON file per variant and seed, schema in `blockbench/records/schema.py`) and the views regenerated "
    "from them alone: `leaderboard.md`, `leaderboard.csv`, the plots (`loss_vs_steps.png`, `loss_vs_flops.png`, "
    "`params.png`; runs on a GPU add `loss_vs_seconds.png` and `tokens_per_second.png`) and `index.html`; a "
    "superseded version may hold `SUPERSEDED.md`, which its pages show; the paper suites add the claims "
    "report (`REPORT.md`, `REPORT.html`, `report_claims.png`). `blockbench leaderboard <suite>` and `blockbench "
    "report <dir>` rewrite them byte-identically. This page is generated too, by `blockbench leaderboard --index "
    f"results/`, from the records and from `{PROVENANCE}` (what each directory is and how it was made): edit that "
    "file, never this page.")

# The short guide to a leaderboard that results/README.md has always carried (the columns' `brief`s, columns.py);
# each leaderboard page ends with the full one ("How to read this").
READING_GUIDE = reading_guide((
    ("eval_loss_mean",), ("speed_words",), ("steps_to_target",), ("peak_memory_bytes",),
    "**masked-token accuracy** (encoder suites only): the share of masked evaluation tokens whose argmax is the "
    "original token, mean over seeds; the eval loss there is nats per masked token.",
    "**ranking** (this page): each leaderboard's ranks, best first, shared where a pair's order is not resolved "
    "(`2-3`), and its stability word: **settled** when no pair of variants in different rank groups was the other "
    f"way round at {' or '.join(percent(f) for f in stats.CHECKPOINTS)} of the budget, **unsettled** when one "
    "was (a snapshot, not a verdict), **all tied** when no pair is resolved, **not judged** with one seed (no "
    "interval test, so ties cannot be judged)."), brief=True)


PROVENANCE_FIELDS = ("what", "how")
MAX_PROVENANCE_BYTES = 1 << 20


def load_provenance(root: Path) -> dict[str, Any]:
    """The hand-kept part of the page: {"notes": [...], "flagship": [suite, ...], "<dir>": {"what": ..., "how":
    ...}}; empty without a file.
    Read through the guarded loader (a regular file, size and depth caps) and type-checked: a results folder may
    come from someone else, and a string where a table belongs must be one line naming the field, not a traceback
    (nor, for `notes`, one paragraph per character)."""
    path = root / PROVENANCE
    if not os.path.lexists(path):
        return {}
    try:
        data = load_toml_guarded(path, MAX_PROVENANCE_BYTES, max_depth=4, what="provenance file")
        for i, note in enumerate(expect_type(data.get("notes", []), list, "notes", path)):
            expect_type(note, str, f"notes[{i}]", path)
        for i, name in enumerate(expect_type(data.get("flagship", []), list, "flagship", path)):
            expect_type(name, str, f"flagship[{i}]", path)
        for key, entry in data.items():
            if key in ("notes", "flagship"):
                continue
            expect_type(entry, dict, f"[{key!r}]", path)
            unknown = sorted(set(entry) - set(PROVENANCE_FIELDS))
            if unknown:
                raise UnsafeFileError(f"{path}: [{key!r}].{unknown[0]}: unknown field (valid: "
                                      f"{', '.join(PROVENANCE_FIELDS)})")
            for field in PROVENANCE_FIELDS:
                if field in entry:
                    expect_type(entry[field], str, f"[{key!r}].{field}", path)
    except UnsafeFileError as exc:
        raise LeaderboardError(str(exc)) from None
    return data


def scan(root: Path) -> tuple[dict[str, list[Path]], list[Path], list[Path]]:
    """{suite: its numbered version dirs, highest (current) first}, the ladders' version dirs (a ladder keeps one
    records/ per rung, RUNG/records/, and no records/ of its own) and every other directory one level below a
    suite or top-level directory (sweeps, GPU checks)."""
    suites: dict[str, list[Path]] = {}
    ladders: list[Path] = []
    others: list[Path] = []
    for top in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        children = sorted(p for p in top.iterdir() if p.is_dir() and not p.name.startswith("."))
        versions = [p for p in children if p.name.isdigit()]
        ladders += [p for p in versions if is_ladder(p)]
        versions = [p for p in versions if not is_ladder(p)]
        if versions:
            suites[top.name] = sorted(versions, key=lambda p: int(p.name), reverse=True)
        others += [p for p in children if not p.name.isdigit()]
    return suites, ladders, others


def is_ladder(directory: Path) -> bool:
    return not (directory / "records").is_dir() and any(directory.glob("*/records"))


def ladder_row(directory: Path, root: Path) -> list[str]:
    """One published ladder: its verdicts in one line, from its records as `blockbench ladder` reads them."""
    runs = load_ladder(directory)
    data = ladder_json(runs)
    records = [r for rs in runs.records.values() for r in rs]
    facts = dict(header_items(records, 0))
    pages = [_link(name, directory / name, root) for name in ("ladder.html", "ladder.md", "ladder.png")
             if (directory / name).exists()]
    return [md_code(directory.relative_to(root).as_posix()), _dates(records), facts["device"], ladder_headline(data),
            "; ".join(pages) or "-"]


def shipped_suite_text(name: str, version: str, record_hash: str) -> str:
    """How the current version relates to the suite file shipped in the package (cheap: one TOML load)."""
    if name not in builtin_suites():
        return "no built-in suite of this name"
    try:
        shipped = load_suite(name)
    except BlockbenchError:
        return "the package's suite file does not load"
    if shipped.version != version:
        return f"the package's suite is v{shipped.version}, not yet published"
    if shipped.hash != record_hash:
        return f"the package's suite file has changed since (hash `{shipped.hash[:12]}`)"
    return "matches the package's suite file"


def ranking_line(table) -> str:
    """The ranking in one line, as the leaderboard ranks it: tied ranks share a range (`2-3 sas_p, vskipinit`),
    unranked variants say why, and the stability word closes it."""
    ranked = table[table["status"] == "ok"]
    groups = ranked.groupby("rank_range", sort=False)["variant"].agg(lambda names: ", ".join(md(n) for n in names))
    text = " · ".join(f"{ranks} {names}" for ranks, names in groups.items())
    unranked = [f"{md(row['variant'])} ({loss_cell(row)})" for _, row in table[table["status"] != "ok"].iterrows()]
    if unranked:
        text += " · not ranked: " + ", ".join(unranked)
    return f"{text} (**{table['ranking'].iloc[0]}**)"


def _dates(records: list[dict[str, Any]]) -> str:
    days = sorted({r["created_at"][:10] for r in records if r.get("created_at")})
    if not days:
        return "-"
    return md(days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}")


def _link(label: str, path: Path, root: Path) -> str:
    """A Markdown link to `path` relative to the results root. Directory names are a stranger's text: the label
    is escaped and the target percent-encoded, so a name like `javascript:x` or `a)b` is a relative path."""
    return f"[{md(label)}]({quote(path.relative_to(root).as_posix())})"


def result_row(directory: Path, root: Path, newer: str | None) -> list[str]:
    """One published version: its facts from the records, ranked exactly as its leaderboard ranks them."""
    kept, left = ranked_records(directory)
    records = [r for _, r in kept]
    table, _ = ranked_table(records, group_failures(directory, kept))
    facts = dict(header_items(records, len(left)))
    suite = records[0]["suite"]
    if newer is None:
        current = "**current**; " + shipped_suite_text(suite["name"], suite["version"], suite["hash"])
    else:
        current = f"superseded by v{newer}"
    pages = []
    if (directory / "index.html").is_file():
        pages.append(_link("leaderboard", directory / "index.html", root) + " ("
                     + _link("md", directory / "leaderboard.md", root) + ")")
    if (directory / "REPORT.html").is_file():
        pages.append(_link("report", directory / "REPORT.html", root) + " ("
                     + _link("md", directory / "REPORT.md", root) + ")")
    elif (directory / "REPORT.md").is_file():
        pages.append(_link("report", directory / "REPORT.md", root))
    return [md_code(directory.relative_to(root).as_posix()), current, _dates(records), facts["device"],
            md(joined(table["commit"])), str(len({r["seed"] for r in records})), facts["budget"], ranking_line(table),
            "; ".join(pages) or "-"]


def artefact_files(directory: Path, root: Path) -> str:
    """Links to the files of an artefact directory, and its subdirectories by name (a sweep's grid points)."""
    entries = sorted(p for p in directory.iterdir() if not p.name.startswith("."))
    files = [_link(p.name, p, root) for p in entries if p.is_file()]
    dirs = [md_code(f"{p.name}/") for p in entries if p.is_dir()]
    return "; ".join(files + ([f"{len(dirs)} directories: " + ", ".join(dirs)] if dirs else [])) or "-"


def _words_table(header: list[str], rows: list[list[str]]) -> page.Table:
    return page.table(header, rows, frozenset(header))  # every column is words here: all left-aligned


def ordered_suites(suites: dict[str, list[Path]], provenance: dict[str, Any]) -> list[str]:
    """Suite names, the flagship ones (provenance.toml's `flagship`, in its order) first, then the rest A-Z."""
    flagship = [s for s in provenance.get("flagship", []) if s in suites]
    return flagship + sorted(s for s in suites if s not in flagship)


def gpu_checks(root: Path) -> list[dict[str, Any]]:
    """Each GPU check's summary (gpu_page.gpu_summary) with its directory, newest first."""
    return [{**gpu_summary(d), "key": d.relative_to(root).as_posix()} for d in published_checks(root)]


def gpu_line(check: dict[str, Any]) -> str:
    """A GPU check in one line: each variant's speed against Pre-LN in each execution mode."""
    modes = []
    for mode, ratios in sorted(check.get("speed", {}).items()):
        shown = ", ".join(f"{md(v)} {r:.2f}x" for v, r in ratios.items() if v != "pre_ln")
        modes.append(f"{md(mode)}: {shown}")
    return (f"[{md(check['key'])}]({quote(check['key'])}/index.html), {md(check.get('card', '-'))}: speed against "
            f"Pre-LN per training step, " + "; ".join(modes) + ".")


def current_row(result: crosssuite.SuiteResult, root: Path) -> list[str]:
    directory = result.directory
    pages = [_link(result.key, directory / "index.html", root)]
    if (directory / "REPORT.html").is_file():
        pages.append(_link("claims report", directory / "REPORT.html", root))
    return [" · ".join(pages), headline.sentence(result.summary)]


def _opening(doc: page.Page, current: list[crosssuite.SuiteResult], checks: list[dict[str, Any]],
             root: Path) -> None:
    if current:
        first = current[0]
        doc.add(page.Para(f"**{md(first.key)}**: {headline.sentence(first.summary)}", "headline"))
    doc.add(page.Para("Each suite's current result in one line, flagship suites first: who wins, by how much "
                      "(each variant's eval-loss difference to the suite's baseline with its 95% interval; a tied "
                      "group is named as tied) and at what scale. Then the GPU check, every variant across suites, "
                      "a page per variant, and every published version with how it was made. "
                      "[How to read this](#how-to-read-this)."))
    doc.add(page.Heading("Current results", css="ranking"),
            _words_table(["result", "who wins, by how much, at what scale"],
                         [current_row(r, root) for r in current]))
    if checks:
        doc.add(page.Heading("On a GPU"), page.Bullets(tuple(gpu_line(c) for c in checks)))


@dataclass
class Published:
    """What the landing page and the pages beside it read: the scan, and each suite's current result."""

    provenance: dict[str, Any]
    suites: dict[str, list[Path]]
    ladders: list[Path]
    others: list[Path]
    order: list[str]
    current: list[crosssuite.SuiteResult]
    checks: list[dict[str, Any]]


def gather(root: Path) -> Published:
    provenance = load_provenance(root)
    suites, ladders, others = scan(root)
    order = ordered_suites(suites, provenance)
    return Published(provenance, suites, ladders, others, order,
                     [crosssuite.load_result(suites[s][0], root) for s in order], gpu_checks(root))


def across(published: Published) -> list[crosssuite.SuiteResult]:
    """The results the cross-suite view compares: the flagship suites' current ones (every suite's without a
    flagship list); the CI's smoke baselines would only add noise there."""
    flagship = set(published.provenance.get("flagship", []))
    return [r for r, s in zip(published.current, published.order, strict=True) if not flagship or s in flagship]


def build_index(root: Path, published: Published | None = None) -> page.Page:
    """Everything the landing page says, once: index.html and README.md are two renderings of this."""
    published = published or gather(root)
    provenance, suites, ladders, others = (published.provenance, published.suites, published.ladders,
                                           published.others)
    known = {p.relative_to(root).as_posix() for versions in suites.values() for p in versions}
    known |= {p.relative_to(root).as_posix() for p in [*ladders, *others]}
    stale = sorted(k for k, v in provenance.items() if isinstance(v, dict) and k not in known)
    stale += sorted(f"flagship {s}" for s in provenance.get("flagship", []) if s not in suites)
    if stale:  # a hand-kept entry whose directory went away: say so rather than publish a row for nothing
        raise LeaderboardError(f"{root / PROVENANCE}: entries for directories that do not exist: {', '.join(stale)}")

    def said(key: str, field: str) -> str:
        # provenance.toml's text is Markdown, but a stranger's: kept only when every link in it is allowed.
        return page.vetted_markdown(provenance.get(key, {}).get(field, "-"))

    order, current, checks = published.order, published.current, published.checks
    doc = page.Page("Published results")
    _opening(doc, current, checks, root)
    if ladders:
        doc.add(page.Heading("Ladders: does a win hold with scale?"),
                page.Para("Each variant trained at several model sizes; the baseline's loss-compute law fitted and "
                          "each variant's compute multiplier against it, with its interval (`blockbench ladder`)."),
                _words_table(["ladder", "date", "device", "verdicts", "pages"],
                             [ladder_row(p, root) for p in ladders]))
    _across(doc, across(published), checks[0] if checks else None)
    rows = [result_row(d, root, suites[s][0].name if i else None)
            for s in order for i, d in enumerate(suites[s])]
    doc.add(page.Heading("Every published version"),
            page.Para("One row per published suite version, the current (highest) version of each suite first. "
                      "**ranking**: the leaderboard's ranks, best first, tied ranks shared, and its stability word."),
            _words_table(["result", "current", "date", "device", "commit", "seeds", "budget", "ranking", "pages"],
                         rows))
    results = [p.relative_to(root).as_posix() for s in order for p in suites[s]]
    results += [p.relative_to(root).as_posix() for p in ladders]
    doc.add(page.Heading("What each is and how it was made"),
            _words_table(["result", "what", "how it was made"],
                         [[md_code(k), said(k, "what"), said(k, "how")] for k in results]))
    _other_artefacts(doc, others, root, said)
    doc.add(page.Heading("Files"), page.Para(INTRO))
    doc.add(*(page.Para(page.vetted_markdown(note)) for note in provenance.get("notes", [])))
    doc.add(page.Heading("How to read this"),
            page.Para("A leaderboard in short (each leaderboard page ends with the full guide, its \"How to read "
                      "this\"; each report ends with how its verdicts are reached):"),
            page.Bullets(READING_GUIDE))
    return doc


def _across(doc: page.Page, current: list[crosssuite.SuiteResult], gpu: dict[str, Any] | None) -> None:
    if not current:
        return
    doc.add(page.Heading("Across suites"),
            page.Para("Each variant's difference in final eval loss to its suite's baseline (nats, paired over seeds, "
                      "95% interval; below 0 is better), in the current result of each flagship suite, and its "
                      "speed against Pre-LN on the GPU. Suites differ in baseline, budget, shape and data: read a "
                      "column on its own, and a row for whether a block's standing holds across them."),
            page.Figure(crosssuite.FIGURE, "each variant's difference to its suite's baseline, one marker per "
                        "suite; a marker on the grey line is the baseline itself."),
            crosssuite.cross_table(current, gpu, _variant_link))
    names = crosssuite.variants_of(current)
    links = [_variant_link(v) for v in names]
    doc.add(page.Heading("Variants"), page.Para("A page per variant: every published result for it, its speed on "
                                                "every device measured, its recipe. " + " · ".join(links)))


def _variant_link(variant: str) -> str:
    name = crosssuite.variant_page_name(variant)
    if name is None:
        return md(variant)
    return f"[{md(variant)}]({crosssuite.VARIANTS_DIR}/{quote(name)})"


def _other_artefacts(doc: page.Page, others: list[Path], root: Path, said: Any) -> None:
    if not others:
        return
    names = [p.relative_to(root).as_posix() for p in others]
    doc.add(page.Heading("Other artefacts"),
            page.Para("Directories that are not a suite version: learning-rate sweeps (each grid point a "
                      "directory of records) and GPU checks (each with its page)."),
            _words_table(["artefact", "what", "how it was made", "files"],
                         [[md_code(k), said(k, "what"), said(k, "how"), artefact_files(p, root)]
                          for k, p in zip(names, others)]))


def write_index(root: str | Path, out: str | Path | None = None) -> tuple[Path, list[str]]:
    """Write index.html, README.md, the cross-suite figure, a page per variant and each GPU check's page for the
    results dir `root` (the landing page into `out` if given; links stay relative to `root`); return (output dir,
    names written)."""
    root = Path(root)
    if not root.is_dir():
        raise LeaderboardError(f"{root}: no such directory (expected the results directory)")
    published = gather(root)
    doc = build_index(root, published)
    out_dir = Path(out) if out is not None else root
    current, checks = published.current, published.checks
    files = {"index.html": page.to_html(doc).encode(), "README.md": page.to_markdown(doc).encode()}
    if across(published):
        files[crosssuite.FIGURE] = crosssuite.plot_cross_suite(across(published))
    write_outputs(out_dir, files)
    written = list(files)
    variant_files = {}
    for variant in crosssuite.variants_of(current):
        name = crosssuite.variant_page_name(variant)
        if name is not None:
            doc_v = crosssuite.variant_page(variant, current, checks[0] if checks else None, "../")
            variant_files[name] = page.to_html(doc_v).encode()
            variant_files[name.removesuffix(".html") + ".md"] = page.to_markdown(doc_v).encode()
    if variant_files:
        write_outputs(out_dir / crosssuite.VARIANTS_DIR, variant_files)
        written += [f"{crosssuite.VARIANTS_DIR}/{n}" for n in variant_files]

    for check in checks:
        written += [f"{check['key']}/{n}" for n in write_gpu_page(root / check["key"], out_dir / check["key"])]
    return out_dir, written
