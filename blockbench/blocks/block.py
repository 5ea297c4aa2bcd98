"""One transformer block, built from a BlockSpec. The forward pass reads as the spec's equations."""

from __future__ import annotations

import torch
from torch import nn

from blockbench.blocks.attention import Attention
from blockbench.blocks.gains import gain_sum
from blockbench.blocks.mlp import MLP
from blockbench.blocks.norms import make_norm
from blockbench.blocks.ranges import scope
from blockbench.blocks.spec import BlockSpec, Gain

GAIN_NAMES = ("alpha_sa", "beta_sa", "alpha_ff", "beta_ff")


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, spec: BlockSpec, causal: bool = True, max_seq: int = 2048) -> None:
        """causal: the workload's mask (causal_lm) or none (masked_lm); the spec is the same either way.
        max_seq: the longest sequence the block sees (RoPE's tables)."""
        super().__init__()
        self.spec = spec
        norm = lambda: make_norm(spec.norm, dim, spec.norm_eps, spec.norm_eps_placement)  # noqa: E731
        # The input norms (none where the norm sits on the output only); the parallel block normalises its input
        # once for both branches.
        self.norm1 = None if spec.norm_position == "output" else norm()
        self.norm2 = norm() if spec.layout == "sequential" and spec.norm_position != "output" else None
        self.attn = Attention(dim, heads, spec, causal, max_seq)
        self.mlp = MLP(dim, spec.mlp_hidden(dim), spec.activation, spec.init_std, spec.bias)
        # The sublayers' output norms (OLMo 2's reordered norm, Peri-LN), applied before the gain and the skip.
        output_norms = spec.norm_position in ("output", "peri")
        self.attn_out_norm = norm() if output_norms else None
        self.mlp_out_norm = norm() if output_norms else None
        self.fixed_gains: dict[str, float] = {}
        for name in GAIN_NAMES:
            gain: Gain = getattr(spec, name)
            if gain.trainable:
                self.register_parameter(name, nn.Parameter(torch.tensor(gain.init)))
            else:
                self.fixed_gains[name] = gain.init

    def gain(self, name: str) -> torch.Tensor | float:
        return self.fixed_gains[name] if name in self.fixed_gains else getattr(self, name)

    def scaled(self, name: str, x: torch.Tensor) -> torch.Tensor:
        g = self.gain(name)
        return x if isinstance(g, float) and g == 1.0 else g * x

    def with_skip(self, name: str, branch: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """branch + gain * x, where a skip fixed at 0 is dropped rather than multiplied by zero."""
        if self.fixed_gains.get(name) == 0.0:
            return branch
        return branch + self.scaled(name, x)

    def attn_branch(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """beta_SA * attn(x). A trained beta_SA goes into shaped attention's per-head gains (alpha, beta, gamma are
        linear in it, and W^P has no bias): the same function without a pass over the activations."""
        g = self.gain("beta_sa")
        if self.attn.kind != "softmax" and not isinstance(g, float):
            return self.attn(x, key_mask, scale=g)
        return self.scaled("beta_sa", self.attn(x, key_mask))

    def add_scaled(self, x: torch.Tensor, name: str, y: torch.Tensor) -> torch.Tensor:
        """x + gain * y in one fused pass (addcmul), not a product and then a sum."""
        g = self.gain(name)
        if isinstance(g, float):
            return x + y if g == 1.0 else torch.add(x, y, alpha=g)
        return torch.addcmul(x, y, g)

    def norm(self, which: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The normalised input, in autocast's dtype where autocast is on: every matmul and the shaped mix that
        read it would cast a float32 norm output each on its own (three casts of one tensor in SAS-P's block 1)."""
        with scope("norm"):
            out = which(x)
            if out.dtype == torch.float32 and torch.is_autocast_enabled(out.device.type):
                out = out.to(torch.get_autocast_dtype(out.device.type))
            return out

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        # The ranges (profile only) leave the block's own time to the skips and gains: the residual component.
        if self.spec.layout == "parallel":
            # Q/K(/V) and the MLP's W_1 stay two GEMMs: joined as one (PaLM's way) they launch 5 fewer kernels per
            # block, but the joined output's split costs a full-width copy in backward, and on an H200 SAS-P and
            # Parallel ran 8% and 10% slower so (docs/performance.md, GPU section).
            h = self.norm(self.norm1, x)
            mlp_out = self.mlp(h)
            if self.attn.takes_addend(key_mask):  # the fused shaped mix adds the MLP branch in its own pass
                branches = self.attn(h, key_mask, scale=self.gain("beta_sa"), addend=mlp_out,
                                     addend_gain=self.gain("beta_ff"))
            else:
                branches = self.add_scaled(self.attn_branch(h, key_mask), "beta_ff", mlp_out)
            return self.with_skip("alpha_ff", branches, x)
        if self.spec.norm_position == "post":
            h = self.norm(self.norm1, self.with_skip("alpha_sa", self.scaled("beta_sa", self.attn(x, key_mask)), x))
            return self.norm(self.norm2, self.with_skip("alpha_ff", self.scaled("beta_ff", self.mlp(h)), h))
        if self.attn_out_norm is not None:
            return self.forward_output_norm(x, key_mask)
        h = self.with_skip("alpha_sa", self.attn_branch(self.norm(self.norm1, x), key_mask), x)
        return self.mlp_residual(h, self.mlp(self.norm(self.norm2, h)))

    def mlp_residual(self, h: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        """alpha_ff * h + beta_ff * branch; a trained gain makes it one op, not three."""
        if self.fixed_gains.get("alpha_ff") != 0.0 and not ("alpha_ff" in self.fixed_gains and
                                                           "beta_ff" in self.fixed_gains):
            return gain_sum(h, branch, self.gain("alpha_ff"), self.gain("beta_ff"))
        return self.with_skip("alpha_ff", self.scaled("beta_ff", branch), h)

    def forward_output_norm(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """Each sublayer's output normalised before its gain and skip (output: no input norm; peri: both)."""
        attn_in = x if self.norm1 is None else self.norm(self.norm1, x)
        attn_out = self.norm(self.attn_out_norm, self.attn(attn_in, key_mask))
        h = self.with_skip("alpha_sa", self.scaled("beta_sa", attn_out), x)
        mlp_in = h if self.norm2 is None else self.norm(self.norm2, h)
        return self.mlp_residual(h, self.norm(self.mlp_out_norm, self.mlp(mlp_in)))
