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
from pathlib import Path
from typing import Any
from urllib.parse import quote

from blockbench.safeio import UnsafeFileError, expect_type, load_toml_guarded
from blockbench.stats import TAU_HALF_MIN, TAU_THREE_QUARTERS_MIN
from blockbench.untrusted import md, md_code
from blockbench.views import page
from blockbench.views.columns import _join, _loss_cell
from blockbench.views.leaderboard import header_items, write_outputs
from blockbench.views.selection import LeaderboardError, group_failures, ranked_records, ranked_table

PROVENANCE = "provenance.toml"
OUTPUT_FILES = ("index.html", "README.md")

INTRO = (
    "Every directory `<suite>/<suite-version>/` holds the run records of one run of that suite (`records/`, one "
    "immutable JSON file per variant and seed, schema in `blockbench/records.py`) and the views regenerated from "
    "them alone: `leaderboard.md`, `leaderboard.csv`, the plots (`loss_vs_steps.png`, `loss_vs_seconds.png`, "
    "`loss_vs_flops.png`, `params.png`, `tokens_per_second.png`) and `index.html`; the paper suites add the claims "
    "report (`REPORT.md`, `REPORT.html`, `report_claims.png`). `blockbench leaderboard <suite>` and `blockbench "
    "report <dir>` rewrite them byte-identically. This page is generated too, by `blockbench leaderboard --index "
    f"results/`, from the records and from `{PROVENANCE}` (what each directory is and how it was made): edit that "
    "file, never this page.")

# The short guide to a leaderboard that results/README.md has always carried; each leaderboard page ends with the
# full one ("How to read this").
READING_GUIDE = (
    "**eval loss**: nats per token on the suite's fixed evaluation windows after the budget (bits per byte in the "
    "CSV); mean and 95% t-interval over seeds. Lower is better. With one seed there is no interval: differences of "
    "a few hundredths are within seed-to-seed noise.",
    "**speedup, interleaved probe**: the training-step speed of a variant relative to the baseline variant, "
    "measured round-robin in one process before training, so drift of the shared machine cancels. A probe beside "
    "an A/A control (the baseline built twice) says `1.120x [1.090, 1.150]` when the 95% interval of the median "
    "lies outside the control's floor and `no measurable difference (within ±x%)` when it does not; the directories "
    "published before that control say `no A/A control in this probe` beside the median and the IQR over rounds. "
    "This is the speed number to trust here. Absolute tokens/s of runs made minutes apart are shown but are not "
    "comparable on a shared machine.",
    "**to target**: steps, tokens, FLOPs and training seconds until the eval loss first reaches the suite's target, "
    "interpolated between evaluations; `miss` when never reached (counted as infinite in medians). The "
    "time-to-target speedup in the ranking is wall-clock, so it carries the machine's drift: see each page's caveat.",
    "**peak mem**: CPU peak resident-set growth over a run (includes one-time library allocations); comparable only "
    "between CPU runs of the same suite.",
    "**masked-token accuracy** (encoder suites only): the share of masked evaluation tokens whose argmax is the "
    "original token, mean over seeds; the eval loss there is nats per masked token.",
    "**ranking** (this page): each leaderboard's ranks, best first, shared where a pair's order is not resolved "
    "(`2-3`), and its stability word: **settled** when Kendall's tau between the ranking at 50% of the budget and "
    f"the final one is >= {TAU_HALF_MIN} and at 75% >= {TAU_THREE_QUARTERS_MIN}, else **unsettled** (the order "
    "was still moving: a snapshot, not a verdict).",
)


PROVENANCE_FIELDS = ("what", "how")
MAX_PROVENANCE_BYTES = 1 << 20


