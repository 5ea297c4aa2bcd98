"""`blockbench ladder OUT`: a view over a ladder's records (`blockbench run --suite LADDER --out OUT`), like
`leaderboard`: the baseline's loss-compute law, each variant's compute multiplier with its intervals and a verdict in
words, the rank agreement across rungs and the rollout check, written as ladder.md, ladder.html, ladder.json and
ladder.png. The statistics are blockbench/scaling.py's; this module gathers the points and says what they mean.

Every run is accounted for: diverged and failed runs are listed and left out of the fit, never silently; a variant
with no finished run at some rung gets no multiplier (its verdict says which rung), and the baseline missing at a
rung is an error (nothing can be fitted). A currency that cannot be compared (wall-clock across device types, or
from a probe that was not trusted) is null with the reason.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import FormatStrFormatter

from blockbench import stats
from blockbench.errors import BlockbenchError
from blockbench.records import RecordError, find_record_files, load_failures, load_record
from blockbench.safeio import atomic_write_bytes, atomic_write_text
from blockbench.scaling import Point, analyse
from blockbench.untrusted import md, mpl, plain
from blockbench.views import plotstyle
from blockbench.views.page import Bullets, Figure, Heading, Page, Para, table, to_html, to_markdown
from blockbench.views.plots import png_bytes

FILES = ("ladder.md", "ladder.html", "ladder.json", "ladder.png")
LEVEL = 0.90


class LadderError(BlockbenchError):
    pass


@dataclass
class LadderRuns:
    """A ladder's runs by rung: finished records, and the runs left out with the reason."""

    out: Path
    suite: dict[str, Any]
    baseline: str
    rungs: list[dict[str, Any]]  # config.ladder of each rung, by index
    records: dict[int, list[dict[str, Any]]]
    left_out: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)

    def finished(self, rung: int, variant: str) -> list[dict[str, Any]]:
        return [r for r in self.records.get(rung, []) if r["variant"] == variant and r["status"] == "ok"]

    @property
    def variants(self) -> list[str]:
        seen = {r["variant"] for rs in self.records.values() for r in rs}
        return [self.baseline] + sorted(seen - {self.baseline})


def load_ladder(out: str | Path) -> LadderRuns:
    """Every record below OUT whose config names a rung, grouped by rung; a one-line error when there are none,
    when records of two ladders or suite versions are mixed, or when the baseline has no finished run at a rung."""
    out = Path(out)
    if not out.is_dir():
        raise LadderError(f"{out}: no such directory (the --out of `blockbench run --suite LADDER`)")
    try:  # each rung's OUT/RUNG/records/ (a probe or failure file beside it is no record)
        records = [load_record(p) for d in sorted(out.glob("*/records")) if d.is_dir() for p in find_record_files(d)]
    except RecordError as exc:
        raise LadderError(str(exc)) from None
    laddered = [r for r in records if isinstance(r["config"].get("ladder"), dict)]
    if not laddered:
        raise LadderError(f"{out}: no ladder records (records whose config names a rung); run a ladder suite with "
                          "`blockbench run --suite LADDER --out OUT` first")
    first = laddered[0]
    identity = (first["suite"]["name"], first["suite"]["version"], first["suite"]["hash"])
    for r in laddered:
        if (r["suite"]["name"], r["suite"]["version"], r["suite"]["hash"]) != identity:
            raise LadderError(f"{out}: holds records of {plain(identity[0])} v{plain(identity[1])} and of "
                              f"{plain(r['suite']['name'])} v{plain(r['suite']['version'])} (or another content "
                              "hash); one directory holds one ladder")
    rung_info: dict[int, dict[str, Any]] = {}
    by_rung: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in laddered:
        info = r["config"]["ladder"]
        rung_info.setdefault(int(info["index"]), info)
        by_rung[int(info["index"])].append(r)
    names = first["config"]["ladder"]["rungs"]
    runs = LadderRuns(out, first["suite"], first["config"]["baseline"],
                      [rung_info.get(i, {"rung": n, "index": i}) for i, n in enumerate(names)], dict(by_rung),
                      references=list(first["config"]["ladder"].get("references", [])))
    for i, info in enumerate(runs.rungs):
        for r in by_rung.get(i, []):
            if r["status"] != "ok":
                runs.left_out.append(f"{info['rung']}: {r['variant']} seed {r['seed']} {r['status']} "
                                     f"({r['stop_reason']})")
        for failure in _failures(out / info["rung"]):
            runs.left_out.append(f"{info['rung']}: {failure['variant']} seed {failure['seed']} failed "
                                 f"({failure.get('error_type', 'error')})")
        if not runs.finished(i, runs.baseline):
            raise LadderError(f"{out}: rung {info['rung']!r} has no finished run of the baseline {runs.baseline} "
                              "(missing, diverged or failed): no law can be fitted (`blockbench run --resume "
                              f"--out {out}` reruns what is missing)")
    return runs


