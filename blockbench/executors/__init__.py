"""Executors: where the runs of a suite execute.

The runner (the driver) turns a suite into Jobs, one per (variant, seed[, grid point]), and hands them to an
executor. The executor runs each job in a process of its own, somewhere, and reports back through Events:
`started`, `progress`, `result` (the run record) or `failed` (error type, one-line message, traceback, host,
and whether the failure is `retryable`: the worker or its node died, as opposed to the run raising). An executor
never writes to the output directory: the driver alone writes records and failure files, as results arrive and
in any order, so a record is written exactly once whichever executor, retry or node produced it.

The interface is five methods, so a Slurm or Kubernetes executor is one more file in this package:

    probe(suite, block_paths) -> {device_name: {variant: {"static": ..., "speed": ...}}}
        static measures of every variant and the interleaved speed probe, once per device type the runs may
        land on (speed ratios are only meaningful within one device type);
    submit(job)               queue one run;
    poll(emit, timeout)       deliver the events that arrived (blocking up to `timeout` seconds for one);
    cancel()                  stop every queued and running job (Ctrl-C, SIGTERM on the driver);
    close()                   release what the executor started.

Worker-side code (`run_job`, `probe_job`) is shared by every executor: it is what a run does once it has a
process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from blockbench.errors import BlockbenchError, Terminated
from blockbench.suite import Suite

EXECUTORS = ("local", "ray")
PREWARM = ("auto", "on", "off")


@dataclass(frozen=True)
class Job:
    """One run: a (variant, seed) of a suite; `label` names the grid point of a sweep ('' for a plain run)."""

    suite: Suite
    variant: str
    seed: int
    static: dict[str, Any] | None = None
    block_paths: tuple[str, ...] = ()
    cwd: str = field(default_factory=os.getcwd)  # where user block modules are found
    label: str = ""
    attempt: int = 1

    @property
    def key(self) -> str:
        name = f"{self.variant} seed {self.seed}"
        return f"{self.label}: {name}" if self.label else name

    def retry(self) -> Job:
        from dataclasses import replace

        return replace(self, attempt=self.attempt + 1)


@dataclass
class Event:
    kind: str  # "started" | "progress" | "result" | "failed"
    job: Job
    payload: dict[str, Any]


EmitFn = Callable[[Event], None]


class Executor(ABC):
    name: str = ""
    remote: bool = False  # runs train on other machines: the driver's own device does not matter

    @abstractmethod
    def probe(self, suite: Suite, block_paths: list[str]) -> dict[str, dict[str, dict[str, Any]]]: ...

    @abstractmethod
    def submit(self, job: Job) -> None: ...

    @abstractmethod
    def poll(self, emit: EmitFn, timeout: float) -> None: ...

    @abstractmethod
    def cancel(self) -> None: ...

    def close(self) -> None:
        return None


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
    import torch

    from blockbench.blocks.plugins import register_user_blocks
    from blockbench.data import load_data

    if suite.runtime.threads:
        torch.set_num_threads(suite.runtime.threads)
    register_user_blocks(list(block_paths), cwd)
    return (load or load_data)(suite.data)


def run_job(job: Job, progress: Callable[[dict[str, Any]], None], dist: Any = None,
            load: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """Train one run in this process and return its record (speed is filled in by the driver)."""
    from blockbench.distributed import SINGLE
    from blockbench.train import run_trial

    data = _worker_setup(job.suite, job.block_paths, job.cwd, load)
    return run_trial(job.suite, job.variant, job.seed, data, progress, None, job.static, dist or SINGLE)


def standby_setup(suite: Suite, block_paths: tuple[str, ...] | list[str], cwd: str) -> Callable[[Any], Any]:
    """What a pre-warmed worker does before it has a job: everything a run does before its model exists (imports,
    threads, the user's blocks, the token data, the device's context and its matmul library), so a run handed to
    it starts at its model. Returns the data loader the run then uses: the data already loaded, or a fresh load
    when the run's data differs."""
    import torch

    import blockbench.train  # noqa: F401 - the run's own imports, done now
    from blockbench.data import load_data
    from blockbench.train import resolve_device

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
    from blockbench.distributed import SINGLE
    from blockbench.measure.env import device_name
    from blockbench.train import prepare_variants, resolve_device

    dist = dist or SINGLE
    data = _worker_setup(suite, block_paths, cwd, load)
    return {"device_name": device_name(resolve_device(suite.runtime.device, dist)),
            "prepared": prepare_variants(suite, data, dist, fails=user_failure)}


