"""Training-clock measurement that is honest on both CPU and CUDA.

CUDA work is asynchronous, so the clock synchronises only where a timed interval ends (before an evaluation and
at the end of the run), never inside it; per-step times come from CUDA events read after that synchronisation.
On CPU every step is timed with perf_counter.
"""

from __future__ import annotations

import statistics
import time

import torch


class StepTimer:
    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.seconds = 0.0          # closed intervals only
        self.step_seconds: list[float] = []
        self._interval_start: float | None = None
        self._events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self._step_start: float | torch.cuda.Event | None = None

    def resume(self) -> None:
        """Open a timed interval (after setup or an evaluation)."""
        if self.cuda:
            torch.cuda.synchronize()
        self._interval_start = time.perf_counter()

    def pause(self) -> None:
        """Close the interval; synchronises CUDA so queued steps are counted where they ran."""
        if self._interval_start is None:
            return
        if self.cuda:
            torch.cuda.synchronize()
            self.step_seconds.extend(start.elapsed_time(end) / 1000 for start, end in self._events)
            self._events.clear()
        self.seconds += time.perf_counter() - self._interval_start
        self._interval_start = None

    def elapsed(self) -> float:
        """Seconds on the training clock so far, without synchronising (host time: within one queue of GPU work)."""
        running = 0.0 if self._interval_start is None else time.perf_counter() - self._interval_start
        return self.seconds + running

    def step_begin(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._step_start = event
        else:
            self._step_start = time.perf_counter()

    def step_end(self) -> None:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._events.append((self._step_start, end))
        else:
            self.step_seconds.append(time.perf_counter() - self._step_start)


def median_iqr(values: list[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 0.0
    if len(values) < 4:
        return statistics.median(values), 0.0
    q1, _, q3 = statistics.quantiles(values, n=4)
    return statistics.median(values), q3 - q1
