"""Leaderboards: run records -> pandas -> leaderboard.md, leaderboard.csv, PNG plots and index.html.

A leaderboard is a pure view over the records in `<dir>/records/`: regenerating it from the same records gives
byte-identical files (no timestamps, seeded bootstrap, fixed float formats, PNGs without a software/date stamp).
Records are ranked together only when they share suite name, version and content hash and the same command-line
overrides (the `variants` and `seeds` overrides do not change what a run measures, so they are ignored). Mixed
suite names or versions in one directory are an error; a stale hash or other overrides leaves those files out,
each with a message saying why.

`blockbench leaderboard SUITE` reads `results/<suite>/<current version>/` below the *current directory* (run it
from the repository root); `blockbench leaderboard DIR` reads `DIR/records/` (or DIR itself when it has no
records/ subdirectory) and writes into DIR unless `--out` says otherwise. `blockbench leaderboard --index results/`
writes the landing page over all of them instead (index.py).
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from blockbench import page, plotstyle, stats
from blockbench.errors import BlockbenchError
from blockbench.records import (
    RecordError,
    comparable_overrides,
    device_types,
    execution_modes,
    find_record_files,
    load_record,
    tokenization,
    tokenization_difference,
)
from blockbench.stats import BOOTSTRAP_RESAMPLES, bootstrap_speedup, t_interval  # noqa: F401 - public here too
from blockbench.workloads import workload_of

OUTPUT_FILES = ("leaderboard.md", "leaderboard.csv", "loss_vs_steps.png", "loss_vs_seconds.png",
                "loss_vs_flops.png", "params.png", "tokens_per_second.png", "index.html")

CSV_COLUMNS = (
    "rank", "rank_range", "rank_probability", "ranking", "tau_50_final", "tau_75_final",
    "variant", "status", "n_seeds", "n_diverged", "seeds",
    "eval_loss_mean", "eval_loss_std", "eval_loss_ci_low", "eval_loss_ci_high", "eval_bpb_mean",
    "speedup_vs_baseline", "speedup_iqr", "ttt_speedup", "ttt_speedup_ci_low", "ttt_speedup_ci_high",
    "to_target_status", "to_target_misses", "steps_to_target", "tokens_to_target", "flops_to_target",
    "seconds_to_target", "params_total", "params_block_matrices", "flops_fwd_per_token", "flops_train_per_token",
    "peak_memory_bytes", "peak_memory_kind", "tokens_per_second", "mfu", "train_seconds", "device", "commit",
    "n_plateau",
)
# Workload-specific columns, present only when a record carries them (so causal-LM leaderboards keep their shape).
OPTIONAL_COLUMNS = {"eval_accuracy_mean": "eval_bpb_mean"}  # column -> the column it follows


def csv_columns(table) -> list[str]:
    """CSV_COLUMNS, with each optional column the table has placed after its anchor."""
    out = []
    for c in CSV_COLUMNS:
        out.append(c)
        out += [o for o, anchor in OPTIONAL_COLUMNS.items() if anchor == c and o in table.columns]
    return out


class LeaderboardError(BlockbenchError):
    pass


# ---------------------------------------------------------------------------------------------------------------
# Loading and grouping (shared with compare.py)

def records_dir(path: Path) -> Path:
    """Where a results or run dir keeps its records: DIR/records when present, else DIR (or the file itself)."""
    return path / "records" if (path / "records").is_dir() else path


def load_entries(path: str | os.PathLike) -> list[tuple[Path, dict[str, Any]]]:
    """(path, record) for every record below `path`; any corrupt or foreign file is an error, as is none at all."""
    path = Path(path)
    if not path.exists():
        raise RecordError(f"{path}: no such file or directory")
    files = find_record_files(records_dir(path))
    if not files:
        raise RecordError(f"{path}: no run records found")
    return [(f, load_record(f)) for f in files]


def group_key(record: dict[str, Any]) -> tuple[str, str, str, str, str, str]:
    """What records ranked together share: suite name, version and hash, overrides, tokenization (the
    tokenizer id carries a prefix of its content hash; records made before the full hash was recorded group with
    newer ones of the same tokenizer), and workload (a record without one is causal_lm)."""
    s = record["suite"]
    tokens = {k: v for k, v in tokenization(record).items() if k != "tokenizer_sha256"}
    return (s["name"], s["version"], s["hash"], json.dumps(comparable_overrides(record), sort_keys=True),
            json.dumps(tokens, sort_keys=True), workload_of(record))


def check_one_version(entries: list[tuple[Path, dict[str, Any]]], where: str) -> None:
    """A records dir holds one suite version; several cannot be ranked or compared, and none is 'the' right one."""
    versions: dict[tuple[str, str], int] = {}
    for _, r in entries:
        key = (r["suite"]["name"], r["suite"]["version"])
        versions[key] = versions.get(key, 0) + 1
    if len(versions) > 1:
        found = ", ".join(f"{n} v{v} ({c} records)" for (n, v), c in sorted(versions.items()))
        raise LeaderboardError(f"{where}: records of several suite versions ({found}); records of different suite "
                               "versions are never ranked or compared together: keep one version per directory "
                               "(results/<suite>/<version>/records/)")


def current_suite_hash(name: str, version: str) -> str | None:
    """The content hash of the built-in suite `name` if its current version is `version`, else None."""
    from blockbench.suite import builtin_suites, load_suite

    if name not in builtin_suites():
        return None
    try:
        suite = load_suite(name)
    except BlockbenchError:
        return None
    return suite.hash if suite.version == version else None


def select_group(entries: list[tuple[Path, dict[str, Any]]], current_hash: str | None = None
                 ) -> tuple[list[tuple[Path, dict[str, Any]]], list[tuple[Path, str]]]:
    """The records to rank together, and (path, reason) for each one left out.

    The group matching the suite's current hash wins, else the largest (ties: the smallest key, so the choice is
    deterministic). Within it a second record of the same (variant, seed) is left out as a duplicate.
    """
    groups: dict[tuple, list[tuple[Path, dict[str, Any]]]] = {}
    for entry in entries:
        groups.setdefault(group_key(entry[1]), []).append(entry)
    chosen = min(groups, key=lambda k: (k[2] != current_hash, -len(groups[k]), k))
    kept: list[tuple[Path, dict[str, Any]]] = []
    left_out: list[tuple[Path, str]] = []
    seen: dict[tuple[str, int], Path] = {}
    _, _, chosen_hash, chosen_overrides, chosen_tokens, chosen_workload = chosen
    for path, record in entries:
        key = group_key(record)
        if key[5] != chosen_workload:
            left_out.append((path, f"workload {key[5]} differs from the ranked records' {chosen_workload}: losses "
                                   "of different objectives never rank together"))
        elif key[2] != chosen_hash:
            why = "the suite's current hash" if chosen_hash == current_hash else "the ranked records'"
            left_out.append((path, f"suite hash {key[2][:12]} differs from {why} {chosen_hash[:12]} (the suite "
                                   "changed without a version bump; these records measure something else)"))
        elif key[3] != chosen_overrides:
            left_out.append((path, f"command-line overrides {key[3]} differ from the ranked records' "
                                   f"{chosen_overrides}"))
        elif key[4] != chosen_tokens:
            differ = tokenization_difference(record, groups[chosen][0][1])
            left_out.append((path, f"tokenized differently from the ranked records ({differ}): losses over other "
                                   "tokens do not compare"))
        elif (record["variant"], record["seed"]) in seen:
            left_out.append((path, f"duplicate of variant {record['variant']} seed {record['seed']} "
                                   f"(already taken from {seen[(record['variant'], record['seed'])]})"))
        else:
            seen[(record["variant"], record["seed"])] = path
            kept.append((path, record))
    return kept, left_out


def group_failures(results: Path, kept: list[tuple[Path, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The failure files (results/failures/) of runs of the ranked group that have no record."""
    from blockbench.records import load_failures

    if not kept:
        return []
    _, _, chosen_hash, chosen_overrides, *_ = group_key(kept[0][1])
    done = {(r["variant"], r["seed"]) for _, r in kept}
    return [f for f in load_failures(results)
            if f["suite"]["hash"] == chosen_hash and json.dumps(f["overrides"], sort_keys=True) == chosen_overrides
            and (f["variant"], f["seed"]) not in done]


