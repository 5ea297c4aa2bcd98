"""An example user block: Pre-LN with a SwiGLU MLP (Shazeer 2020), registered from outside blockbench.

    blockbench --block examples.swiglu_block:swiglu_pre_ln list
    blockbench --block examples.swiglu_block:swiglu_pre_ln run --variants pre_ln,swiglu_pre_ln

The factory receives the model's ModelConfig and the 0-based layer index and returns an nn.Module mapping
(batch, seq, d_model) to the same shape, causally. Hidden width 8d/3 keeps the parameter count of a 4d ReLU MLP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blockbench.blocks import BlockSpec
from blockbench.blocks.attention import Attention
from blockbench.blocks.norms import RMSNorm
from blockbench.model import ModelConfig


class SwiGLUPreLN(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        hidden = 64 * round(8 * dim / 3 / 64) or 8 * dim // 3
        self.norm1, self.norm2 = RMSNorm(dim), RMSNorm(dim)
        self.attn = Attention(dim, heads, BlockSpec())
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)
        for layer in (self.gate_up, self.down):
            nn.init.normal_(layer.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        gate, up = self.gate_up(self.norm2(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


def swiglu_pre_ln(config: ModelConfig, layer_index: int) -> nn.Module:
    """Pre-LN block with a SwiGLU MLP (user example)"""
    return SwiGLUPreLN(config.d_model, config.n_heads)
