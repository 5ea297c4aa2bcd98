"""Run suites: check the output directory, probe, then every (variant, seed) through an executor.

The runner is the driver. It decides what runs (`plan_run`: every (variant, seed) of the suite, less those that
already have a valid record when resuming), gets each variant's static measures and interleaved speed probe once
per device type (`OUT/probe.json`, reused by `--resume`), hands one Job per run to an executor
(blockbench/executors/) and writes what comes back, in whatever order it arrives: a record to `OUT/records/`
(atomic, never overwritten) or, for a run that raised, was killed or stalled, a failure file to `OUT/failures/`.
A run whose worker died is resubmitted up to `max_retries` times; a run that raised is not (it would raise
again). One failed run never stops the others. The runner does not know which executor it has.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from blockbench.distributed import SINGLE, DistInfo, barrier, init
from blockbench.errors import BlockbenchError
from blockbench.executors import Event, Executor, Job
from blockbench.measure.throughput import NO_PROBE
from blockbench.records import (
    FAILURE_SCHEMA_VERSION,
    RecordError,
    comparable_overrides,
    contained,
    failure_filename,
    find_record_files,
    load_failures,
    load_probe,
    load_record,
    record_filename,
    remove_stale_temp_files,
    seal,
    tokenization_difference,
    write_failure,
    write_probe,
    write_record,
)
from blockbench.suite import Suite, check_fits
from blockbench.train import resolve_device

EventFn = Callable[[str, dict[str, Any]], None]  # (kind, info): see RunDisplay.event for the kinds
PROBE_FILE = "probe.json"


def default_out_dir(suite: Suite) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    try:
        return contained(Path("runs"), suite.name, suite.version, stamp)
    except RecordError as exc:
        raise BlockbenchError(f"default --out: {exc}") from None


def suite_identity(suite: Suite) -> tuple[dict[str, str], dict[str, Any]]:
    """What two runs must share to be ranked together: the suite (name, version, hash) and its overrides."""
    config = {"config": json.loads(json.dumps(suite.to_config()))}
    return {"name": suite.name, "version": suite.version, "hash": suite.hash}, comparable_overrides(config)


def why_not_comparable(record: dict[str, Any], suite: Suite) -> str:
    """Why `record` (or a failure or probe file) could not be ranked with runs of `suite` as configured now
    ('' when it could)."""
    theirs = f"{record['suite']['name']!r} version {record['suite']['version']}"
    if (record["suite"]["name"], record["suite"]["version"]) != (suite.name, suite.version):
        return f"holds records of suite {theirs}; one results directory holds one suite's runs"
    if record["suite"]["hash"] != suite.hash:
        return f"holds records of suite {theirs} with another content hash; the suite was edited without a version bump"
    if comparable_overrides(record) != suite_identity(suite)[1]:
        theirs = json.dumps(comparable_overrides(record), sort_keys=True)
        return f"holds records made with other overrides ({theirs}); they could not be ranked with these runs"
    return ""


@dataclass
class Plan:
    """One suite run into one directory: what is still to run, and what an earlier, interrupted run left."""

    suite: Suite
    out: Path
    todo: list[tuple[str, int]]  # (variant, seed), in run order
    finished: list[Path] = field(default_factory=list)
    probe: dict[str, Any] | None = None
    label: str = ""


@dataclass
class RunResult:
    written: list[Path] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


RECORD_BYTES_ESTIMATE = 64 * 1024  # a record with a few hundred curve points is 20-40 KiB
DISK_MARGIN_BYTES = 1024 * 1024


def rescue_record(record: dict[str, Any], name: str) -> Path | None:
    """Where a finished run's record goes when OUT cannot take it: the system's temp directory, then home."""
    for base in (Path(tempfile.gettempdir()), Path.home()):
        target = base / "blockbench-rescued" / f"{record.get('run_id', 'run')}-{name}"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(seal(record), indent=1, sort_keys=True) + "\n")
            return target
        except OSError:
            continue
    return None


def check_free_space(out: Path, runs: int) -> None:
    """Fail before training, not after it, when OUT cannot hold the records of the runs to make."""
    try:
        stat = os.statvfs(out)
    except OSError:
        return
    free = stat.f_bavail * stat.f_frsize
    need = runs * RECORD_BYTES_ESTIMATE + DISK_MARGIN_BYTES
    if runs and free < need:
        raise BlockbenchError(f"--out {out}: {free // 1024} KiB free, the records of {runs} run(s) need about "
                              f"{need // 1024} KiB; free some space or choose another --out")


class OutLock:
    """An exclusive lock on OUT for one driver at a time (OUT/.lock, flock: released by the kernel when the process
    dies, so a killed run never leaves it stale). A second run into the same directory is refused at once."""

    def __init__(self, out: Path) -> None:
        self.path, self.file = out / ".lock", None

    def __enter__(self) -> OutLock:
        import fcntl

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        except OSError as exc:
            raise BlockbenchError(f"--out {self.path.parent}: not writable ({exc.strerror})") from None
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise BlockbenchError(f"--out {self.path.parent}: in use by another blockbench run ({holder}); wait for "
                                  "it or choose another --out") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()} on {socket.gethostname()}")
        self.file.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()


def _record_path(out: Path, variant: str, seed: int) -> Path:
    try:
        return contained(out / "records", record_filename(variant, seed))
    except RecordError as exc:
        raise BlockbenchError(f"--out {out}: {exc}") from None


def _failure_path(out: Path, variant: str, seed: int) -> Path:
    try:
        return contained(out / "failures", failure_filename(variant, seed))
    except RecordError as exc:
        raise BlockbenchError(f"--out {out}: {exc}") from None


def _has_run(out: Path) -> bool:
    return (out / PROBE_FILE).exists() or bool(load_failures(out)) or (
        (out / "records").is_dir() and bool(find_record_files(out / "records")))


def plan_run(suite: Suite, out: Path, *, resume: bool = False, must_exist: bool | None = None,
             label: str = "") -> Plan:
    """Create and check the output directory before any training, so a bad --out fails in one line, early.

    Without `resume`, a directory that already holds runs of these (variant, seed)s or a probe is refused (records
    are never overwritten). With it, every (variant, seed) that has a valid, comparable record is skipped, and
    missing and failed ones are planned again, with the saved probe.
    """
    must_exist = resume if must_exist is None else must_exist
    if must_exist and not (out.is_dir() and _has_run(out)):
        raise BlockbenchError(f"--resume {out}: nothing to resume there (no {PROBE_FILE}, records or failures of a "
                              "suite run); run without --resume")
    wanted = [(v, s) for s in suite.seeds for v in suite.variants]
    _prepare_out(out, wanted, resume)
    finished = _finished_runs(suite, out, resume)
    _check_failures(suite, out)
    probe = _saved_probe(suite, out)
    if not resume:
        _refuse_existing(out, wanted, finished, probe)
    elif suite.speed.rounds:
        _check_resumable_probe(suite, out, finished, probe)
    todo = [(v, s) for v, s in wanted if (v, s) not in finished]
    if resume:  # a driver killed between writing a record and removing that run's failure file left both
        for variant, seed in finished:
            _failure_path(out, variant, seed).unlink(missing_ok=True)
    check_free_space(out, len(todo))
    return Plan(suite, out, todo, sorted(finished.values()), probe, label)


def _prepare_out(out: Path, wanted: list[tuple[str, int]], resume: bool) -> None:
    """Every file a run may write checked to stay in OUT, OUT/records made and found writable, and (resuming)
    the temp files of a killed writer removed."""
    records_dir = out / "records"
    for variant, seed in wanted:  # every file a run may write, checked to stay in OUT before anything is made
        _record_path(out, variant, seed), _failure_path(out, variant, seed)
    try:
        records_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=records_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise BlockbenchError(f"--out {out}: not writable ({exc.strerror})") from None
    if resume:  # a writer killed mid-write leaves its temp file; a finished write never does
        for directory in (records_dir, out / "failures", out):
            remove_stale_temp_files(directory)


def _finished_runs(suite: Suite, out: Path, resume: bool) -> dict[tuple[str, int], Path]:
    """The valid records in OUT/records by (variant, seed); one of another suite or configuration is an error,
    and so (resuming) is an invalid one."""
    finished: dict[tuple[str, int], Path] = {}
    for path in find_record_files(out / "records"):
        try:
            record = load_record(path)
        except RecordError as exc:
            if resume:
                raise BlockbenchError(f"--resume: {exc} (move the file away to rerun that run)") from None
            continue  # foreign files are left alone; leaderboards will name them
        reason = why_not_comparable(record, suite)
        if reason:
            raise BlockbenchError(f"--out {out}: {reason} (choose another --out)")
        finished[(record["variant"], record["seed"])] = path
    return finished


def _check_failures(suite: Suite, out: Path) -> None:
    """The failed runs in OUT must be of this suite and configuration."""
    for failure in load_failures(out):
        reason = why_not_comparable({"suite": failure["suite"], "config": {"overrides": failure["overrides"]}}, suite)
        if reason:
            raise BlockbenchError(f"--out {out}: {reason.replace('records', 'failed runs', 1)} (choose another --out)")


def _saved_probe(suite: Suite, out: Path) -> dict[str, Any] | None:
    """OUT's speed probe, if any; one of another suite or configuration is an error."""
    probe = load_probe(out / PROBE_FILE) if (out / PROBE_FILE).exists() else None
    if probe is not None:
        reason = why_not_comparable({"suite": probe["suite"], "config": {"overrides": probe["overrides"]}}, suite)
        if reason:
            raise BlockbenchError(f"--out {out}: {reason.replace('records', 'a speed probe', 1)} "
                                  "(choose another --out)")
    return probe