# ---------------------------------------------------------------------------------------------------------------
# Aggregation

def runs_frame(records: list[dict[str, Any]], failures: list[dict[str, Any]] | None = None):
    """One row per record, and per failed run (status "failed", no numbers): the flat per-run numbers the
    aggregation works on."""
    import pandas as pd

    rows = []
    for f in failures or []:
        rows.append({"variant": f["variant"], "seed": f["seed"], "status": "failed", "eval_loss": None,
                     "eval_bpb": None, "eval_accuracy": None, "speedup_vs_baseline": None, "speedup_iqr": None,
                     **{f"{k}_to_target": math.inf for k in ("steps", "tokens", "flops", "seconds")},
                     "params_total": None, "params_block_matrices": None, "flops_fwd_per_token": None,
                     "flops_train_per_token": None, "peak_memory_bytes": None, "peak_memory_kind": None,
                     "tokens_per_second": None, "mfu": None, "train_seconds": None, "device": None,
                     "commit": None, "plateau": False})
    for r in records:
        s, t, st, git = r["summary"], r["to_target"], r["static"], r["git"]
        commit = (git["commit"] or "unknown")[:12] + ("-dirty" if git["dirty"] else "")
        rows.append({
            "variant": r["variant"], "seed": r["seed"], "status": r["status"],
            "eval_loss": s["final_eval_loss"], "eval_bpb": s["final_eval_bpb"],
            "eval_accuracy": s.get("final_eval_accuracy"),
            "speedup_vs_baseline": r["speed"].get("speedup_vs_baseline"),
            "speedup_iqr": r["speed"].get("speedup_iqr"),
            # A diverged run is a miss even if it passed the target before it blew up (AlgoPerf's rule).
            **{f"{k}_to_target": (math.inf if t[k] is None or r["status"] != "ok" else float(t[k]))
               for k in ("steps", "tokens", "flops", "seconds")},
            "params_total": st["params_total"], "params_block_matrices": st["params_block_matrices"],
            "flops_fwd_per_token": st["flops_fwd_per_token"], "flops_train_per_token": st["flops_train_per_token"],
            "peak_memory_bytes": s["peak_memory_bytes"], "peak_memory_kind": s["peak_memory_kind"],
            "tokens_per_second": s["tokens_per_second"], "mfu": s["mfu"], "train_seconds": s["train_seconds"],
            "device": r["env"]["device_name"], "commit": commit,
            "plateau": stats.plateau_steps(r) is not None,
        })
    frame = pd.DataFrame(rows)
    return frame.sort_values(["variant", "seed"], kind="stable").reset_index(drop=True)


def _join(values) -> str:
    return ", ".join(sorted({str(v) for v in values if not _is_missing(v)}))


