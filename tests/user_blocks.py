"""Deliberately broken user blocks for the CLI's bad-input and failure-isolation tests."""

import torch
from torch import nn


def not_a_module(config, layer_index):
    return 3


class _Raising(nn.Module):
    """A block whose forward raises once it has run `after` times in this process (0: at once)."""

    def __init__(self, dim: int, after: int, error: type[BaseException]) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        self.after, self.calls, self.error = after, 0, error

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > self.after:
            raise self.error("boom from a user block")
        return x + self.linear(x)


def raising_block(config, layer_index):
    """Raises RuntimeError in its first forward (probe and run alike)"""
    return _Raising(config.d_model, 0, RuntimeError)


def oom_block(config, layer_index):
    """Raises MemoryError in its first forward"""
    return _Raising(config.d_model, 0, MemoryError)


class _Nan(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * float("nan")


def nan_block(config, layer_index):
    """Returns NaN: the run diverges (a result, not a failure)"""
    return _Nan(config.d_model)


def flaky_block(config, layer_index):
    """Raises in forward while BLOCKBENCH_TEST_RAISE is set (a failure that a rerun fixes), else a residual MLP"""
    import os

    return _Raising(config.d_model, 0 if os.environ.get("BLOCKBENCH_TEST_RAISE") else 10**12, RuntimeError)
