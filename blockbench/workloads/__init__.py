"""Workloads: what a suite trains on and how it is scored.

A workload owns everything that separates one training objective from another while the blocks stay the same:
the attention mask the blocks get (causal or bidirectional), the vocabulary the model needs on top of the data's
(masked-LM adds a mask token), the head between the final norm and the tied unembedding, the training batches and
their targets, the fixed evaluation windows, the metrics it declares (vocabulary.Metric: records, leaderboard
columns and the progress display read them), and the attention term of the analytic FLOP formula. One preset
runs under any workload; a suite names its workload (causal_lm when it names none).

Nothing here imports the model: model.py asks a workload for its mask and head, train.py for its data and metrics.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from blockbench.workloads.base import DEFAULT_WORKLOAD, Windows, Workload, WorkloadError
from blockbench.workloads.causal_lm import CausalLM
from blockbench.workloads.masked_lm import MaskedLM
from blockbench.workloads.vocabulary import Metric, ReportSection


def workload_names() -> tuple[str, ...]:
    return tuple(_registry())


def workload_help() -> str:
    """Every workload with its summary, the default marked, for a --workload help: 'a (...) or b (...)'."""
    parts = [f"{name} ({cls.summary}{', default' if name == DEFAULT_WORKLOAD else ''})"
             for name, cls in _registry().items()]
    return " or ".join(parts) if len(parts) < 3 else f"{', '.join(parts[:-1])} or {parts[-1]}"


def _registry() -> dict[str, type[Workload]]:
    return {"causal_lm": CausalLM, "masked_lm": MaskedLM}


def option_fields(name: str) -> dict[str, dataclasses.Field]:
    """The options a workload takes (its dataclass fields), for the suite reader."""
    return {f.name: f for f in dataclasses.fields(workload_class(name))}


def workload_class(name: str) -> type[Workload]:
    registry = _registry()
    if name not in registry:
        raise WorkloadError(f"unknown workload {name!r}; known: {', '.join(registry)}")
    return registry[name]


def get_workload(name: str = DEFAULT_WORKLOAD, options: dict[str, Any] | None = None) -> Workload:
    """The workload `name` with `options` (its dataclass fields); unknown names and options are errors."""
    cls = workload_class(name)
    options = options or {}
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = set(options) - valid
    if unknown:
        raise WorkloadError(f"workload {name}: unknown option(s) {', '.join(sorted(unknown))}"
                            + (f" (valid: {', '.join(sorted(valid))})" if valid else " (it takes none)"))
    return cls(**options)


def workload_of(record: dict[str, Any]) -> str:
    """A run record's workload; records written before workloads existed are causal_lm."""
    return record.get("workload") or DEFAULT_WORKLOAD


__all__ = ["DEFAULT_WORKLOAD", "Metric", "ReportSection", "Windows", "Workload", "WorkloadError", "get_workload",
           "option_fields", "workload_class", "workload_help", "workload_names", "workload_of"]
