"""`blockbench compare BASELINE CANDIDATE`: two record sets -> per-variant deltas, noise-aware verdicts, exit code.

Verdicts, per variant present on both sides:
- params and train FLOPs/token are deterministic: any difference is `changed` (a failure only under --strict);
- eval loss at budget: a one-sided Welch t-test (candidate worse, alpha 0.01) when both sides have >= 3 seeds,
  else the difference of means against --max-loss-increase; a candidate that diverges on more seeds than the
  baseline is a regression. A difference whose order is unsettled (stats.py's pair rule: with >= 2 seeds a
  bootstrap order probability below 0.9 or a 95% interval through zero; with one seed, the order at 50% or 75% of
  the budget the other way round) is `unresolved`, "not resolvable at this budget": reported, not failed. A
  variant any of whose runs on either side ended on the unigram plateau is `not converged`, never `unresolved`
  (its difference says where a run was stuck); it fails only when the candidate is stuck on a larger share of
  its seeds than the baseline (a change that stops a block from learning is a regression);
- speed: only through each side's interleaved probe ratio to its own baseline variant, measured in the same run
  (`speed.speedup_vs_baseline`), so machine drift cancels; raw seconds and tokens/s are shown, never judged.
  Ratios measured on different device types, in different execution modes (records.execution_mode) or in
  different dtypes (selection.training_dtype) are not compared; an untrusted probe (stats.probe_disturbed_note)
  shows `untrusted (IQR x)`, no ratio.
  A ratio that dropped by more than --max-slowdown fails only if the drop also stands out from the two probes'
  own noise, else it is `inconclusive`: where both probes measured an interval of the median ratio and an A/A
  floor (issue 36, stats.speed_verdict), the interval of the change (candidate's interval over baseline's) must
  lie wholly outside the band the two floors allow (speed_change); for records without an A/A control, by
  --speed-z standard errors from the recorded IQRs. The detail gives each side's speed in the words of every
  view. The baseline variant has no speed verdict;
- peak memory: relative increase against --max-memory-increase, when both sides measured the same kind.

Exit code 0: no regression; 1: a regression; 2: unusable input (a one-line reason on stderr). The command's
arguments and output: commands/compare.py.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from blockbench import stats
from blockbench.errors import BlockbenchError
from blockbench.records import comparable_overrides, device_types, execution_modes, tokenization_difference
from blockbench.untrusted import plain
from blockbench.views.selection import check_one_version, group_key, load_entries, training_dtypes
from blockbench.workloads import workload_of

FAILING = {"regression"}
STRICT_FAILING = {"regression", "changed", "missing"}
MIN_SEEDS_FOR_TEST = 3


class CompareError(BlockbenchError):
    pass


@dataclass
class Thresholds:
    max_slowdown: float = 0.10
    max_loss_increase: float = 0.05
    max_memory_increase: float = 0.25
    alpha: float = 0.01
    speed_z: float = 2.0
    strict: bool = False


@dataclass
class Side:
    label: str
    path: str
    records: list[dict[str, Any]]
    by_variant: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def first(self) -> dict[str, Any]:
        return self.records[0]

    def describe(self) -> dict[str, Any]:
        s = self.first["suite"]
        commits = sorted({(r["git"]["commit"] or "unknown")[:12] + ("-dirty" if r["git"]["dirty"] else "")
                          for r in self.records})
        return {"path": self.path, "suite": s["name"], "version": s["version"], "hash": s["hash"],
                "records": len(self.records), "variants": sorted(self.by_variant),
                "commits": commits, "devices": sorted({r["env"]["device_name"] for r in self.records}),
                "execution_modes": sorted(execution_modes(self.records))}


def load_side(path: str, label: str) -> Side:
    """Every record below `path`, all of one suite version, hash and set of overrides, no (variant, seed) twice."""
    try:
        entries = load_entries(path)
        check_one_version(entries, path)
    except BlockbenchError as exc:
        raise CompareError(f"{label}: {exc}") from None
    keys = {group_key(r) for _, r in entries}
    if len(keys) > 1:
        hashes = {k[2] for k in keys}
        what = (f"workloads {', '.join(sorted({k[5] for k in keys}))}" if len({k[5] for k in keys}) > 1
                else f"suite hashes {', '.join(sorted(h[:12] for h in hashes))}" if len(hashes) > 1
                else f"command-line overrides {', '.join(sorted(k[3] for k in keys))}" if len({k[3] for k in keys}) > 1
                else f"tokenizations ({'; '.join(sorted(k[4] for k in keys))})")
        raise CompareError(f"{label}: {path}: records with different {what} cannot be compared as one set")
    seen: dict[tuple[str, int], Path] = {}
    side = Side(label, path, [r for _, r in entries])
    for p, r in entries:
        key = (r["variant"], r["seed"])
        if key in seen:
            raise CompareError(f"{label}: {path}: two records of variant {key[0]} seed {key[1]} "
                               f"({seen[key]} and {p})")
        seen[key] = p
        side.by_variant.setdefault(r["variant"], []).append(r)
    return side


def check_comparable(base: Side, cand: Side) -> None:
    b, c = base.first, cand.first
    bs, cs = b["suite"], c["suite"]
    if workload_of(b) != workload_of(c):
        raise CompareError(f"nothing comparable: baseline is workload {workload_of(b)}, candidate is "
                           f"{workload_of(c)} (losses of different objectives never compare)")
    if (bs["name"], bs["version"]) != (cs["name"], cs["version"]):
        raise CompareError(f"nothing comparable: baseline is suite {bs['name']} v{bs['version']}, candidate is "
                           f"{cs['name']} v{cs['version']} (records of different suite versions never compare)")
    if bs["hash"] != cs["hash"]:
        raise CompareError(f"nothing comparable: suite {bs['name']} v{bs['version']} has hash {bs['hash'][:12]} in "
                           f"the baseline and {cs['hash'][:12]} in the candidate (edited without a version bump)")
    if comparable_overrides(b) != comparable_overrides(c):
        raise CompareError(f"nothing comparable: the runs used different command-line overrides (baseline "
                           f"{comparable_overrides(b)}, candidate {comparable_overrides(c)})")
    if b["data"]["fingerprint"] != c["data"]["fingerprint"]:
        raise CompareError(f"nothing comparable: different corpora (fingerprint {b['data']['fingerprint'][:12]} vs "
                           f"{c['data']['fingerprint'][:12]})")
    differ = tokenization_difference(b, c)
    if differ:
        raise CompareError(f"nothing comparable: different tokenizations ({differ}); losses over other tokens do "
                           "not compare")
    if not set(base.by_variant) & set(cand.by_variant):
        raise CompareError(f"nothing comparable: no variant in common (baseline {', '.join(sorted(base.by_variant))}"
                           f"; candidate {', '.join(sorted(cand.by_variant))})")


def _row(variant: str, metric: str, baseline: Any, candidate: Any, verdict: str, detail: str = "",
         unit: str = "") -> dict[str, Any]:
    delta = ratio = None
    if isinstance(baseline, (int, float)) and isinstance(candidate, (int, float)):
        delta = candidate - baseline
        ratio = candidate / baseline if baseline else None
    return {"variant": variant, "metric": metric, "unit": unit, "baseline": baseline, "candidate": candidate,
            "delta": delta, "ratio": ratio, "verdict": verdict, "detail": detail}


def _median(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def exact_row(variant: str, metric: str, b: list[dict], c: list[dict], key: str) -> dict[str, Any]:
    vb, vc = b[0]["static"][key], c[0]["static"][key]
    return _row(variant, metric, vb, vc, "same" if vb == vc else "changed",
                "exact" if vb == vc else "architecture changed: update the baseline if intended")


def _final_losses(records: list[dict]) -> list[float]:
    return [r["summary"]["final_eval_loss"] for r in records
            if r["status"] == "ok" and r["summary"]["final_eval_loss"] is not None]


def _order_check(variant: str, b: list[dict], c: list[dict]) -> tuple[bool, str]:
    """Whether the order of the two sides' final losses is resolved at this budget (stats.pair_order_resolved)."""
    fb, fc = stats.seed_losses(b).get(variant, {}), stats.seed_losses(c).get(variant, {})
    if not fb or not fc:
        return True, ""
    curves_b = {f: stats.seed_losses(b, f).get(variant, {}) for f in stats.CHECKPOINTS}
    curves_c = {f: stats.seed_losses(c, f).get(variant, {}) for f in stats.CHECKPOINTS}
    return stats.pair_order_resolved(fb, fc, curves_b, curves_c, f"compare/{variant}")


