"""Worker-side code shared by every executor: what a run does once it has a process (`run_job`, `probe_job`,
a pre-warmed worker's `standby_setup`), how it tells a signal from the user's code raising (`telling_signals`,
`user_failure`), and the payloads of a failed event.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import torch

from blockbench.blocks.plugins import register_user_blocks
from blockbench.data import load_data
from blockbench.distributed import SINGLE
from blockbench.errors import Terminated
from blockbench.executors.base import Job
from blockbench.measure.env import device_name
from blockbench.suite import Suite
from blockbench.train import prepare_variants, resolve_device, run_trial


class SignalInterrupt(KeyboardInterrupt):
    """SIGINT really delivered to the process running a job (raised by the handler `telling_signals` installs)."""


_telling = False  # True while telling_signals' handler is installed in this process


@contextlib.contextmanager
def telling_signals(worker: bool = False) -> Iterator[None]:
    """While a job's code (the user's blocks among it) runs here, SIGINT raises SignalInterrupt, so that a
    KeyboardInterrupt that the user's code raises itself is told apart from a real Ctrl-C: the first is that
    run's failure, the second stops the process. In a worker process (`worker`), SIGTERM gets its default action
    back (Ray's turns it into SystemExit, which would read as the user's), so the worker dies as it should."""
    global _telling
    if threading.current_thread() is not threading.main_thread():
        yield  # no handler can be installed: every KeyboardInterrupt counts as a signal
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise SignalInterrupt

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    if previous[signal.SIGINT] != signal.SIG_IGN:  # a driver started with SIGINT ignored keeps ignoring it
        signal.signal(signal.SIGINT, interrupt)
    if worker:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _telling = True
    try:
        yield
    finally:
        _telling = False
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)


def user_failure(exc: BaseException) -> bool:
    """Whether `exc`, raised while a job ran, is that run's failure (its code raised: any Exception, a SystemExit,
    or a KeyboardInterrupt raised by the code itself) rather than a stop of the process by a signal."""
    if isinstance(exc, KeyboardInterrupt):
        return _telling and not isinstance(exc, (SignalInterrupt, Terminated))
    return isinstance(exc, (Exception, SystemExit))


def failure_payload(exc: BaseException, retryable: bool = False, message: str | None = None) -> dict[str, Any]:
    """What a failed event carries: one line for the user, the traceback for the failure file."""
    text = message if message is not None else (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return {"error_type": type(exc).__name__, "message": text[:500],
            "traceback": "".join(traceback.format_exception(exc)), "host": socket.gethostname(),
            "retryable": retryable}


def died_payload(what: str, retryable: bool = True) -> dict[str, Any]:
    return {"error_type": "WorkerDied", "message": what, "traceback": "", "host": socket.gethostname(),
            "retryable": retryable}


def stalled_payload(silent_seconds: float) -> dict[str, Any]:
    """The watchdog's verdict on a run that stopped reporting progress (a hang, SIGSTOP, a deadlock)."""
    return {"error_type": "Stalled", "message": f"stalled: no progress for {silent_seconds:.0f} s; the run's process "
            "was killed (runtime.stall_seconds)", "traceback": "", "host": socket.gethostname(),
            "retryable": False}


def _worker_setup(suite: Suite, block_paths: tuple[str, ...] | list[str], cwd: str,
                  load: Callable[[Any], Any] | None = None) -> Any:
    """What a run needs in its process: the suite's threads, the user's blocks, the token data (`load` lets the
    in-process executor reuse data it already holds)."""
    if suite.runtime.threads:
        torch.set_num_threads(suite.runtime.threads)
    register_user_blocks(list(block_paths), cwd)
    return (load or load_data)(suite.data)


def run_job(job: Job, progress: Callable[[dict[str, Any]], None], dist: Any = None,
            load: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """Train one run in this process and return its record (speed is filled in by the driver)."""
    data = _worker_setup(job.suite, job.block_paths, job.cwd, load)
    return run_trial(job.suite, job.variant, job.seed, data, progress, None, job.static, dist or SINGLE)


def standby_setup(suite: Suite, block_paths: tuple[str, ...] | list[str], cwd: str) -> Callable[[Any], Any]:
    """What a pre-warmed worker does before it has a job: everything a run does before its model exists (imports,
    threads, the user's blocks, the token data, the device's context and its matmul library), so a run handed to
    it starts at its model. Returns the data loader the run then uses: the data already loaded, or a fresh load
    when the run's data differs."""
    data = _worker_setup(suite, block_paths, cwd)
    device = resolve_device(suite.runtime.device)
    if device.type == "cuda":  # the context and cuBLAS's handle, which a run's first matmul would otherwise make
        x = torch.ones(16, 16, device=device)
        x @ x
        torch.cuda.synchronize(device)
    loaded = repr(suite.data)
    return lambda config: data if repr(config) == loaded else load_data(config)


def probe_job(suite: Suite, block_paths: tuple[str, ...] | list[str], cwd: str, dist: Any = None,
              load: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """Static measures and the interleaved speed probe of every variant, on this process's device."""
    dist = dist or SINGLE
    data = _worker_setup(suite, block_paths, cwd, load)
    return {"device_name": device_name(resolve_device(suite.runtime.device, dist)),
            "prepared": prepare_variants(suite, data, dist, fails=user_failure)}
