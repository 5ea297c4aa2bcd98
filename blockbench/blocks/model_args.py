"""ModelConfig: the model's arguments, in one place.

A suite's `[model]` table is a ModelConfig (suite.py reads SHAPE_FIELDS from it and sets the workload from
`[suite].workload`); the harness fills in the one thing a suite cannot know, the vocabulary, from the tokenizer
(train.build_for_suite). Blocks and user factories receive it (zoo.Variant.build_block).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from blockbench.blocks.spec import SpecError
from blockbench.workloads import DEFAULT_WORKLOAD, WorkloadError, workload_class

# The fields a suite's [model] table gives, every one required, in the order records write them (config.model).
SHAPE_FIELDS = ("n_layers", "d_model", "n_heads", "seq_len")


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 4096
    seq_len: int = 128
    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4
    # The workload the model is built for: its attention mask and head (blockbench.workloads).
    workload: str = DEFAULT_WORKLOAD

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name == "workload":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise SpecError(f"{name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_heads:
            raise SpecError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                            f"choose n_heads among the divisors of {self.d_model}")
        try:
            workload_class(self.workload)
        except WorkloadError as exc:
            raise SpecError(str(exc)) from None

    @property
    def causal(self) -> bool:
        """Whether the blocks attend only to earlier positions (the workload's mask)."""
        return workload_class(self.workload).causal

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def shape(self) -> dict[str, int]:
        """The shape as a suite gives it and records write it (config.model): SHAPE_FIELDS, in that order."""
        return {name: getattr(self, name) for name in SHAPE_FIELDS}