def _first(values) -> Any:
    """The value every run of a variant shares (params, FLOPs); NaN when no run of it finished."""
    present = [v for v in values if not _is_missing(v)]
    return int(present[0]) if present else math.nan


def aggregate(runs, baseline: str | None, has_target: bool, speed_comparable: bool = True,
              speed_trusted: bool = True):
    """One row per variant (see CSV_COLUMNS), ranked by mean eval loss at budget; diverged variants are unranked.
    Speed ratios that do not compare (several device types or execution modes) are left out with their spread;
    an untrusted probe's ratios are left out and their spread kept, so the cell can say why (`untrusted (IQR x)`)."""
    import numpy as np
    import pandas as pd

    base_seconds = list(runs.loc[runs["variant"] == baseline, "seconds_to_target"]) if baseline else []
    rows = []
    for variant, g in runs.groupby("variant", sort=True):
        n = len(g)
        failed = int((g["status"] == "failed").sum())
        diverged = int((g["status"] == "diverged").sum())
        losses = [float(v) for v in g["eval_loss"] if not _is_missing(v)] if diverged + failed == 0 else []
        low, high = t_interval(losses)
        misses = int(np.isinf(g["seconds_to_target"]).sum())
        ttt = (bootstrap_speedup(base_seconds, list(g["seconds_to_target"]), f"{baseline}/{variant}")
               if has_target and base_seconds else (math.nan,) * 3)
        if not has_target:
            target_status = "no target"
        elif failed:
            target_status = seeds_phrase("failed", failed, n)
        elif diverged:
            target_status = seeds_phrase("diverged", diverged, n)
        else:
            target_status = "ok" if misses == 0 else seeds_phrase("target missed", misses, n)
        to_target = {f"{k}_to_target": (float(g[f"{k}_to_target"].median()) if has_target else math.nan)
                     for k in ("steps", "tokens", "flops", "seconds")}
        rows.append({
            "variant": variant, "status": "failed" if failed else "diverged" if diverged else "ok", "n_seeds": n,
            "n_diverged": diverged, "n_failed": failed, "seeds": " ".join(str(s) for s in sorted(g["seed"])),
            "eval_loss_mean": float(np.mean(losses)) if losses else math.nan,
            "eval_loss_std": float(np.std(losses, ddof=1)) if len(losses) > 1 else math.nan,
            "eval_loss_ci_low": low, "eval_loss_ci_high": high,
            "eval_bpb_mean": float(g["eval_bpb"].mean()) if losses else math.nan,
            "eval_accuracy_mean": (float(g["eval_accuracy"].astype(float).mean())
                                   if losses and g["eval_accuracy"].notna().any() else math.nan),
            "speedup_vs_baseline": (g["speedup_vs_baseline"].astype(float).median()
                                    if speed_comparable and speed_trusted else math.nan),
            "speedup_iqr": g["speedup_iqr"].astype(float).median() if speed_comparable else math.nan,
            "ttt_speedup": ttt[0], "ttt_speedup_ci_low": ttt[1], "ttt_speedup_ci_high": ttt[2],
            "to_target_status": target_status, "to_target_misses": misses if has_target else math.nan,
            **to_target,
            "params_total": _first(g["params_total"]),
            "params_block_matrices": _first(g["params_block_matrices"]),
            "flops_fwd_per_token": _first(g["flops_fwd_per_token"]),
            "flops_train_per_token": _first(g["flops_train_per_token"]),
            "peak_memory_bytes": g["peak_memory_bytes"].astype(float).median(),
            "peak_memory_kind": _join(g["peak_memory_kind"]),
            "tokens_per_second": float(g["tokens_per_second"].median()),
            "mfu": g["mfu"].astype(float).median(), "train_seconds": float(g["train_seconds"].median()),
            "device": _join(g["device"]), "commit": _join(g["commit"]),
            "n_plateau": int(g["plateau"].sum()),
        })
    table = pd.DataFrame(rows)
    ranked = table["status"] == "ok"
    order = table[ranked].sort_values(["eval_loss_mean", "variant"], kind="stable").index
    table["rank"] = pd.Series(range(1, len(order) + 1), index=order, dtype="Int64")
    table["_order"] = table["rank"].astype("Float64").fillna(math.inf)
    table = table.sort_values(["_order", "variant"], kind="stable").drop(columns="_order").reset_index(drop=True)
    if not table["eval_accuracy_mean"].notna().any():
        table = table.drop(columns="eval_accuracy_mean")
    for column in ("params_total", "params_block_matrices", "flops_fwd_per_token", "flops_train_per_token"):
        if table[column].isna().any():  # a variant none of whose runs finished: keep the others integers
            table[column] = table[column].astype("Int64")
    return table[[c for c in csv_columns(table) if c in table.columns] + ["n_failed"]]


def add_stability(table, st: stats.Stability):
    """The stability columns: shared rank ranges, each variant's bootstrap probability of its rank, and the
    ranking's verdict and taus (the same on every row, so the CSV carries the stability line)."""
    table = table.copy()
    table["rank_range"] = [st.range_text(v) if v in st.rank_range else "" for v in table["variant"]]
    table["rank_probability"] = [st.rank_prob.get(v, math.nan) for v in table["variant"]]
    table["ranking"] = "settled" if st.settled else "unsettled"
    table["tau_50_final"] = st.taus.get(0.5, math.nan)
    table["tau_75_final"] = st.taus.get(0.75, math.nan)
    return table[[*csv_columns(table), "n_failed"]]


