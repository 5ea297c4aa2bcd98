"""Suites: versioned TOML files naming variants, model shape, data, optimiser, budget, evaluation and seeds.

A suite is data, loaded and validated here into a frozen `Suite`. Its content hash (sha256 of the parsed content,
so comments and formatting do not count) goes into every record. The built-in suites are pinned in
suites/LOCK.json: editing one without bumping its version is an error, and leaderboards never rank records of
one suite version with different hashes together.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from blockbench.blocks import get_variant
from blockbench.blocks.model_args import SHAPE_FIELDS, ModelConfig
from blockbench.blocks.spec import BlockSpec, Gain, SpecError
from blockbench.blocks.zoo import name_problem
from blockbench.data import DataConfig
from blockbench.errors import BlockbenchError
from blockbench.ladder import read_ladder
from blockbench.safeio import UnsafeFileError, atomic_write_text, read_guarded
from blockbench.workloads import DEFAULT_WORKLOAD, Workload, WorkloadError, get_workload

SUITES_DIR = Path(str(resources.files("blockbench") / "suites"))
LOCK_FILE = SUITES_DIR / "LOCK.json"
SCHEDULES = ("linear", "cosine", "constant")
DEVICES = ("auto", "cpu", "cuda")
CUDA_GRAPHS = ("auto", "on", "off")
# A suite or override file is a few KiB; far larger is not one, and must not be read whole.
MAX_SUITE_BYTES = 2**20
DTYPES = ("auto", "fp32", "bf16", "fp16")


class SuiteError(BlockbenchError):
    pass


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float | None = 1.0
    warmup_fraction: float = 0.05
    schedule: str = "linear"
    min_lr_ratio: float = 0.0
    batch_size: int = 16
    micro_batch_size: int | None = None
    # A floor under the warm-up, in steps: warm-up = max(warmup_fraction x schedule, warmup_steps_min), never more
    # than WARMUP_MAX_FRACTION of the schedule. The shaped blocks need a warm-up of a length in steps (the paper's
    # 5% of 40K is 2,000), which a fraction of a short budget does not give (5% of a 300-step override is 15).
    warmup_steps_min: int | None = None


@dataclass(frozen=True)
class Budget:
    """Stop at the first of these that is reached. steps/tokens/flops also fix the LR schedule's length."""

    steps: int | None = None
    tokens: int | None = None
    seconds: float | None = None
    flops: float | None = None

    def active(self) -> dict[str, float]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class EvalConfig:
    # The cadence: every_tokens, or `evaluations` per run (the one at step 0 not counted), from which every_tokens
    # is derived for the budget in force, so that a budget override keeps the count (resolve_eval).
    every_tokens: int | None = None
    windows: int = 32
    target_loss: float | None = None
    plateau_loss: float | None = None  # the unigram-plateau level (stats.py); None: 0.55 ln(vocab)
    evaluations: int | None = None


@dataclass(frozen=True)
class SpeedConfig:
    """The interleaved speed probe (measure/throughput.py); rounds = 0 turns it off.

    `rounds` is the minimum (at least 3): the probe goes on until every variant's and the A/A control's 95%
    interval of the median ratio has a relative half-width of at most `target_half_width`, or until its timed
    rounds have taken the time cap: `max_seconds` when set, else `max_share` of the suite's training time
    (every run's budgeted steps at the probe's own step times)."""

    rounds: int = 6
    steps_per_round: int = 2
    target_half_width: float = 0.02
    max_share: float = 0.05
    max_seconds: float | None = None


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = "auto"
    dtype: str = "auto"
    threads: int | None = None
    warmup_steps: int = 2
    divergence_loss: float | None = None  # default: 2 ln(vocab), twice the loss of a uniform guess
    compile: bool = False
    # Only the shaped-attention mix (alpha V + beta A V - gamma C V) as one torch.compile'd kernel, the rest eager:
    # on CPU the whole-model compile is slower, while the mix's element-wise passes are what a fused kernel saves.
    compile_shaped: bool = False
    # The training step captured once as a CUDA graph and replayed (train.py): auto = on CUDA where capture works
    # (else eager, the reason recorded), on = capture or fail the run, off = never.
    cuda_graphs: str = "auto"
    # Watchdog: a run that reports no progress for this long (or for 20x the longest gap between its reports so
    # far, if longer) is killed and recorded as failed, reason "stalled".
    stall_seconds: float = 600.0


