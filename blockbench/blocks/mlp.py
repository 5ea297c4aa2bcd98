"""The block's MLP: act(x W1) W2, without biases unless the spec asks for them (the paper's repo freezes them at
zero; Transformer++ has none).

Gated MLPs keep their two up-maps as one GEMM whose output is split in halves:
- GEGLU (Crammed BERT's "GELUglu"): value * GELU(gate); the up-projection of width `2 * hidden` feeds a
  down-projection of width `hidden` (the paper's "MLP width 3072" at d = 768 is the up-projection's).
- SwiGLU (LLaMA): SiLU(gate) * up, the halves being LLaMA's gate_proj and up_proj, each of width `hidden`.
relu2 is ReLU(x)^2 (Primer, the modded-nanogpt speedrun). BlockSpec.mlp_hidden states each rule.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blockbench.blocks.ranges import scope


def geglu(x: torch.Tensor) -> torch.Tensor:
    value, gate = x.chunk(2, dim=-1)
    return value * F.gelu(gate)


def swiglu(x: torch.Tensor) -> torch.Tensor:
    gate, up = x.chunk(2, dim=-1)
    return F.silu(gate) * up


def relu2(x: torch.Tensor) -> torch.Tensor:
    return F.relu(x).square()


ACTIVATION_FUNCTIONS = {"relu": F.relu, "gelu": F.gelu, "geglu": geglu, "swiglu": swiglu, "relu2": relu2}
GATED = ("geglu", "swiglu")


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, activation: str, init_std: float, bias: bool = False) -> None:
        """hidden: the down-projection's input width (BlockSpec.mlp_hidden); a gated MLP's up-map is twice it."""
        super().__init__()
        self.up = nn.Linear(dim, 2 * hidden if activation in GATED else hidden, bias=bias)
        self.down = nn.Linear(hidden, dim, bias=bias)
        self.act = ACTIVATION_FUNCTIONS[activation]
        nn.init.normal_(self.up.weight, std=init_std)
        nn.init.normal_(self.down.weight, std=init_std)
        for layer in (self.up, self.down):
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with scope("mlp_up"):
            x = self.up(x)
        with scope("act"):
            x = self.act(x)
        with scope("mlp_down"):
            return self.down(x)
