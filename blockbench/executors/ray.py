"""The Ray executor: every run is one Ray task on an existing cluster (or on a local one that `ray.init()` starts).

Each task asks for what one run needs (one GPU on CUDA, `runtime.threads` CPUs otherwise), runs in a fresh worker
process (`max_calls=1`: no allocator, cache or peak-memory state carried over, as with the local executor's spawned
children) and returns the run record to the driver, which alone writes it. Progress and the worker's pid travel
through a small queue actor. Ray's own task retries are off: a worker or node that dies comes back as a retryable
failure and the runner decides (`--max-retries`), so a record is still written exactly once.

The speed probe runs once per device type present: one task pinned to one node of each type (nodes are typed by
the device name a tiny pinned task reads there), because interleaved speed ratios mean something only within one
device type.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from typing import Any

from blockbench.errors import BlockbenchError
from blockbench.executors.base import EmitFn, Event, Executor, Job, ProbeDied
from blockbench.executors.worker import (
    died_payload,
    failure_payload,
    probe_job,
    run_job,
    stalled_payload,
    telling_signals,
    user_failure,
)
from blockbench.measure.env import device_name
from blockbench.suite import Suite
from blockbench.train import resolve_device

INSTALL_HINT = "--executor ray needs Ray: pip install -e '.[ray]' (or pip install 'ray[default]')"
CONNECT_TIMEOUT_S = 10.0
PROGRESS_EVERY_S = 1.0


def import_ray() -> Any:
    try:
        import ray  # deferred: Ray is an optional dependency
    except ImportError:
        raise BlockbenchError(INSTALL_HINT) from None
    return ray


def _parse_address(address: str, where: str = "--ray-address") -> tuple[str, int] | None:
    """(host, port) of a plain HOST:PORT address; None for 'auto' and ray:// (Ray client) addresses."""
    if address == "auto" or "://" in address:
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise BlockbenchError(f"{where} {address!r}: expected HOST:PORT (the head node's GCS, e.g. "
                              "10.0.0.1:6379), 'auto' or ray://HOST:PORT")
    return host, int(port)


def _check_reachable(address: str, where: str = "--ray-address") -> None:
    """A plain host:port that nothing answers on fails here in seconds, instead of inside ray.init's retries."""
    parsed = _parse_address(address, where)
    if parsed is None:
        return
    host, port = parsed
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise BlockbenchError(f"{where} {address}: cannot reach a Ray cluster there "
                              f"({exc.strerror or type(exc).__name__})") from None


def _task_run(job: Job, queue: Any) -> tuple[str, Any]:
    last = 0.0

    def progress(info: dict[str, Any]) -> None:
        nonlocal last
        now = time.monotonic()
        if info.get("eval_loss") is not None or now - last >= PROGRESS_EVERY_S:
            last = now
            queue.put(("progress", job.key, job.attempt, info))

    queue.put(("started", job.key, job.attempt, {"pid": os.getpid(), "host": socket.gethostname()}))
    with telling_signals(worker=True):
        try:
            return "result", run_job(job, progress)
        except BaseException as exc:  # noqa: BLE001 - the run raised: a failure of this run, returned, not retried
            if not user_failure(exc):  # a SIGINT to the worker: it was stopped, as if it had died
                return "error", died_payload("the run's Ray worker was interrupted (SIGINT)")
            return "error", failure_payload(exc)


def _task_probe(suite: Suite, block_paths: tuple[str, ...], cwd: str) -> tuple[str, Any]:
    with telling_signals(worker=True):
        try:
            return "result", probe_job(suite, block_paths, cwd)
        except BaseException as exc:  # noqa: BLE001
            if not user_failure(exc):
                return "error", died_payload("the speed probe's Ray worker was interrupted (SIGINT)")
            return "error", failure_payload(exc)


def _task_device_name(suite: Suite) -> str:
    return device_name(resolve_device(suite.runtime.device))


def _address(address: str | None) -> tuple[str | None, str]:
    """The cluster address to use and where it came from: the flag, else RAY_ADDRESS (which ray.init would read
    by itself, and retry for minutes when nothing answers there), else none (a local cluster)."""
    if not address and os.environ.get("RAY_ADDRESS", "").strip():
        return os.environ["RAY_ADDRESS"].strip(), "RAY_ADDRESS"
    return address or None, "--ray-address"