@dataclass(frozen=True)
class VariantEntry:
    """A variant as the suite runs it: a zoo name, plus optional optimiser and BlockSpec overrides."""

    name: str
    preset: str
    optim: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    name: str
    version: str
    description: str
    baseline: str
    seeds: tuple[int, ...]
    # The [model] table (SHAPE_FIELDS) and [suite].workload. A model is built for `replace(model, vocab_size=the
    # tokenizer's, workload=self.workload)` (train.build_for_suite): vocab_size here is ModelConfig's default.
    model: ModelConfig
    data: DataConfig
    optim: OptimConfig
    budget: Budget
    eval: EvalConfig
    runtime: RuntimeConfig
    speed: SpeedConfig
    variants: dict[str, VariantEntry]
    hash: str
    source: str
    overrides: dict[str, Any] = field(default_factory=dict)
    # [suite].workload and the [workload] table of its options; the default workload when a suite names none.
    workload: str = DEFAULT_WORKLOAD
    workload_options: dict[str, Any] = field(default_factory=dict)
    # A ladder suite's rungs (blockbench/ladder.py), and, in the suite one rung runs, that rung (config.ladder).
    ladder: Any = None
    rung: dict[str, Any] | None = None

    def get_workload(self) -> Workload:
        return get_workload(self.workload, self.workload_options)

    def variant_optim(self, variant: str) -> OptimConfig:
        """The variant's optimiser as the suite writes it: [optim] with the variant's own keys (what records keep)."""
        return dataclasses.replace(self.optim, **self.variants[variant].optim)

    def optim_for(self, variant: str) -> OptimConfig:
        """The variant's optimiser, its warm-up floor applied to this budget (the written fields stay in records,
        with the schedule's length, so the warm-up that ran can be read back from them)."""
        return warmup_applied(self.variant_optim(variant), self.budget, self.model.seq_len)

    def to_config(self) -> dict[str, Any]:
        """The effective configuration, as recorded with every run."""
        return {
            "model": self.model.shape(), "data": dataclasses.asdict(self.data),
            "optim": dataclasses.asdict(self.optim), "budget": self.budget.active(),
            "eval": dataclasses.asdict(self.eval), "runtime": dataclasses.asdict(self.runtime),
            "speed": dataclasses.asdict(self.speed),
            "seeds": list(self.seeds), "baseline": self.baseline, "overrides": self.overrides,
            # Absent for the default workload, so that its runs' configuration reads as it always has.
            **({"workload": {"name": self.workload, **workload.options()}}
               if not (workload := self.get_workload()).is_default else {}),
            **({"ladder": self.rung} if self.rung is not None else {}),
        }

    def with_overrides(self, *, budget: dict[str, float] | None = None, target_loss: float | None = None,
                       variants: list[str] | None = None, seeds: list[int] | None = None,
                       device: str | None = None, threads: int | None = None,
                       fields: dict[str, Any] | None = None, speed_rounds: int | None = None) -> Suite:
        """The suite as a command line changed it; every change is listed in `overrides` (and so in records).

        `fields` sets optimiser or BlockSpec fields on every variant (what a sweep's grid point does).
        """
        changes: dict[str, Any] = {}
        overrides = dict(self.overrides)
        if budget and self.ladder is not None:
            raise SuiteError(f"--budget-{next(iter(budget))}: {self.name} is a ladder; each rung's budget comes from "
                             "its [ladder] table (tokens per parameter or tokens)")
        if budget:
            for kind, value in budget.items():
                if kind not in BUDGET_KINDS:
                    raise SuiteError(f"budget kind {kind!r} is not one of {', '.join(BUDGET_KINDS)}")
                _positive(value, f"budget {kind}", f"--budget-{kind}", integer=kind in ("steps", "tokens"))
            changes["budget"] = dataclasses.replace(self.budget, **budget)
            overrides["budget"] = budget
        if target_loss is not None:
            _positive(target_loss, "target loss", "--target-loss")
            changes["eval"] = dataclasses.replace(self.eval, target_loss=target_loss)
            overrides["target_loss"] = target_loss
        if variants is not None:
            changes["variants"] = self._selected_variants(variants)
            overrides["variants"] = variants
        if seeds is not None:
            problem = _seeds_problem(seeds)
            if problem:
                raise SuiteError(f"--seeds: {problem}")
            changes["seeds"] = tuple(seeds)
            overrides["seeds"] = seeds
        runtime = self._runtime_overrides(device, threads)
        if runtime:
            changes["runtime"] = dataclasses.replace(self.runtime, **runtime)
            overrides.update(runtime)
        if fields:
            r = _Reader("--grid")  # a sweep's grid point; the message names the variant and field
            entries = changes.get("variants", self.variants)
            changes["variants"] = {name: _merge_entry(r, entry, dict(fields), self.optim, name)
                                   for name, entry in entries.items()}
            overrides["fields"] = {**overrides.get("fields", {}), **fields}
        if speed_rounds is not None:
            if (isinstance(speed_rounds, bool) or not isinstance(speed_rounds, int)
                    or not _PROBE_ROUNDS[0](speed_rounds)):
                raise SuiteError(f"--speed-rounds: the interleaved probe's minimum of rounds must be 0 (no probe) "
                                 f"or an integer >= {MIN_PROBE_ROUNDS}, got {speed_rounds!r}")
            changes["speed"] = dataclasses.replace(self.speed, rounds=speed_rounds)
            overrides["speed_rounds"] = speed_rounds
        suite = dataclasses.replace(self, overrides=overrides, **changes)
        if budget and suite.eval.evaluations is not None:
            suite = dataclasses.replace(suite, eval=resolve_eval(suite.eval, suite.budget, suite.optim.batch_size,
                                                                 suite.model.seq_len, "--budget"))
        return suite

    def _runtime_overrides(self, device: str | None, threads: int | None) -> dict[str, Any]:
        runtime: dict[str, Any] = {}
        if device is not None:
            runtime["device"] = _choice(device, DEVICES, "--device")
            problem = cuda_graphs_problem(self.runtime.cuda_graphs, device, self.runtime.dtype)
            if problem:
                raise SuiteError(f"--device {device}: {self.source}: runtime.cuda_graphs {problem}")
        if threads is not None:
            _positive(threads, "threads", "--threads", integer=True)
            runtime["threads"] = threads
        return runtime

    def _selected_variants(self, names: list[str]) -> dict[str, VariantEntry]:
        """--variants: the suite's own entries, or a preset (its defaults) for a name the suite lacks."""
        entries = {}
        for name in names:
            if name_problem(name):
                raise SuiteError(f"--variants: {name_problem(name)}")
            if name in self.variants:
                entries[name] = self.variants[name]
            else:
                get_variant(name)  # raises with the list of known variants
                entries[name] = VariantEntry(name, name)
        return entries

    def with_override_file(self, path: str | Path) -> Suite:
        """Apply a suite-override file: `[variants.NAME]` tables (optimiser keys and a `spec` table), as written
        by `blockbench sweep`, plus a free-form `[provenance]` table. Its path and sha256 go into `overrides`."""
        path = Path(path)
        text, data = _read_toml(path)
        r = _Reader(str(path))
        unknown = set(data) - {"provenance", "variants"}
        if unknown:
            raise r.error(sorted(unknown)[0], "unknown table (valid: provenance, variants)")
        if not isinstance(data.get("provenance", {}), dict):
            raise r.error("provenance", "expected a table")
        tables = r.table(data, "variants")
        entries = dict(self.variants)
        for name, table in tables.items():
            if name not in entries:
                if "variants" in self.overrides:
                    continue  # the command line narrowed the suite's variants; the file may cover more
                raise r.error(f"variants.{name}", f"not a variant of suite {self.name!r} "
                                                  f"({', '.join(self.variants)})")
            if not isinstance(table, dict):
                raise r.error(f"variants.{name}", "expected a table")
            table = dict(table)
            spec = table.pop("spec", {})
            if not isinstance(spec, dict):
                raise r.error(f"variants.{name}.spec", "expected a table")
            entries[name] = _merge_entry(r, entries[name], {**table, **spec}, self.optim, f"variants.{name}",
                                         keep_gain_trainability=False)
        overrides = {**self.overrides, "override_file": {"path": str(path),
                                                         "sha256": hashlib.sha256(text.encode()).hexdigest()}}
        return dataclasses.replace(self, variants=entries, overrides=overrides)


