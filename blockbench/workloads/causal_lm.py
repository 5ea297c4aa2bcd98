"""causal_lm: next-token prediction with a causal mask, the decoder track (what every suite ran before workloads).

Its batches, evaluation windows and loss are exactly those blockbench has always used, so records of this
workload are comparable with (and regenerate identically to) the records written before workloads existed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from blockbench.data import TokenData, bits_per_byte, eval_windows, train_batches
from blockbench.distributed import SINGLE, DistInfo, all_reduce
from blockbench.workloads.base import Windows, Workload
from blockbench.workloads.vocabulary import Metric


@torch.no_grad()
def evaluate(model: nn.Module, windows: Windows, batch_size: int, autocast: torch.autocast | None,
             info: DistInfo = SINGLE) -> float:
    """Mean next-token loss (nats/token) over the fixed evaluation windows (each rank takes every n-th one)."""
    was_training = model.training
    model.eval()
    inputs, targets = (t[info.rank::info.world_size] for t in windows)
    total = torch.zeros((), dtype=torch.float64, device=inputs.device)
    for start in range(0, len(inputs), batch_size):
        x, y = inputs[start:start + batch_size], targets[start:start + batch_size]
        with autocast or contextlib.nullcontext():
            total += model(x, y).double() * len(x)
    model.train(was_training)
    return float(all_reduce(total, info)) / len(windows[0])


@dataclass(frozen=True)
class CausalLM(Workload):
    name = "causal_lm"
    causal = True
    loss_label = "next-token loss (nats/token)"
    summary = "decoder"
    metrics = (Metric("final_eval_bpb", float, optional=True, unit="bits/byte",
                      meaning="the final eval loss as a compression rate of the validation text, in bits per byte "
                              "(comparable across tokenizers)",
                      column="eval_bpb_mean", after="eval_loss_mean", label="bpb", always_listed=True),)

    def train_batches(self, data: TokenData, seed: int, batch_size: int, seq_len: int) -> Iterator[Windows]:
        return train_batches(data, seed, batch_size, seq_len)

    def eval_windows(self, data: TokenData, seq_len: int, max_windows: int) -> Windows:
        return eval_windows(data, seq_len, max_windows)

    def evaluate(self, model: nn.Module, windows: Windows, batch_size: int, autocast: Any,
                 info: DistInfo = SINGLE) -> dict[str, float]:
        return {"eval_loss": evaluate(model, windows, batch_size, autocast, info)}

    def summary_metrics(self, last_point: dict[str, Any] | None, data: TokenData) -> dict[str, Any]:
        """Bits per byte: the next-token loss as a compression rate of the validation text."""
        final_eval = None if last_point is None else last_point["eval_loss"]
        bpb = None if final_eval is None else bits_per_byte(final_eval, data.val_bytes_per_token)
        return {self.metrics[0].key: bpb}
