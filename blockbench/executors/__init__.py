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

Worker-side code (`run_job`, `probe_job`, in worker.py) is shared by every executor: it is what a run does once it
has a process. The interface itself (Job, Event, Executor) is in base.py; executor modules import those two, never
this package.
"""

from __future__ import annotations

from typing import Any

from blockbench.errors import BlockbenchError
from blockbench.executors.base import EmitFn, Event, Executor, Job, ProbeDied
from blockbench.executors.local import InProcessExecutor, LocalExecutor
from blockbench.executors.ray import RayExecutor, check_address
from blockbench.executors.worker import (
    SignalInterrupt,
    died_payload,
    failure_payload,
    probe_job,
    run_job,
    stalled_payload,
    standby_setup,
    telling_signals,
    user_failure,
)

EXECUTORS = ("local", "ray")
PREWARM = ("auto", "on", "off")

__all__ = ["EXECUTORS", "PREWARM", "EmitFn", "Event", "Executor", "Job", "ProbeDied", "SignalInterrupt",
           "add_executor_args",
           "check_executor_args", "default_executor", "died_payload", "executor_from_args", "failure_payload",
           "make_executor", "probe_job", "run_job", "stalled_payload", "standby_setup", "telling_signals",
           "user_failure"]


def make_executor(name: str, **options: Any) -> Executor:
    """`local` (a fresh process per run on this machine) or `ray` (one Ray task per run on a cluster)."""
    if name == "local":

        return LocalExecutor(**options)
    if name == "ray":

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

        check_address(args.ray_address)


def executor_from_args(args: Any, in_process: bool = False, dist: Any = None) -> Executor:
    check_executor_args(args, in_process, dist)
    if args.executor == "ray":
        return make_executor("ray", address=args.ray_address)
    if in_process or (dist is not None and dist.enabled):
        return default_executor(in_process, dist)

    return LocalExecutor(prewarm=getattr(args, "prewarm", "auto"))