def _positive(value: Any, what: str, flag: str, integer: bool = False) -> None:
    """A command-line value: the message names the setting and the flag that gave it."""
    kinds = (int,) if integer else (int, float)
    if (isinstance(value, bool) or not isinstance(value, kinds) or not _is_positive(value)
            or (isinstance(value, int) and value >= _INT_LIMIT)):
        kind = "an integer below 2**63" if integer else "finite"
        raise SuiteError(f"{what} must be a positive number ({kind}), got {value!r} ({flag})")


def _seeds_problem(seeds: Any) -> str:
    """'' for a usable list of seeds, else what is wrong with it."""
    if not isinstance(seeds, (list, tuple)) or not seeds or not all(type(s) is int and 0 <= s < _INT_LIMIT
                                                                    for s in seeds):
        return f"expected a non-empty list of non-negative 64-bit integers, got {str(seeds)[:80]}"
    if len(set(seeds)) != len(seeds):
        # Two runs of one (variant, seed) would be the same run twice and collide on one record file.
        return f"seed given twice in {list(seeds)}"
    return ""


def _is_finite(value: int | float) -> bool:
    # An int is finite even when it is too large to convert to a float (math.isfinite would raise).
    return isinstance(value, int) or math.isfinite(value)


def _is_positive(value: int | float) -> bool:
    return _is_finite(value) and value > 0


# Range rules: a predicate and the words that say it. NaN fails every comparison, so it fails every rule.
_POSITIVE = (_is_positive, "must be positive and finite")
_POSITIVE_INT = (_is_positive, "must be positive")
_NON_NEGATIVE = (lambda v: _is_finite(v) and v >= 0, "must be finite and >= 0")
_FRACTION = (lambda v: 0 <= v < 1, "must be in [0, 1)")
_RATIO = (lambda v: 0 <= v <= 1, "must be in [0, 1]")
_OPEN_FRACTION = (lambda v: 0 < v < 1, "must be in (0, 1)")
# The speed probe's minimum of rounds: fewer than 3 give no interval worth the name (and none at 95% below 6).
MIN_PROBE_ROUNDS = 3
_PROBE_ROUNDS = (lambda v: v == 0 or v >= MIN_PROBE_ROUNDS,
                 f"must be 0 (no probe) or at least {MIN_PROBE_ROUNDS} (the probe's minimum of rounds)")

