"""Value residual learning (ResFormer, Zhou et al. 2024; the modded-nanogpt speedrun) as a user block on the
Transformer++ base: every layer's values are mixed with the first layer's, v_l <- lambda_l v_l + mu_l v_1, with
lambda_l and mu_l learned scalars (0.5 and 0.5 at init; ResFormer's choice), so later layers keep a direct path to
the first layer's token information.

    blockbench --block examples.value_residual:value_residual run --variants transformer_pp,value_residual

Why a plug-in and not a BlockSpec field: the mix couples blocks (layer l reads layer 1's values), which nothing else
in the zoo does; here the factory gives the blocks of one model a shared holder. It also shows how a user block
asks for RoPE: blockbench.blocks.rope.Rotary on its (B, H, T, d_head) queries and keys, and `positions = "rope"`
on the factory, so the model adds no learned position embedding. Built from blockbench's parts (RMSNorm, the
SwiGLU MLP, Rotary) with LLaMA's conventions, so it differs from `transformer_pp` only by the value mix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blockbench.blocks import BlockSpec
from blockbench.blocks.mlp import MLP
from blockbench.blocks.norms import RMSNorm
from blockbench.blocks.rope import Rotary
from blockbench.model import ModelConfig


class FirstValues:
    """What the blocks of one model share: the first block's values from the current forward pass."""

    def __init__(self) -> None:
        self.values: torch.Tensor | None = None


class ValueResidualBlock(nn.Module):
    def __init__(self, config: ModelConfig, first: FirstValues, is_first: bool) -> None:
        super().__init__()
        dim, self.heads = config.d_model, config.n_heads
        self.first, self.is_first = first, is_first
        self.norm1, self.norm2 = RMSNorm(dim), RMSNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        for layer in (self.qkv, self.proj):
            nn.init.normal_(layer.weight, std=0.02)
        self.rotary = Rotary(dim // self.heads, config.seq_len)
        self.mlp = MLP(dim, BlockSpec(activation="swiglu").mlp_hidden(dim), "swiglu", 0.02)
        if not is_first:
            self.value_gains = nn.Parameter(torch.tensor([0.5, 0.5]))  # lambda_l, mu_l: 1-dim, never decayed

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, dim = x.shape
        q, k, v = (t.view(batch, seq, self.heads, -1).transpose(1, 2) for t in self.qkv(x).split(dim, dim=-1))
        if self.is_first:
            self.first.values = v
        else:
            v = self.value_gains[0] * v + self.value_gains[1] * self.first.values
        q, k = self.rotary(q, k)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(out.transpose(1, 2).reshape(batch, seq, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x + self.attention(self.norm1(x))
        return h + self.mlp(self.norm2(h))


_holder = [FirstValues()]


def value_residual(config: ModelConfig, layer_index: int) -> nn.Module:
    """Transformer++ with value residual learning (ResFormer; user example)"""
    # The model builds its blocks in order, so block 0 opens a new holder that the model's later blocks share.
    if layer_index == 0:
        _holder[0] = FirstValues()
    return ValueResidualBlock(config, _holder[0], layer_index == 0)


value_residual.positions = "rope"  # type: ignore[attr-defined]