def _failures(rung_dir: Path) -> list[dict[str, Any]]:
    try:
        return load_failures(rung_dir)
    except RecordError:
        return []


def _missing(runs: LadderRuns, variant: str) -> str:
    """'' when the variant has a finished run at every rung, else which rungs lack one."""
    gaps = [info["rung"] for i, info in enumerate(runs.rungs) if not runs.finished(i, variant)]
    return f"no finished run at rung {', '.join(gaps)}" if gaps else ""


def points(runs: LadderRuns, variants: list[str]) -> list[Any]:
    return [Point(variant=r["variant"], rung=i, seed=r["seed"], flops=float(r["curve"][-1]["flops"]),
                  tokens=float(r["summary"]["tokens"]), loss=float(r["summary"]["final_eval_loss"]))
            for i in sorted(runs.records) for r in runs.records[i]
            if r["variant"] in variants and r["status"] == "ok"]


def plateaus(runs: LadderRuns, variant: str) -> dict[str, str]:
    """Rungs (by name) at which some of the variant's runs ended on the unigram plateau, with the count in words."""
    found = {}
    for i, info in enumerate(runs.rungs):
        ok = runs.finished(i, variant)
        stuck = sum(stats.plateau_steps(r) is not None for r in ok)
        if stuck:
            found[info["rung"]] = f"{stuck} of {len(ok)} runs on the unigram plateau"
    return found


# ---------------------------------------------------------------------------------------------------------------
# Wall-clock: the FLOPs multiplier times the ratio of achieved FLOP rates, from each rung's interleaved probe


def rate_ratio(runs: LadderRuns, rung: int, variant: str, baseline: str) -> tuple[float | None, str]:
    """The variant's achieved FLOP rate over the baseline's at one rung (the probe's step-time ratio times the
    ratio of FLOPs per step), or None and why it cannot be compared."""
    records = runs.records.get(rung, [])
    mine, theirs = runs.finished(rung, variant), runs.finished(rung, baseline)
    if not mine or not theirs:
        return None, f"rung {runs.rungs[rung]['rung']}: no finished run of both"
    note = stats.probe_disturbed_note(records)
    if note is not None:
        return None, f"rung {runs.rungs[rung]['rung']}: probe untrusted ({note.split(':')[0]})"
    speed = mine[0]["speed"]
    if speed.get("speedup_vs_baseline") is None:
        return None, f"rung {runs.rungs[rung]['rung']}: no speed probe ran"
    if speed.get("baseline") != baseline:
        return None, f"rung {runs.rungs[rung]['rung']}: the probe timed against {speed.get('baseline')}, not {baseline}"
    flops_ratio = mine[0]["static"]["flops_train_per_token"] / theirs[0]["static"]["flops_train_per_token"]
    return speed["speedup_vs_baseline"] * flops_ratio, ""


