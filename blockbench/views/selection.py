"""Which records a view ranks or compares together: loading a results dir's records, grouping them (suite name,
version and hash, overrides, tokenization, workload), choosing the group to rank, and ranking it.

Records are ranked together only when they share suite name, version and content hash and the same command-line
overrides (the `variants` and `seeds` overrides do not change what a run measures, so they are ignored). Mixed
suite names or versions in one directory are an error; a stale hash or other overrides leaves those files out,
each with a message saying why.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from blockbench import stats
from blockbench.errors import BlockbenchError
from blockbench.records import (
    RecordError,
    comparable_overrides,
    device_types,
    execution_modes,
    find_record_files,
    load_failures,
    load_record,
    tokenization,
    tokenization_difference,
)
from blockbench.suite import builtin_suites, load_suite
from blockbench.views import columns as C
from blockbench.workloads import workload_of


class LeaderboardError(BlockbenchError):
    pass



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
    if not kept:
        return []
    _, _, chosen_hash, chosen_overrides, *_ = group_key(kept[0][1])
    done = {(r["variant"], r["seed"]) for _, r in kept}
    return [f for f in load_failures(results)
            if f["suite"]["hash"] == chosen_hash and json.dumps(f["overrides"], sort_keys=True) == chosen_overrides
            and (f["variant"], f["seed"]) not in done]



def training_dtype(record: dict[str, Any]) -> str:
    """The dtype a run trained in (`config.dtype`; older records kept it under `config.runtime`; fp32 when
    neither says, as those runs trained)."""
    config = record["config"]
    runtime = config.get("runtime") if isinstance(config.get("runtime"), dict) else {}
    return str(config.get("dtype") or runtime.get("dtype") or "fp32")


def training_dtypes(records: list[dict[str, Any]]) -> set[str]:
    """The dtypes runs trained in. Like device types and execution modes, speed compares only within one: bf16
    and fp32 steps run different kernels at different peak rates."""
    return {training_dtype(r) for r in records}


def speed_mix(records: list[dict[str, Any]]) -> str | None:
    """What the records' speed ratios mix, in a few words (`several execution modes (compiled, eager)`), else None:
    a ratio means something only on the device type, in the execution mode and in the dtype it was measured in
    (kernels, launches, fusion and peak rates differ)."""
    if len(device_types(records)) > 1:
        return "several device types"
    modes = execution_modes(records)
    if len(modes) > 1:
        return f"several execution modes ({', '.join(sorted(modes))})"
    dtypes = training_dtypes(records)
    if len(dtypes) > 1:
        return f"several dtypes ({', '.join(sorted(dtypes))})"
    return None


def speed_not_comparable(records: list[dict[str, Any]]) -> str | None:
    """Why the records' speed ratios do not compare with each other (speed_mix as a sentence), else None."""
    mix = speed_mix(records)
    if mix is None:
        return None
    where = "on" if mix == "several device types" else "in"
    return f"the runs trained {where} {mix}, and a ratio compares only within one"



def ranked_table(records: list[dict[str, Any]], failures: list[dict[str, Any]] | None = None
                 ) -> tuple[Any, stats.Stability]:
    """The ranking table (one row per variant, the columns of columns.py) with its stability columns, and the
    stability: what every view that states a ranking reads (the leaderboard, the results index)."""
    first = records[0]
    columns = C.columns_for(records)
    runs = C.runs_frame(records, failures or [], columns)
    # Speed ratios are relative to the baseline on the device a run trained on: across device types they do not
    # compare, so with several types none is shown (params, FLOPs and loss still are).
    table = C.aggregate(runs, first["config"].get("baseline"), first["to_target"]["target"] is not None,
                        speed_not_comparable(records) is None, stats.probe_disturbed_note(records) is None, columns)
    ranked = list(table.loc[table["status"] == "ok", "variant"])
    suite = first["suite"]
    st = stats.stability(records, f"{suite['name']}/{suite['version']}", ranked)
    return C.add_stability(table, st, columns), st


def resolve_target(target: str) -> tuple[Path, str | None]:
    """SUITE_OR_DIR -> (results dir, the suite's current hash when known)."""
    path = Path(target)
    if path.is_dir():
        return path, None
    if path.exists() and path.suffix != ".toml":
        raise LeaderboardError(f"{target}: expected a suite name, a suite .toml or a results directory")
    if not path.exists() and (os.sep in target or "/" in target) and path.suffix != ".toml":
        raise LeaderboardError(f"{target}: no such directory (expected a suite name or a results directory)")

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
