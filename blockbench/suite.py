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
from typing import Any

from blockbench.blocks import get_variant
from blockbench.blocks.spec import BlockSpec, Gain, SpecError
from blockbench.data import DataConfig
from blockbench.errors import BlockbenchError

SUITES_DIR = Path(str(resources.files("blockbench") / "suites"))
LOCK_FILE = SUITES_DIR / "LOCK.json"
SCHEDULES = ("linear", "cosine", "constant")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "fp32", "bf16", "fp16")


class SuiteError(BlockbenchError):
    pass


@dataclass(frozen=True)
class ModelShape:
    n_layers: int
    d_model: int
    n_heads: int
    seq_len: int


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
    every_tokens: int
    windows: int = 32
    target_loss: float | None = None


@dataclass(frozen=True)
class SpeedConfig:
    """The interleaved speed probe (measure/throughput.py); rounds = 0 turns it off."""

    rounds: int = 6
    steps_per_round: int = 2


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = "auto"
    dtype: str = "auto"
    threads: int | None = None
    warmup_steps: int = 2
    divergence_loss: float | None = None  # default: 2 ln(vocab), twice the loss of a uniform guess
    compile: bool = False
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
    model: ModelShape
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

    def optim_for(self, variant: str) -> OptimConfig:
        return dataclasses.replace(self.optim, **self.variants[variant].optim)

    def to_config(self) -> dict[str, Any]:
        """The effective configuration, as recorded with every run."""
        return {
            "model": dataclasses.asdict(self.model), "data": dataclasses.asdict(self.data),
            "optim": dataclasses.asdict(self.optim), "budget": self.budget.active(),
            "eval": dataclasses.asdict(self.eval), "runtime": dataclasses.asdict(self.runtime),
            "speed": dataclasses.asdict(self.speed),
            "seeds": list(self.seeds), "baseline": self.baseline, "overrides": self.overrides,
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
        if budget:
            for kind, value in budget.items():
                _positive(value, f"budget {kind}")
            changes["budget"] = dataclasses.replace(self.budget, **budget)
            overrides["budget"] = budget
        if target_loss is not None:
            _positive(target_loss, "target loss")
            changes["eval"] = dataclasses.replace(self.eval, target_loss=target_loss)
            overrides["target_loss"] = target_loss
        if variants is not None:
            entries = {}
            for name in variants:
                if name in self.variants:
                    entries[name] = self.variants[name]
                else:
                    get_variant(name)  # raises with the list of known variants
                    entries[name] = VariantEntry(name, name)
            changes["variants"] = entries
            overrides["variants"] = variants
        if seeds is not None:
            if not seeds or any(s < 0 for s in seeds):
                raise SuiteError(f"seeds must be non-negative integers, got {seeds}")
            changes["seeds"] = tuple(seeds)
            overrides["seeds"] = seeds
        runtime = {}
        if device is not None:
            runtime["device"] = _choice(device, DEVICES, "--device")
        if threads is not None:
            _positive(threads, "--threads")
            runtime["threads"] = threads
        if runtime:
            changes["runtime"] = dataclasses.replace(self.runtime, **runtime)
            overrides.update(runtime)
        if fields:
            r = _Reader("fields")
            entries = changes.get("variants", self.variants)
            changes["variants"] = {name: _merge_entry(r, entry, dict(fields), self.optim, name)
                                   for name, entry in entries.items()}
            overrides["fields"] = {**overrides.get("fields", {}), **fields}
        if speed_rounds is not None:
            if speed_rounds < 0:
                raise SuiteError(f"speed probe rounds must be >= 0, got {speed_rounds}")
            changes["speed"] = dataclasses.replace(self.speed, rounds=speed_rounds)
            overrides["speed_rounds"] = speed_rounds
        return dataclasses.replace(self, overrides=overrides, **changes)

    def with_override_file(self, path: str | Path) -> Suite:
        """Apply a suite-override file: `[variants.NAME]` tables (optimiser keys and a `spec` table), as written
        by `blockbench sweep`, plus a free-form `[provenance]` table. Its path and sha256 go into `overrides`."""
        path = Path(path)
        try:
            text = path.read_text()
            data = tomllib.loads(text)
        except OSError as exc:
            raise SuiteError(f"{path}: cannot read ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise SuiteError(f"{path}: malformed TOML: {exc}") from None
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


def _positive(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise SuiteError(f"{what} must be a positive number, got {value!r}")


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
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(fields)
        if unknown:
            raise self.error(f"{prefix}.{sorted(unknown)[0]}", f"unknown key (valid: {', '.join(fields)})")
        values = {}
        for name, f in fields.items():
            key = f"{prefix}.{name}"
            if name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise self.error(key, "missing")
                continue
            values[name] = self.typed(data[name], f.type, key)
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise self.error(prefix, str(exc)) from None

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
            return float(value)
        if base == "str":
            if not isinstance(value, str):
                raise self.error(key, f"expected a string, got {value!r}")
            return value
        if base.startswith("tuple[float"):
            if not isinstance(value, list) or not all(isinstance(v, (int, float)) for v in value):
                raise self.error(key, f"expected a list of numbers, got {value!r}")
            return tuple(float(v) for v in value)
        if base.startswith("tuple[str"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise self.error(key, f"expected a list of strings, got {value!r}")
            return tuple(value)
        raise self.error(key, f"unsupported field type {annotation}")


def content_hash(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def parse_suite(data: dict[str, Any], source: str) -> Suite:
    r = _Reader(source)
    known = {"suite", "model", "data", "optim", "budget", "eval", "runtime", "speed", "variants"}
    unknown = set(data) - known
    if unknown:
        raise r.error(sorted(unknown)[0], f"unknown table (valid: {', '.join(sorted(known))})")
    head = r.table(data, "suite")
    head_unknown = set(head) - {"name", "version", "description", "baseline", "seeds"}
    if head_unknown:
        raise r.error(f"suite.{sorted(head_unknown)[0]}", "unknown key")
    for key in ("name", "version", "baseline"):
        if not isinstance(head.get(key), str) or not head[key]:
            raise r.error(f"suite.{key}", "missing or not a string")
    seeds = head.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int and s >= 0 for s in seeds):
        raise r.error("suite.seeds", f"expected a non-empty list of non-negative integers, got {seeds!r}")

    model = r.dataclass(ModelShape, r.table(data, "model"), "model")
    for name, value in dataclasses.asdict(model).items():
        if value <= 0:
            raise r.error(f"model.{name}", f"must be positive, got {value}")
    if model.d_model % model.n_heads:
        raise r.error("model.n_heads", f"d_model={model.d_model} is not divisible by n_heads={model.n_heads}")
    data_cfg = r.dataclass(DataConfig, r.table(data, "data"), "data")
    optim = r.dataclass(OptimConfig, r.table(data, "optim", required=False), "optim")
    _check_optim(r, optim, "optim")
    budget = r.dataclass(Budget, r.table(data, "budget"), "budget")
    if not budget.active():
        raise r.error("budget", "give at least one of steps, tokens, seconds, flops")
    for kind, value in budget.active().items():
        if not value > 0:
            raise r.error(f"budget.{kind}", f"must be positive, got {value}")
    evaluation = r.dataclass(EvalConfig, r.table(data, "eval"), "eval")
    if evaluation.every_tokens <= 0 or evaluation.windows <= 0:
        raise r.error("eval", "every_tokens and windows must be positive")
    if evaluation.target_loss is not None and not evaluation.target_loss > 0:
        raise r.error("eval.target_loss", f"must be positive, got {evaluation.target_loss}")
    runtime = r.dataclass(RuntimeConfig, r.table(data, "runtime", required=False), "runtime")
    if runtime.device not in DEVICES:
        raise r.error("runtime.device", f"{runtime.device!r} is not one of {', '.join(DEVICES)}")
    if runtime.dtype not in DTYPES:
        raise r.error("runtime.dtype", f"{runtime.dtype!r} is not one of {', '.join(DTYPES)}")
    if not (math.isfinite(runtime.stall_seconds) and runtime.stall_seconds > 0):
        raise r.error("runtime.stall_seconds", f"must be finite and > 0, got {runtime.stall_seconds}")
    speed = r.dataclass(SpeedConfig, r.table(data, "speed", required=False), "speed")
    if speed.rounds < 0 or speed.steps_per_round <= 0:
        raise r.error("speed", "rounds must be >= 0 and steps_per_round positive")

    variants: dict[str, VariantEntry] = {}
    for name, entry in r.table(data, "variants").items():
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
        variants[name] = VariantEntry(name, preset, typed, spec)
    if not variants:
        raise r.error("variants", "no variants")
    if head["baseline"] not in variants:
        raise r.error("suite.baseline", f"{head['baseline']!r} is not one of the suite's variants")
    return Suite(name=head["name"], version=head["version"], description=head.get("description", ""),
                 baseline=head["baseline"], seeds=tuple(seeds), model=model, data=data_cfg, optim=optim,
                 budget=budget, eval=evaluation, runtime=runtime, speed=speed, variants=variants,
                 hash=content_hash(data), source=source)


def _check_optim(r: _Reader, optim: OptimConfig, where: str) -> None:
    if not optim.lr > 0:
        raise r.error(f"{where}.lr", f"must be positive, got {optim.lr}")
    if optim.schedule not in SCHEDULES:
        raise r.error(f"{where}.schedule", f"{optim.schedule!r} is not one of {', '.join(SCHEDULES)}")
    if not 0 <= optim.warmup_fraction < 1:
        raise r.error(f"{where}.warmup_fraction", "must be in [0, 1)")
    if optim.batch_size <= 0:
        raise r.error(f"{where}.batch_size", "must be positive")
    micro = optim.micro_batch_size
    if micro is not None and (micro <= 0 or optim.batch_size % micro):
        raise r.error(f"{where}.micro_batch_size", f"must divide batch_size={optim.batch_size}")


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


def builtin_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


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
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{path}: malformed TOML: {exc}") from None
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
    LOCK_FILE.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
    return lock


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--lock"]:
        sys.exit("usage: python -m blockbench.suite --lock")
    print(json.dumps(write_lock(), indent=2))