def check_address(address: str | None) -> None:
    """The flag's or RAY_ADDRESS's address, parsed and (a plain HOST:PORT) reached, in seconds: one line if not."""
    address, where = _address(address)
    if address and not import_ray().is_initialized():
        _check_reachable(address, where)


class RayExecutor(Executor):
    name = "ray"
    remote = True

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        address, where = _address(address)
        if address:
            _parse_address(address, where)
        ray = self.ray = import_ray()
        self.owns_cluster = False  # a Ray connection this process already has is used as it is
        if not ray.is_initialized():
            if address:
                _check_reachable(address, where)
            else:
                # A cluster of this machine alone: keep Ray's own traffic on loopback (Ray's name for the switch).
                os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            sigterm = signal.getsignal(signal.SIGTERM)
            try:
                ray.init(address=address, num_cpus=None if address else num_cpus, log_to_driver=False,
                         include_dashboard=False, logging_level=logging.ERROR, configure_logging=True)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"{where} {address}" if address else "a local Ray cluster"
                hint = ("; a cluster with token authentication (the default of `ray start` since Ray 2.59) also "
                        "needs RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN or ~/.ray/auth_token) here"
                        if address and "RAY_AUTH_MODE" not in os.environ else "")
                raise BlockbenchError(f"{where}: {type(exc).__name__}: {str(exc).splitlines()[0]}{hint}") from None
            finally:
                # ray.init installs its own SIGTERM handler; the driver's (cancel, keep records, exit 143) wins.
                if threading.current_thread() is threading.main_thread():
                    signal.signal(signal.SIGTERM, sigterm)
            self.owns_cluster = True
        from ray.util.queue import Queue  # deferred: Ray is an optional dependency

        self.queue = Queue(actor_options={"num_cpus": 0})
        self.remote_run = ray.remote(max_calls=1)(_task_run)
        self.remote_probe = ray.remote(max_calls=1)(_task_probe)
        self.remote_device = ray.remote(max_calls=1)(_task_device_name)
        self.pending: dict[Any, Job] = {}  # object ref -> job
        # (key, attempt) -> (last message, longest gap between progress reports, reported progress yet)
        self.heard: dict[tuple[str, int], tuple[float, float, bool]] = {}

    # -- resources ---------------------------------------------------------------------------------------------
    def resources(self, suite: Suite) -> dict[str, float]:
        gpus = self.ray.cluster_resources().get("GPU", 0)
        cuda = suite.runtime.device == "cuda" or (suite.runtime.device == "auto" and gpus > 0)
        need = {"CPU": float(suite.runtime.threads or 1)}
        if cuda:
            need = {"CPU": 1.0, "GPU": 1.0}
        return need

    def eligible_nodes(self, suite: Suite) -> list[dict[str, Any]]:
        """Alive nodes with the resources one run needs; none is a one-line error naming the resource."""
        need = self.resources(suite)
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        fit = [n for n in nodes if all(n["Resources"].get(k, 0) >= v for k, v in need.items())]
        if not fit:
            have = ", ".join(f"{n['NodeManagerAddress']}: " + ", ".join(
                f"{k} {n['Resources'].get(k, 0):g}" for k in need) for n in nodes) or "no alive node"
            short = next(k for k in need if all(n["Resources"].get(k, 0) < need[k] for n in nodes)) if nodes else "CPU"
            raise BlockbenchError(f"no node of the Ray cluster has {short} >= {need[short]:g} that one run needs "
                                  f"({have})")
        return fit

    def _options(self, suite: Suite, node_id: str | None = None) -> dict[str, Any]:
        need = self.resources(suite)
        options: dict[str, Any] = {"num_cpus": need["CPU"], "num_gpus": need.get("GPU", 0), "max_retries": 0}
        if node_id is not None:
            # deferred: Ray is an optional dependency
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=False)
        return options

    # -- the interface -----------------------------------------------------------------------------------------
    def probe(self, suite: Suite, block_paths: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
        nodes = self.eligible_nodes(suite)
        if suite.speed.rounds == 0 or len(nodes) == 1:
            chosen = [nodes[0]["NodeID"]]  # static measures do not depend on the device
        else:
            names = self.ray.get([self.remote_device.options(**self._options(suite, n["NodeID"])).remote(suite)
                                  for n in nodes])
            first: dict[str, str] = {}
            for node, name in zip(nodes, names):
                first.setdefault(name, node["NodeID"])
            chosen = list(first.values())
        refs = [self.remote_probe.options(**self._options(suite, node)).remote(suite, tuple(block_paths),
                                                                               os.getcwd())
                for node in chosen]
        probes: dict[str, dict[str, dict[str, Any]]] = {}
        for ref in refs:
            try:
                kind, payload = self.ray.get(ref)
            except self.ray.exceptions.RayError as exc:  # its worker or node died: retryable, as a run's is
                first = (str(exc).splitlines() or [""])[0]
                raise ProbeDied(died_payload(f"the speed probe's Ray task failed ({type(exc).__name__}: "
                                             f"{first})")) from None
            if kind == "error":
                raise BlockbenchError(f"speed probe: {payload['error_type']}: {payload['message']}")
            probes[payload["device_name"]] = payload["prepared"]
        return probes

    def submit(self, job: Job) -> None:
        self.eligible_nodes(job.suite)
        ref = self.remote_run.options(**self._options(job.suite)).remote(job, self.queue)
        self.pending[ref] = job

    def _drain(self, emit: EmitFn) -> None:
        by_key = {(job.key, job.attempt): job for job in self.pending.values()}
        size = self.queue.size()
        if not size:
            return
        for kind, key, attempt, info in self.queue.get_nowait_batch(size):
            job = by_key.get((key, attempt))
            if job is not None:
                now = time.monotonic()
                last, gap, progressed = self.heard.get((key, attempt), (now, 0.0, False))
                if kind == "progress" and progressed:  # start-up (imports, data) is not a step
                    gap = max(gap, now - last)
                self.heard[(key, attempt)] = (now, gap, progressed or kind == "progress")
                emit(Event(kind, job, info))

    def poll(self, emit: EmitFn, timeout: float) -> None:
        self._drain(emit)
        if not self.pending:
            time.sleep(min(timeout, 0.1))
            return
        ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=timeout)
        if ready:
            ready, _ = self.ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
        self._drain(emit)
        exceptions = self.ray.exceptions
        died = (exceptions.WorkerCrashedError, exceptions.NodeDiedError, exceptions.LocalRayletDiedError,
                exceptions.ObjectLostError, exceptions.OwnerDiedError, exceptions.OutOfMemoryError,
                exceptions.RaySystemError)
        for ref in ready:
            job = self.pending.pop(ref)
            try:
                kind, payload = self.ray.get(ref)
            except exceptions.TaskCancelledError:
                continue
            except died as exc:
                emit(Event("failed", job, died_payload(f"the run's Ray worker died ({type(exc).__name__})")))
                continue
            except exceptions.RayError as exc:
                emit(Event("failed", job, failure_payload(exc, message=str(exc).strip().splitlines()[-1])))
                continue
            if kind == "result":
                emit(Event("result", job, {"record": payload}))
            else:
                emit(Event("failed", job, payload))
        self._watchdog(emit)

    def _watchdog(self, emit: EmitFn) -> None:
        """A started run silent for runtime.stall_seconds (or 20x its longest silence so far) is cancelled."""
        now = time.monotonic()
        for ref, job in list(self.pending.items()):
            heard = self.heard.get((job.key, job.attempt))
            if heard is None:
                continue  # still queued for resources: waiting is not stalling
            last, gap, _ = heard
            if now - last > max(job.suite.runtime.stall_seconds, 20 * gap):
                self.pending.pop(ref)
                self.ray.cancel(ref, force=True)
                emit(Event("failed", job, stalled_payload(now - last)))

    def cancel(self) -> None:
        for ref in list(self.pending):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished or gone: nothing to cancel
                pass
        self.pending.clear()

    def close(self) -> None:
        self.cancel()
        try:
            self.ray.kill(self.queue.actor)
        except Exception:  # noqa: BLE001
            pass
        if self.owns_cluster:
            self.ray.shutdown()
