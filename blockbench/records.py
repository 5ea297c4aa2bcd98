"""The run record: one JSON file per (variant, seed), written once, atomically, never modified.

Every view (leaderboard, compare, CI gate, asv) reads records through `load_record`, so this module is the one
place the schema lives. The top-level names below are a public interface: bump SCHEMA_VERSION on any change
that an external reader would notice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blockbench.blocks.zoo import name_problem
from blockbench.errors import BlockbenchError
from blockbench.measure.throughput import CONTROL_SUFFIX
from blockbench.safeio import UnsafeFileError, atomic_write_bytes, parse_json_strict, read_text_guarded

if TYPE_CHECKING:
    from blockbench.data import TokenData
    from blockbench.suite import Suite
    from blockbench.workloads import Workload

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
    "data": {"corpus": str, "fingerprint": str, "tokenizer": str, "vocab_size": int, "n_tokens_train": int,
             "n_tokens_val": int},
    # What the views read of the recorded configuration (the rest is free-form).
    "config": {"overrides": dict, "baseline": str, "model": dict, "budget": dict},
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
MODEL_KEYS: dict[str, Any] = {"n_layers": int, "d_model": int, "n_heads": int, "seq_len": int}
# config.optim: what a view reads of it (report prints each variant's learning rate).
OPTIM_KEYS: dict[str, Any] = {"lr": _NUM}
# config.overrides as Suite.with_overrides / with_override_file write them; a key not listed here is free-form
# (it still takes part in comparability as JSON).
OVERRIDE_TYPES: dict[str, Any] = {
    "budget": dict, "target_loss": _NUM, "variants": list, "seeds": list, "device": str, "threads": int,
    "fields": dict, "speed_rounds": int, "override_file": dict,
}
# Top-level keys that are optional (older records lack them) but typed when present. `workload` names what the
# run trained on (blockbench.workloads); a record without one is causal_lm (workloads.workload_of).
OPTIONAL_TOP_LEVEL: dict[str, Any] = {"workload": str}
# speed: the interleaved probe's interval of the median ratio (measure/throughput.interval_fields), how many rounds
# it ran and why it stopped, and its A/A control (None: the control failed; absent: a probe before issue 36).
SPEED_OPTIONAL: dict[str, Any] = {"ci_low": _OPT_NUM, "ci_high": _OPT_NUM, "confidence": _OPT_NUM,
                                  "half_width": _OPT_NUM, "min_rounds": int, "stop_reason": str,
                                  "target_half_width": _NUM, "time_cap_seconds": _OPT_NUM, "time_cap": str,
                                  "probe_seconds": _OPT_NUM, "control": (dict, type(None))}
SPEED_CONTROL: dict[str, Any] = {"name": str, "rounds": int, "speedup_vs_baseline": _NUM, "ci_low": _OPT_NUM,
                                 "ci_high": _OPT_NUM, "confidence": _OPT_NUM, "half_width": _OPT_NUM}
# Keys that are optional (older records lack them) but typed when present.
OPTIONAL_KEYS: dict[str, dict[str, Any]] = {"data": {"tokenizer_sha256": str, "tokenizer_id": str},
                                            # steps on the unigram plateau (stats.py); views recompute it if absent
                                            "summary": {"plateau_steps": (int, type(None)),
                                                        # first step below the plateau level (stats.py)
                                                        "plateau_escape_step": _OPT_NUM,
                                                        # masked_lm: accuracy on the masked evaluation tokens
                                                        "final_eval_accuracy": _OPT_NUM,
                                                        # MFU's denominator and its origin (measure/mfu.py)
                                                        "mfu_peak_flops": _OPT_NUM,
                                                        "mfu_peak_source": _OPT_STR},
                                            # the probe's interval, stopping rule and A/A control (issue 36);
                                            # a record without `control` had none ("no A/A control in this probe")
                                            "speed": SPEED_OPTIONAL}
# Where an MFU's peak came from: the GPU table, the CPU GEMM probe, or nowhere (absent in older records).
MFU_PEAK_SOURCES = ("table", "measured", None)
# Integers beyond 64 bits are no count or size a run can produce, and break the views' numeric columns.
INT_LIMIT = 2**63
# A record is tens of kilobytes; far larger is not one, and must not be read into memory whole.
MAX_RECORD_BYTES = 64 * 2**20
# A record nests a handful of levels (config.overrides.override_file...); far deeper is not one.
MAX_RECORD_DEPTH = 64
# Keys of config.overrides that only choose which runs were made, not how a run is measured.
SELECTION_OVERRIDES = ("variants", "seeds")

CURVE_POINT: dict[str, Any] = {"step": int, "tokens": int, "flops": _NUM, "train_seconds": _NUM,
                               "train_loss": _OPT_NUM, "eval_loss": _OPT_NUM}


class RecordError(BlockbenchError):
    """A file where a run record was expected is missing, corrupt, or of another schema."""


def to_target(curve: list[dict[str, Any]], target: float | None) -> dict[str, Any]:
    """Steps, tokens, FLOPs and training seconds at which the eval loss first reaches `target`, interpolated
    linearly between the two evaluations that bracket it; null when it is never reached."""
    result: dict[str, Any] = {"target": target, "steps": None, "tokens": None, "flops": None, "seconds": None}
    if target is None:
        return result
    points = [p for p in curve if p["eval_loss"] is not None]
    for i, point in enumerate(points):
        if point["eval_loss"] <= target:
            if i == 0:
                frac, before = 1.0, point
            else:
                before = points[i - 1]
                frac = (before["eval_loss"] - target) / (before["eval_loss"] - point["eval_loss"])
            for key, field in (("steps", "step"), ("tokens", "tokens"), ("flops", "flops"),
                               ("seconds", "train_seconds")):
                result[key] = before[field] + frac * (point[field] - before[field])
            return result
    return result


# What the record keeps of a run's static measures (train.static_measures).
STATIC_KEYS = ("params_total", "params_embedding", "params_block_matrices", "params_per_block",
               "flops_fwd_per_token", "flops_train_per_token", "flops_convention", "counters")


def build_record(suite: Suite, variant: str, seed: int, *, workload: Workload, block_spec: dict[str, Any] | None,
                 data: TokenData, static: dict[str, Any], speed: dict[str, Any], env: dict[str, Any],
                 world_size: int, flops_per_token: int, run_config: dict[str, Any], created_at: str, status: str,
                 stop_reason: str, curve: list[dict[str, Any]], steps: int, tokens: int, train_seconds: float,
                 step_seconds: list[float], peak_memory_bytes: int | None, peak_memory_kind: str,
                 eval_seconds: float, warmup_seconds: float, last_train_loss: float | None) -> dict[str, Any]:
    """The run record of one (variant, seed) of `suite` (train.Trainer.run calls it when training ends).

    run_config: how this run trained, beyond the suite (the LR schedule's length, dtype, compilation, execution
    mode, divergence bound), appended to the recorded configuration in its order. env: measure.env.environment
    of the run's device. curve: the evaluation points; status "ok" or "diverged"; the rest is what the run
    measured."""
    import blockbench
    from blockbench import stats
    from blockbench.measure.env import git_state
    from blockbench.measure.mfu import mfu_fields
    from blockbench.measure.timing import median_iqr

    median, iqr = median_iqr(step_seconds)
    tokens_per_second = tokens / train_seconds if train_seconds > 0 else 0.0
    final_eval = curve[-1]["eval_loss"] if status == "ok" else None
    entry = suite.variants[variant]
    config = suite.to_config()
    config["optim"] = dataclasses.asdict(suite.variant_optim(variant))
    config["spec_overrides"] = entry.spec
    config["preset"] = entry.preset
    config.update(run_config)
    plateau_level = stats.plateau_level({"config": config, "data": {"vocab_size": data.vocab_size}})
    points = stats.curve_points({"curve": curve})
    plateau = stats.plateau_steps_of(points, plateau_level) if status == "ok" else None
    escape = stats.plateau_escape_step(points, plateau_level)
    if plateau is not None:  # still "ok" (it trained, within budget), but not converged: say so in the record
        stop_reason += (f"; on the unigram plateau for the last {plateau} steps (eval loss flat within "
                        f"{stats.PLATEAU_TOLERANCE} nats): not converged")
    return {
        "schema_version": SCHEMA_VERSION,
        "blockbench_version": blockbench.__version__,
        "run_id": uuid.uuid4().hex[:12],
        "created_at": created_at,
        "git": git_state(),
        "suite": {"name": suite.name, "version": suite.version, "hash": suite.hash},
        "workload": workload.name,
        "variant": variant,
        "block_spec": block_spec,
        "seed": seed,
        "status": status,
        "stop_reason": stop_reason,
        "config": config,
        "env": {**env, "world_size": world_size},
        "data": {**data.describe(), "corpus": suite.data.corpus, "tokenizer": data.tokenizer_id,
                 "fingerprint": data.fingerprint, "vocab_size": data.vocab_size},
        "static": {k: static[k] for k in STATIC_KEYS},
        "summary": {
            "steps": steps, "tokens": tokens, "train_seconds": train_seconds,
            "tokens_per_second": tokens_per_second, "step_time_median": median, "step_time_iqr": iqr,
            "peak_memory_bytes": peak_memory_bytes, "peak_memory_kind": peak_memory_kind,
            "final_train_loss": last_train_loss if status == "ok" else None,
            "final_eval_loss": final_eval,
            # the workload's own metrics (workloads.Workload.summary_metrics), e.g. bits per byte
            **workload.summary_metrics(curve[-1] if status == "ok" else None, data),
            **mfu_fields(flops_per_token, tokens_per_second, env["device"], env["device_name"],
                         run_config["dtype"]),
            "eval_seconds": eval_seconds, "warmup_seconds": warmup_seconds,
            "plateau_steps": plateau,
            "plateau_escape_step": escape,
        },
        "speed": speed,
        "curve": curve,
        "to_target": to_target(curve, suite.eval.target_loss),
    }


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
    _check_optional(record, OPTIONAL_TOP_LEVEL, source)
    for section, spec in SECTIONS.items():
        _check(record[section], spec, f"{source}: {section}")
    _check_names(record, source)
    _check(record["config"]["model"], MODEL_KEYS, f"{source}: config.model")
    for key, value in record["config"]["budget"].items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecordError(f"{source}: config.budget.{key} has type {type(value).__name__}")
    _check_views_fields(record, source)
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


def _check_names(record: dict[str, Any], source: str) -> None:
    """The names a record carries obey the rule they obeyed on the way in (blocks.zoo.name_problem): they become
    file names, table cells and plot labels, so one from a forged record (a newline, a '/', markup) is refused
    here, like any other malformed field."""
    names = {"variant": record.get("variant"), "suite.name": record["suite"]["name"],
             "suite.version": record["suite"]["version"]}
    if isinstance(record.get("config"), dict) and "baseline" in record["config"]:
        names["config.baseline"] = record["config"]["baseline"]
    for field, name in names.items():
        problem = name_problem(name)
        if problem:
            raise RecordError(f"{source}: {field} {problem}")


def _check_optional(mapping: dict, spec: dict[str, Any], where: str) -> None:
    _check(mapping, {k: t for k, t in spec.items() if k in mapping}, where)


def _check_views_fields(record: dict[str, Any], source: str) -> None:
    """The fields a view reads beyond the sections' required keys, typed and in the range it divides or takes
    roots by: a hand-made record must fail here, with its name, not as a traceback in leaderboard or compare."""
    config = record["config"]
    if not isinstance(config.get("optim"), dict):
        raise RecordError(f"{source}: config: 'optim' is missing or not an object")
    _check(config["optim"], OPTIM_KEYS, f"{source}: config.optim")
    overrides = config["overrides"]
    _check_optional(overrides, OVERRIDE_TYPES, f"{source}: config.overrides")
    _check(overrides.get("budget", {}), dict.fromkeys(overrides.get("budget", {}), _NUM),
           f"{source}: config.overrides.budget")
    for key, spec in OPTIONAL_KEYS.items():
        _check_optional(record[key], spec, f"{source}: {key}")
    if record["summary"].get("mfu_peak_source") not in MFU_PEAK_SOURCES:
        raise RecordError(f"{source}: summary: 'mfu_peak_source' is {record['summary']['mfu_peak_source']!r}, "
                          f"not one of {', '.join(s for s in MFU_PEAK_SOURCES if s)}")
    spec = record["block_spec"]
    if spec:  # report reads the MLP ratio of the baseline's block
        _check(spec, {"mlp_ratio": _NUM}, f"{source}: block_spec")
        if spec["mlp_ratio"] <= 0:
            raise RecordError(f"{source}: block_spec: 'mlp_ratio' is {spec['mlp_ratio']!r}, out of range")
    for key in ("params_total", "flops_fwd_per_token", "flops_train_per_token"):  # ratios divide by them
        if record["static"][key] <= 0:
            raise RecordError(f"{source}: static: '{key}' is {record['static'][key]!r}, out of range")
    speed = record["speed"]
    if speed["rounds"] < 0:
        raise RecordError(f"{source}: speed: 'rounds' is negative")
    for key in ("speedup_vs_baseline", "speedup_iqr", "step_time_median"):
        value = speed[key]
        if value is not None and (value < 0 or (value == 0 and key == "speedup_vs_baseline")):
            raise RecordError(f"{source}: speed: '{key}' is {value!r}, out of range")
    _check_interval(speed, f"{source}: speed")
    control = speed.get("control")
    if control is not None:
        _check(control, SPEED_CONTROL, f"{source}: speed.control")
        name = control["name"]
        if not name.endswith(CONTROL_SUFFIX) or name_problem(name.removesuffix(CONTROL_SUFFIX)):
            raise RecordError(f"{source}: speed.control: 'name' {name[:60]!r} is not a baseline's name + "
                              f"'{CONTROL_SUFFIX}'")
        if control["speedup_vs_baseline"] <= 0:
            raise RecordError(f"{source}: speed.control: 'speedup_vs_baseline' is out of range")
        _check_interval(control, f"{source}: speed.control")


def _check_interval(speed: dict[str, Any], where: str) -> None:
    """A speed interval the views turn into words: both ends or neither, positive, in order, around the ratio."""
    low, high = speed.get("ci_low"), speed.get("ci_high")
    if (low is None) != (high is None):
        raise RecordError(f"{where}: 'ci_low' and 'ci_high' are given together or not at all")
    ratio = speed.get("speedup_vs_baseline")
    if low is not None and not (0 < low <= high and (ratio is None or low <= ratio <= high)):
        raise RecordError(f"{where}: interval [{low!r}, {high!r}] is not a positive interval around the ratio")


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
    except RecursionError:
        raise RecordError("record content is nested too deeply to be serialised canonically") from None
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
    _check_names(failure, source)
    return failure


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
    _write_json_atomic(_finite_or_none({"probe_schema_version": PROBE_SCHEMA_VERSION, **probe}), path, "probe file")
    return path


def load_probe(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    data = read_json(path, "probe file")
    if not isinstance(data, dict) or data.get("probe_schema_version") != PROBE_SCHEMA_VERSION:
        raise RecordError(f"{path}: not a blockbench probe file of version {PROBE_SCHEMA_VERSION}")
    _check(data, {"suite": dict, "overrides": dict, "variants": list, "probes": dict}, str(path))
    _check(data["suite"], SECTIONS["suite"], f"{path}: suite")
    for i, variant in enumerate(data["variants"]):
        if name_problem(variant):
            raise RecordError(f"{path}: variants[{i}] {name_problem(variant)}")
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


EXECUTION_MODES = ("eager", "compiled", "graphs", "compiled+graphs")


def execution_mode(record: dict[str, Any]) -> str:
    """How the run's training step executed: eager, compiled (torch.compile), graphs (the eager step captured once
    as a CUDA graph and replayed) or compiled+graphs. Records written before the field existed ran eager unless
    their whole model compiled without error; a compiled shaped mix alone is still eager ("eager" then)."""
    execution = record["config"].get("execution")
    if isinstance(execution, dict) and execution.get("mode") in EXECUTION_MODES:
        return execution["mode"]
    compiled = record["config"].get("compile") or {}
    return "compiled" if compiled.get("enabled") and not compiled.get("error") else "eager"


def execution_modes(records: Iterable[dict[str, Any]]) -> set[str]:
    """The execution modes runs trained in. Like device types, speed compares only within one mode."""
    return {execution_mode(r) for r in records}


def device_types(records: Iterable[dict[str, Any]]) -> set[str]:
    """The device types runs trained on. Interleaved speed ratios compare only within one type (SIMD width,
    caches, kernels differ), so every view that shows or judges a ratio asks this first."""
    return {r["env"]["device_name"] for r in records}