# The range of every numeric field of a suite, per table (None: the field is absent, so its default applies).
FIELD_RANGES: dict[str, dict[str, tuple[Any, str]]] = {
    "model": {"n_layers": _POSITIVE_INT, "d_model": _POSITIVE_INT, "n_heads": _POSITIVE_INT,
              "seq_len": _POSITIVE_INT},
    "optim": {"lr": _POSITIVE, "eps": _POSITIVE, "weight_decay": _NON_NEGATIVE,
              # 0 turns clipping off: TOML has no null, so it is the only way a suite file can say so.
              "grad_clip": _NON_NEGATIVE,
              "warmup_fraction": _FRACTION, "min_lr_ratio": _RATIO, "batch_size": _POSITIVE_INT,
              "micro_batch_size": _POSITIVE_INT, "warmup_steps_min": _POSITIVE_INT},
    "budget": {"steps": _POSITIVE_INT, "tokens": _POSITIVE_INT, "seconds": _POSITIVE, "flops": _POSITIVE},
    "eval": {"every_tokens": _POSITIVE_INT, "windows": _POSITIVE_INT, "target_loss": _POSITIVE,
             "plateau_loss": _POSITIVE, "evaluations": _POSITIVE_INT},
    "runtime": {"threads": _POSITIVE_INT, "warmup_steps": _NON_NEGATIVE, "divergence_loss": _POSITIVE,
                "stall_seconds": _POSITIVE},
    "speed": {"rounds": _PROBE_ROUNDS, "steps_per_round": _POSITIVE_INT, "target_half_width": _OPEN_FRACTION,
              "max_share": (lambda v: 0 < v <= 1, "must be in (0, 1]"), "max_seconds": _POSITIVE},
}
BUDGET_KINDS = tuple(FIELD_RANGES["budget"])
# TOML integers have no size limit; tensor sizes, step counters and seeds are 64-bit.
_INT_LIMIT = 2**63


def _check_ranges(r: _Reader, table: str, values: Any, prefix: str) -> None:
    """Every numeric field of `values` (a dataclass of table `table`) within its range, else name file and key."""
    for name, (ok, rule) in FIELD_RANGES[table].items():
        value = getattr(values, name)
        if isinstance(value, int) and abs(value) >= _INT_LIMIT:
            raise r.error(f"{prefix}.{name}", f"too large, got {str(value)[:20]}...")
        if value is not None and not ok(value):
            raise r.error(f"{prefix}.{name}", f"{rule}, got {value!r}")


def _choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise SuiteError(f"{what}: {value!r} is not one of {', '.join(allowed)}")
    return value


