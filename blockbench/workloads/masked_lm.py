"""masked_lm: BERT-style masked-language modelling with bidirectional attention, the encoder track.

The paper's headline speed-ups (Table 1) come from Crammed BERT (Geiping & Goldstein 2023): mask rate 0.25, the
usual 80/10/10 replacement (of the chosen tokens, 80% become [MASK], 10% a random token, 10% stay), loss on the
chosen tokens only. Here:

- windows are the causal track's windows for the same seed (packed, never padded), so both workloads see the
  same text; the model's vocabulary is the corpus's plus one [MASK] id, the last one;
- which tokens are chosen and what replaces them depends on (seed, step) alone, through a generator of its own:
  every variant of a seed is trained on identical masked batches, and no model RNG touches them;
- evaluation masks the fixed validation windows with one fixed generator (independent of the seed), and reports
  the mean loss over every masked token of the evaluation set (nats per masked token) and the masked-token
  accuracy (argmax equals the original token);
- the head is Crammed BERT's prediction head: dense d x d, GELU, norm, then the tied unembedding.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from blockbench.data import TokenData, eval_windows, train_batches
from blockbench.distributed import SINGLE, DistInfo, all_reduce
from blockbench.workloads.base import Windows, Workload, WorkloadError
from blockbench.workloads.vocabulary import Metric, ReportSection

IGNORE = -100  # F.cross_entropy's default ignore_index: positions that are not predicted
# Table 1 of the paper (Crammed BERT, spec 5): per-iteration speed relative to Pre-LN and parameters.
TABLE1: dict[str, tuple[float, str]] = {"pre_ln": (1.0, "120M"), "parallel": (1.05, "120M"),
                                        "vskipinit": (0.95, "120M"), "sas": (1.09, "101M"),
                                        "sas_p": (1.16, "101M"), "sas_p_nonorm": (1.20, "101M")}


def mask_generator(salt: str, seed: int, step: int) -> torch.Generator:
    """A generator for one batch's masks, derived from (seed, step) alone and apart from the batch-order stream."""
    digest = hashlib.sha256(f"blockbench-mlm-{salt}:{seed}:{step}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def mask_tokens(tokens: torch.Tensor, generator: torch.Generator, rate: float, mask_id: int, vocab_size: int,
                mask_fraction: float = 0.8, random_fraction: float = 0.1) -> Windows:
    """(inputs, targets) for a (B, T) batch: each token is chosen with probability `rate` (every row at least
    one, so no sequence has an empty loss); of the chosen, `mask_fraction` become mask_id, `random_fraction` a
    token drawn uniformly from [0, vocab_size), the rest stay. Targets are the original token where chosen, else
    IGNORE. Every random draw is made for the whole batch, so the masks do not depend on the tokens."""
    chosen_u = torch.rand(tokens.shape, generator=generator)
    how = torch.rand(tokens.shape, generator=generator)
    random_tokens = torch.randint(0, vocab_size, tokens.shape, generator=generator)
    chosen = chosen_u < rate
    empty = (~chosen.any(dim=-1)).nonzero().squeeze(-1)
    if len(empty):
        chosen[empty, chosen_u[empty].argmin(dim=-1)] = True
    tokens = tokens.to(torch.int64)
    inputs = tokens.clone()
    inputs[chosen & (how < mask_fraction)] = mask_id
    swap = chosen & (how >= mask_fraction) & (how < mask_fraction + random_fraction)
    inputs[swap] = random_tokens[swap]
    targets = torch.where(chosen, tokens, torch.full_like(tokens, IGNORE))
    return inputs, targets


class PredictionHead(nn.Module):
    """Crammed BERT's MLM head before the tied unembedding: dense (no bias), GELU, norm."""

    def __init__(self, dim: int, norm: nn.Module, init_std: float) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim, bias=False)
        nn.init.normal_(self.dense.weight, std=init_std)
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.gelu(self.dense(x)))


@torch.no_grad()
def evaluate_masked(model: nn.Module, windows: Windows, batch_size: int, autocast: Any,
                    info: DistInfo = SINGLE) -> dict[str, float]:
    """Loss per masked token (nats) and masked-token accuracy over the fixed masked evaluation windows."""
    was_training = model.training
    model.eval()
    inputs, targets = (t[info.rank::info.world_size] for t in windows)
    sums = torch.zeros(3, dtype=torch.float64, device=inputs.device)  # loss, correct, count
    for start in range(0, len(inputs), batch_size):
        x, y = inputs[start:start + batch_size], targets[start:start + batch_size]
        with autocast or contextlib.nullcontext():
            logits = model(x)
        chosen = y != IGNORE
        picked, truth = logits.float()[chosen], y[chosen]
        sums[0] += F.cross_entropy(picked, truth, reduction="sum").double()
        sums[1] += (picked.argmax(dim=-1) == truth).sum()
        sums[2] += chosen.sum()
    model.train(was_training)
    loss, correct, count = all_reduce(sums, info).tolist()
    return {"eval_loss": loss / count, "eval_accuracy": correct / count}