def _unless_unsettled(row: dict[str, Any], variant: str, b: list[dict], c: list[dict]) -> dict[str, Any]:
    """A regression or improvement whose order is not settled at this budget is not called either way."""
    if row["verdict"] not in ("regression", "improved"):
        return row
    resolved, why = _order_check(variant, b, c)
    if not resolved:
        row["verdict"] = "unresolved"
        row["detail"] = f"not resolvable at this budget ({why}); {row['detail']}"
    return row


def quality_row(variant: str, b: list[dict], c: list[dict], t: Thresholds) -> dict[str, Any]:
    lb, lc = _final_losses(b), _final_losses(c)
    db, dc = sum(r["status"] != "ok" for r in b), sum(r["status"] != "ok" for r in c)
    metric = "eval loss"
    if dc * len(b) > db * len(c):  # a larger fraction of the candidate's seeds diverged
        return _row(variant, metric, _mean(lb), _mean(lc), "regression",
                    f"diverged on {dc}/{len(c)} seeds (baseline {db}/{len(b)})", "nats")
    (pb, nb), (pc, nc) = stats.plateaued(b, variant), stats.plateaued(c, variant)
    if pb or pc:
        row = _row(variant, metric, _mean(lb), _mean(lc), "not converged",
                   f"on the unigram plateau at the end on {pb}/{nb} baseline and {pc}/{nc} candidate seeds: the "
                   "difference says where the runs were stuck, not what the block learns", "nats")
        row["stuck"] = pc * nb > pb * nc  # newly stuck on more of its seeds: the change stopped it learning
        return row
    if not lb or not lc:
        return _row(variant, metric, _mean(lb), _mean(lc), "n/a", "no finished seed on one side", "nats")
    mb, mc = _mean(lb), _mean(lc)
    delta = mc - mb
    if sorted(lb) == sorted(lc):
        return _row(variant, metric, mb, mc, "same", f"identical losses, n={len(lb)}/{len(lc)}", "nats")
    if len(lb) >= MIN_SEEDS_FOR_TEST and len(lc) >= MIN_SEEDS_FOR_TEST:
        worse, better = stats.welch_one_sided(lc, lb)
        if not math.isnan(worse):
            verdict = "regression" if worse < t.alpha else "improved" if better < t.alpha else "ok"
            return _unless_unsettled(_row(
                variant, metric, mb, mc, verdict,
                f"Welch one-sided p={min(worse, better):.2g} (alpha {t.alpha}), n={len(lb)}/{len(lc)}", "nats"),
                variant, b, c)
        # Both sides without spread: no test possible, the threshold decides.
    verdict = ("regression" if delta > t.max_loss_increase else "improved" if delta < -t.max_loss_increase
               else "ok")
    return _unless_unsettled(_row(variant, metric, mb, mc, verdict,
                                  f"mean increase limit {t.max_loss_increase} nats, n={len(lb)}/{len(lc)}", "nats"),
                             variant, b, c)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _probe_se(records: list[dict]) -> float | None:
    """Standard error of a probe's median ratio, from its IQR over rounds (normal approximation:
    sigma = IQR / 1.349, SE(median) = 1.2533 sigma / sqrt(rounds)); None when the record has no IQR."""
    iqr = _median([r["speed"].get("speedup_iqr") for r in records])
    rounds = _median([r["speed"].get("rounds") for r in records])
    if iqr is None or not rounds:
        return None
    return 0.929 * iqr / math.sqrt(rounds)