class _Reader:
    """Reads one TOML table against a dataclass: unknown keys, missing fields and wrong types name file and key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, message: str) -> SuiteError:
        return SuiteError(f"{self.source}: {key}: {message}")

    def table(self, data: dict[str, Any], key: str, required: bool = True) -> dict[str, Any]:
        value = data.get(key)
        if value is None:
            if required:
                raise self.error(key, "missing table")
            return {}
        if not isinstance(value, dict):
            raise self.error(key, "expected a table")
        return value

    def dataclass(self, cls: type, data: dict[str, Any], prefix: str) -> Any:
        values = self.fields(cls, data, prefix)
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise self.error(prefix, str(exc)) from None

    def fields(self, cls: type, data: dict[str, Any], prefix: str,
               required: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The typed values the table gives for the fields of dataclass `cls`; `required`: only these fields, in
        this order, each one required."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if required is not None:
            fields = {name: fields[name] for name in required}
        unknown = set(data) - set(fields)
        if unknown:
            raise self.error(f"{prefix}.{sorted(unknown)[0]}", f"unknown key (valid: {', '.join(fields)})")
        values = {}
        for name, f in fields.items():
            key = f"{prefix}.{name}"
            if name not in data:
                if required is not None or (f.default is dataclasses.MISSING
                                            and f.default_factory is dataclasses.MISSING):
                    raise self.error(key, "missing")
                continue
            values[name] = self.typed(data[name], f.type, key)
        return values

    def typed(self, value: Any, annotation: Any, key: str) -> Any:
        annotation = str(annotation)
        optional = "None" in annotation
        if value is None and optional:
            return None
        base = annotation.replace(" | None", "")
        if base == "bool":
            if not isinstance(value, bool):
                raise self.error(key, f"expected true or false, got {value!r}")
            return value
        if base == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.error(key, f"expected an integer, got {value!r}")
            return value
        if base == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self.error(key, f"expected a number, got {value!r}")
            return self.to_float(value, key)
        if base == "str":
            if not isinstance(value, str):
                raise self.error(key, f"expected a string, got {value!r}")
            return value
        if base.startswith("tuple[float"):
            if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                      for v in value):
                raise self.error(key, f"expected a list of numbers, got {value!r}")
            return tuple(self.to_float(v, key) for v in value)
        if base.startswith("tuple[str"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise self.error(key, f"expected a list of strings, got {value!r}")
            return tuple(value)
        raise self.error(key, f"unsupported field type {annotation}")

    def to_float(self, value: int | float, key: str) -> float:
        try:
            return float(value)
        except OverflowError:  # TOML integers have no size limit; a float does
            raise self.error(key, f"number too large, got {str(value)[:20]}...") from None


def content_hash(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def parse_suite(data: dict[str, Any], source: str) -> Suite:
    r = _Reader(source)
    known = {"suite", "model", "data", "optim", "budget", "eval", "runtime", "speed", "variants", "workload",
             "ladder"}
    unknown = set(data) - known
    if unknown:
        raise r.error(sorted(unknown)[0], f"unknown table (valid: {', '.join(sorted(known))})")
    head, seeds = _read_head(r, data)
    workload, workload_options = _read_workload(r, data, head)
    model = _read_model(r, data, workload)
    data_cfg = r.dataclass(DataConfig, r.table(data, "data"), "data")
    optim = r.dataclass(OptimConfig, r.table(data, "optim", required=False), "optim")
    _check_optim(r, optim, "optim")
    budget, evaluation = _read_budget_and_eval(r, data, optim, model.seq_len, source)
    runtime = _read_runtime(r, data)
    speed = r.dataclass(SpeedConfig, r.table(data, "speed", required=False), "speed")
    _check_ranges(r, "speed", speed, "speed")
    variants = _read_variants(r, data, optim)
    for name, entry in variants.items():
        _check_schedule(r, dataclasses.replace(optim, **entry.optim), budget, evaluation, model.seq_len, name)
    if head["baseline"] not in variants:
        raise r.error("suite.baseline", f"{head['baseline']!r} is not one of the suite's variants")
    for name, entry in variants.items():
        _check_shape(r, name, entry, model)
    suite = Suite(name=head["name"], version=head["version"], description=head.get("description", ""),
                  baseline=head["baseline"], seeds=tuple(seeds), model=model, data=data_cfg, optim=optim,
                  budget=budget, eval=evaluation, runtime=runtime, speed=speed, variants=variants,
                  hash=content_hash(data), source=source, workload=workload, workload_options=workload_options)
    if "ladder" in data:

        suite = dataclasses.replace(suite, ladder=read_ladder(r, data, suite))
    return suite


def _read_head(r: _Reader, data: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """The [suite] table, its names checked, and its seeds."""
    head = r.table(data, "suite")
    head_unknown = set(head) - {"name", "version", "description", "baseline", "seeds", "workload"}
    if head_unknown:
        raise r.error(f"suite.{sorted(head_unknown)[0]}", "unknown key")
    for key in ("name", "version", "baseline"):
        if not isinstance(head.get(key), str) or not head[key]:
            raise r.error(f"suite.{key}", "missing or not a string")
    for key in ("name", "version"):  # they become directories (runs/NAME/VERSION/, results/NAME/VERSION/)
        if name_problem(head[key]):
            raise r.error(f"suite.{key}", name_problem(head[key]))
    seeds = head.get("seeds", [0])
    problem = _seeds_problem(seeds)
    if problem:
        raise r.error("suite.seeds", problem)
    return head, seeds


def _read_workload(r: _Reader, data: dict[str, Any], head: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """[suite].workload (the default when absent) and the [workload] table of its options, both checked."""
    workload = head.get("workload", DEFAULT_WORKLOAD)
    if not isinstance(workload, str):
        raise r.error("suite.workload", f"expected a string, got {workload!r}")
    workload_options = r.table(data, "workload", required=False)
    try:
        get_workload(workload, workload_options)
    except WorkloadError as exc:
        key = "suite.workload" if "unknown workload" in str(exc) else "workload"
        raise r.error(key, str(exc)) from None
    except TypeError as exc:
        raise r.error("workload", str(exc)) from None
    return workload, workload_options


def _read_model(r: _Reader, data: dict[str, Any], workload: str) -> ModelConfig:
    """The [model] table: the shape, range-checked, for `workload`."""
    shape = r.fields(ModelConfig, r.table(data, "model"), "model", required=SHAPE_FIELDS)
    _check_ranges(r, "model", SimpleNamespace(**shape), "model")
    if shape["d_model"] % shape["n_heads"]:
        raise r.error("model.n_heads", f"d_model={shape['d_model']} is not divisible by n_heads={shape['n_heads']}")
    return ModelConfig(**shape, workload=workload)


def _read_budget_and_eval(r: _Reader, data: dict[str, Any], optim: OptimConfig, seq_len: int,
                          source: str) -> tuple[Budget, EvalConfig]:
    """The [budget] and [eval] tables; evaluations per run resolved to a cadence for the budget."""
    budget = r.dataclass(Budget, r.table(data, "budget"), "budget")
    if not budget.active():
        raise r.error("budget", "give at least one of steps, tokens, seconds, flops")
    _check_ranges(r, "budget", budget, "budget")
    evaluation = r.dataclass(EvalConfig, r.table(data, "eval"), "eval")
    _check_ranges(r, "eval", evaluation, "eval")
    if (evaluation.every_tokens is None) == (evaluation.evaluations is None):
        raise r.error("eval", "give one of every_tokens (a cadence) or evaluations (per run, for any budget)")
    if evaluation.evaluations is not None:
        evaluation = resolve_eval(evaluation, budget, optim.batch_size, seq_len, source)
    return budget, evaluation


def _read_runtime(r: _Reader, data: dict[str, Any]) -> RuntimeConfig:
    """The [runtime] table, its choices and ranges checked."""
    runtime = r.dataclass(RuntimeConfig, r.table(data, "runtime", required=False), "runtime")
    if runtime.device not in DEVICES:
        raise r.error("runtime.device", f"{runtime.device!r} is not one of {', '.join(DEVICES)}")
    if runtime.dtype not in DTYPES:
        raise r.error("runtime.dtype", f"{runtime.dtype!r} is not one of {', '.join(DTYPES)}")
    if runtime.cuda_graphs not in CUDA_GRAPHS:
        raise r.error("runtime.cuda_graphs", f"{runtime.cuda_graphs!r} is not one of {', '.join(CUDA_GRAPHS)}")
    problem = cuda_graphs_problem(runtime.cuda_graphs, runtime.device, runtime.dtype)
    if problem:  # knowable from the file alone: refused now, not as a failure of every run after the probe
        raise r.error("runtime.cuda_graphs", problem)
    _check_ranges(r, "runtime", runtime, "runtime")
    return runtime


def cuda_graphs_problem(setting: str, device: str, dtype: str) -> str:
    """Why `cuda_graphs = "on"` cannot hold for this device and dtype ('' when it may: `auto` resolves to a CUDA
    device or not only on the machine, which the runner checks before any run)."""
    if setting != "on":
        return ""
    if device == "cpu":
        return '"on" with runtime.device = "cpu": a CUDA graph needs a CUDA device (use "auto" or "off")'
    if dtype == "fp16":
        return '"on" with runtime.dtype = "fp16": its GradScaler reads its overflow flag on the host, which a ' \
               'captured step cannot (use "auto", "off" or bf16)'
    return ""


def _read_variants(r: _Reader, data: dict[str, Any], optim: OptimConfig) -> dict[str, VariantEntry]:
    """The [variants] table: at least one, each a preset with optional spec overrides and optimiser keys."""
    variants: dict[str, VariantEntry] = {}
    for name, entry in r.table(data, "variants").items():
        variants[name] = _read_variant(r, name, entry, optim)
    if not variants:
        raise r.error("variants", "no variants")
    return variants


def _read_variant(r: _Reader, name: str, entry: Any, optim: OptimConfig) -> VariantEntry:
    if name_problem(name):  # a variant's name becomes its records' file names
        raise r.error("variants", f"variant name {name_problem(name)}")
    if not isinstance(entry, dict):
        raise r.error(f"variants.{name}", "expected a table")
    entry = dict(entry)
    preset = entry.pop("preset", name)
    spec = entry.pop("spec", {})
    try:
        variant = get_variant(preset)
        if spec:
            if variant.spec is None:
                raise SpecError(f"{preset!r} is a user factory block; spec overrides do not apply")
            variant.spec.replace(**spec)
    except SpecError as exc:
        raise r.error(f"variants.{name}", str(exc)) from None
    optim_fields = {f.name for f in dataclasses.fields(OptimConfig)}
    unknown = set(entry) - optim_fields
    if unknown:
        raise r.error(f"variants.{name}.{sorted(unknown)[0]}",
                      "unknown key (valid: preset, spec, or an optim field)")
    typed = {k: r.typed(v, OptimConfig.__dataclass_fields__[k].type, f"variants.{name}.{k}")
             for k, v in entry.items()}
    _check_optim(r, dataclasses.replace(optim, **typed), f"variants.{name}")
    return VariantEntry(name, preset, typed, spec)


def _check_shape(r: _Reader, name: str, entry: VariantEntry, model: ModelConfig) -> None:
    """A spec that cannot be built at the suite's width (RoPE on an odd head dimension, an odd GEGLU width) is
    refused here, naming the variant, before any data is loaded or anything written."""
    spec = get_variant(entry.preset).spec
    if spec is None:
        return
    try:
        spec.replace(**entry.spec).check_shape(model.d_model, model.n_heads)
    except SpecError as exc:
        raise r.error(f"variants.{name}.spec", str(exc)) from None


def _check_optim(r: _Reader, optim: OptimConfig, where: str) -> None:
    _check_ranges(r, "optim", optim, where)
    if len(optim.betas) != 2 or not all(_FRACTION[0](b) for b in optim.betas):
        raise r.error(f"{where}.betas", f"expected two numbers, each in [0, 1), got {list(optim.betas)!r}")
    if optim.schedule not in SCHEDULES:
        raise r.error(f"{where}.schedule", f"{optim.schedule!r} is not one of {', '.join(SCHEDULES)}")
    micro = optim.micro_batch_size
    if micro is not None and optim.batch_size % micro:
        raise r.error(f"{where}.micro_batch_size", f"must divide batch_size={optim.batch_size}, got {micro}")


# Fewer evaluations than this leave no curve: step 0, one point and the end cannot show a plateau, an escape from
# it or a settled ranking (the first GPU run had 3, and its report could not tell a stuck run from a slow one).
MIN_EVALUATIONS = 3
WARMUP_MAX_FRACTION = 0.5  # a warm-up floor never takes more than half the schedule: the rest must decay


def budget_steps(budget: Budget, tokens_per_step: int) -> int | None:
    """The steps a steps or tokens budget allows (the smaller of the two); None for a FLOPs or seconds budget
    alone, whose steps only a run knows."""
    candidates = [budget.steps] if budget.steps is not None else []
    if budget.tokens is not None:
        candidates.append(math.ceil(budget.tokens / tokens_per_step))
    return min(candidates) if candidates else None


def evaluations_per_run(steps: int, tokens_per_step: int, every_tokens: int) -> int:
    """How many evaluations train.py makes in a run of `steps`: one at step 0, one at the first step past each
    multiple of every_tokens (at most one per step), and one at the end unless the last step had one."""
    def crossed(step: int) -> int:
        return step * tokens_per_step // every_tokens

    inside = min(steps, crossed(steps))
    last_evaluated = steps > 0 and crossed(steps) > crossed(steps - 1)
    return 1 + inside + (0 if last_evaluated or steps == 0 else 1)


def resolve_eval(evaluation: EvalConfig, budget: Budget, batch_size: int, seq_len: int, where: str) -> EvalConfig:
    """every_tokens for `evaluation.evaluations` evaluations per run at this budget (whole steps apart)."""
    tokens_per_step = batch_size * seq_len
    steps = budget_steps(budget, tokens_per_step)
    if steps is None:
        raise SuiteError(f"{where}: eval.evaluations needs a steps or tokens budget to spread its evaluations over "
                         f"(budget {budget.active()}); give eval.every_tokens instead")
    every_steps = max(1, steps // evaluation.evaluations)
    return dataclasses.replace(evaluation, every_tokens=every_steps * tokens_per_step)


def warmup_applied(optim: OptimConfig, budget: Budget, seq_len: int) -> OptimConfig:
    """`optim` with warmup_fraction set so that the warm-up (train.lr_factor: int(fraction x schedule) steps) is
    max(warmup_fraction x schedule, warmup_steps_min), at most WARMUP_MAX_FRACTION of the schedule."""
    steps = budget_steps(budget, optim.batch_size * seq_len)
    if optim.warmup_steps_min is None or not steps or steps < 2:
        return optim
    warmup = min(max(int(optim.warmup_fraction * steps), optim.warmup_steps_min), int(WARMUP_MAX_FRACTION * steps))
    # Half a step above the count, so that int(fraction * steps) gives the count back through float rounding.
    return dataclasses.replace(optim, warmup_fraction=(warmup + 0.5) / steps if warmup else 0.0)


def _check_schedule(r: _Reader, optim: OptimConfig, budget: Budget, evaluation: EvalConfig, seq_len: int,
                    variant: str) -> None:
    """A suite file's cadence must give MIN_EVALUATIONS per run (where its budget fixes the steps), and a warm-up
    floor needs a budget in steps or tokens. Command-line budgets are not refused: a two-step smoke check is a
    check, not a measurement; suites that name eval.evaluations keep their count under any budget."""
    tokens_per_step = optim.batch_size * seq_len
    steps = budget_steps(budget, tokens_per_step)
    if optim.warmup_steps_min is not None and steps is None:
        raise r.error(f"variants.{variant}", f"optim.warmup_steps_min needs a steps or tokens budget (budget "
                                             f"{budget.active()})")
    if steps is None or evaluation.every_tokens is None:
        return
    count = evaluations_per_run(steps, tokens_per_step, evaluation.every_tokens)
    if count < MIN_EVALUATIONS:
        raise r.error("eval.every_tokens", f"{evaluation.every_tokens} gives {count} evaluation(s) per run of "
                                           f"{steps} steps ({variant}), fewer than {MIN_EVALUATIONS}: a curve needs "
                                           "more (lower every_tokens, or set eval.evaluations)")


OPTIM_FIELDS = tuple(f.name for f in dataclasses.fields(OptimConfig))
SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(BlockSpec) if f.name != "first_block")


def _merge_entry(r: _Reader, entry: VariantEntry, fields: dict[str, Any], optim: OptimConfig, where: str,
                 keep_gain_trainability: bool = True) -> VariantEntry:
    """`entry` with optimiser and BlockSpec fields set, validated the way a suite file is.

    A bare number for a gain changes its initial value only: the preset's choice of trained or fixed stays
    (a sweep over beta_ff must not silently freeze a trained gain). Override files say it exactly instead.
    """
    new_optim, new_spec = dict(entry.optim), dict(entry.spec)
    for key, value in fields.items():
        if key in OPTIM_FIELDS:
            new_optim[key] = r.typed(value, OptimConfig.__dataclass_fields__[key].type, f"{where}.{key}")
        elif key in SPEC_FIELDS:
            new_spec[key] = value
        else:
            raise r.error(f"{where}.{key}", f"unknown field: not an optimiser field ({', '.join(OPTIM_FIELDS)}) "
                                            f"nor a BlockSpec field ({', '.join(SPEC_FIELDS)})")
    _check_optim(r, dataclasses.replace(optim, **new_optim), where)
    if new_spec != entry.spec:
        variant = get_variant(entry.preset)
        if variant.spec is None:
            raise r.error(where, f"{entry.preset!r} is a user factory block; BlockSpec fields do not apply")
        try:
            current = variant.spec.replace(**entry.spec)
            for key in (k for k in fields if k in SPEC_FIELDS):
                old = getattr(current, key)
                number = isinstance(new_spec[key], (int, float)) and not isinstance(new_spec[key], bool)
                if keep_gain_trainability and isinstance(old, Gain) and number:
                    new_spec[key] = {"init": float(new_spec[key]), "trainable": old.trainable}
            variant.spec.replace(**new_spec)
        except SpecError as exc:
            raise r.error(where, str(exc)) from None
    return dataclasses.replace(entry, optim=new_optim, spec=new_spec)


def check_fits(suite: Suite, data: Any) -> None:
    """Raise SuiteError unless the loaded token splits hold what `suite` asks of them.

    Evaluation cuts `eval.windows` windows of `seq_len` inputs (stride seq_len, plus one token for the last
    target) from the validation split; training needs seq_len + 1 consecutive tokens. Only the loaded data knows
    its token counts, so this runs right after loading, before any model is built: a seq_len past the split would
    otherwise surface as a huge allocation (the T x T attention terms) or a silently shrunk eval set.
    `data` is a data.TokenData.
    """
    seq_len, windows = suite.model.seq_len, suite.eval.windows
    n_val, n_train = int(data.val.numel()), int(data.train.numel())
    where = f"{suite.source}: model.seq_len={seq_len}, eval.windows={windows}"
    if windows * seq_len + 1 > n_val:
        raise SuiteError(f"{where}: the validation split ({suite.data.corpus}, {suite.data.tokenizer} tokens) has "
                         f"{n_val:,} tokens, fewer than the {windows * seq_len + 1:,} that {windows} windows of "
                         f"{seq_len} + 1 need; lower seq_len or windows, or raise data.val_fraction")
    if seq_len + 1 > n_train:
        raise SuiteError(f"{where}: the training split has {n_train:,} tokens, fewer than one sequence of "
                         f"{seq_len} + 1; lower seq_len or use a larger corpus")


def _read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    """A TOML file's text and content, or a one-line SuiteError naming it for whatever is wrong with it. Read
    through the guarded reader: a FIFO does not block, a huge file is refused before it is read."""
    try:
        if path.is_dir():
            raise SuiteError(f"{path}: cannot read (Is a directory)")
        try:
            text = read_guarded(path, MAX_SUITE_BYTES, "suite file").decode("utf-8")
        except UnsafeFileError as exc:
            raise SuiteError(str(exc)) from None
        return text, tomllib.loads(text)
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    except UnicodeDecodeError as exc:
        raise SuiteError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{path}: malformed TOML: {exc}") from None
    except RecursionError:
        raise SuiteError(f"{path}: malformed TOML: nested too deeply") from None


def builtin_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


THREADS_HELP = "torch CPU threads (default: the suite's runtime.threads; torch's own choice when it sets none)"


def suite_help(what: str = "") -> str:
    """Every command's --suite help: the built-in suites as shipped in the package (never a list kept by hand),
    then `what` the command takes from the suite, then argparse's default."""
    return (f"built-in suite name ({', '.join(builtin_suites())}) or path to a suite .toml{what} "
            "(default: %(default)s)")