def devices_differ(runs: LadderRuns) -> str:
    kinds = {(r["env"].get("device"), r["env"].get("device_name")) for rs in runs.records.values() for r in rs}
    if len(kinds) > 1:
        return "runs trained on " + ", ".join(sorted(f"{d} ({n})" for d, n in kinds)) + ": speed ratios do not " \
                                                                                            "compare across them"
    return ""


def wallclock(runs: LadderRuns, variant: str, baseline: str, flops_multiplier: float | None,
              top_multiplier: float | None) -> dict[str, Any]:
    """Wall-clock multipliers (pooled: the geometric mean of the rungs' rate ratios; at the largest rung: its own),
    or null with the reason."""
    if flops_multiplier is None:
        return {"wallclock_multiplier": None, "wallclock_multiplier_top": None,
                "wallclock_reason": "no FLOPs multiplier"}
    reason = devices_differ(runs)
    ratios = []
    for i in range(len(runs.rungs)):
        if reason:
            break
        ratio, why = rate_ratio(runs, i, variant, baseline)
        if ratio is None:
            reason = why
        ratios.append(ratio)
    if reason:
        return {"wallclock_multiplier": None, "wallclock_multiplier_top": None, "wallclock_reason": reason}
    mean_ratio = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    return {"wallclock_multiplier": flops_multiplier * mean_ratio,
            "wallclock_multiplier_top": None if top_multiplier is None else top_multiplier * ratios[-1],
            "rate_ratios": ratios, "wallclock_reason": ""}


# ---------------------------------------------------------------------------------------------------------------
# The analysis


def analyse_ladder(runs: LadderRuns, baseline: str | None = None, n_boot: int = 400) -> dict[str, Any]:
    """The scaling analysis against one reference (the suite's baseline by default): per variant its multipliers,
    intervals, verdict and rollout error, plus the law, rank agreement and the points it used."""
    baseline = baseline or runs.baseline
    fitted = [v for v in runs.variants if not _missing(runs, v)]
    plateau = {v: found for v in fitted if (found := plateaus(runs, v))}
    result = analyse(points(runs, fitted), baseline, level=LEVEL, n_boot=n_boot, seed=0, plateau=plateau)
    for variant in runs.variants:
        if variant == baseline:
            continue
        entry = result["variants"].get(variant)
        if entry is None:
            why = _missing(runs, variant)
            entry = result["variants"][variant] = {
                "flops_multiplier": None, "flops_multiplier_ci": None, "tokens_multiplier": None,
                "verdict": f"no verdict: {why}", "rollout_error": None}
        top = (entry.get("top_rung") or {}).get("multiplier")
        entry.update(wallclock(runs, variant, baseline, entry.get("flops_multiplier"), top))
    result["variants"].pop(baseline, None)
    return result


def ladder_json(runs: LadderRuns, n_boot: int = 400) -> dict[str, Any]:
    """Everything ladder.json holds: the analysis against the baseline and against each second reference."""
    main = analyse_ladder(runs, n_boot=n_boot)
    references = {}
    for ref in runs.references:
        if ref != runs.baseline and ref in runs.variants and not _missing(runs, ref):
            references[ref] = analyse_ladder(runs, ref, n_boot=n_boot)
    rungs = []
    for i, info in enumerate(runs.rungs):
        per_variant = {}
        for v in runs.variants:
            losses = [r["summary"]["final_eval_loss"] for r in runs.finished(i, v)]
            flops = [r["curve"][-1]["flops"] for r in runs.finished(i, v)]
            per_variant[v] = {"seeds": len(losses), "mean_loss": _mean(losses), "sd_loss": _sd(losses),
                              "flops": _mean(flops)}
        rungs.append({"rung": info["rung"], "shape": info.get("shape"), "tokens": info.get("tokens"),
                      "variants": per_variant})
    return {"suite": {k: runs.suite[k] for k in ("name", "version", "hash")}, "baseline": runs.baseline,
            "level": LEVEL, "currencies": CURRENCIES, **main, "references": references, "rungs": rungs,
            "left_out": runs.left_out, "setup": _setup(runs)}


