"""The training step captured once as a CUDA graph and replayed (runtime.cuda_graphs).

At the paper's width a GPU step is bound by the host launching kernels one by one (a thousand and more per step,
measured on an H200), not by the kernels. A captured step launches them all in one call. What a replay needs,
and what this module keeps: static input buffers the next batch is copied into; an optimizer whose step runs
on the device without a host sync (AdamW with capturable=True) and whose learning rate is a tensor the scheduler
fills in place; autocast without its weight-cast cache (a cache filled during capture would be stale).

Capture runs a few real steps first (on a side stream, as CUDA requires), then puts the parameters and the
optimizer back exactly as they were, so a captured run starts from the same state as an eager one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from blockbench.errors import BlockbenchError

WARMUP_ITERATIONS = 3  # real steps before capture: CUDA's lazy initialisations, cuBLAS workspaces, Triton JIT


class CaptureError(BlockbenchError):
    """The step could not be captured (an op that syncs with the host, a dynamic shape, ...)."""


def unavailable_reason(device: torch.device, distributed: bool, dtype: str) -> str | None:
    """Why this run's step cannot be captured, or None when it can be tried."""
    if device.type != "cuda":
        return f"not a CUDA device ({device.type})"
    if distributed:
        return "DistributedDataParallel's gradient hooks all-reduce outside a capturable region"
    if dtype == "fp16":
        return "fp16's GradScaler reads its overflow flag on the host"
    return None


class GraphedStep:
    """`step(x, y) -> loss` (forward, backward, clip and optimizer.step, nothing that syncs) captured for fixed
    input shapes; calling it copies the batch in, replays, and returns a copy of the loss."""

    def __init__(self, step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
        self.optimizer = optimizer  # the step replays only with this optimizer (the graph holds its state)
        self.static_x, self.static_y = x.clone(), y.clone()
        params = [p for p in model.parameters()]
        saved_params = [p.detach().clone() for p in params]
        saved_lrs = [g["lr"].clone() if isinstance(g["lr"], torch.Tensor) else g["lr"] for g in optimizer.param_groups]
        fresh = not optimizer.state
        saved_state = {p: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in s.items()}
                       for p, s in optimizer.state.items()}
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        try:
            with torch.cuda.stream(side):
                for _ in range(WARMUP_ITERATIONS):
                    optimizer.zero_grad(set_to_none=True)
                    step(self.static_x, self.static_y)
            torch.cuda.current_stream().wait_stream(side)
            self._restore(params, saved_params, optimizer, saved_lrs, fresh, saved_state)
            optimizer.zero_grad(set_to_none=True)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.static_loss = step(self.static_x, self.static_y)
        except Exception as exc:
            torch.cuda.synchronize()
            self._restore(params, saved_params, optimizer, saved_lrs, fresh, saved_state)
            optimizer.zero_grad(set_to_none=True)
            raise CaptureError(f"CUDA graph capture failed: {type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc

    @staticmethod
    def _restore(params: list[torch.nn.Parameter], saved: list[torch.Tensor], optimizer: torch.optim.Optimizer,
                 lrs: list[Any], fresh: bool, state: dict[Any, dict[str, Any]]) -> None:
        """Parameters, learning rates and optimizer state as before the warm-up, in place (the graph holds their
        addresses). A fresh AdamW's state is zeros and step 0, which is what zeroing gives."""
        with torch.no_grad():
            for p, value in zip(params, saved):
                p.copy_(value)
            for group, lr in zip(optimizer.param_groups, lrs):
                if isinstance(lr, torch.Tensor):
                    group["lr"].copy_(lr)
            for p, s in optimizer.state.items():
                for k, v in s.items():
                    if isinstance(v, torch.Tensor):
                        v.zero_() if fresh or p not in state else v.copy_(state[p][k])

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.static_x.copy_(x, non_blocking=True)
        self.static_y.copy_(y, non_blocking=True)
        self.graph.replay()
        return self.static_loss.clone()