def _refuse_existing(out: Path, wanted: list[tuple[str, int]], finished: dict[tuple[str, int], Path],
                     probe: dict[str, Any] | None) -> None:
    """Without --resume: records are never overwritten, and a suite run is never joined."""
    clashes = [record_filename(v, s) for v, s in wanted
               if (v, s) in finished or _record_path(out, v, s).exists()]
    if clashes:
        raise BlockbenchError(f"--out {out}: already holds {clashes[0]} (records are never overwritten; "
                              "--resume finishes an interrupted suite there, or choose another --out)")
    if probe is not None:
        raise BlockbenchError(f"--out {out}: already holds a suite run ({PROBE_FILE}); --resume finishes it "
                              "there, or choose another --out")


def _check_resumable_probe(suite: Suite, out: Path, finished: dict[tuple[str, int], Path],
                           probe: dict[str, Any] | None) -> None:
    """Resuming a suite with a speed probe: the remaining runs must share the finished runs' probe."""
    if probe is not None and set(suite.variants) - set(probe["variants"]):
        missing = sorted(set(suite.variants) - set(probe["variants"]))
        raise BlockbenchError(f"--resume {out}: its {PROBE_FILE} did not measure {', '.join(missing)}; their "
                              "speed ratios would come from another probe (choose another --out)")
    if probe is None and finished:
        raise BlockbenchError(f"--resume {out}: records but no {PROBE_FILE} (made before resume existed); the "
                              "remaining runs could not share the finished runs' speed probe "
                              "(choose another --out)")