CURRENCIES = {
    "flops": "training FLOPs counted by blockbench (forward + backward, 2 per multiply-add)",
    "tokens": "training tokens: the baseline's tokens at the compute that reaches the variant's loss, over the "
              "variant's",
    "wallclock": "the FLOPs multiplier times the ratio of achieved FLOP rates (the interleaved probe's step-time "
                 "ratio times the ratio of FLOPs per step), on one device type only",
}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _sd(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def _setup(runs: LadderRuns) -> dict[str, Any]:
    some = next(r for rs in runs.records.values() for r in rs)
    info = some["config"]["ladder"]
    rules = "; ".join(f"{r['rung']}: {r.get('tokens_rule')}" for r in runs.rungs)
    return {"suite_hash": runs.suite["hash"], "tokens_rule": rules, "lr_rule": info.get("lr_rule"),
            "lr_source": info.get("lr_source"), "lr_reference_width": info.get("lr_reference_width"),
            "git_commit": (some.get("git") or {}).get("commit"),
            "device": f"{some['env'].get('device')} ({some['env'].get('device_name')})",
            "seq_len": some["config"]["model"].get("seq_len"), "batch_size": some["config"]["optim"].get("batch_size")}


# ---------------------------------------------------------------------------------------------------------------
# The page


def _x(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}x"


def _ci(ci: list[float | None] | None) -> str:
    """An interval; a bound the resamples could not fix (an infinite multiplier, JSON null) reads as unbounded."""
    if not ci:
        return "-"
    lo = "0" if ci[0] is None else f"{ci[0]:.2f}"
    hi = "unbounded" if ci[1] is None else f"{ci[1]:.2f}"
    return f"[{lo}, {hi}]"


def _nats(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def headline(data: dict[str, Any], escape: Any = md) -> str:
    """One sentence per variant: its verdict against the baseline (`escape`: for a page, md; for a terminal, plain)."""
    rungs = data["rungs"]
    law_failed = (data.get("law") or {}).get("failed")
    if law_failed:  # one cause for every variant: say it once
        order = _order_words(data)
        verdicts = [escape(f"no multiplier: the law L(C) = E + A*C^-alpha does not describe {data['baseline']}'s "
                           f"rungs ({law_failed})" + (f"; {order}" if order else ""))]
    else:
        verdicts = [escape(e["verdict"] if e["verdict"].startswith(name) else f"{name}: {e['verdict']}")
                    for name, e in data["variants"].items()]
    seeds = max((v["seeds"] for r in rungs for v in r["variants"].values()), default=0)
    shape = lambda r: f"L={r['shape']['n_layers']} d={r['shape']['d_model']}" if r.get("shape") else r["rung"]  # noqa: E731
    scale = (f"{len(rungs)} rungs ({shape(rungs[0])} to {shape(rungs[-1])}), {seeds} seed"
             f"{'s' if seeds != 1 else ''} each, against {escape(data['baseline'])}")
    return "; ".join(verdicts) + f". ({scale}; {int(data['level'] * 100)}% intervals.)"


def _order_words(data: dict[str, Any]) -> str:
    """The rungs' order of mean losses when every rung agrees on it (what a ladder says without a law)."""
    orders = set()
    for r in data["rungs"]:
        means = {v: x["mean_loss"] for v, x in r["variants"].items() if x.get("mean_loss") is not None}
        orders.add(tuple(sorted(means, key=means.get)))
    if len(orders) != 1 or len(next(iter(orders))) < 2:
        return ""
    return "every rung orders the mean losses " + " < ".join(next(iter(orders)))


def multiplier_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, e in data["variants"].items():
        if e.get("failed") or e["verdict"].startswith("not converged"):  # a number here would read as a result
            rows.append([md(name), md(e["verdict"]), *["-"] * (len(MULTIPLIER_HEADER) - 2)])
            continue
        top = e.get("top_rung") or {}
        wall = e.get("wallclock_multiplier")
        rows.append([md(name), md(e["verdict"]), _x(e.get("flops_multiplier")), _ci(e.get("flops_multiplier_ci")),
                     _x(top.get("multiplier")), _ci(top.get("ci")), _x(e.get("tokens_multiplier")),
                     _x(wall) if wall is not None else md(f"null: {e.get('wallclock_reason', '')}"),
                     _nats(e.get("rollout_error"))])
    return rows


MULTIPLIER_HEADER = ["variant", "verdict", "FLOPs multiplier (pooled)", f"{int(LEVEL * 100)}% interval",
                     "at the largest rung", "its interval", "tokens multiplier", "wall-clock multiplier",
                     "rollout error (nats)"]


def build_page(data: dict[str, Any], title: str) -> Page:
    page = Page(title)
    page.add(Para(headline(data), "headline"))
    page.add(table(MULTIPLIER_HEADER, multiplier_rows(data), frozenset({"variant", "verdict",
                                                                          "wall-clock multiplier"}), css="ranking"))
    page.add(Para("A multiplier is the baseline's training compute that reaches the variant's final loss, over the "
                  "compute the variant used: above 1 the variant needs less compute for the same loss. **Pooled** "
                  "fits the variant's law with the baseline's exponent and floor pinned over every rung; **at the "
                  "largest rung** reads the baseline's law at the variant's measured loss there. The interval is the "
                  "wider of a bootstrap over seeds and a lack-of-fit Student-t interval; a verdict needs it to "
                  "exclude 1."))
    for ref, other in data.get("references", {}).items():
        page.add(Heading(f"Against {md(ref)}"))
        page.add(Para(f"**{headline({**other, 'rungs': data['rungs'], 'level': data['level']})}**"))
        page.add(table(MULTIPLIER_HEADER, multiplier_rows(other), frozenset({"variant", "verdict",
                                                                               "wall-clock multiplier"})))
    lines = ("no lines: the baseline's law failed its checks (below), so no fitted curve is drawn"
             if data["law"].get("failed") else
             f"the baseline's fitted law and each variant's pinned-exponent law as lines, their {int(LEVEL * 100)}% "
             "bootstrap bands shaded")
    page.add(Figure("ladder.png", "final eval loss against training FLOPs (log-log): every seed's run as a point; "
                                  f"{lines}."))
    page.add(Heading("Rungs"))
    variants = [data["baseline"], *data["variants"]]
    rows = []
    for r in data["rungs"]:
        shape = r.get("shape") or {}
        cells = [md(r["rung"]), f"L={shape.get('n_layers')} d={shape.get('d_model')} H={shape.get('n_heads')}",
                 f"{r.get('tokens') or 0:,}"]
        for v in variants:
            e = r["variants"].get(v, {})
            sd = f" ± {e['sd_loss']:.3f}" if e.get("sd_loss") is not None else ""
            cells.append("-" if e.get("mean_loss") is None else f"{e['mean_loss']:.4f}{sd} ({e['seeds']})")
        cells.append(f"{r['variants'][data['baseline']]['flops']:.3g}")
        rows.append(cells)
    page.add(table(["rung", "shape", "tokens", *[f"{md(v)} loss, mean ± sd (seeds)" for v in variants],
                    f"{md(data['baseline'])} FLOPs"], rows, frozenset({"rung", "shape"})))
    page.add(Heading("The fit"))
    page.add(Bullets(tuple(fit_lines(data))))
    page.add(Heading("Runs left out"))
    page.add(Para("; ".join(md(x) for x in data["left_out"]) if data["left_out"] else
                  "none: every run of every rung finished and is in the fit."))
    page.add(Heading("Setup"))
    setup = data["setup"]
    page.add(table(["setting", "value"], [[k, md(str(v))] for k, v in setup.items()],
                   frozenset({"setting", "value"})))
    return page


def fit_lines(data: dict[str, Any]) -> list[str]:
    law = data["law"]
    if "E" in law:
        caveat = " (it fails its checks below)" if law.get("failed") else ""
        lines = [f"baseline law{caveat}: L(C) = {law['E']:.3f} + {law['A']:.3f} (C / {law['C0']:.3g})"
                 f"^-{law['alpha']:.3f}"]
    else:
        lines = [f"baseline law: not fitted ({md(str(law.get('failed')))})"]
    for check in law.get("checks", []):
        lines.append(md(check_words(check)))
    for name, e in data["variants"].items():
        free = e.get("free_fit") or {}
        if "failed" in free:
            lines.append(f"{md(name)}: free fit failed ({md(str(free['failed']))})")
        elif free:
            lines.append(f"{md(name)}: free fit E={free['E']:.3f}, alpha={free['alpha']:.3f} (the pinned fit uses "
                         "the baseline's)")
    rollout = data.get("rollout") or {}
    if rollout.get("error") is not None:
        lines.append(f"rollout: the law fitted without the largest rung predicts the baseline's loss there with an "
                     f"error of {rollout['error']:+.3f} nats")
    elif rollout.get("reason"):
        lines.append(f"rollout: {md(rollout['reason'])}")
    agreement = data.get("rank_agreement") or {}
    if agreement.get("mean_tau_vs_largest") is not None:
        lines.append(f"rank agreement: Kendall tau of each rung's ranking with the largest rung's, mean "
                     f"{agreement['mean_tau_vs_largest']:.2f}")
    return lines


def check_words(check: dict[str, Any]) -> str:
    """One check of the fit in words: its name, passed or failed, and what it found."""
    state = "passed" if check.get("ok") else "FAILED"
    return f"check {check.get('name')}: {state} ({check.get('reason')})"


def plot(data: dict[str, Any], points: list[Any]) -> bytes:
    fig = MplFigure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax.set_xscale("log")
    ax.set_yscale("log")
    names = sorted({p.variant for p in points})
    law = data["law"]
    failed = law.get("failed")  # a law that does not describe the points is not drawn as if it did
    for name in names:
        style = plotstyle.variant_style(name, names)
        mine = [p for p in points if p.variant == name]
        ax.scatter([p.flops for p in mine], [p.loss for p in mine], s=14, alpha=0.7, label=mpl(name), **style)
        c = np.geomspace(min(p.flops for p in mine), max(p.flops for p in mine), 60)
        a = law["A"] if name == data["baseline"] else (data["variants"].get(name, {}).get("pinned_fit") or {}).get("A")
        if a is not None and not failed:
            ax.plot(c, law["E"] + a * (c / law["C0"]) ** -law["alpha"], color=style["color"], lw=1.2)
        band = (data.get("bands") or {}).get(name)
        if band and not failed:
            ax.fill_between(band["c"], band["lo"], band["hi"], color=style["color"], alpha=0.15, lw=0)

    ax.yaxis.set_major_formatter(FormatStrFormatter("%.2f"))  # losses span a few tenths: no powers of ten
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%.2f"))
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("final eval loss (nats/token)")
    ax.set_title(mpl(f"{data['suite']['name']} v{data['suite']['version']}: loss against compute")
                 + ("\nno law drawn: the baseline's law fails its checks" if failed else ""))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return png_bytes(fig)


def write_ladder(out: str | Path, dest: str | Path | None = None, n_boot: int = 400) -> tuple[Path, dict[str, Any]]:
    runs = load_ladder(out)
    data = ladder_json(runs, n_boot=n_boot)
    dest = Path(dest) if dest else Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    title = f"Ladder: {md(runs.suite['name'])} v{md(runs.suite['version'])}"
    page = build_page(data, title)
    atomic_write_text(dest / "ladder.md", to_markdown(page), "ladder page")
    atomic_write_text(dest / "ladder.html", to_html(page), "ladder page")
    atomic_write_text(dest / "ladder.json", json.dumps(data, indent=2, sort_keys=True) + "\n", "ladder JSON")
    atomic_write_bytes(dest / "ladder.png", plot(data, points(runs, runs.variants)), "ladder plot")
    return dest, data
