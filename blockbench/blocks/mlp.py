"""The block's MLP: act(x W1) W2, no biases (the paper's repo freezes them at zero).

GEGLU (Crammed BERT's "GELUglu"): x W1 is split in two halves, value * GELU(gate), so the up-projection of width
`hidden` feeds a down-projection of width hidden / 2 (the paper's "MLP width 3072" at d = 768 is hidden = 3072).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blockbench.blocks.ranges import scope
from blockbench.blocks.spec import SpecError


def geglu(x: torch.Tensor) -> torch.Tensor:
    value, gate = x.chunk(2, dim=-1)
    return value * F.gelu(gate)


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, activation: str, init_std: float) -> None:
        super().__init__()
        gated = activation == "geglu"
        if gated and hidden % 2:
            raise SpecError(f"a GEGLU MLP splits its hidden width in two halves; {hidden} is odd (mlp_ratio * d)")
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden // 2 if gated else hidden, dim, bias=False)
        self.act = {"relu": F.relu, "gelu": F.gelu, "geglu": geglu}[activation]
        nn.init.normal_(self.up.weight, std=init_std)
        nn.init.normal_(self.down.weight, std=init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with scope("mlp_up"):
            x = self.up(x)
        with scope("act"):
            x = self.act(x)
        with scope("mlp_down"):
            return self.down(x)