def _check_tokenization(plan: Plan, current: dict[str, Any]) -> None:
    """Finished runs being joined must have been scored on the tokens this machine produces now."""
    for path in plan.finished:
        differ = tokenization_difference(load_record(path), current)
        if differ:
            raise BlockbenchError(f"--out {plan.out}: {path.name} was tokenized differently from this machine's "
                                  f"data ({differ}); its runs could not be ranked with new ones (choose another --out)")


def speed_for(probe: dict[str, Any], suite: Suite, device_name: str, variant: str) -> dict[str, Any]:
    """The probe result of the device type a run trained on (none when that type was not probed)."""
    if not suite.speed.rounds:
        return NO_PROBE
    prepared = probe["probes"].get(device_name, {}).get(variant)
    return prepared["speed"] if prepared and prepared.get("speed") else NO_PROBE


def _static_for(probe: dict[str, Any], variant: str) -> dict[str, Any] | None:
    for prepared in probe["probes"].values():  # static measures do not depend on the device
        if prepared.get(variant, {}).get("static"):
            return prepared[variant]["static"]
    return None


def _failure(job: Job, payload: dict[str, Any], executor: Executor) -> dict[str, Any]:
    identity, overrides = suite_identity(job.suite)
    return {"failure_schema_version": FAILURE_SCHEMA_VERSION, "suite": identity, "overrides": overrides,
            "variant": job.variant, "seed": job.seed, "error_type": payload["error_type"],
            "message": payload["message"], "traceback": payload["traceback"],
            "host": payload.get("host") or socket.gethostname(), "attempt": job.attempt,
            "retryable": payload["retryable"], "executor": executor.name,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds")}


def probe_failures(probe: dict[str, Any] | None, variants: set[str]) -> dict[str, dict[str, Any]]:
    """Of `variants`, those that raised or ran out of memory in every device type's probe, each with its failure
    (error_type, message, traceback)."""
    out: dict[str, dict[str, Any]] = {}
    if not probe or not probe["probes"]:
        return out
    for variant in variants:
        entries = [prepared.get(variant) or {} for prepared in probe["probes"].values()]
        if all(entry.get("error") for entry in entries):
            first = entries[0]
            out[variant] = first.get("failure") or {"error_type": first["error"].partition(":")[0],
                                                    "message": first["error"].partition(": ")[2], "traceback": ""}
    return out


def _reprobe(plan: Plan, executor: Executor, block_paths: list[str], on_event: EventFn, dist: DistInfo) -> None:
    """A resumed suite whose probe saw some variants fail (a user block since fixed): probe those again, with the
    baseline interleaved so that their speed ratios are measured as the others' were, and record them in
    probe.json in place of the errors (replaced atomically; the other variants' entries stay as they were)."""
    suite, probe = plan.suite, plan.probe
    assert probe is not None
    failed = sorted(probe_failures(probe, {v for v, _ in plan.todo}))
    names = [v for v in suite.variants if v in failed or v == suite.baseline]
    on_event("probe", {"variants": names, "rounds": suite.speed.rounds, "label": plan.label})
    again = executor.probe(dataclasses.replace(suite, variants={v: suite.variants[v] for v in names}), block_paths)
    for device, prepared in json.loads(json.dumps(again)).items():
        for variant in failed:
            probe["probes"].setdefault(device, {})[variant] = prepared[variant]
    if dist.is_main:
        temp = plan.out / ".probe-reprobe.json"
        try:
            temp.unlink(missing_ok=True)
            write_probe({k: v for k, v in probe.items() if k != "probe_schema_version"}, temp)
            os.replace(temp, plan.out / PROBE_FILE)
        except OSError as exc:
            raise BlockbenchError(f"--out {plan.out}: cannot write {PROBE_FILE} ({exc.strerror or exc})") from None


def execute(plans: list[Plan], executor: Executor, *, block_paths: list[str] | None = None,
            on_event: EventFn | None = None, max_retries: int = 1, dist: DistInfo = SINGLE) -> RunResult:
    """Probe and run every plan's remaining runs through `executor`; write records and failures as they arrive.

    KeyboardInterrupt (and SIGTERM, as errors.Terminated) cancels every outstanding run and propagates; every
    finished record stays, and no partial one is written.
    """
    on_event = on_event or (lambda kind, info: None)
    block_paths = list(block_paths or [])
    result = RunResult(skipped=[p for plan in plans for p in plan.finished])
    plans = [plan for plan in plans if plan.todo]
    _load_data(plans, on_event)
    for plan in plans:
        _ensure_probe(plan, executor, block_paths, on_event, dist)
    jobs, probe_failed = _make_jobs(plans, block_paths)
    on_event("queued", {"queued": len(jobs), "skipped": len(result.skipped)})
    not_submitted = {job.key for job, _ in probe_failed}
    for job, _ in jobs.values():
        if job.key not in not_submitted:
            executor.submit(job)
    handle = _Handler(jobs, executor, result, on_event, max_retries, dist)
    for job, failure in probe_failed:
        handle(Event("started", job, {}))
        message = f"{failure['message'] or failure['error_type']} (in the speed probe)"
        handle(Event("failed", job, {**failure, "message": message, "host": None, "retryable": False}))
    try:
        while handle.outstanding:
            executor.poll(handle, 0.5)
    except BaseException:
        executor.cancel()
        raise
    return result


def _load_data(plans: list[Plan], on_event: EventFn) -> None:
    """Build tokenizer and token caches once, here, before any worker needs them, and check that every plan's
    shape fits its data and that its finished runs were tokenized as this machine tokenizes."""
    from blockbench.data import load_data

    loaded: set[str] = set()
    for plan in plans:
        if repr(plan.suite.data) not in loaded:
            loaded.add(repr(plan.suite.data))
            on_event("data", {"corpus": plan.suite.data.corpus, "tokenizer": plan.suite.data.tokenizer})
            data = load_data(plan.suite.data)
            on_event("data_ready", data.describe())
            current = {"data": {**data.describe(), "tokenizer": data.tokenizer_id}}
            for other in plans:
                if repr(other.suite.data) == repr(plan.suite.data):
                    check_fits(other.suite, data)  # a seq_len the splits cannot fill fails here, before any model
                    _check_tokenization(other, current)


def _ensure_probe(plan: Plan, executor: Executor, block_paths: list[str], on_event: EventFn,
                  dist: DistInfo) -> None:
    """The plan's speed probe: made (and saved) when it has none or one that lacks a variant, made again for the
    variants that failed in a saved one."""
    suite = plan.suite
    if plan.probe is None or set(suite.variants) - set(plan.probe["variants"]):
        on_event("probe", {"variants": list(suite.variants), "rounds": suite.speed.rounds, "label": plan.label})
        identity, overrides = suite_identity(suite)
        probe = {"suite": identity, "overrides": overrides, "variants": list(suite.variants),
                 "probes": executor.probe(suite, block_paths)}
        if dist.is_main and plan.probe is None:
            try:
                write_probe(probe, plan.out / PROBE_FILE)
            except OSError as exc:
                raise BlockbenchError(f"--out {plan.out}: cannot write {PROBE_FILE} "
                                      f"({exc.strerror or exc})") from None
        plan.probe = json.loads(json.dumps(probe))  # what a resume will read back
    elif probe_failures(plan.probe, {v for v, _ in plan.todo}):
        _reprobe(plan, executor, block_paths, on_event, dist)


def _make_jobs(plans: list[Plan], block_paths: list[str]
               ) -> tuple[dict[Any, tuple[Job, Plan]], list[tuple[Job, dict[str, Any]]]]:
    """One Job per remaining run, by key with its plan, and those of variants that failed in the probe (with
    the probe's failure: their runs would only raise again, so they are not submitted)."""
    jobs = {}
    probe_failed: list[tuple[Job, dict[str, Any]]] = []
    for plan in plans:
        failed_probe = probe_failures(plan.probe, {v for v, _ in plan.todo})
        for variant, seed in plan.todo:
            job = Job(plan.suite, variant, seed, _static_for(plan.probe, variant), tuple(block_paths),
                      label=plan.label)
            jobs[job.key] = (job, plan)
            if variant in failed_probe:  # it raised in the probe: its runs would only raise again
                probe_failed.append((job, failed_probe[variant]))
    return jobs, probe_failed


class _Handler:
    """What execute does with each event an executor reports: a record written, a worker's death retried, a
    failure written; `outstanding` holds the keys of the runs not yet finished."""

    def __init__(self, jobs: dict[Any, tuple[Job, Plan]], executor: Executor, result: RunResult,
                 on_event: EventFn, max_retries: int, dist: DistInfo) -> None:
        self.jobs, self.executor, self.result = jobs, executor, result
        self.on_event, self.max_retries, self.dist = on_event, max_retries, dist
        self.outstanding = set(jobs)

    def __call__(self, event: Event) -> None:
        job, payload = event.job, event.payload
        plan = self.jobs[job.key][1]
        info = {"variant": job.variant, "seed": job.seed, "label": job.label, "attempt": job.attempt}
        if event.kind == "started":
            self.on_event("start", {**info, **payload})
        elif event.kind == "progress":
            self.on_event("progress", {**info, **payload})
        elif event.kind == "result":
            self.write_result(job, plan, payload["record"], info)
        elif payload["retryable"] and job.attempt <= self.max_retries:
            retry = job.retry()
            self.jobs[job.key] = (retry, plan)
            self.executor.submit(retry)
            self.on_event("retry", {**info, "message": payload["message"], "max_retries": self.max_retries})
        else:
            self.write_failure(job, plan, payload, info)

    def write_result(self, job: Job, plan: Plan, record: dict[str, Any], info: dict[str, Any]) -> None:
        record["speed"] = speed_for(plan.probe, plan.suite, record["env"]["device_name"], job.variant)
        path = plan.out / "records" / record_filename(job.variant, job.seed)
        self.outstanding.discard(job.key)
        if self.dist.is_main:
            try:
                path = _record_path(plan.out, job.variant, job.seed)  # checked by plan_run; again, as written
                write_record(record, path)
            except (OSError, BlockbenchError) as exc:  # a full disk, a vanished directory: the result survives
                rescued = rescue_record(record, path.name)
                where = f"kept at {rescued}" if rescued else "and nowhere else it could be kept"
                message = f"could not write {path} ({getattr(exc, 'strerror', None) or exc}); the record is {where}"
                self.result.failures.append({"variant": job.variant, "seed": job.seed, "message": message,
                                             "path": str(rescued or path)})
                self.on_event("failed", {**info, "error_type": "RecordWriteError", "message": message,
                                         "path": str(rescued or path)})
                return
            _failure_path(plan.out, job.variant, job.seed).unlink(missing_ok=True)
        self.result.written.append(path)
        self.on_event("done", {**info, "record": record, "path": str(path)})

    def write_failure(self, job: Job, plan: Plan, payload: dict[str, Any], info: dict[str, Any]) -> None:
        failure = _failure(job, payload, self.executor)
        path = _failure_path(plan.out, job.variant, job.seed)
        if self.dist.is_main:
            try:
                write_failure(failure, path)
            except OSError as exc:
                failure["message"] += f" (its failure file could not be written: {exc.strerror or exc})"
        self.result.failures.append({**failure, "path": str(path)})
        self.outstanding.discard(job.key)
        self.on_event("failed", {**info, "error_type": failure["error_type"], "message": failure["message"],
                                 "path": str(path)})


def run(suite: Suite, out: Path, *, executor: Executor | None = None,
        make_executor: Callable[[], Executor] | None = None, isolate: bool = True,
        block_paths: list[str] | None = None, on_event: EventFn | None = None, dist: DistInfo = SINGLE,
        resume: bool = False, max_retries: int = 1) -> RunResult:
    """One suite into one directory. Under torchrun (dist.enabled) every rank runs this in lockstep, in its own
    process, with the in-process executor; only rank 0 writes. `make_executor` is called after the output
    directory passed its checks (so a bad --out fails before a cluster is started); the executor it makes, or the
    default one, is closed at the end, a passed-in `executor` is not."""
    if dist.enabled:
        init(dist, resolve_device(suite.runtime.device, dist).type)
    if resume and not out.is_dir():
        plan_run(suite, out, resume=True)  # says "nothing to resume" before a lock creates the directory
    with OutLock(out) if dist.is_main else _no_lock():
        plan = plan_run(suite, out, resume=resume) if dist.is_main else None
        barrier(dist)
        if not dist.is_main:
            plan = plan_run(suite, out, resume=True, must_exist=False)  # the same todo list rank 0 planned
        barrier(dist)
        return _run_plan(plan, suite, executor, make_executor, isolate, block_paths, on_event, dist, max_retries)


def _no_lock() -> Any:
    import contextlib

    return contextlib.nullcontext()


def _run_plan(plan: Plan, suite: Suite, executor: Executor | None, make_executor: Callable[[], Executor] | None,
              isolate: bool, block_paths: list[str] | None, on_event: EventFn | None, dist: DistInfo,
              max_retries: int) -> RunResult:
    from blockbench.executors import default_executor

    if suite.runtime.threads:
        torch.set_num_threads(suite.runtime.threads)
    owned = executor is None
    if executor is None:
        executor = make_executor() if make_executor is not None else default_executor(not isolate, dist)
    try:
        if not executor.remote:
            resolve_device(suite.runtime.device, dist)  # --device cuda on a machine without CUDA: fail now
        result = execute([plan], executor, block_paths=block_paths, on_event=on_event, dist=dist,
                         max_retries=max_retries)
    finally:
        if owned:
            executor.close()
    barrier(dist)
    return result


def run_suite(suite: Suite, out: Path, **options: Any) -> list[Path]:
    """`run`, returning the paths of the records written (the Python API's short form)."""
    return run(suite, out, **options).written


def isolate_default() -> bool:
    return os.environ.get("BLOCKBENCH_IN_PROCESS", "") not in ("1", "true")
