"""The workload interface (Workload), its error and the default workload's name.

The registry of workloads is the package's (blockbench/workloads/__init__.py); each workload module imports this
one, never the package.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from blockbench.errors import BlockbenchError
from blockbench.workloads.vocabulary import Metric, ReportSection

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
    # What the workload builds, in a few words, for the command line's --workload help.
    summary: str = ""
    # The metrics it reports beside the eval loss (records validate them, views/columns.py and the progress
    # display render them); none by default.
    metrics: tuple[Metric, ...] = ()

    @classmethod
    def report_sections(cls, records: list[dict[str, Any]],
                        speed_cell: Callable[[str], str]) -> list[ReportSection]:
        """Sections this workload adds to the claims report (after the claims table), from the records of one
        ranked group; `speed_cell(variant)` is the report's text for a variant's interleaved-probe speed-up. None
        by default."""
        return []

    def options(self) -> dict[str, Any]:
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}

    @property
    def is_default(self) -> bool:
        """Whether this is the workload of a suite that names none (its configurations and diagnoses then read as
        they did before workloads existed: no workload entry)."""
        return self.name == DEFAULT_WORKLOAD

    def summary_metrics(self, last_point: dict[str, Any] | None, data: TokenData) -> dict[str, Any]:
        """The run record's summary entries of this workload (one per declared metric), written after
        final_eval_loss: from the last evaluation point of a run that ended ok, or None for one that did not (then
        every value is None). None by default."""
        return {}

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