def make_executor(name: str, **options: Any) -> Executor:
    """`local` (a fresh process per run on this machine) or `ray` (one Ray task per run on a cluster)."""
    if name == "local":
        from blockbench.executors.local import LocalExecutor

        return LocalExecutor(**options)
    if name == "ray":
        from blockbench.executors.ray import RayExecutor

        return RayExecutor(**options)
    raise BlockbenchError(f"--executor {name!r}: not one of {', '.join(EXECUTORS)}")


def add_executor_args(parser: Any) -> None:
    """--executor / --ray-address / --max-retries / --resume, shared by `run` and `sweep`."""
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="where runs execute: local (default; one fresh process per run, one at a time) or "
                             "ray (one Ray task per run on a cluster; pip install -e '.[ray]')")
    parser.add_argument("--ray-address", metavar="ADDR",
                        help="with --executor ray: the cluster to use (HOST:PORT of the head, 'auto', or "
                             "ray://HOST:PORT); default: start a local Ray cluster on this machine")
    parser.add_argument("--prewarm", choices=PREWARM, default="auto",
                        help="local executor: start each run's process while the previous run trains, so that its "
                             "imports, data and device context are ready when its turn comes (each run still gets "
                             "a fresh process). auto (default) = on for CUDA, off on CPU, where the two processes "
                             "would share the cores the run is timed on")
    parser.add_argument("--max-retries", type=int, default=1, metavar="N",
                        help="resubmit a run whose worker process or node died up to N times (default 1); a run "
                             "that raises is not retried")
    parser.add_argument("--resume", action="store_true",
                        help="finish an interrupted run in --out: skip runs that have a valid record, rerun "
                             "missing and failed ones, reuse its probe.json")


def default_executor(in_process: bool = False, dist: Any = None) -> Executor:
    """The executor when none is asked for: a fresh local process per run, or this process (`--in-process`, and
    every rank under torchrun)."""
    from blockbench.executors.local import InProcessExecutor, LocalExecutor

    if in_process or (dist is not None and dist.enabled):
        return InProcessExecutor(dist)
    return LocalExecutor()


def check_executor_args(args: Any, in_process: bool = False, dist: Any = None) -> None:
    """The executor flags' bad input, found before any directory is made or cluster started."""
    if args.max_retries < 0:
        raise BlockbenchError(f"--max-retries must be >= 0, got {args.max_retries}")
    if args.ray_address and args.executor != "ray":
        raise BlockbenchError("--ray-address is for --executor ray")
    if getattr(args, "prewarm", "auto") == "on" and (args.executor != "local" or in_process
                                                     or (dist is not None and dist.enabled)):
        raise BlockbenchError("--prewarm on is for the local executor (one fresh process per run)")
    if args.executor == "ray" and (in_process or (dist is not None and dist.enabled)):
        raise BlockbenchError("--executor ray runs each run in a Ray worker: not with --in-process or torchrun")
    if args.executor == "ray":  # an unreachable cluster (the flag or RAY_ADDRESS) fails before OUT is made
        from blockbench.executors.ray import check_address

        check_address(args.ray_address)


def executor_from_args(args: Any, in_process: bool = False, dist: Any = None) -> Executor:
    check_executor_args(args, in_process, dist)
    if args.executor == "ray":
        return make_executor("ray", address=args.ray_address)
    if in_process or (dist is not None and dist.enabled):
        return default_executor(in_process, dist)
    from blockbench.executors.local import LocalExecutor

    return LocalExecutor(prewarm=getattr(args, "prewarm", "auto"))
