"""The local executor: one run at a time on this machine, each in a fresh spawned process.

A fresh process per run keeps runs independent: no allocator or cache state, no CPU peak-memory high-water mark
and no thread pool carries over from one variant to the next. Jobs run in the order submitted (the runner
interleaves variants within each seed, so slow drift of a shared machine spreads over all of them). Progress
streams back through a pipe; a process that dies without a result is a retryable failure, one that sends nothing
for `runtime.stall_seconds` (or 20x its longest silence so far) is killed and recorded as stalled.

With pre-warming (`--prewarm`, on for CUDA by default) the next run's process is started while the current one
runs: it does what every run does before its model exists (imports, the token data, the device context) and then
waits for its job. A run still gets a process that has trained nothing; it only no longer waits for that process's
start-up, which on a GPU costs more than a short run's training.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from typing import Any

from blockbench.data import load_data
from blockbench.distributed import SINGLE
from blockbench.errors import BlockbenchError
from blockbench.executors.base import EmitFn, Event, Executor, Job, ProbeDied
from blockbench.executors.worker import (
    died_payload,
    failure_payload,
    probe_job,
    run_job,
    stalled_payload,
    standby_setup,
    telling_signals,
    user_failure,
)
from blockbench.suite import Suite
from blockbench.train import resolve_device

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _send(conn: Any, message: tuple) -> None:
    """Tell the parent; if the parent is gone (killed), there is no one to tell, and nothing to print either."""
    try:
        conn.send(message)
    except (OSError, EOFError):
        pass


def _standby(conn: Any, jobs: Any, args: tuple) -> dict[str, Any] | None:
    """A pre-warmed worker: set up, say so, wait for the job (None or a closed pipe: no job), run it. A set-up
    error is kept and raised as the job's failure, just as the same error would fail a run set up after its
    start."""
    try:
        load, setup_error = standby_setup(*args), None
    except Exception as exc:  # noqa: BLE001 - it belongs to the job this process is handed, if any
        load, setup_error = None, exc
    conn.send(("ready", {"pid": os.getpid()}))
    try:
        job = jobs.recv()
    except (EOFError, OSError):
        job = None
    if job is None:
        return None
    conn.send(("started", {"pid": os.getpid(), "prewarmed": True}))
    if setup_error is not None:
        raise setup_error
    return run_job(job, lambda info: conn.send(("progress", info)), load=load)


def _child(conn: Any, what: str, args: tuple, jobs: Any = None) -> None:
    try:
        with telling_signals(worker=True):
            try:
                # The parent blocks SIGINT/SIGTERM while it spawns us (so a signal cannot cut the spawn short and
                # leave a half-started child printing a traceback); a signal that came meanwhile is delivered here,
                # to the handler that tells a real signal from the user's own KeyboardInterrupt.
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
                if what == "standby":
                    result = _standby(conn, jobs, args)
                    if result is None:
                        return
                elif what == "probe":
                    conn.send(("started", {"pid": os.getpid()}))
                    result = probe_job(*args)
                else:
                    conn.send(("started", {"pid": os.getpid()}))
                    result = run_job(args[0], lambda info: conn.send(("progress", info)))
            except BaseException as exc:  # noqa: BLE001 - any failure of the run is reported, the suite goes on
                if not user_failure(exc):  # SIGINT to this process: the parent decides (a retry, or Ctrl-C)
                    _send(conn, ("interrupted", None))
                    return
                try:
                    conn.send(("error", failure_payload(exc)))
                except (OSError, EOFError):
                    pass  # the parent is gone
                except Exception:  # noqa: BLE001 - e.g. an unpicklable exception: send what can be sent
                    _send(conn, ("error", failure_payload(RuntimeError(f"{type(exc).__name__}: {exc}"))))
                return
        conn.send(("result", result))
    except KeyboardInterrupt:  # a signal between the run's end and its result: the parent decides
        _send(conn, ("interrupted", None))
    except (OSError, EOFError):
        pass  # the parent is gone
    finally:
        conn.close()


class _Process:
    """A spawned child and the read end of its pipe (created first, started by `start`, so that whoever holds
    it can always kill it, even when a signal arrives right after the spawn)."""

    def __init__(self, what: str, args: tuple) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.receive, self.send = ctx.Pipe(duplex=False)
        # A standby's job comes later, through a pipe of its own.
        self.jobs_out, self.jobs_in = ctx.Pipe(duplex=False) if what == "standby" else (None, None)
        self.process = ctx.Process(target=_child, args=(self.send, what, args, self.jobs_out), daemon=True)
        self.last_message = time.monotonic()
        self.longest_gap = 0.0
        self.progressed = False
        self.prewarmed = what == "standby"
        self.job_started = what != "standby"  # a standby has started nothing until it says "started"

    def hand(self, job: Job) -> bool:
        """Give a standby its job; False when it cannot take it (it died), and the job needs a fresh process."""
        try:
            self.jobs_in.send(job)
        except (OSError, ValueError):
            return False
        self.last_message = time.monotonic()  # its wait for the job was no silence of the run's
        return True

    def start(self) -> _Process:
        """Spawn the child with Ctrl-C and SIGTERM held back until it is fully started: an interrupted spawn
        leaves a half-started child that prints a traceback. The child starts with both blocked (the mask is
        inherited) and unblocks them in `_child`; here they are remembered and re-raised once the spawn is done."""
        pending: list[int] = []
        main = threading.current_thread() is threading.main_thread()
        handlers = {sig: signal.signal(sig, lambda signum, frame: pending.append(signum))
                    for sig in STOP_SIGNALS} if main else {}
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            self.process.start()
        finally:
            self.send.close()
            if self.jobs_out is not None:
                self.jobs_out.close()
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        self.last_message = time.monotonic()
        if pending:
            signal.raise_signal(pending[0])  # now handled as usual: the caller holds this child and can kill it
        return self

    def stalled_for(self, stall_seconds: float) -> float | None:
        """Seconds without a message, when that exceeds the watchdog's limit: stall_seconds, or 20x the longest
        gap between two messages so far (a long evaluation is not a stall)."""
        silent = time.monotonic() - self.last_message
        return silent if silent > max(stall_seconds, 20 * self.longest_gap) else None

    def messages(self, timeout: float) -> list[tuple[str, Any]]:
        """Messages that arrived within `timeout`; ('died', exitcode) when the child ended without a result."""
        out: list[tuple[str, Any]] = []
        try:
            while self.receive.poll(timeout if not out else 0):
                out.append(self.receive.recv())
                now = time.monotonic()
                if out[-1][0] == "progress" and self.progressed:  # start-up (imports, data) is not a step
                    self.longest_gap = max(self.longest_gap, now - self.last_message)
                self.progressed = self.progressed or out[-1][0] == "progress"
                self.last_message = now
                if out[-1][0] == "ready":  # a standby's set-up, before the job it was handed: not the run's news
                    out.pop()
                elif out[-1][0] in ("result", "error", "interrupted"):
                    return out
        except (EOFError, OSError):
            self.process.join(timeout=10)
            out.append(("died", self.process.exitcode))
        return out

    def kill(self) -> None:
        if self.process.pid is not None:  # started
            if self.process.is_alive():
                self.process.kill()
            self.process.join(timeout=10)
        self._close_pipes()

    def finish(self) -> None:
        if self.process.pid is None:
            self._close_pipes()
            return
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=10)
        self._close_pipes()

    def _close_pipes(self) -> None:
        self.receive.close()
        if self.jobs_in is not None:
            self.jobs_in.close()


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, stall_seconds: float | None = None, prewarm: str = "auto") -> None:
        self.stall_seconds = stall_seconds
        self.prewarm = prewarm
        self.queue: deque[Job] = deque()
        self.current: tuple[Job, _Process] | None = None
        self.standby: _Process | None = None

    def _prewarms(self, suite: Suite) -> bool:
        if self.prewarm != "auto":
            return self.prewarm == "on"

        # auto: on CUDA only. On CPU the standby's start-up would share the cores the running run is timed on.
        return resolve_device(suite.runtime.device).type == "cuda"

    def _start_standby(self, suite: Suite, block_paths: tuple[str, ...], cwd: str) -> None:
        if self.standby is None and self._prewarms(suite):
            self.standby = _Process("standby", (suite, block_paths, cwd)).start()

    def probe(self, suite: Suite, block_paths: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
        child = _Process("probe", (suite, tuple(block_paths), os.getcwd()))
        try:
            child.start()
            # The first run's process sets up beside the probe's, whose own set-up and model builds come before any
            # step it times.
            self._start_standby(suite, tuple(block_paths), os.getcwd())
            while True:
                for kind, payload in child.messages(1.0):
                    if kind == "result":
                        return {payload["device_name"]: payload["prepared"]}
                    if kind == "error":
                        raise BlockbenchError(f"speed probe: {payload['error_type']}: {payload['message']}")
                    if kind == "died":  # like a run's worker dying: the runner retries it (--max-retries)
                        raise ProbeDied(died_payload(f"the speed probe's process died (exit code {payload})"))
                    if kind == "interrupted":
                        raise KeyboardInterrupt
        finally:
            child.finish() if not child.process.is_alive() else child.kill()

    def submit(self, job: Job) -> None:
        self.queue.append(job)

    def poll(self, emit: EmitFn, timeout: float) -> None:
        if self.current is None:
            if not self.queue:
                return
            job = self.queue.popleft()
            standby, self.standby = self.standby, None
            if standby is not None and standby.hand(job):
                self.current = (job, standby)
            else:
                if standby is not None:
                    standby.kill()
                self.current = (job, _Process("trial", (job,)).start())
            if self.queue:  # the next run's process sets up while this one starts and trains
                following = self.queue[0]
                self._start_standby(following.suite, following.block_paths, following.cwd)
        job, child = self.current
        for kind, payload in child.messages(timeout):
            if kind in ("started", "progress"):
                child.job_started = True
                emit(Event(kind, job, payload))
                continue
            if kind == "died" and not child.job_started:
                self._fresh_process(job, child)  # a standby that died before it started the run
                return
            self.current = None
            if kind == "result":
                child.finish()
                emit(Event("result", job, {"record": payload}))
            elif kind == "error":
                child.finish()
                emit(Event("failed", job, payload))
            elif kind == "interrupted":  # SIGINT reached the child alone (a Ctrl-C reaches this process too)
                child.finish()
                emit(Event("failed", job, died_payload("the run's process was interrupted (SIGINT)")))
            else:
                emit(Event("failed", job, died_payload(f"the run's process died (exit code {payload})")))
            return
        silent = child.stalled_for(self.stall_seconds or job.suite.runtime.stall_seconds)
        if silent is not None and not child.job_started:
            # A pre-warmed standby that stalled before it started the run (stuck in its set-up, stopped): the run
            # never began, so it is no failure of the run: it gets a fresh process, as it would without a standby.
            self._fresh_process(job, child)
        elif silent is not None:
            child.kill()
            self.current = None
            emit(Event("failed", job, stalled_payload(silent)))

    def _fresh_process(self, job: Job, standby: _Process) -> None:
        standby.kill()
        self.current = (job, _Process("trial", (job,)).start())

    def cancel(self) -> None:
        self.queue.clear()
        if self.current is not None:
            self.current[1].kill()
            self.current = None
        if self.standby is not None:
            self.standby.kill()
            self.standby = None

    def close(self) -> None:
        self.cancel()


class InProcessExecutor(Executor):
    """Every run in this process, one after another (`--in-process`, and each rank under torchrun)."""

    name = "in-process"

    def __init__(self, dist: Any = None) -> None:
        self.dist = dist or SINGLE
        self.queue: deque[Job] = deque()
        self.data: Any = None

    def _load(self, config: Any) -> Any:
        """load_data, remembered: every run of a suite in this process uses the same token data."""
        if self.data is None or self.data[0] != repr(config):
            self.data = (repr(config), load_data(config))
        return self.data[1]

    def probe(self, suite: Suite, block_paths: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
        with telling_signals():
            result = probe_job(suite, block_paths, os.getcwd(), self.dist, self._load)
        return {result["device_name"]: result["prepared"]}

    def submit(self, job: Job) -> None:
        self.queue.append(job)

    def poll(self, emit: EmitFn, timeout: float) -> None:
        if not self.queue:
            return
        job = self.queue.popleft()
        emit(Event("started", job, {"pid": os.getpid()}))
        payload: dict[str, Any] | None = None
        from_driver: list[BaseException] = []  # what the driver's own progress handler raised: never the run's

        def progress(info: dict[str, Any]) -> None:
            try:
                emit(Event("progress", job, info))
            except BaseException as exc:
                from_driver.append(exc)
                raise

        with telling_signals():
            try:
                record = run_job(job, progress, self.dist, self._load)
            except BaseException as exc:  # noqa: BLE001 - a run that raises is a failure; the suite goes on
                if self.dist.enabled or exc in from_driver or not user_failure(exc):
                    raise  # Ctrl-C or SIGTERM; or ranks run in lockstep: one rank going on alone would hang others
                payload = failure_payload(exc)
        if payload is not None:
            emit(Event("failed", job, payload))
            return
        emit(Event("result", job, {"record": record}))

    def cancel(self) -> None:
        self.queue.clear()