def speed_change(base: dict[str, Any], cand: dict[str, Any]) -> tuple[float, float, float, float] | None:
    """The change of a variant's speed ratio from one probe to another, as an interval, and the band of changes the
    two probes' A/A floors allow: (low, high, band low, band high), conservatively (the candidate's low end over
    the baseline's high end, and so on). None unless both probes measured an interval and a floor."""
    floors = stats.speed_floor(base), stats.speed_floor(cand)
    if None in floors or any(s.get("ci_low") is None or s.get("ci_high") is None for s in (base, cand)):
        return None
    (fbl, fbh), (fcl, fch) = floors  # type: ignore[misc] - neither is None
    return (cand["ci_low"] / base["ci_high"], cand["ci_high"] / base["ci_low"], fcl / fbh, fch / fbl)


def speed_row(variant: str, baseline_variant: str, b: list[dict], c: list[dict], t: Thresholds) -> dict[str, Any]:
    metric = f"speedup vs {baseline_variant}"
    sb = _median([r["speed"].get("speedup_vs_baseline") for r in b])
    sc = _median([r["speed"].get("speedup_vs_baseline") for r in c])
    if variant == baseline_variant:
        return _row(variant, metric, sb, sc, "n/a", "the reference of the interleaved probe's ratios", "x")
    if sb is None or sc is None:
        return _row(variant, metric, sb, sc, "n/a", "no interleaved probe on one side", "x")
    untrusted = {side: note for side, records in (("baseline", b), ("candidate", c))
                 if (note := stats.probe_disturbed_note(records)) is not None}
    # No number from an untrusted probe, not even beside a verdict of n/a.
    cells = {side: stats.untrusted_cell(_median([r["speed"].get("speedup_iqr") for r in records]))
             if side in untrusted else value for side, records, value in (("baseline", b, sb), ("candidate", c, sc))}
    apart = _speed_ratios_apart([*b, *c])
    if apart is not None:
        return _row(variant, metric, cells["baseline"], cells["candidate"], "n/a", apart, "x")
    if untrusted:
        return _row(variant, metric, cells["baseline"], cells["candidate"], "n/a",
                    "; ".join(f"{side}: {note}" for side, note in untrusted.items()), "x")
    ratio = sc / sb
    detail = f"interleaved probe; slowdown limit {t.max_slowdown:.0%}"
    verdict = ("regression" if ratio < 1 - t.max_slowdown else "improved" if ratio > 1 + t.max_slowdown
               else "ok")
    sections = (stats.variant_speed(b, variant), stats.variant_speed(c, variant))
    change = speed_change(*sections)  # type: ignore[arg-type] - both sides have a ratio (above)
    if change is not None:
        # Both probes measured an interval and an A/A floor (issue 36): a change beyond the limit counts only when
        # the interval of the change lies outside the band the two floors allow; else it is inconclusive.
        low, high, band_low, band_high = change
        words = "; ".join(f"{side} {stats.speed_verdict(section).text}"
                          for side, section in zip(("baseline", "candidate"), sections, strict=True))
        detail += (f"; change {ratio:.3f}x [{low:.3f}, {high:.3f}], the A/A floors allow [{band_low:.3f}, "
                   f"{band_high:.3f}] ({words})")
        clear = high < band_low if verdict == "regression" else low > band_high
        if verdict != "ok" and not clear and t.speed_z > 0:
            verdict = "inconclusive"
            detail += ": the change's interval reaches into the probes' floors, too noisy to tell, rerun"
        return _row(variant, metric, sb, sc, verdict, detail, "x")
    lacking = [side for side, section in zip(("baseline", "candidate"), sections, strict=True)
               if stats.speed_floor(section) is None or (section or {}).get("ci_low") is None]
    detail += f"; {stats.NO_CONTROL} ({' and '.join(lacking)}): the IQRs decide"
    se_b, se_c = _probe_se(b), _probe_se(c)
    if verdict != "ok" and t.speed_z > 0 and se_b is not None and se_c is not None:
        # One probe per run: a change beyond the limit still has to stand out from that probe's own round-to-
        # round spread, else a noisy machine (CPU steal) would cry wolf. Such a change is reported, not failed.
        spread = math.hypot(se_b, se_c)
        z = abs(sb - sc) / spread if spread > 0 else math.inf
        detail += f"; z={z:.1f} (need {t.speed_z:g})"
        if z < t.speed_z:
            verdict = "inconclusive"
            detail += ": the probe was too noisy to tell, rerun"
    return _row(variant, metric, sb, sc, verdict, detail, "x")


