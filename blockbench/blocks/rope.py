"""Rotary position embeddings (RoPE, Su et al. 2021) in the half-split layout of `transformers`' LLaMA.

Each head's dimensions i and i + D/2 form a rotated pair (not neighbours 2i, 2i+1 as in the original paper and
Meta's first release): x' = x * cos + rotate_half(x) * sin, with rotate_half(x) = [-x2, x1] and angles
t / theta^(2i/D) repeated over both halves. A model trained in one layout is not the same function in the other,
so the reference test (tests/blocks/test_modern_reference.py) pins this one.

Public: a user block asks for RoPE with `Rotary(head_dim, max_seq)` and calls it on its (B, H, T, D) queries and
keys, and registers itself with positions="rope" so the model adds no learned position embedding.
"""

from __future__ import annotations

import torch
from torch import nn

from blockbench.blocks.spec import SpecError

ROPE_THETA = 10_000.0


def rope_tables(seq: int, head_dim: int, theta: float = ROPE_THETA,
                device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, each (seq, head_dim), in float32: angle[t, i] = t / theta^(2(i mod D/2)/D)."""
    if head_dim % 2:
        raise SpecError(f"positions='rope' needs an even head dimension; d_model / n_heads = {head_dim}")
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim)
    angles = torch.outer(torch.arange(seq, device=device, dtype=torch.float32), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (..., T, D) queries or keys by the (T, D) tables, in x's dtype (as `transformers` does)."""
    return x * cos + rotate_half(x) * sin


class Rotary(nn.Module):
    """RoPE for sequences up to `max_seq`: its float32 tables are buffers (moved with the model, not saved, not
    trained), cast to the queries' dtype where autocast makes them bf16."""

    def __init__(self, head_dim: int, max_seq: int, theta: float = ROPE_THETA) -> None:
        super().__init__()
        if not theta > 0:
            raise SpecError(f"rope_theta must be positive, got {theta}")
        self.head_dim, self.theta = head_dim, theta
        cos, sin = rope_tables(max_seq, head_dim, theta)
        self.register_buffer("cos", cos, persistent=False)
        # rotate_half(x) * sin = roll(x, D/2) * [-sin_1, sin_2]: the sign goes into the table, so a rotation is
        # three launches (mul, roll, addcmul) instead of apply_rope's six; the products are the same numbers.
        half = head_dim // 2
        self.register_buffer("signed_sin", torch.cat((-sin[:, :half], sin[:, half:]), dim=-1), persistent=False)
        self._cast: dict[torch.dtype, tuple[torch.Tensor, torch.Tensor]] = {}

    def tables(self, seq: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and the signed sin for `seq` positions in `dtype`. Under autocast (bf16 queries, float32 tables) the
        cast copies are kept, outside compilation, so that each layer does not cast them again every step (two
        launches per layer); they are deterministic functions of the buffers, so a CUDA graph may read them."""
        if seq > self.cos.shape[0]:
            raise ValueError(f"sequence of {seq} tokens exceeds the rotary tables' {self.cos.shape[0]}")
        if self.cos.dtype == dtype:
            return self.cos[:seq], self.signed_sin[:seq]
        if torch.compiler.is_compiling():  # inductor fuses the cast into the rotation
            return self.cos[:seq].to(dtype), self.signed_sin[:seq].to(dtype)
        cast = self._cast.get(dtype)
        if cast is None or cast[0].device != self.cos.device:
            cast = self._cast[dtype] = (self.cos.to(dtype), self.signed_sin.to(dtype))
        return cast[0][:seq], cast[1][:seq]

    def rotate(self, x: torch.Tensor, tokens_dim: int = -2) -> torch.Tensor:
        """apply_rope(x) in x's dtype, for x of shape (..., T, D) or, with tokens_dim=-3, (..., T, H, D): the
        layout the fused QKV projection leaves, so that the rotated heads keep it (a head merge after attention is
        then a view, not a copy)."""
        cos, signed_sin = self.tables(x.shape[tokens_dim], x.dtype)
        if tokens_dim == -3:
            cos, signed_sin = cos.unsqueeze(-2), signed_sin.unsqueeze(-2)
        return torch.addcmul(x * cos, x.roll(self.head_dim // 2, dims=-1), signed_sin)

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q, k: (B, H, T, D). Both rotated by position (0-based, the sequence's own)."""
        return self.rotate(q), self.rotate(k)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, theta={self.theta:g}, half-split layout"