def load_provenance(root: Path) -> dict[str, Any]:
    """The hand-kept part of the page: {"notes": [...], "<dir>": {"what": ..., "how": ...}}; empty without a file.
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
        for key, entry in data.items():
            if key == "notes":
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
    from blockbench.views.ladder import headline, ladder_json, load_ladder

    runs = load_ladder(directory)
    data = ladder_json(runs)
    records = [r for rs in runs.records.values() for r in rs]
    facts = dict(header_items(records, 0))
    pages = [_link(name, directory / name, root) for name in ("ladder.html", "ladder.md", "ladder.png")
             if (directory / name).exists()]
    return [md_code(directory.relative_to(root).as_posix()), _dates(records), facts["device"], headline(data),
            "; ".join(pages) or "-"]


def shipped_suite_text(name: str, version: str, record_hash: str) -> str:
    """How the current version relates to the suite file shipped in the package (cheap: one TOML load)."""
    from blockbench.errors import BlockbenchError
    from blockbench.suite import builtin_suites, load_suite

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


def headline(table) -> str:
    """The ranking in one line, as the leaderboard ranks it: tied ranks share a range (`2-3 sas_p, vskipinit`),
    unranked variants say why, and the stability word closes it."""
    ranked = table[table["status"] == "ok"]
    groups = ranked.groupby("rank_range", sort=False)["variant"].agg(lambda names: ", ".join(md(n) for n in names))
    text = " · ".join(f"{ranks} {names}" for ranks, names in groups.items())
    unranked = [f"{md(row['variant'])} ({_loss_cell(row)})" for _, row in table[table["status"] != "ok"].iterrows()]
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
            md(_join(table["commit"])), facts["seeds"], facts["budget"], headline(table), "; ".join(pages) or "-"]


def artefact_files(directory: Path, root: Path) -> str:
    """Links to the files of an artefact directory, and its subdirectories by name (a sweep's grid points)."""
    entries = sorted(p for p in directory.iterdir() if not p.name.startswith("."))
    files = [_link(p.name, p, root) for p in entries if p.is_file()]
    dirs = [md_code(f"{p.name}/") for p in entries if p.is_dir()]
    return "; ".join(files + ([f"{len(dirs)} directories: " + ", ".join(dirs)] if dirs else [])) or "-"


def _words_table(header: list[str], rows: list[list[str]]) -> page.Table:
    return page.table(header, rows, frozenset(header))  # every column is words here: all left-aligned


def build_index(root: Path) -> page.Page:
    """Everything the landing page says, once: index.html and README.md are two renderings of this."""
    provenance = load_provenance(root)
    suites, ladders, others = scan(root)
    known = {p.relative_to(root).as_posix() for versions in suites.values() for p in versions}
    known |= {p.relative_to(root).as_posix() for p in [*ladders, *others]}
    stale = sorted(k for k, v in provenance.items() if isinstance(v, dict) and k not in known)
    if stale:  # a hand-kept entry whose directory went away: say so rather than publish a row for nothing
        raise LeaderboardError(f"{root / PROVENANCE}: entries for directories that do not exist: {', '.join(stale)}")

    def said(key: str, field: str) -> str:
        # provenance.toml's text is Markdown, but a stranger's: kept only when every link in it is allowed.
        return page.vetted_markdown(provenance.get(key, {}).get(field, "-"))

    doc = page.Page("Published results")
    doc.add(page.Para("[How to read this](#how-to-read-this): the measures in short, at the bottom of this page; "
                      "every leaderboard page ends with its full guide."), page.Para(INTRO))
    rows = []
    for versions in suites.values():
        for i, directory in enumerate(versions):
            rows.append(result_row(directory, root, versions[0].name if i else None))
    doc.add(page.Heading("Results"),
            page.Para("One row per published suite version, the current (highest) version of each suite first. "
                      "**ranking**: the leaderboard's ranks, best first, tied ranks shared, and its stability word."),
            _words_table(["result", "current", "date", "device", "commit", "seeds", "budget", "ranking", "pages"],
                         rows))
    if ladders:
        doc.add(page.Heading("Ladders: does a win hold with scale?"),
                page.Para("Each variant trained at several model sizes; the baseline's loss-compute law fitted and "
                          "each variant's compute multiplier against it, with its interval (`blockbench ladder`)."),
                _words_table(["ladder", "date", "device", "verdicts", "pages"],
                             [ladder_row(p, root) for p in ladders]))
    results = [p.relative_to(root).as_posix() for versions in suites.values() for p in [*versions]]
    results += [p.relative_to(root).as_posix() for p in ladders]
    doc.add(page.Heading("What each is and how it was made"),
            _words_table(["result", "what", "how it was made"],
                         [[md_code(k), said(k, "what"), said(k, "how")] for k in results]))
    if others:
        names = [p.relative_to(root).as_posix() for p in others]
        doc.add(page.Heading("Other artefacts"),
                page.Para("Directories that are not a suite version: learning-rate sweeps (each grid point a "
                          "directory of records) and raw GPU-check output."),
                _words_table(["artefact", "what", "how it was made", "files"],
                             [[md_code(k), said(k, "what"), said(k, "how"), artefact_files(p, root)]
                              for k, p in zip(names, others)]))
    doc.add(*(page.Para(page.vetted_markdown(note)) for note in provenance.get("notes", [])))
    doc.add(page.Heading("How to read this"),
            page.Para("A leaderboard in short (each leaderboard page ends with the full guide, its \"How to read "
                      "this\"; each report ends with how its verdicts are reached):"),
            page.Bullets(READING_GUIDE))
    return doc


def write_index(root: str | Path, out: str | Path | None = None) -> tuple[Path, list[str]]:
    """Write index.html and README.md for the results dir `root` (into `out` if given; links stay relative to
    `root`); return (output dir, names written)."""
    root = Path(root)
    if not root.is_dir():
        raise LeaderboardError(f"{root}: no such directory (expected the results directory)")
    doc = build_index(root)
    out_dir = Path(out) if out is not None else root
    files = {"index.html": page.to_html(doc).encode(), "README.md": page.to_markdown(doc).encode()}
    write_outputs(out_dir, files)
    return out_dir, list(files)
