"""Run records, failure files and the probe file on disk: written atomically, never through a link, read through
the one guarded loader (blockbench.safeio) and validated against the schema (records/schema.py).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from blockbench.blocks.zoo import name_problem
from blockbench.records.schema import (
    MAX_RECORD_BYTES,
    MAX_RECORD_DEPTH,
    SCHEMA_VERSION,
    SECTIONS,
    RecordError,
    check_keys,
    content_digest,
    validate_failure,
    validate_record,
)
from blockbench.safeio import UnsafeFileError, atomic_write_bytes, parse_json_strict, read_text_guarded


def seal(record: dict[str, Any]) -> dict[str, Any]:
    """The record as it is written: JSON-normalised (tuples -> lists, NaN -> null), with its integrity digest."""
    record = json.loads(json.dumps(finite_or_none(record)))
    record["schema_version"] = SCHEMA_VERSION
    record["integrity"] = {"sha256": content_digest(record)}
    return record


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN or infinity: a non-finite number (a diverged loss, a missed target) becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_or_none(v) for v in value]
    return value


def write_record(record: dict[str, Any], path: str | os.PathLike) -> Path:
    """Validate, then write atomically (temp file + link or rename) and never over an existing record."""
    record = validate_record(seal(record), str(path))
    path = Path(path)
    exists = RecordError(f"{path}: a record already exists there; records are never overwritten")
    if os.path.lexists(path):  # a link there (even a dangling one) is refused, never written through
        raise exists
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(record, path)
    try:
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


def read_json(path: Path, what: str = "record") -> Any:
    """A JSON file, or a RecordError naming it for whatever is wrong: unreadable (a directory, a symlink loop,
    permissions, a FIFO), too large, not UTF-8, not JSON, NaN/Infinity literals, nesting too deep, numbers too
    long. Read through the one guarded loader (blockbench.safeio)."""
    try:
        text = read_text_guarded(path, MAX_RECORD_BYTES, f"blockbench {what}")
        return parse_json_strict(text, path, f"blockbench {what}", MAX_RECORD_DEPTH)
    except UnsafeFileError as exc:
        raise RecordError(str(exc)) from None


def load_record(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    return validate_record(read_json(path), str(path))


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


def contained(directory: str | os.PathLike, *parts: str) -> Path:
    """directory/part/..., for parts that come from names (a variant, a suite, a version): each must be one plain
    path component, and the path, resolved, must stay inside `directory` resolved. Names are checked where they
    enter (blocks.zoo.name_problem); this is the second line of defence, where a path is built."""
    base = Path(directory)
    path = base.joinpath(*parts)
    for part in parts:
        if not part or part in (".", "..") or "\0" in part or Path(part).name != part:
            raise RecordError(f"{path}: {part!r} is not a plain file or directory name; a name must not leave "
                              f"{base}")
    try:
        inside = path.resolve().is_relative_to(base.resolve())
    except (OSError, RuntimeError) as exc:  # a symlink loop: RuntimeError before Python 3.13
        raise RecordError(f"{path}: cannot resolve ({getattr(exc, 'strerror', None) or exc})") from None
    if not inside:
        raise RecordError(f"{path}: resolves to {path.resolve()}, outside {base}; a name must not leave it")
    return path



def failure_filename(variant: str, seed: int) -> str:
    return record_filename(variant, seed)


def _write_temp(data: dict[str, Any], path: Path) -> str:
    """`data` as JSON in a temp file next to `path` (.NAME.XXXX.tmp), on disk (fsync) before it is linked or
    renamed into place; a failed write removes it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _json_bytes(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


def _write_json_atomic(data: dict[str, Any], path: Path, what: str = "file") -> None:
    """Temp file + rename (safeio): never through a link at `path`, never a partial file left behind."""
    atomic_write_bytes(path, _json_bytes(data), what)


def write_failure(failure: dict[str, Any], path: str | os.PathLike) -> Path:
    """Validate, then write atomically, replacing an earlier attempt's failure file for the same run."""
    path = Path(path)
    failure = validate_failure(failure, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(failure, path, "failure file")
    return path


def load_failure(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    return validate_failure(read_json(path, "failure file"), str(path))


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


def write_probe(probe: dict[str, Any], path: str | os.PathLike, *, replace: bool = False) -> Path:
    """Write the probe file atomically; an existing one is replaced only when asked (a re-probe), never by a
    first probe. A link at `path` is refused either way."""
    path = Path(path)
    if not replace and os.path.lexists(path):
        raise RecordError(f"{path}: a probe file already exists there; it is never overwritten")
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(finite_or_none({"probe_schema_version": PROBE_SCHEMA_VERSION, **probe}), path, "probe file")
    return path


def load_probe(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    data = read_json(path, "probe file")
    if not isinstance(data, dict) or data.get("probe_schema_version") != PROBE_SCHEMA_VERSION:
        raise RecordError(f"{path}: not a blockbench probe file of version {PROBE_SCHEMA_VERSION}")
    check_keys(data, {"suite": dict, "overrides": dict, "variants": list, "probes": dict}, str(path))
    check_keys(data["suite"], SECTIONS["suite"], f"{path}: suite")
    for i, variant in enumerate(data["variants"]):
        if name_problem(variant):
            raise RecordError(f"{path}: variants[{i}] {name_problem(variant)}")
    for device, prepared in data["probes"].items():
        if not isinstance(prepared, dict) or any(
                not isinstance(p, dict) or not isinstance(p.get("static"), (dict, type(None)))
                for p in prepared.values()):
            raise RecordError(f"{path}: probes[{device!r}] is not a mapping of variant -> {{static, speed}}")
    return data