def _speed_ratios_apart(records: list[dict]) -> str | None:
    """Why speed ratios from these records are not compared (measured on different device types, in different
    execution modes or dtypes), or None when they are."""
    devices, modes = sorted(device_types(records)), sorted(execution_modes(records))
    if len(devices) > 1:
        # A speed ratio means something only on the device type it was measured on (SIMD width, caches, kernels).
        return f"speed ratios measured on different device types ({'; '.join(devices)}) are not compared"
    if len(modes) > 1:
        # Nor across execution modes: compiling or graph-capturing changes launches and fusion, not the blocks.
        return f"speed ratios measured in different execution modes ({', '.join(modes)}) are not compared"
    dtypes = sorted(training_dtypes(records))
    if len(dtypes) > 1:
        # Nor across dtypes: a bf16 step runs other kernels at another peak rate than an fp32 one, and the ratio
        # to the baseline variant moves with them (the baseline runs faster too, by another factor).
        return f"speed ratios measured in different dtypes ({', '.join(dtypes)}) are not compared"
    return None


def memory_row(variant: str, b: list[dict], c: list[dict], t: Thresholds) -> dict[str, Any]:
    kb = {r["summary"]["peak_memory_kind"] for r in b}
    kc = {r["summary"]["peak_memory_kind"] for r in c}
    mb = _median([r["summary"]["peak_memory_bytes"] for r in b])
    mc = _median([r["summary"]["peak_memory_bytes"] for r in c])
    metric = "peak memory"
    if kb != kc or len(kb) != 1:
        return _row(variant, metric, mb, mc, "n/a", f"different kinds: {sorted(kb)} vs {sorted(kc)}", "bytes")
    if mb is None or mc is None or mb <= 0:
        return _row(variant, metric, mb, mc, "n/a", "not measured", "bytes")
    increase = mc / mb - 1
    verdict = ("regression" if increase > t.max_memory_increase else
               "improved" if increase < -t.max_memory_increase else "ok")
    return _row(variant, metric, mb, mc, verdict, f"{next(iter(kb))}; increase limit {t.max_memory_increase:.0%}",
                "bytes")


