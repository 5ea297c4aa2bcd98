"""A run record built from one measured run: the suite, the variant, the seed, what the run tallied as it trained
(RunTally) and the environment it ran in. train.Trainer fills the tally; `build_record` turns it into the record
the schema (records/schema.py) describes.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import blockbench
from blockbench import stats
from blockbench.measure.env import git_state
from blockbench.measure.mfu import mfu_fields
from blockbench.measure.timing import median_iqr
from blockbench.records.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    from blockbench.data import TokenData
    from blockbench.suite import Suite


@dataclass
class RunTally:
    """What one (variant, seed) run measured, filled in by the training loop as it goes.

    config: how this run trained beyond the suite (the LR schedule's length, dtype, compilation, execution mode,
    divergence bound), appended to the recorded configuration in its order. data: the record's data section.
    metrics: the workload's summary entries (workloads.Workload.summary_metrics). curve: the evaluation points;
    status "ok" or "diverged"; the rest is what the run measured."""

    created_at: str
    workload: str
    data: dict[str, Any]
    static: dict[str, Any]
    speed: dict[str, Any]
    block_spec: dict[str, Any] | None
    flops_per_token: int
    world_size: int = 1
    config: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    stop_reason: str = ""
    curve: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    tokens: int = 0
    train_seconds: float = 0.0
    step_seconds: list[float] = field(default_factory=list)
    eval_seconds: float = 0.0
    warmup_seconds: float = 0.0
    last_train_loss: float | None = None
    peak_memory_bytes: int | None = None
    peak_memory_kind: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


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

def data_section(suite: Suite, data: TokenData) -> dict[str, Any]:
    """The record's data section: the corpus the run trained on and how it was tokenized."""
    return {**data.describe(), "corpus": suite.data.corpus, "tokenizer": data.tokenizer_id,
            "fingerprint": data.fingerprint, "vocab_size": data.vocab_size}


def build_record(suite: Suite, variant: str, seed: int, tally: RunTally, env: dict[str, Any]) -> dict[str, Any]:
    """The run record of one (variant, seed) of `suite` (train.Trainer.run calls it when training ends); env:
    measure.env.environment of the run's device."""
    config = _config(suite, variant, tally)
    plateau_level = stats.plateau_level({"config": config, "data": {"vocab_size": tally.data["vocab_size"]}})
    points = stats.curve_points({"curve": tally.curve})
    plateau = stats.plateau_steps_of(points, plateau_level) if tally.ok else None
    stop_reason = tally.stop_reason
    if plateau is not None:  # still "ok" (it trained, within budget), but not converged: say so in the record
        stop_reason += (f"; on the unigram plateau for the last {plateau} steps (eval loss flat within "
                        f"{stats.PLATEAU_TOLERANCE} nats): not converged")
    return {
        "schema_version": SCHEMA_VERSION,
        "blockbench_version": blockbench.__version__,
        "run_id": uuid.uuid4().hex[:12],
        "created_at": tally.created_at,
        "git": git_state(),
        "suite": {"name": suite.name, "version": suite.version, "hash": suite.hash},
        "workload": tally.workload,
        "variant": variant,
        "block_spec": tally.block_spec,
        "seed": seed,
        "status": tally.status,
        "stop_reason": stop_reason,
        "config": config,
        "env": {**env, "world_size": tally.world_size},
        "data": tally.data,
        "static": {k: tally.static[k] for k in STATIC_KEYS},
        "summary": {**_summary(tally, env), "plateau_steps": plateau,
                    "plateau_escape_step": stats.plateau_escape_step(points, plateau_level)},
        "speed": tally.speed,
        "curve": tally.curve,
        "to_target": to_target(tally.curve, suite.eval.target_loss),
    }


def _config(suite: Suite, variant: str, tally: RunTally) -> dict[str, Any]:
    """The recorded configuration: the suite's, the variant's optimiser, spec overrides and preset, then the run's."""
    entry = suite.variants[variant]
    config = suite.to_config()
    config["optim"] = dataclasses.asdict(suite.variant_optim(variant))
    config["spec_overrides"] = entry.spec
    config["preset"] = entry.preset
    config.update(tally.config)
    return config


def _summary(tally: RunTally, env: dict[str, Any]) -> dict[str, Any]:
    median, iqr = median_iqr(tally.step_seconds)
    tokens_per_second = tally.tokens / tally.train_seconds if tally.train_seconds > 0 else 0.0
    return {
        "steps": tally.steps, "tokens": tally.tokens, "train_seconds": tally.train_seconds,
        "tokens_per_second": tokens_per_second, "step_time_median": median, "step_time_iqr": iqr,
        "peak_memory_bytes": tally.peak_memory_bytes, "peak_memory_kind": tally.peak_memory_kind,
        "final_train_loss": tally.last_train_loss if tally.ok else None,
        "final_eval_loss": tally.curve[-1]["eval_loss"] if tally.ok else None,
        # the workload's own metrics (workloads.Workload.metrics), e.g. bits per byte
        **tally.metrics,
        **mfu_fields(tally.flops_per_token, tokens_per_second, env["device"], env["device_name"],
                     tally.config["dtype"]),
        "eval_seconds": tally.eval_seconds, "warmup_seconds": tally.warmup_seconds,
    }
