"""Multi-head attention, causal or bidirectional, including shaped attention (Noci et al. 2023; He & Hofmann 2024,
Eq. 5).

Shaped attention multiplies the values by alpha*I + beta*A - gamma*C, where C is A's value at zero logits: row i
uniform over positions <= i under the causal mask (the decoder), uniform over all T positions without one (the
encoder, C = (1/T) 1 1^T), and over the real (unpadded) positions only when a key mask says which are real.
Because every factor is known in closed form, the product is computed as alpha*V + beta*SDPA(Q, K, V) -
gamma*mean(V) (a running mean when causal): the middle term runs on torch's fused attention kernels and nothing
of size T x T is ever materialised. The workload, not the block, decides which mask applies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blockbench.blocks.gains import gain_sum
from blockbench.blocks.norms import RMSNorm
from blockbench.blocks.ranges import scope
from blockbench.blocks.rope import Rotary
from blockbench.blocks.shaped import shaped_mix
from blockbench.blocks.spec import BlockSpec, Gain


def masked_mean(v: torch.Tensor, key_mask: torch.Tensor, causal: bool) -> torch.Tensor:
    """C V when `key_mask` (B, T), True at real tokens, marks padding: each row of C is uniform over the real
    positions it may attend to (<= i when causal). A row with none (a query before any real token) gets 0."""
    real = key_mask[:, None, :, None].to(torch.float32)
    weighted = v.float() * real
    if causal:
        return (weighted.cumsum(dim=-2) / real.cumsum(dim=-2).clamp(min=1)).to(v.dtype)
    return (weighted.sum(dim=-2, keepdim=True) / real.sum(dim=-2, keepdim=True).clamp(min=1)).to(v.dtype)


def allowed_keys(seq: int, causal: bool, key_mask: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """Which keys each query may attend to: (T, T), or (B, 1, T, T) with a key mask."""
    allowed = torch.ones(seq, seq, dtype=torch.bool, device=device)
    if causal:
        allowed = allowed.tril()
    return allowed if key_mask is None else allowed & key_mask[:, None, None, :].bool()


def head_gains(gain: Gain, heads: int) -> torch.Tensor:
    """Per-head scalars as a vector, so that they are never mistaken for a matrix (weight decay, counts)."""
    return torch.full((heads,), float(gain.init))


class ReparamLinear(nn.Module):
    """Eq. 6: W = alpha * W_init + beta * dW, with W_init fixed (identity or orthogonal) and dW zero-initialised."""

    def __init__(self, dim: int, init: str, alpha: Gain, beta: Gain) -> None:
        super().__init__()
        w_init = torch.eye(dim) if init == "identity" else nn.init.orthogonal_(torch.empty(dim, dim))
        self.register_buffer("w_init", w_init)
        self.delta = nn.Parameter(torch.zeros(dim, dim))
        for name, gain in (("alpha", alpha), ("beta", beta)):
            value = torch.tensor(float(gain.init))
            if gain.trainable:
                self.register_parameter(name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # alpha W_init + beta dW as one op (its gains' gradients in the same backward): 3 kernels each way fewer
        return F.linear(x, gain_sum(self.w_init, self.delta, self.alpha, self.beta))


def make_value_proj(kind: str, dim: int, spec: BlockSpec) -> nn.Module | None:
    """The value or projection map; None means the identity (the matrix is removed, not multiplied by I)."""
    if kind == "identity":
        return None
    if kind.startswith("reparam_"):
        return ReparamLinear(dim, kind.removeprefix("reparam_"), spec.reparam_alpha, spec.reparam_beta)
    layer = nn.Linear(dim, dim, bias=spec.bias)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    if kind == "orthogonal":
        nn.init.orthogonal_(layer.weight)
    else:
        nn.init.normal_(layer.weight, std=spec.init_std)
    return layer


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, spec: BlockSpec, causal: bool = True, max_seq: int = 2048) -> None:
        """max_seq: the longest sequence RoPE's tables cover (the model's seq_len)."""
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.dim, self.heads, self.kind, self.causal = dim, heads, spec.attention, causal
        self.compiled_mix = False  # runtime.compile_shaped: the shaped mix as one torch.compile'd kernel
        # A plain value matrix is fused with Q and K into one GEMM so the baseline is not handicapped.
        fused_value = spec.value in ("linear", "orthogonal")
        self.qkv = nn.Linear(dim, (3 if fused_value else 2) * dim, bias=spec.bias)
        # QK-norm, then RoPE, as OLMo 2 and Qwen3 order them. A whole-vector norm reads (B, T, d), a per-head one
        # (B, H, T, d_head); both RMSNorm with the block's eps.
        norm_width = {"whole": dim, "head": dim // heads}.get(spec.qk_norm)
        self.q_norm = None if norm_width is None else RMSNorm(norm_width, spec.norm_eps, spec.norm_eps_placement)
        self.k_norm = None if norm_width is None else RMSNorm(norm_width, spec.norm_eps, spec.norm_eps_placement)
        self.qk_norm = spec.qk_norm
        self.rotary = Rotary(dim // heads, max_seq, spec.rope_theta) if spec.positions == "rope" else None
        with torch.no_grad():
            if self.qkv.bias is not None:
                self.qkv.bias.zero_()
            self.qkv.weight.normal_(std=spec.init_std)
            self.qkv.weight[:dim].normal_(std=spec.query_init_std)
            if spec.value == "orthogonal":
                self.qkv.weight[2 * dim:].copy_(nn.init.orthogonal_(torch.empty(dim, dim)))
        # Q and K biases as one (2d,) vector, added after the GEMM: a 1-dim tensor, so never weight-decayed, and
        # the value part of a fused QKV GEMM gets none (the authors' value layer has no trainable bias).
        self.qk_bias = nn.Parameter(torch.zeros(2 * dim)) if spec.qk_bias else None
        self.value = None if fused_value else make_value_proj(spec.value, dim, spec)
        self.proj = make_value_proj(spec.proj, dim, spec)
        if self.kind != "softmax":
            gains = [("alpha", spec.attn_alpha), ("beta", spec.attn_beta)]
            if self.kind == "shaped":
                gains.append(("gamma", spec.attn_gamma))
            for name, gain in gains:
                if gain.trainable:
                    self.register_parameter(name, nn.Parameter(head_gains(gain, heads)))
                else:
                    self.register_buffer(name, head_gains(gain, heads))

    def head_gain(self, name: str) -> torch.Tensor:
        """Per-head gain shaped (H, 1, 1) to broadcast over (B, H, T, d_head)."""
        return getattr(self, name).view(-1, 1, 1)

    def split_heads(self, t: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = t.shape
        return t.view(batch, seq, self.heads, self.dim // self.heads).transpose(1, 2)

    def add_qk_bias(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.qk_bias is None:
            return q, k
        return q + self.qk_bias[:self.dim], k + self.qk_bias[self.dim:]

    def heads_qk(self, q: torch.Tensor, k: torch.Tensor,
                 joint: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, d) queries and keys -> (B, H, T, d_head), through QK-norm and RoPE where the spec has them.
        joint: (B, T, 2d), the storage q and k are the halves of, when nothing was applied to them yet."""
        if self.rotary is not None and joint is not None:
            batch, seq, _ = joint.shape
            with scope("rope"):  # rotated as (B, T, 2H, D), the projection's layout, then split into heads
                rotated = self.rotary.rotate(joint.view(batch, seq, 2 * self.heads, -1), tokens_dim=-3)
            q, k = rotated.transpose(1, 2).split(self.heads, dim=1)  # split: its backward is one cat
            return q, k
        if self.qk_norm == "whole":
            with scope("qk_norm"):
                q, k = self.q_norm(q), self.k_norm(k)
        q, k = self.split_heads(q), self.split_heads(k)
        if self.qk_norm == "head":
            with scope("qk_norm"):
                q, k = self.q_norm(q), self.k_norm(k)
        if self.rotary is None:
            return q, k
        with scope("rope"):
            return self.rotary(q, k)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None,
                scale: torch.Tensor | float | None = None, addend: torch.Tensor | None = None,
                addend_gain: torch.Tensor | float = 1.0) -> torch.Tensor:
        """key_mask: (B, T) bool, True at real tokens, for padded batches; None when every token is real.
        scale: a gain on the output (the block's beta_SA); shaped attention folds it into its per-head gains.
        addend: a (B, T, d) tensor added to the output times addend_gain (a parallel block's gained MLP branch);
        only where `takes_addend(key_mask)`, so that the fused shaped mix does the block's sum in its own pass."""
        with scope("attn"):  # its own time (head split and merge) is the profile's attn_layout
            return self._forward(x, key_mask, scale, addend, addend_gain)

    def takes_addend(self, key_mask: torch.Tensor | None) -> bool:
        """Whether forward can add a tensor to its output inside the fused mix: shaped attention without W^P
        (the sum must come after the mix and nothing after it), on an unpadded batch."""
        return self.kind != "softmax" and self.proj is None and key_mask is None

    def centre(self, v: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """C V on the path shaped_mix does not take: padded batches (C averages over real tokens only)."""
        return masked_mean(v, key_mask, self.causal)

    def _forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None,
                 scale: torch.Tensor | float | None = None, addend: torch.Tensor | None = None,
                 addend_gain: torch.Tensor | float = 1.0) -> torch.Tensor:
        batch, seq, dim = x.shape
        with scope("qkv"):
            projected = self.qkv(x)
            if self.value is None and self.qkv.out_features == 3 * dim:
                q, k, v = projected.split(dim, dim=-1)
            else:
                q, k = projected.split(dim, dim=-1)
                v = x if self.value is None else self.value(x)
            # RoPE without QK-norm or bias rotates Q and K as one (B, 2H, T, d_head) view: half the launches.
            joint = projected[..., :2 * dim] if self.qk_bias is None and self.qk_norm == "none" else None
            q, k = self.add_qk_bias(q, k)
        q, k = self.heads_qk(q, k, joint)
        v = self.split_heads(v)
        with scope("attn_kernel"):
            if key_mask is None:
                out = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
            else:
                out = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=allowed_keys(seq, self.causal, key_mask, x.device))
        if self.kind != "softmax":
            with scope("shaped"):
                if key_mask is None:
                    gamma = self.gamma if self.kind == "shaped" else None
                    out = shaped_mix(out, v, self.alpha, self.beta, gamma, scale, causal=self.causal,
                                     compiled=self.compiled_mix,
                                     addend=None if addend is None else self.split_heads(addend),
                                     addend_gain=addend_gain)
                else:
                    out = self.head_gain("beta") * out + self.head_gain("alpha") * v
                    if self.kind == "shaped":
                        out = out - self.head_gain("gamma") * self.centre(v, key_mask)
                    if scale is not None:
                        out = scale * out
        elif scale is not None:
            out = scale * out
        if addend is not None and not self.takes_addend(key_mask):
            raise ValueError("this attention cannot add a tensor inside its mix (see takes_addend)")
        # The fused mix writes (B, T, H, D) storage, so this is a view there and a copy after SDPA alone.
        out = out.transpose(1, 2).reshape(batch, seq, dim)
        if self.proj is None:
            return out
        with scope("proj"):
            return self.proj(out)

    def attention_matrix(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The explicit (B, H, T, T) mixing matrix, for tests and diagnostics only: O(T^2) memory."""
        dim, seq = self.dim, x.shape[1]
        q, k = self.heads_qk(*self.add_qk_bias(*self.qkv(x).split(dim, dim=-1)[:2]))
        logits = q @ k.transpose(-1, -2) / (dim // self.heads) ** 0.5
        mask = allowed_keys(seq, self.causal, key_mask, x.device)
        probs = logits.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        if self.kind == "softmax":
            return probs
        eye = torch.eye(seq, device=x.device)
        matrix = self.head_gain("beta") * probs + self.head_gain("alpha") * eye
        if self.kind == "shaped":
            centre = mask.float() / mask.sum(dim=-1, keepdim=True).clamp(min=1)
            matrix = matrix - self.head_gain("gamma") * centre
        return matrix
