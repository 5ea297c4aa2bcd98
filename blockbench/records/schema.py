"""The run record's schema and its validation: one JSON object per (variant, seed), written once, never modified.

Every view (leaderboard, compare, CI gate, asv) reads records through `store.load_record`, which validates them
here, so this module is the one place the schema lives. The top-level names below are a public interface: bump
SCHEMA_VERSION on any change that an external reader would notice. A record's workload metrics (its summary's
entries beyond the eval loss) are the workload's declaration (workloads.Workload.metrics), checked here.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from typing import Any

from blockbench.blocks.zoo import name_problem
from blockbench.errors import BlockbenchError
from blockbench.measure.throughput import CONTROL_SUFFIX
from blockbench.workloads import workload_class, workload_of

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
                "mfu": _OPT_NUM, "eval_seconds": _NUM, "warmup_seconds": _NUM},
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


def check_keys(mapping: dict, spec: dict[str, Any], where: str) -> None:
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
    check_keys(record, TOP_LEVEL, source)
    _check_optional(record, OPTIONAL_TOP_LEVEL, source)
    for section, spec in SECTIONS.items():
        check_keys(record[section], spec, f"{source}: {section}")
    _check_metrics(record, source)
    _check_names(record, source)
    check_keys(record["config"]["model"], MODEL_KEYS, f"{source}: config.model")
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
        check_keys(point, CURVE_POINT, f"{source}: curve[{i}]")
    _check_summary_matches_curve(record, source)
    if version >= 2:
        integrity = record.get("integrity")
        if not isinstance(integrity, dict) or not isinstance(integrity.get("sha256"), str):
            raise RecordError(f"{source}: missing its integrity digest (integrity.sha256)")
        if integrity["sha256"] != content_digest(record):
            raise RecordError(f"{source}: integrity check failed: its content does not match its sha256 "
                              "(edited after it was written)")
    return record


def _check_metrics(record: dict[str, Any], source: str) -> None:
    """The summary carries every metric its workload declares (workloads.Workload.metrics), of the declared type.
    Other summary keys are free: the encoder's records written before its metrics were declared also carry a
    bits-per-byte entry of null (the decoder's metric), a legacy key read and ignored."""
    try:
        metrics = workload_class(workload_of(record)).metrics
    except BlockbenchError as exc:
        raise RecordError(f"{source}: {exc}") from None
    check_keys(record["summary"], {m.key: m.types for m in metrics}, f"{source}: summary")


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
    check_keys(mapping, {k: t for k, t in spec.items() if k in mapping}, where)


def _check_views_fields(record: dict[str, Any], source: str) -> None:
    """The fields a view reads beyond the sections' required keys, typed and in the range it divides or takes
    roots by: a hand-made record must fail here, with its name, not as a traceback in leaderboard or compare."""
    config = record["config"]
    if not isinstance(config.get("optim"), dict):
        raise RecordError(f"{source}: config: 'optim' is missing or not an object")
    check_keys(config["optim"], OPTIM_KEYS, f"{source}: config.optim")
    overrides = config["overrides"]
    _check_optional(overrides, OVERRIDE_TYPES, f"{source}: config.overrides")
    check_keys(overrides.get("budget", {}), dict.fromkeys(overrides.get("budget", {}), _NUM),
           f"{source}: config.overrides.budget")
    for key, spec in OPTIONAL_KEYS.items():
        _check_optional(record[key], spec, f"{source}: {key}")
    if record["summary"].get("mfu_peak_source") not in MFU_PEAK_SOURCES:
        raise RecordError(f"{source}: summary: 'mfu_peak_source' is {record['summary']['mfu_peak_source']!r}, "
                          f"not one of {', '.join(s for s in MFU_PEAK_SOURCES if s)}")
    spec = record["block_spec"]
    if spec:  # report reads the MLP ratio of the baseline's block
        check_keys(spec, {"mlp_ratio": _NUM}, f"{source}: block_spec")
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
        check_keys(control, SPEED_CONTROL, f"{source}: speed.control")
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


def comparable_overrides(record: dict[str, Any]) -> dict[str, Any]:
    """The command-line overrides that change what a run measures: records are comparable only if these agree."""
    overrides = record["config"].get("overrides") or {}
    return {k: v for k, v in sorted(overrides.items()) if k not in SELECTION_OVERRIDES}


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



def validate_failure(failure: Any, source: str = "failure") -> dict[str, Any]:
    if not isinstance(failure, dict) or failure.get("failure_schema_version") != FAILURE_SCHEMA_VERSION:
        raise RecordError(f"{source}: not a blockbench failure file of version {FAILURE_SCHEMA_VERSION}")
    check_keys(failure, FAILURE_KEYS, source)
    check_keys(failure["suite"], SECTIONS["suite"], f"{source}: suite")
    _check_names(failure, source)
    return failure


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