def curves_frame(records: list[dict[str, Any]]):
    """Eval points of every run, averaged over seeds per (variant, step)."""
    import pandas as pd

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


# ---------------------------------------------------------------------------------------------------------------
# Formatting

def _is_missing(value: Any) -> bool:
    try:
        import pandas as pd

        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def fmt(value: Any, spec: str, inf: str = "miss") -> str:
    """`inf` names an infinite value: a missed target for to-target numbers, "inf" for ratios."""
    if _is_missing(value):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return inf if value > 0 else "-" + inf
    return format(value, spec)


def seeds_phrase(what: str, k: int, n: int) -> str:
    """The one status vocabulary of every view: `what` alone for a single seed, else `what on k/n seeds`."""
    return what if n == 1 else f"{what} on {k}/{n} seeds"


def _loss_cell(row) -> str:
    n = row["n_seeds"]
    if row["status"] == "failed":
        return seeds_phrase("failed", row["n_failed"], n)
    if row["status"] != "ok":
        return seeds_phrase("diverged", row["n_diverged"], n)
    plateau = f" ({seeds_phrase('plateau', row['n_plateau'], n)})" if row["n_plateau"] else ""
    if _is_missing(row["eval_loss_ci_low"]):
        return fmt(row["eval_loss_mean"], ".4f") + plateau
    return (f"{row['eval_loss_mean']:.4f} ± {(row['eval_loss_ci_high'] - row['eval_loss_ci_low']) / 2:.4f}"
            + plateau)


def _bound(value: float) -> str:
    # A zero bound is a resample whose median candidate run missed; an infinite one, the baseline's.
    return "miss" if value == 0 else "∞" if math.isinf(value) else f"{value:.3f}"


def _ci_cell(point: Any, low: Any, high: Any) -> str:
    """A time-to-target speedup: `miss` where the variant's median run missed the target (an interval whose lower
    end is `miss` is censored there, never a zero) and `baseline missed` where the baseline's did, so no finite
    ratio exists."""
    if _is_missing(point):
        return "-"
    if math.isinf(point):
        return "baseline missed"
    if point == 0:
        return "miss"
    if _is_missing(low):
        return f"{point:.3f}"
    return f"{point:.3f} [{_bound(low)}, {_bound(high)}]"


def _probe_cell(row, baseline: str | None) -> str:
    if row["variant"] == baseline and not _is_missing(row["speedup_vs_baseline"]):
        return "1.000 (baseline)"
    iqr = row["speedup_iqr"]
    if _is_missing(row["speedup_vs_baseline"]) and not _is_missing(iqr):  # an untrusted probe (aggregate)
        return "baseline (untrusted probe)" if row["variant"] == baseline else stats.untrusted_cell(float(iqr))
    return fmt(row["speedup_vs_baseline"], ".3f", "∞") + (
        f" (IQR {iqr:.2f})" if not _is_missing(iqr) and iqr > 0 else "")


def _mib(value: Any) -> str:
    return "-" if _is_missing(value) else f"{value / 2**20:.1f}"


MEMORY_KINDS = {"cpu_peak_rss_growth": "CPU RSS growth", "cuda_max_allocated": "CUDA max allocated"}
TEXT_COLUMNS = frozenset({"variant", "status", "device", "commit", "item", "value"})
Column = tuple[str, Callable[[Any], str]]


def ranking_columns(table, baseline: str | None, has_target: bool) -> list[Column]:
    """The ranking table's columns; one that would be blank on every row (P(rank) with one seed, MFU without a
    known peak) or repeat one value on every row (device, commit: the setup table has them) is left out."""
    multi = int(table["n_seeds"].max()) >= 2
    base = table[table["variant"] == baseline]
    base_missed = has_target and not base.empty and math.isinf(float(base["seconds_to_target"].iloc[0]))

    def ttt(r) -> str:
        if base_missed and math.isinf(r["seconds_to_target"]) and _is_missing(r["ttt_speedup"]):
            return "both missed"
        return _ci_cell(r["ttt_speedup"], r["ttt_speedup_ci_low"], r["ttt_speedup_ci_high"])

    kinds = sorted({k for k in table["peak_memory_kind"] if k})
    memory = "peak mem MiB" + (f" ({MEMORY_KINDS.get(kinds[0], kinds[0])})" if len(kinds) == 1 else "")
    columns: list[Column] = [("rank", lambda r: r["rank_range"] or "-")]
    if multi:
        columns.append(("P(rank)", lambda r: fmt(r["rank_probability"], ".2f")))
    columns += [
        ("variant", lambda r: r["variant"]),
        ("eval loss, mean ± 95% CI" if multi else "eval loss (one seed: no interval)", _loss_cell),
        *([("masked-token accuracy", lambda r: fmt(r["eval_accuracy_mean"], ".3f"))]
          if "eval_accuracy_mean" in table.columns else []),
        ("seeds", lambda r: str(r["n_seeds"])),
        ("speedup, interleaved probe (IQR)", lambda r: _probe_cell(r, baseline)),
    ]
    if has_target:
        # Seconds-based, unlike the probe's column beside it: the header says so where the eye lands first.
        columns.append(("time-to-target speedup" + (" [95% CI]" if multi else "") + " (wall-clock; see caveat)",
                        ttt))
    columns += [
        ("params", lambda r: fmt(r["params_total"], ",")),
        ("train FLOPs/token", lambda r: fmt(r["flops_train_per_token"], ",")),
        (memory, lambda r: _mib(r["peak_memory_bytes"])),
        ("tokens/s", lambda r: fmt(r["tokens_per_second"], ",.0f")),
    ]
    if table["mfu"].notna().any():
        columns.append(("MFU", lambda r: "-" if _is_missing(r["mfu"]) else f"{100 * r['mfu']:.1f}%"))
    for name in ("device", "commit"):
        if table[name].nunique() > 1:
            columns.append((name, lambda r, name=name: r[name]))
    return columns