def throughput_row(variant: str, b: list[dict], c: list[dict]) -> dict[str, Any]:
    tb = _median([r["summary"]["tokens_per_second"] for r in b])
    tc = _median([r["summary"]["tokens_per_second"] for r in c])
    return _row(variant, "tokens/s (raw)", tb, tc, "info",
                "runs made at different times: drift included, never judged", "tokens/s")


def compare_sides(base: Side, cand: Side, t: Thresholds) -> dict[str, Any]:
    """The full comparison as a JSON-ready dict; raises CompareError when the two sides cannot be compared."""
    check_comparable(base, cand)
    baseline_variant = base.first["config"].get("baseline") or ""
    rows: list[dict[str, Any]] = []
    for variant in sorted(set(base.by_variant) | set(cand.by_variant)):
        b, c = base.by_variant.get(variant), cand.by_variant.get(variant)
        if c is None:
            rows.append(_row(variant, "variant", "present", "absent", "missing", "not run in the candidate"))
            continue
        if b is None:
            rows.append(_row(variant, "variant", "absent", "present", "new", "not in the baseline"))
            continue
        rows += [exact_row(variant, "params", b, c, "params_total"),
                 exact_row(variant, "train FLOPs/token", b, c, "flops_train_per_token"),
                 quality_row(variant, b, c, t),
                 speed_row(variant, baseline_variant, b, c, t),
                 memory_row(variant, b, c, t),
                 throughput_row(variant, b, c)]
    failing = STRICT_FAILING if t.strict else FAILING
    for row in rows:
        row["failure"] = row["verdict"] in failing or bool(row.pop("stuck", False))
    notes = []
    speed = [r for r in rows if r["metric"].startswith("speedup vs") and r["verdict"] != "n/a"]
    if len(speed) >= 2 and all(r["verdict"] == "improved" for r in speed):
        notes.append(f"every variant got faster relative to {baseline_variant}: the baseline variant itself may "
                     "have slowed down (speed is only ever measured relative to it)")
    if any(r["verdict"] == "inconclusive" for r in speed):
        notes.append("a speed change beyond the limit was within the probe's own noise (inconclusive, not failed): "
                     "rerun on a quieter machine or raise the suite's [speed] rounds")
    if any(r["verdict"] == "not converged" for r in rows):
        notes.append("not converged: a variant ended on the unigram plateau on one side or both, so its loss "
                     "difference is no measurement (fails only when the candidate is stuck on more of its seeds); "
                     "a longer budget or warm-up decides it")
    if any(r["verdict"] == "unresolved" for r in rows):
        notes.append("an eval-loss difference beyond the test was not resolvable at this budget (its order was not "
                     "settled: see the row): reported, not failed; rerun with more seeds or a longer budget")
    failures = [r for r in rows if r["failure"]]
    return {
        "baseline": base.describe(), "candidate": cand.describe(),
        "thresholds": {"max_slowdown": t.max_slowdown, "max_loss_increase": t.max_loss_increase,
                       "max_memory_increase": t.max_memory_increase, "alpha": t.alpha, "speed_z": t.speed_z,
                       "strict": t.strict},
        "rows": rows, "notes": notes,
        "regressions": [f"{r['variant']} {r['metric']}: {r['verdict']} ({r['detail']})" for r in failures],
        "exit_code": 1 if failures else 0,
    }