@dataclass(frozen=True)
class MaskedLM(Workload):
    mask_rate: float = 0.25
    mask_token_fraction: float = 0.8
    random_token_fraction: float = 0.1

    name = "masked_lm"
    causal = False
    loss_label = "MLM loss (nats/masked token)"
    summary = "bidirectional encoder with the MLM head; --vocab includes [MASK]"
    metrics = (Metric("final_eval_accuracy", float, optional=True, unit="fraction of masked tokens",
                      meaning="the share of masked evaluation tokens whose most likely prediction is the original "
                              "token, at the final evaluation",
                      column="eval_accuracy_mean", after="eval_loss_mean", label="accuracy",
                      header="masked-token accuracy"),)

    def __post_init__(self) -> None:
        for key in ("mask_rate", "mask_token_fraction", "random_token_fraction"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise WorkloadError(f"masked_lm.{key}: expected a number, got {value!r}")
        if not 0 < self.mask_rate < 1:
            raise WorkloadError(f"masked_lm.mask_rate must be in (0, 1), got {self.mask_rate!r}")
        if not (0 <= self.mask_token_fraction <= 1 and 0 <= self.random_token_fraction <= 1
                and self.mask_token_fraction + self.random_token_fraction <= 1):
            raise WorkloadError("masked_lm.mask_token_fraction and random_token_fraction must be in [0, 1] and sum "
                                f"to at most 1, got {self.mask_token_fraction!r} and {self.random_token_fraction!r}")

    def model_vocab_size(self, data_vocab_size: int) -> int:
        return data_vocab_size + 1  # the last id is [MASK]

    def make_head(self, dim: int, make_norm: Callable[[], nn.Module], init_std: float) -> nn.Module:
        return PredictionHead(dim, make_norm(), init_std)

    def mask(self, tokens: torch.Tensor, generator: torch.Generator, data_vocab_size: int) -> Windows:
        return mask_tokens(tokens, generator, self.mask_rate, data_vocab_size, data_vocab_size,
                           self.mask_token_fraction, self.random_token_fraction)

    def train_batches(self, data: TokenData, seed: int, batch_size: int, seq_len: int) -> Iterator[Windows]:
        for step, (x, _) in enumerate(train_batches(data, seed, batch_size, seq_len)):
            yield self.mask(x, mask_generator("train", seed, step), data.vocab_size)

    def eval_windows(self, data: TokenData, seq_len: int, max_windows: int) -> Windows:
        x, _ = eval_windows(data, seq_len, max_windows)
        return self.mask(x, mask_generator("eval", 0, 0), data.vocab_size)

    def evaluate(self, model: nn.Module, windows: Windows, batch_size: int, autocast: Any,
                 info: DistInfo = SINGLE) -> dict[str, float]:
        return evaluate_masked(model, windows, batch_size, autocast, info)

    def summary_metrics(self, last_point: dict[str, Any] | None, data: TokenData) -> dict[str, Any]:
        """The masked-token accuracy (no bits per byte: the loss is over masked tokens only)."""
        return {"final_eval_accuracy": None if last_point is None else last_point.get("eval_accuracy")}

    @classmethod
    def report_sections(cls, records: list[dict[str, Any]],
                        speed_cell: Callable[[str], str]) -> list[ReportSection]:
        """The report's Table 1 section: the interleaved probe's speed-ups beside Table 1's, with parameters, MLM
        loss and accuracy."""
        return [table1_section(records, speed_cell)]


def table1_section(records: list[dict[str, Any]], speed_cell: Callable[[str], str]) -> ReportSection:
    rows = []
    for variant in sorted({r["variant"] for r in records}, key=lambda v: (v not in TABLE1, list(TABLE1).index(v)
                                                                         if v in TABLE1 else 0, v)):
        mine = [r for r in records if r["variant"] == variant]
        losses = [r["summary"]["final_eval_loss"] for r in mine if r["summary"]["final_eval_loss"] is not None]
        accuracy = [r["summary"].get("final_eval_accuracy") for r in mine]
        accuracy = [a for a in accuracy if a is not None]
        paper_speed, paper_params = TABLE1.get(variant, (None, "-"))
        rows.append((variant, "-" if paper_speed is None else f"{paper_speed:.2f}", speed_cell(variant),
                     paper_params, f"{mine[0]['static']['params_total']:,}",
                     f"{sum(losses) / len(losses):.4f}" if losses else "-",
                     f"{sum(accuracy) / len(accuracy):.4f}" if accuracy else "-"))
    return ReportSection(
        "Table 1: Crammed BERT speed beside blockbench's",
        "The paper's speed is microbatch steps in 24 hours relative to Pre-LN on an RTX 2080 Ti; blockbench's is "
        "the interleaved probe's per-round ratio to Pre-LN (median over the records, its interquartile "
        "range), on this machine, at this scale. The paper's parameters are at L=16, d=768; blockbench's at "
        "this suite's shape. MLM loss (nats per masked token) and masked-token accuracy are means over seeds "
        "of the final evaluation; the paper reports GLUE after fine-tuning instead.",
        ("variant", "Table 1 speed", "blockbench speed-up", "Table 1 params", "params", "MLM loss", "accuracy"),
        tuple(rows))