def target_columns() -> list[Column]:
    return [
        ("variant", lambda r: r["variant"]),
        ("status", lambda r: r["to_target_status"]),
        ("steps (median)", lambda r: fmt(r["steps_to_target"], ".1f")),
        ("tokens (median)", lambda r: fmt(r["tokens_to_target"], ",.0f")),
        ("FLOPs (median)", lambda r: fmt(r["flops_to_target"], ".4g")),
        ("train seconds (median)", lambda r: fmt(r["seconds_to_target"], ".2f")),
    ]


def _table(table, columns: list[Column]) -> page.Table:
    return page.table([c for c, _ in columns], [[f(row) for _, f in columns] for _, row in table.iterrows()],
                      TEXT_COLUMNS)


def budget_text(record: dict[str, Any]) -> str:
    """The budget of a record's suite as the pages write it: `steps=400`."""
    return ", ".join(f"{k}={v}" for k, v in sorted(record["config"]["budget"].items()))


def header_items(kept: list[dict[str, Any]], left_out: int, failed: int = 0) -> list[tuple[str, str]]:
    first = kept[0]
    config = first["config"]
    budget = budget_text(first)
    overrides = comparable_overrides(first)
    return [
        ("suite", f"{first['suite']['name']} v{first['suite']['version']}"),
        ("suite hash", f"`{first['suite']['hash']}`"),
        ("blockbench version", _join(r["blockbench_version"] for r in kept)),
        ("baseline variant", config.get("baseline", "-")),
        ("target", target_text(kept)),
        ("budget", budget),
        ("seeds", _join(r["seed"] for r in kept)),
        ("corpus", f"{first['data']['corpus']}, {first['data']['tokenizer']} tokenizer, "
                   f"vocab {first['data']['vocab_size']}"),
        ("corpus fingerprint", f"`{first['data']['fingerprint']}`"),
        ("model", ", ".join(f"{k}={v}" for k, v in config["model"].items())),
        ("overrides", json.dumps(overrides, sort_keys=True) if overrides else "none"),
        ("device", _join(f"{r['env']['device_name']} ({r['env']['device']}, {r['env']['threads']} threads)"
                         for r in kept)),
        *setup_facts(kept),
        ("torch", _join(r["env"]["torch"] for r in kept)),
        ("commit", _join((r["git"]["commit"] or "unknown") + (" (dirty)" if r["git"]["dirty"] else "")
                         for r in kept)),
        ("records", f"{len(kept)} ranked, {left_out} left out" + (f", {failed} failed runs (failures/)"
                                                                      if failed else "")),
    ] + ([("speed", f"speed ratios (interleaved probe) not shown: {note}")]
         if (note := speed_not_comparable(kept) or stats.probe_disturbed_note(kept)) is not None else [])


def speed_not_comparable(records: list[dict[str, Any]]) -> str | None:
    """Why the records' speed ratios do not compare with each other, else None: a ratio means something only on
    the device type and in the execution mode it was measured in (kernels, launches and fusion differ)."""
    if len(device_types(records)) > 1:
        return "the runs trained on several device types, and a ratio compares only within one"
    modes = execution_modes(records)
    if len(modes) > 1:
        return (f"the runs trained in several execution modes ({', '.join(sorted(modes))}), and a ratio compares "
                "only within one")
    return None


PEAK_SOURCES = {"table": "spec table", "measured": "measured on this machine by a matmul probe"}


