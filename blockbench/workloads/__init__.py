"""Workloads: what a suite trains on and how it is scored.

A workload owns everything that separates one training objective from another while the blocks stay the same:
the attention mask the blocks get (causal or bidirectional), the vocabulary the model needs on top of the data's
(masked-LM adds a mask token), the head between the final norm and the tied unembedding, the training batches and
their targets, the fixed evaluation windows, the evaluation metrics, and the attention term of the analytic FLOP
formula. One preset runs under any workload; a suite names its workload (causal_lm when it names none).

Nothing here imports the model: model.py asks a workload for its mask and head, train.py for its data and metrics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from blockbench.errors import BlockbenchError

if TYPE_CHECKING:
    from blockbench.data import TokenData
    from blockbench.distributed import DistInfo

DEFAULT_WORKLOAD = "causal_lm"
Windows = tuple[torch.Tensor, torch.Tensor]


class WorkloadError(BlockbenchError, ValueError):
    """An unknown workload or an option out of range."""


class Workload:
    """The interface every workload implements; subclasses are frozen dataclasses of their options."""

    name: str = ""
    causal: bool = True
    # What the eval loss is, in words, for views that label it.
    loss_label: str = ""

    def options(self) -> dict[str, Any]:
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}

    def model_vocab_size(self, data_vocab_size: int) -> int:
        """The model's vocabulary for a corpus of `data_vocab_size` token ids (extra ids are the workload's)."""
        return data_vocab_size

    def make_head(self, dim: int, make_norm: Callable[[], nn.Module], init_std: float) -> nn.Module | None:
        """A module between the final norm and the tied unembedding (make_norm builds the model's final norm
        kind), or None for none."""
        return None

    def attention_flops_per_token(self, n_layers: int, seq_len: int, d_model: int) -> int:
        """Forward FLOPs per token of the attention scores and attention-times-values, all layers: the full
        T x T square (2 matmuls x 2 FLOPs per MAC x T keys x d), as FlopCounterMode counts SDPA for either mask."""
        return 4 * n_layers * seq_len * d_model

    def train_batches(self, data: TokenData, seed: int, batch_size: int, seq_len: int) -> Iterator[Windows]:
        raise NotImplementedError

    def eval_windows(self, data: TokenData, seq_len: int, max_windows: int) -> Windows:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, windows: Windows, batch_size: int, autocast: Any,
                 info: DistInfo) -> dict[str, float]:
        """{'eval_loss': ...} plus any workload metric (each also goes into the curve and the summary)."""
        raise NotImplementedError


def workload_names() -> tuple[str, ...]:
    return tuple(_registry())


def _registry() -> dict[str, type[Workload]]:
    from blockbench.workloads.causal_lm import CausalLM
    from blockbench.workloads.masked_lm import MaskedLM

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


__all__ = ["DEFAULT_WORKLOAD", "Workload", "WorkloadError", "get_workload", "option_fields", "workload_class",
           "workload_names", "workload_of"]
