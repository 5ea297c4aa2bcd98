"""Peak memory of training steps.

CUDA: torch.cuda.max_memory_allocated after reset_peak_memory_stats: the allocator's peak, weights included.
CPU: the growth of the process's peak resident set (VmHWM, reset by writing 5 to /proc/self/clear_refs) over
the measured steps, from the resident set when measuring starts. It covers gradients, optimiser state and
activations, but also allocator effects; it is labelled as such and only comparable between runs on CPU.
"""

from __future__ import annotations

from pathlib import Path

import torch

CUDA_KIND = "cuda_max_allocated"
CPU_KIND = "cpu_peak_rss_growth"


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.baseline: int | None = None
        self.kind = CUDA_KIND if device.type == "cuda" else CPU_KIND

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.kind = "unavailable"
            return
        rss = _status_kib("VmRSS")
        self.baseline = None if rss is None else rss * 1024

    def peak_bytes(self) -> int | None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return int(torch.cuda.max_memory_allocated(self.device))
        hwm = _status_kib("VmHWM")
        if self.baseline is None or hwm is None:
            return None
        return max(0, hwm * 1024 - self.baseline)