def setup_facts(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """How the steps executed: the execution mode, the training dtype, and the peak FLOP/s that MFU divides by
    (`989.5 TFLOP/s, bf16 dense, spec table`). Every speed figure is relative to these."""
    modes = ", ".join(sorted(execution_modes(records)))
    dtypes = _join(r["config"].get("dtype") or r["config"]["runtime"].get("dtype") for r in records)
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
    devices = _join(f"{r['env']['device_name']} ({r['env']['device']})" for r in records)
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


READING_GUIDE = (
    "**eval loss**: the final evaluation loss at the budget in nats/token (bits per byte in the CSV), the mean "
    "over seeds ± the half-width of a 95% Student-t interval; a single seed has no interval. Lower is better and "
    "the rank is by this mean. A variant with a diverged or failed seed (`diverged on k/n seeds`, `failed on k/n "
    "seeds`) is listed but not ranked. `plateau on k/n seeds`: k of n seeds ended stuck on the unigram plateau "
    "(eval loss improved by less than 0.05 nats over at least the last third of the run while above the suite's "
    "plateau level, by default 0.55 ln(vocab)): such a run has not learnt from context and is not converged.",
    "**Brackets** `[a, b]` always hold a 95% interval; an interquartile range is written `(IQR x)`.",
    "**rank stability** (the line under the ranking): Kendall's tau-b between the ranking by mean eval loss at "
    "50% (and 75%) of the budget and the final ranking. The ranking is **settled** when tau(50%->final) >= 0.8 "
    "and tau(75%->final) >= 0.9 (at most 10% of pairs swap in the second half, 5% in the last quarter), else "
    "**unsettled**: the order was still moving when the budget ended and is a snapshot, not a verdict.",
    "**rank** ranges (`2-5`): adjacent variants whose order is not resolved share one. With >= 2 seeds a pair is "
    "resolved when a bootstrap over seeds (resampled jointly, as seeds share data order; enumerated exactly up to "
    "8 seeds) puts it in order with probability >= 0.9 and the 95% interval of the difference (paired by seed) "
    "excludes zero: with 2-3 seeds the bootstrap alone gives probability 1 to any sign that holds on every seed. "
    "With one seed a pair is resolved when it is in the same order at 50%, 75% and 100% of the budget. "
    "**P(rank)** (>= 2 seeds only): the bootstrap's probability that the variant is at its listed position.",
    "**speedup, interleaved probe**: baseline step time / variant step time (> 1 is faster), measured before "
    "training by one process that times all variants round-robin; the median over rounds, with the interquartile "
    "range over rounds in parentheses (a large one means a noisy machine). Machine drift cancels in this ratio: "
    "compare these, not tokens/s.",
    "**time-to-target speedup**: the baseline's median training seconds to the target / the variant's, with a "
    "percentile-bootstrap 95% interval over seeds (10,000 seeded resamples; two or more seeds only). A miss "
    "counts as infinite: `miss` when the variant's median run missed the target (`[miss, x]`: censored, in over "
    "2.5% of resamples the median run missed), `baseline missed` when the baseline's did (no finite ratio: the "
    "variant is faster by an unknown factor), `both missed` when neither reached it. Seconds-based: see the "
    "caveat.",
    "**time to target** status: `ok`; `target missed on k/n seeds` (never reached within the budget; the median "
    "is `miss` once half the seeds or more missed); `diverged on k/n seeds` (a diverged run counts as a miss even "
    "if it passed the target before); `failed on k/n seeds` (no record: see failures/).",
    "**peak mem**: on CPU the growth of the process's peak resident set over the measured steps (gradients, "
    "optimiser state, activations, and allocator effects; comparable only between CPU runs); on CUDA the "
    "allocator's peak (max allocated), weights included.",
    "**tokens/s**: median over seeds of each run's training tokens / training seconds (evaluation excluded); a "
    "seconds-based figure. **MFU**: model FLOPs per second / the device's peak dense FLOP/s; shown only where a "
    "peak is known for the device.",
)

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
SECONDS_FIGURES = ("loss_vs_seconds.png", "tokens_per_second.png")  # their captions end with the seconds caveat


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


def build_page(table, kept: list[dict[str, Any]], left_out: list[tuple[str, str]], failed: int = 0,
               stability_line: str = "", artefacts: list[str] | None = None) -> page.Page:
    """Everything the leaderboard says, once: leaderboard.md and index.html are two renderings of this."""
    artefacts = artefacts or []
    first = kept[0]
    suite = first["suite"]
    baseline = first["config"].get("baseline")
    target = first["to_target"]["target"]
    multi = int(table["n_seeds"].max()) >= 2
    doc = page.Page(f"Leaderboard: suite {suite['name']} v{suite['version']}")

    # What a reader looks for first, at the top: the guide to the columns (at the bottom) and the claims report.
    top = ["[How to read this](#how-to-read-this): every column and line explained, at the bottom of this page"]
    if "REPORT.md" in artefacts:
        top.append("**Claims report:** " + report_link(artefacts) + ", the seed paper's claims checked against "
                   "these records")
    doc.add(page.Para(". ".join(top) + "."))

    files = ["[index.html](index.html) and [leaderboard.md](leaderboard.md) (this page)",
             "[leaderboard.csv](leaderboard.csv) (every number, unrounded)"]
    files += [f"[{name}]({name})" for name in artefacts]
    files += ["the plots below", "[records/](records/) (one run record per variant and seed)"]
    doc.add(page.Para("Every variant of the suite trained under identical conditions; every number on this page "
                      "comes from the run records in `records/`. Files: " + "; ".join(files) + "."))

    doc.add(page.Heading("Setup"), page.table(["item", "value"], [list(i) for i in header_items(
        kept, len(left_out), failed)], TEXT_COLUMNS))

    columns = ranking_columns(table, baseline, target is not None)
    shown = {c for c, _ in columns}
    seeds = ("Lower is better; the rank is by the mean over seeds, and ± is the half-width of a 95% interval."
             if multi else "Lower is better. **One seed per variant:** a single seed has no interval, so there is "
             "no ± and no P(rank), and differences of a few hundredths of a nat may be seed-to-seed noise.")
    doc.add(page.Heading("Ranking: final eval loss at the budget"), page.Para(seeds), _table(table, columns))
    if stability_line:
        doc.add(page.Para(f"**{stability_line}**"))
    absent = []
    if "MFU" not in shown:
        devices = _join(f"{r['env']['device_name']} ({r['env']['device']})" for r in kept)
        absent.append(f"MFU is not shown: it needs the device's peak FLOP/s, and none is known for {devices}.")
    if "MFU" in shown:
        absent.append("MFU's peak FLOP/s: see the setup table.")
    if not any(c.startswith("device") for c in shown) or not any(c.startswith("commit") for c in shown):
        absent.append("Device and commit are the same for every row: see the setup table.")
    if absent:
        doc.add(page.Para(" ".join(absent)))

    if target is not None:
        reached = target_text(kept)
        missed = (f" **{reached.split(': ', 1)[1]}**: the target lies below what this budget reached, so this table "
                  "ranks nothing." if "target not reached by any variant" in reached else "")
        doc.add(page.Heading(f"Time to target: eval loss ≤ {target} nats/token"),
                page.Para("Medians over seeds of the steps, tokens, FLOPs and training seconds until the eval loss "
                          "first reached the target, interpolated between evaluations; `miss`: the median run "
                          "never reached it within the budget." + missed),
                _table(table, target_columns()), page.Para(seconds_caveat(kept), "caveat"))

    if "REPORT.md" in artefacts or "diagnose.png" in artefacts:
        doc.add(page.Heading("The paper's claims"))
        if "REPORT.md" in artefacts:
            doc.add(page.Para(f"{report_link(artefacts)}: {ARTEFACTS['REPORT.md']}."))
        for name in ("report_claims.png", "diagnose.png"):
            if name in artefacts:
                doc.add(page.Figure(name, ARTEFACTS[name][0].upper() + ARTEFACTS[name][1:] + "."))

    doc.add(page.Heading("Plots"))
    doc.add(*(page.Figure(name, caption + (" " + seconds_caveat(kept) if name in SECONDS_FIGURES else ""))
              for name, caption in FIGURES.items()))
    doc.add(page.Heading("How to read this"), page.Bullets(READING_GUIDE))
    if left_out:
        doc.add(page.Heading("Left out"), page.Bullets(tuple(f"`{p}`: {why}" for p, why in left_out)))
    doc.add(page.Para("Regenerate with `blockbench leaderboard DIR`; every number comes from the files in "
                      "records/."))
    return doc


def render_markdown(table, kept: list[dict[str, Any]], left_out: list[tuple[str, str]], failed: int = 0,
                    stability_line: str = "", artefacts: list[str] | None = None) -> str:
    return page.to_markdown(build_page(table, kept, left_out, failed, stability_line, artefacts))


def render_csv(table) -> str:
    buf = io.StringIO()
    table[csv_columns(table)].to_csv(buf, index=False, float_format="%.8g", lineterminator="\n")
    return buf.getvalue()


def render_html(table, kept: list[dict[str, Any]], left_out: list[tuple[str, str]], failed: int = 0,
                stability_line: str = "", artefacts: list[str] | None = None) -> str:
    return page.to_html(build_page(table, kept, left_out, failed, stability_line, artefacts))


# ---------------------------------------------------------------------------------------------------------------
# Plots: Figure objects without pyplot, so no global backend or state is touched.

def _png(fig) -> bytes:
    buf = io.BytesIO()
    # No Software/date stamp, so identical plots give identical bytes.
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def _new_figure(title: str):
    from matplotlib.figure import Figure

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
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13.5, 5.0), layout="constrained")
    ax, tail = fig.subplots(1, 2, width_ratios=[1, 1])
    fig.suptitle(title)
    x_end = float(curves[x].max()) if not curves.empty else 0.0
    scale, unit = axis_scale(x_end)
    x_end /= scale
    series = []  # (variant, whole-run frame, its x, tail frame, its x, diverged)
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
        series.append((variant, g, xs, g[keep], xs[keep], diverged))
        inside = g[keep][xs[keep] >= start]
        if not diverged and not inside.empty and variant not in off_scale:
            lows.append(float(inside["loss_min"].min()))
            highs.append(float(inside["loss_max"].max()))
            starts.append(start)
    tail_start = min(starts) if starts else TAIL_FRACTION * x_end
    tail_end = x_end * 1.01 if x_end > 0 else 1.0
    finite = [v for v in curves["eval_loss"] if math.isfinite(v)]
    y_span = max(finite) - min(finite) if finite else 0.0
    pad = 0.05 * max(max(highs) - min(lows), 1e-3) if lows else 0.0
    y_low, y_high = (min(lows) - pad, max(highs) + pad) if lows else (0.0, y_span)
    # The spans the panels show, for the rule that names curves hidden under others.
    notes = plotstyle.coincide_notes([s[0] for s in series], [
        ("the whole run", {s[0]: _points(s[2], s[1]["eval_loss"]) for s in series}, x_end, y_span),
        ("the last half", {s[0]: _points(s[4], s[3]["eval_loss"]) for s in series}, tail_end - tail_start,
         y_high - y_low)])
    names = [s[0] for s in series]
    for variant, g, xs, t, tx, diverged in series:
        style = plotstyle.variant_style(variant, names)
        line = "--" if diverged else "-"
        words = [w for w in ("diverged" if diverged else "", notes.get(variant, "")) if w]
        # A long note wraps, so that the legend does not take the panels' width.
        label = "\n".join(textwrap.wrap(f"{variant} ({'; '.join(words)})", 34)) if words else variant
        ax.plot(xs, g["eval_loss"], markersize=4, linestyle=line, label=label, **style)
        tail.plot(tx, t["eval_loss"], markersize=5, linestyle=line, **style)
        if (t["n"] > 1).any():
            tail.fill_between(tx, t["loss_min"], t["loss_max"], color=style["color"], alpha=0.12, linewidth=0)
    if target is not None:
        for a in (ax, tail):
            a.axhline(target, color="grey", linestyle=":", linewidth=1, label=f"target {target}" if a is ax else None)
    tail_title = "each variant's last half (own scale; band: lowest to highest seed)"
    if lows:
        tail.set_ylim(y_low, y_high)
        shown = [v for v in order if v in off_scale and not curves[curves["variant"] == v].empty]
        if shown:  # in the title, where it can cover no curve
            tail_title += f"\noff scale (unigram plateau): {', '.join(shown)}"
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
    return _png(fig)


