"""The run record: one JSON file per (variant, seed), written once, atomically, never modified.

Every view (leaderboard, compare, CI gate, asv) reads records through `load_record`, so this module is the one
place the schema lives. The top-level names below are a public interface: bump SCHEMA_VERSION on any change
that an external reader would notice.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from blockbench.errors import BlockbenchError

# 2: records carry `integrity` (sha256 of their canonical content). Version-1 records (written before) are still
# read, with the same checks except the digest; only version 2 is written.
SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)
STATUSES = ("ok", "diverged")

_NUM = (int, float)
_OPT_NUM = (int, float, type(None))
_OPT_STR = (str, type(None))

# key -> type(s) for the top level, and for each nested section the keys it must have.
TOP_LEVEL: dict[str, Any] = {
    "schema_version": int, "blockbench_version": str, "run_id": str, "created_at": str,
    "git": dict, "suite": dict, "variant": str, "block_spec": (dict, type(None)), "seed": int,
    "status": str, "stop_reason": str, "config": dict, "env": dict, "data": dict, "static": dict,
    "summary": dict, "speed": dict, "curve": list, "to_target": dict,
}
SECTIONS: dict[str, dict[str, Any]] = {
    "git": {"commit": _OPT_STR, "dirty": (bool, type(None))},
    "suite": {"name": str, "version": str, "hash": str},
    "env": {"python": str, "torch": str, "device": str, "device_name": str, "cuda": _OPT_STR, "threads": int,
            "cpu_model": str, "platform": str},
    "data": {"corpus": str, "fingerprint": str, "tokenizer": str, "vocab_size": int},
    "static": {"params_total": int, "params_embedding": int, "params_block_matrices": int,
               "flops_fwd_per_token": int, "flops_train_per_token": int, "counters": dict},
    "summary": {"steps": int, "tokens": int, "train_seconds": _NUM, "tokens_per_second": _NUM,
                "step_time_median": _NUM, "step_time_iqr": _NUM, "peak_memory_bytes": _OPT_NUM,
                "peak_memory_kind": str, "final_train_loss": _OPT_NUM, "final_eval_loss": _OPT_NUM,
                "final_eval_bpb": _OPT_NUM, "mfu": _OPT_NUM, "eval_seconds": _NUM, "warmup_seconds": _NUM},
    "speed": {"method": _OPT_STR, "baseline": _OPT_STR, "rounds": int, "step_time_median": _OPT_NUM,
              "speedup_vs_baseline": _OPT_NUM, "speedup_iqr": _OPT_NUM},
    "to_target": {"target": _OPT_NUM, "steps": _OPT_NUM, "tokens": _OPT_NUM, "flops": _OPT_NUM,
                  "seconds": _OPT_NUM},
}
# Keys of config.overrides that only choose which runs were made, not how a run is measured.
SELECTION_OVERRIDES = ("variants", "seeds")

CURVE_POINT: dict[str, Any] = {"step": int, "tokens": int, "flops": _NUM, "train_seconds": _NUM,
                               "train_loss": _OPT_NUM, "eval_loss": _OPT_NUM}


class RecordError(BlockbenchError):
    """A file where a run record was expected is missing, corrupt, or of another schema."""


def _check(mapping: dict, spec: dict[str, Any], where: str) -> None:
    for key, types in spec.items():
        if key not in mapping:
            raise RecordError(f"{where}: missing key '{key}'")
        value = mapping[key]
        if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            raise RecordError(f"{where}: '{key}' has type bool")
        if not isinstance(value, types):
            raise RecordError(f"{where}: '{key}' has type {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise RecordError(f"{where}: '{key}' is not finite")


def validate_record(record: Any, source: str = "record") -> dict[str, Any]:
    """Raise RecordError naming the first problem; return the record unchanged when it is valid."""
    if not isinstance(record, dict):
        raise RecordError(f"{source}: not a JSON object")
    version = record.get("schema_version")
    if isinstance(version, bool) or version not in READABLE_SCHEMA_VERSIONS:
        raise RecordError(f"{source}: schema_version {version!r} is not "
                          f"{SCHEMA_VERSION} (not a blockbench run record of this version)")
    _check(record, TOP_LEVEL, source)
    for section, spec in SECTIONS.items():
        _check(record[section], spec, f"{source}: {section}")
    if record["status"] not in STATUSES:
        raise RecordError(f"{source}: status {record['status']!r} is not one of {', '.join(STATUSES)}")
    if record["status"] == "ok" and record["summary"]["final_eval_loss"] is None:
        raise RecordError(f"{source}: status 'ok' without a final eval loss (a run that ended well was evaluated)")
    for i, point in enumerate(record["curve"]):
        if not isinstance(point, dict):
            raise RecordError(f"{source}: curve[{i}] is not an object")
        _check(point, CURVE_POINT, f"{source}: curve[{i}]")
    _check_summary_matches_curve(record, source)
    if version >= 2:
        integrity = record.get("integrity")
        if not isinstance(integrity, dict) or not isinstance(integrity.get("sha256"), str):
            raise RecordError(f"{source}: missing its integrity digest (integrity.sha256)")
        if integrity["sha256"] != content_digest(record):
            raise RecordError(f"{source}: integrity check failed: its content does not match its sha256 "
                              "(edited after it was written)")
    return record


def _check_summary_matches_curve(record: dict[str, Any], source: str) -> None:
    """The summary of a run that ended well is its curve's last point: a hand-edited number shows here."""
    if record["status"] != "ok":
        return
    if not record["curve"]:
        raise RecordError(f"{source}: status 'ok' with an empty curve")
    last, summary = record["curve"][-1], record["summary"]
    for key, point_key in (("final_eval_loss", "eval_loss"), ("steps", "step"), ("tokens", "tokens")):
        if summary[key] != last[point_key]:
            raise RecordError(f"{source}: summary.{key} {summary[key]!r} does not match the curve's last point "
                              f"({point_key} {last[point_key]!r})")


