"""User blocks that fail late or strangely, for the fault tests of issue 24 (probe isolation, user exceptions)."""

from __future__ import annotations

import os

import torch
from torch import nn


class _Late(nn.Module):
    """A residual linear block whose forward fails once it has run `after` times in this process."""

    def __init__(self, dim: int, after: int, fail: str) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        self.after, self.calls, self.fail = after, 0, fail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > self.after:
            if self.fail == "raise":
                raise RuntimeError("boom after a few calls")
            if self.fail == "huge":  # asks for 4 TB: the allocator refuses (RuntimeError on CPU, OOM on CUDA)
                torch.empty(4 * 2**40, dtype=torch.uint8, device=x.device)
            if self.fail == "keyboard":
                raise KeyboardInterrupt
            if self.fail == "exit":
                raise SystemExit(7)
        return x + self.linear(x)


def _after() -> int:
    # BLOCKBENCH_TEST_FIXED=1 makes the block behave (the user fixed it), for --resume tests.
    return 10**12 if os.environ.get("BLOCKBENCH_TEST_FIXED") else 5


def late_raise(config, layer_index):
    """Raises RuntimeError after its 5th forward (past the probe's first step)"""
    return _Late(config.d_model, _after(), "raise")


def late_huge(config, layer_index):
    """Asks for 4 TB after its 5th forward"""
    return _Late(config.d_model, _after(), "huge")


def keyboard_block(config, layer_index):
    """Raises KeyboardInterrupt in forward (a user bug, not a signal)"""
    return _Late(config.d_model, 0, "keyboard")


def exit_block(config, layer_index):
    """Raises SystemExit(7) in forward"""
    return _Late(config.d_model, 0, "exit")


def late_keyboard(config, layer_index):
    """Raises KeyboardInterrupt after its 5th forward (in the run, when the suite has no speed probe)"""
    return _Late(config.d_model, _after(), "keyboard")