def plot_bars(table, column: str, xlabel: str, title: str, note: str = "") -> bytes:
    fig, ax = _new_figure(title)
    if note:
        fig.set_size_inches(8.5, 4.8)
    rows = table[~table[column].isna()]
    names = list(rows["variant"])[::-1]  # first-ranked at the top
    values = [float(v) for v in rows[column]][::-1]
    scale, unit = axis_scale(max(values, default=0.0))
    # Each bar in its variant's colour, as in the curves, so a variant is found by colour on every plot.
    ax.barh(names, [v / scale for v in values], color=[plotstyle.variant_style(n, names)["color"] for n in names])
    for i, v in enumerate(values):
        ax.annotate(f"{v:,.0f}", (v / scale, i), xytext=(3, 0), textcoords="offset points", va="center",
                    fontsize="small")
    ax.set_xlabel(xlabel + unit)
    ax.margins(x=0.15)
    if note:
        fig.supxlabel(note, fontsize="small", color="dimgrey", wrap=True)
    return _png(fig)


# ---------------------------------------------------------------------------------------------------------------
# Build and write

def ranked_table(records: list[dict[str, Any]], failures: list[dict[str, Any]] | None = None
                 ) -> tuple[Any, stats.Stability]:
    """The ranking table (one row per variant, CSV_COLUMNS) with its stability columns, and the stability: what
    every view that states a ranking reads (the leaderboard, the results index)."""
    first = records[0]
    runs = runs_frame(records, failures or [])
    # Speed ratios are relative to the baseline on the device a run trained on: across device types they do not
    # compare, so with several types none is shown (params, FLOPs and loss still are).
    table = aggregate(runs, first["config"].get("baseline"), first["to_target"]["target"] is not None,
                      speed_not_comparable(records) is None, stats.probe_disturbed_note(records) is None)
    ranked = list(table.loc[table["status"] == "ok", "variant"])
    suite = first["suite"]
    st = stats.stability(records, f"{suite['name']}/{suite['version']}", ranked)
    return add_stability(table, st), st