def _cell(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if unit == "bytes":
        return f"{value / 2**20:.1f} MiB"
    if unit == "nats":
        return f"{value:.4f}"
    if unit == "x":
        return f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"


def _delta_cell(row: dict[str, Any]) -> str:
    d = row["delta"]
    if d is None:
        return "-"
    if row["unit"] == "bytes":
        return f"{d / 2**20:+.1f} MiB"
    if row["unit"] == "nats":
        return f"{d:+.4f}"
    if row["unit"] == "x":
        return f"{d:+.3f}"
    return f"{d:+,}" if isinstance(d, int) else f"{d:+,.0f}"


STYLES = {"regression": "bold red", "improved": "green", "changed": "yellow", "missing": "yellow",
          "inconclusive": "yellow", "unresolved": "yellow", "not converged": "yellow"}


def print_table(result: dict[str, Any]) -> None:
    """The comparison as a rich table. Every text in it comes from the records (variant names, devices, paths,
    details quoting them): each cell is a rich Text, which is never parsed as markup, made one printable line
    (untrusted.plain: no ESC or other control character reaches the terminal)."""
    def text(value: Any, style: str = "") -> Text:
        return Text(plain(value), style=style)

    console = Console(width=None if Console().is_terminal else 160)
    b, c = result["baseline"], result["candidate"]
    table = Table(title=text(f"blockbench compare: suite {b['suite']} v{b['version']}"))
    for column in ("variant", "metric", "baseline", "candidate", "delta", "ratio", "verdict", "detail"):
        table.add_column(column, justify="right" if column in ("baseline", "candidate", "delta", "ratio")
                         else "left")
    for row in result["rows"]:
        verdict = row["verdict"] + (" (fail)" if row["failure"] and row["verdict"] != "regression" else "")
        style = STYLES.get(row["verdict"], "")
        table.add_row(text(row["variant"]), text(row["metric"]), text(_cell(row["baseline"], row["unit"])),
                      text(_cell(row["candidate"], row["unit"])), _delta_cell(row),
                      "-" if row["ratio"] is None else f"{row['ratio']:.3f}", text(verdict, style),
                      text(row["detail"]))
    for word, side in (("baseline: ", b), ("candidate:", c)):
        console.print(text(f"{word} {side['path']} ({side['records']} records, commit {', '.join(side['commits'])}, "
                           f"{', '.join(side['devices'])}, {', '.join(side['execution_modes'])})"), highlight=False)
    console.print(table)
    for note in result["notes"]:
        console.print(text(f"note: {note}"), highlight=False)
    if result["regressions"]:
        console.print(f"[bold red]REGRESSION[/bold red] ({len(result['regressions'])}):", highlight=False)
        for line in result["regressions"]:
            console.print(text(f"  {line}"), highlight=False)
    else:
        console.print("no regression", highlight=False)


def compare_paths(baseline: str, candidate: str, thresholds: Thresholds | None = None) -> dict[str, Any]:
    """Load both sides and compare them; raises a BlockbenchError (exit 2) for unusable input."""
    t = thresholds or Thresholds()
    return compare_sides(load_side(baseline, "baseline"), load_side(candidate, "candidate"), t)