def content_digest(record: dict[str, Any]) -> str:
    """sha256 of the record's canonical JSON (sorted keys, no whitespace), without its `integrity` field."""
    body = {k: v for k, v in record.items() if k != "integrity"}
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise RecordError(f"record content cannot be serialised canonically ({exc})") from None
    return hashlib.sha256(text.encode()).hexdigest()


def seal(record: dict[str, Any]) -> dict[str, Any]:
    """The record as it is written: JSON-normalised (tuples -> lists, NaN -> null), with its integrity digest."""
    record = json.loads(json.dumps(_finite_or_none(record)))
    record["schema_version"] = SCHEMA_VERSION
    record["integrity"] = {"sha256": content_digest(record)}
    return record


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN: a non-finite number (a diverged loss) is stored as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def write_record(record: dict[str, Any], path: str | os.PathLike) -> Path:
    """Validate, then write atomically (temp file + link or rename) and never over an existing record."""
    record = validate_record(seal(record), str(path))
    path = Path(path)
    exists = RecordError(f"{path}: a record already exists there; records are never overwritten")
    if path.exists():
        raise exists
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if path appeared meanwhile: no silent overwrite
        except FileExistsError:
            raise exists from None
        except OSError:  # no hard links on this filesystem: rename is atomic too, only the check above is racy
            if path.exists():
                raise exists from None
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_record(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise RecordError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return validate_record(data, str(path))


def comparable_overrides(record: dict[str, Any]) -> dict[str, Any]:
    """The command-line overrides that change what a run measures: records are comparable only if these agree."""
    overrides = record["config"].get("overrides") or {}
    return {k: v for k, v in sorted(overrides.items()) if k not in SELECTION_OVERRIDES}


def find_record_files(path: str | os.PathLike) -> list[Path]:
    """A record file, or every *.json below a directory (records/ of a run or results dir), sorted."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise RecordError(f"{path}: no such file or directory")
    return sorted(p for p in path.rglob("*.json") if not p.name.startswith("."))


def load_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    files = find_record_files(path)
    if not files:
        raise RecordError(f"{path}: no run records found")
    return [load_record(f) for f in files]


def record_filename(variant: str, seed: int) -> str:
    return f"{variant}-seed{seed}.json"


# ---------------------------------------------------------------------------------------------------------------
# Failure files: OUT/failures/VARIANT-seedN.json, one per (variant, seed) whose latest attempt raised, was killed
# or stalled. Unlike a record, a failure file is replaced by the next failed attempt and removed once a record
# for that run exists: it says why a run is missing, it is never a result.

FAILURE_SCHEMA_VERSION = 1
FAILURE_KEYS: dict[str, Any] = {
    "failure_schema_version": int, "suite": dict, "overrides": dict, "variant": str, "seed": int,
    "error_type": str, "message": str, "traceback": str, "host": str, "attempt": int, "retryable": bool,
    "executor": str, "created_at": str,
}


def failure_filename(variant: str, seed: int) -> str:
    return record_filename(variant, seed)


def validate_failure(failure: Any, source: str = "failure") -> dict[str, Any]:
    if not isinstance(failure, dict) or failure.get("failure_schema_version") != FAILURE_SCHEMA_VERSION:
        raise RecordError(f"{source}: not a blockbench failure file of version {FAILURE_SCHEMA_VERSION}")
    _check(failure, FAILURE_KEYS, source)
    _check(failure["suite"], SECTIONS["suite"], f"{source}: suite")
    return failure


def _write_json_atomic(data: dict[str, Any], path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_failure(failure: dict[str, Any], path: str | os.PathLike) -> Path:
    """Validate, then write atomically, replacing an earlier attempt's failure file for the same run."""
    path = Path(path)
    failure = validate_failure(failure, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(failure, path)
    return path


def load_failure(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RecordError(f"{path}: not a readable failure file ({type(exc).__name__})") from None
    return validate_failure(data, str(path))


def load_failures(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The failure files of a run directory (DIR/failures/*.json), sorted by name; none when there are none."""
    directory = Path(run_dir) / "failures"
    if not directory.is_dir():
        return []
    return [load_failure(p) for p in sorted(directory.glob("*.json")) if not p.name.startswith(".")]


def remove_stale_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Temp files a killed writer left behind (.NAME.json.XXXX.tmp); a finished write never leaves one."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = sorted(directory.glob(".*.json.*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


# ---------------------------------------------------------------------------------------------------------------
# The probe file: OUT/probe.json, the static measures and interleaved speed probe of every variant, per device
# type, saved once so that `--resume` gives the remaining runs the same probe as the finished ones.

PROBE_SCHEMA_VERSION = 1


def write_probe(probe: dict[str, Any], path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.exists():
        raise RecordError(f"{path}: a probe file already exists there; it is never overwritten")
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(_finite_or_none({"probe_schema_version": PROBE_SCHEMA_VERSION, **probe}), path)
    return path


def load_probe(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RecordError(f"{path}: not a readable probe file ({type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("probe_schema_version") != PROBE_SCHEMA_VERSION:
        raise RecordError(f"{path}: not a blockbench probe file of version {PROBE_SCHEMA_VERSION}")
    _check(data, {"suite": dict, "overrides": dict, "variants": list, "probes": dict}, str(path))
    _check(data["suite"], SECTIONS["suite"], f"{path}: suite")
    for device, prepared in data["probes"].items():
        if not isinstance(prepared, dict) or any(
                not isinstance(p, dict) or not isinstance(p.get("static"), (dict, type(None)))
                for p in prepared.values()):
            raise RecordError(f"{path}: probes[{device!r}] is not a mapping of variant -> {{static, speed}}")
    return data


# ---------------------------------------------------------------------------------------------------------------
# Tokenization: runs are comparable only if they were scored on the same tokens.

TOKENIZATION_FIELDS = ("tokenizer", "tokenizer_sha256", "vocab_size", "n_tokens_train", "n_tokens_val")


def tokenization(record: dict[str, Any]) -> dict[str, Any]:
    """The facts of `record["data"]` that say how its corpus was tokenized (records made before the tokenizer's
    full hash was recorded lack `tokenizer_sha256`; their tokenizer id still carries a 12-hex prefix of it)."""
    data = record["data"]
    return {k: data.get(k) for k in TOKENIZATION_FIELDS}


def tokenization_difference(a: dict[str, Any], b: dict[str, Any]) -> str:
    """'' when two records' tokenizations agree, else the first field that differs with both values."""
    ta, tb = tokenization(a), tokenization(b)
    for key in TOKENIZATION_FIELDS:
        if key == "tokenizer_sha256" and (ta[key] is None or tb[key] is None):
            continue
        if ta[key] != tb[key]:
            return f"data.{key} {ta[key]!r} vs {tb[key]!r}"
    return ""