def build(entries: list[tuple[Path, dict[str, Any]]], left_out: list[tuple[str, str]],
          failures: list[dict[str, Any]] | None = None, artefacts: list[str] | None = None) -> dict[str, bytes]:
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
    text = build_page(table, records, left_out, len(failures), line, artefacts)
    return {
        "leaderboard.md": page.to_markdown(text).encode(),
        "leaderboard.csv": render_csv(table).encode(),
        "loss_vs_steps.png": plot_curves(curves, order, "step", "training steps", "eval loss vs steps", target, off),
        "loss_vs_seconds.png": plot_curves(curves, order, "train_seconds", "training seconds (mean over seeds)",
                                           "eval loss vs training seconds", target, off, seconds_plot_note(records)),
        "loss_vs_flops.png": plot_curves(curves, order, "flops", "training FLOPs", "eval loss vs FLOPs", target,
                                         off),
        "params.png": plot_bars(table, "params_total", "parameters", "parameters per variant"),
        "tokens_per_second.png": plot_bars(table, "tokens_per_second", "tokens/s (median over seeds)",
                                           "training throughput per variant (raw, not drift-corrected)",
                                           seconds_plot_note(records)),
        "index.html": page.to_html(text).encode(),
    }


def write_outputs(out_dir: Path, files: dict[str, bytes]) -> None:
    """All files to temporary names first, then renamed into place: a failure leaves the old outputs intact."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LeaderboardError(f"{out_dir}: cannot create output directory ({exc.strerror})") from None
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


def resolve_target(target: str) -> tuple[Path, str | None]:
    """SUITE_OR_DIR -> (results dir, the suite's current hash when known)."""
    path = Path(target)
    if path.is_dir():
        return path, None
    if path.exists() and path.suffix != ".toml":
        raise LeaderboardError(f"{target}: expected a suite name, a suite .toml or a results directory")
    if not path.exists() and (os.sep in target or "/" in target) and path.suffix != ".toml":
        raise LeaderboardError(f"{target}: no such directory (expected a suite name or a results directory)")
    from blockbench.suite import load_suite

    suite = load_suite(target)  # a built-in name or a suite .toml; raises a one-line SuiteError otherwise
    results = Path("results") / suite.name / suite.version
    if not results.is_dir():
        raise LeaderboardError(f"no results for suite {suite.name} v{suite.version}: {results}/ does not exist "
                               f"below {Path.cwd()} (run from the repository root, or give the directory)")
    return results, suite.hash


def ranked_records(results: Path, current_hash: str | None = None
                   ) -> tuple[list[tuple[Path, dict[str, Any]]], list[tuple[Path, str]]]:
    """The records of a results dir that rank together, and (path, reason) for each one left out: one suite
    version per directory, and the group of the built-in suite's current hash first (`current_hash`, when the
    caller knows it, else looked up)."""
    entries = load_entries(results)
    check_one_version(entries, str(records_dir(results)))
    if current_hash is None:
        suite = entries[0][1]["suite"]
        current_hash = current_suite_hash(suite["name"], suite["version"])
    return select_group(entries, current_hash)


def generate(target: str | os.PathLike, out: str | os.PathLike | None = None,
             warn: Callable[[str], None] | None = None) -> tuple[Path, list[str]]:
    """Regenerate a leaderboard; return (output dir, names written). `warn` gets one message per left-out file."""
    warn = warn or (lambda message: print(message, file=sys.stderr))
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
    files = build(kept, left_out, group_failures(results, kept), present_artefacts(out_dir))
    write_outputs(out_dir, files)
    return out_dir, list(files)