def read_lock() -> dict[str, dict[str, str]]:
    return json.loads(LOCK_FILE.read_text()) if LOCK_FILE.exists() else {}


def load_suite(name_or_path: str) -> Suite:
    """A built-in suite by name, or a TOML file by path."""
    path = Path(name_or_path)
    builtin = not path.suffix and not path.exists()
    if builtin:
        path = SUITES_DIR / f"{name_or_path}.toml"
        if not path.exists():
            raise SuiteError(f"unknown suite {name_or_path!r}; built-in suites: {', '.join(builtin_suites())} "
                             "(or give a path to a .toml file)")
    _, data = _read_toml(path)
    suite = parse_suite(data, str(path))
    if builtin:
        locked = read_lock().get(suite.name, {}).get(suite.version)
        if locked != suite.hash:
            raise SuiteError(f"built-in suite {suite.name!r} version {suite.version} changed without a version bump "
                             f"(hash {suite.hash[:12]}, locked {str(locked)[:12]}): bump [suite].version and run "
                             "`python -m blockbench.suite --lock`")
    return suite


def write_lock() -> dict[str, dict[str, str]]:
    """Record the hash of every built-in suite's current version, keeping the hashes of earlier versions."""
    lock = read_lock()
    for name in builtin_suites():
        suite = parse_suite(tomllib.loads((SUITES_DIR / f"{name}.toml").read_text()), name)
        versions = lock.setdefault(suite.name, {})
        if versions.get(suite.version, suite.hash) != suite.hash:
            raise SuiteError(f"suite {name!r} version {suite.version} is locked with another hash: bump its version")
        versions[suite.version] = suite.hash
    atomic_write_text(LOCK_FILE, json.dumps(lock, indent=2, sort_keys=True) + "\n", "suite lock")
    return lock


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--lock"]:
        sys.exit("usage: python -m blockbench.suite --lock")
    print(json.dumps(write_lock(), indent=2))
