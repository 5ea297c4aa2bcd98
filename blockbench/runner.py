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

import contextlib
import dataclasses
import fcntl
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

from blockbench.data import load_data
from blockbench.distributed import SINGLE, DistInfo, barrier, init
from blockbench.errors import BlockbenchError
from blockbench.executors import Event, Executor, Job, ProbeDied, default_executor
from blockbench.measure.env import device_name
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
from blockbench.rungs import rung_suites
from blockbench.safeio import atomic_write_bytes, file_size_limit, open_nofollow, write_error_text
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


def rescue_places() -> list[Path]:
    """Where a finished run's record goes when OUT cannot take it: the system's temp directory, then home."""
    return [Path(tempfile.gettempdir()) / "blockbench-rescued", Path.home() / "blockbench-rescued"]


def rescue_record(record: dict[str, Any], name: str) -> Path | None:
    """The record, written whole (atomically: a temp file renamed into place, so a write cut short by a full disk
    or a file-size limit leaves nothing, never a truncated file named like a record) to the first of
    `rescue_places` that takes it; None when none does."""
    data = (json.dumps(seal(record), indent=1, sort_keys=True) + "\n").encode()
    for directory in rescue_places():
        target = directory / f"{record.get('run_id', 'run')}-{name}"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            return atomic_write_bytes(target, data, "rescued record")
        except (OSError, BlockbenchError):
            continue
    return None


def check_free_space(out: Path, runs: int) -> None:
    """Fail before training, not after it, when OUT cannot hold the records of the runs to make: too little free
    space, or a file-size limit (`ulimit -f`) below a record's size (every write past it fails with EFBIG)."""
    limit = file_size_limit()
    if runs and limit is not None and limit < RECORD_BYTES_ESTIMATE:
        raise BlockbenchError(f"--out {out}: the file-size limit (ulimit -f) is {limit // 1024} KiB, a record "
                              f"needs up to about {RECORD_BYTES_ESTIMATE // 1024} KiB; raise the limit")
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
    dies, so a killed run never leaves it stale). A second run into the same directory is refused at once.

    The lock is the first thing made in OUT, opened without following a link (a `.lock` received in someone's run
    directory that links elsewhere is refused, its target untouched). A run that ends in an error (exit 2) removes
    what it made and left empty, the lock included: OUT is as it was before (records, probe and failure files
    are never removed)."""

    def __init__(self, out: Path) -> None:
        self.out, self.path, self.fd = out, out / ".lock", -1
        self.made_dirs: list[Path] = []  # OUT and the ancestors this run created, deepest first
        self.before: set[str] = set()
        self.made_lock = False
        self.old_holder = b""  # an existing lock's content, put back by a run that ends in error
        self.foreign = False  # another run holds OUT: undo nothing there

    def __enter__(self) -> OutLock:
        try:
            missing = [p for p in (self.out, *self.out.parents) if not os.path.lexists(p)]
            self.before = set() if missing else set(os.listdir(self.out))
            self.out.mkdir(parents=True, exist_ok=True)
            self.made_dirs = missing
        except OSError as exc:
            raise BlockbenchError(f"--out {self.out}: not writable ({exc.strerror})") from None
        try:
            for _ in range(3):  # the lock file is replaced by a driver ending in error: lock the current one
                self.made_lock = not os.path.lexists(self.path)
                self.fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT, what="run lock")
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    holder = os.pread(self.fd, 200, 0).decode(errors="replace").strip() or "another process"
                    os.close(self.fd)
                    self.fd = -1
                    self.foreign = True  # OUT is another run's: nothing in it is touched (its records/ is theirs)
                    raise BlockbenchError(f"--out {self.out}: in use by another blockbench run ({holder}); wait "
                                          "for it or choose another --out") from None
                if _same_file(self.fd, self.path):
                    break
                os.close(self.fd)  # unlinked by its last holder after we opened it: a lock on nothing
                self.fd = -1
            else:
                raise BlockbenchError(f"--out {self.out}: its lock file keeps changing; another blockbench run is "
                                      "starting or ending there (try again)")
            self.old_holder = b"" if self.made_lock else os.pread(self.fd, 4096, 0)
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        except OSError as exc:
            self._undo()
            raise BlockbenchError(f"--out {self.out}: not writable ({exc.strerror})") from None
        except BaseException:
            self._undo()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        # An error is exit 2 (unusable input): undo what this run made and left empty. An interrupt (130/143) or
        # a clean end keeps OUT as it is, for --resume.
        if kind is not None and issubclass(kind, Exception):
            self._undo()
        elif self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _undo(self) -> None:
        """Remove what this run made in OUT and left empty (directories, its own lock), then OUT and its
        ancestors if this run made them; any file with content other than the lock stays. The directories go
        while the lock is still held (no other run can be using them), OUT itself after (rmdir of a directory
        another run has meanwhile started to fill fails, and leaves it)."""
        if self.foreign:
            return
        try:
            made = sorted(set(os.listdir(self.out)) - self.before - {self.path.name})
        except OSError:
            made = []
        for name in made:
            _remove_empty_tree(self.out / name)
        if self.fd >= 0:
            if self.made_lock:
                self.path.unlink(missing_ok=True)  # unlinked while still locked: no one else holds it meanwhile
            else:
                try:  # an earlier run's lock file: its content as it was
                    os.ftruncate(self.fd, 0)
                    os.pwrite(self.fd, self.old_holder, 0)
                except OSError:
                    pass
            os.close(self.fd)
            self.fd = -1
        for directory in self.made_dirs:  # deepest first
            _remove_empty_tree(directory)


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.lstat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _remove_empty_tree(path: Path) -> None:
    """rmdir `path` and its subdirectories that are (then) empty; files and links are never touched."""
    if path.is_symlink() or not path.is_dir():
        return
    for child in path.iterdir():
        _remove_empty_tree(child)
    try:
        path.rmdir()
    except OSError:  # not empty: something worth keeping is in it
        pass


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
            expected = record_filename(record["variant"], record["seed"])
            if path.name != expected or path.parent != out / "records":
                # Resuming goes by file name (what to skip) and by content (what was run): a record saved under
                # another run's name would have that run trained again, and refused at its write, forever.
                raise RecordError(f"{path}: holds the record of {record['variant']} seed {record['seed']}, which "
                                  f"belongs in records/{expected}")
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


def _probe(suite: Suite, executor: Executor, block_paths: list[str], on_event: EventFn, label: str,
           max_retries: int) -> dict[str, dict[str, dict[str, Any]]]:
    """The executor's probe, retried like a run when its process dies (up to `max_retries` times). When it dies
    every time, each variant's entry says so: with a speed probe in the suite, each run that needed it fails with
    that failure (a failure file, exit 3; `--resume` probes again); without one, the runs measure their static
    figures themselves and go on."""
    for attempt in range(1, max_retries + 2):
        try:
            return executor.probe(suite, block_paths)
        except ProbeDied as exc:
            payload = exc.payload
            if attempt <= max_retries:
                on_event("probe_retry", {"message": payload["message"], "attempt": attempt,
                                         "max_retries": max_retries, "label": label})
    failure = {"error_type": payload["error_type"], "traceback": payload.get("traceback", ""),
               "message": f"{payload['message']} ({max_retries + 1} attempt(s))"}
    if suite.speed.rounds:
        entry = {"static": None, "speed": None, "error": f"{failure['error_type']}: {failure['message']}",
                 "failure": failure}
    else:
        entry = {"static": None, "speed": None}
    return {_probe_device(suite, executor): {variant: dict(entry) for variant in suite.variants}}


def _probe_device(suite: Suite, executor: Executor) -> str:
    """The device type a probe that never reported would have run on: this machine's for a local executor."""
    if executor.remote:
        return "unknown (the speed probe died)"

    return device_name(resolve_device(suite.runtime.device))


def _reprobe(plan: Plan, executor: Executor, block_paths: list[str], on_event: EventFn, dist: DistInfo,
             max_retries: int = 1) -> None:
    """A resumed suite whose probe saw some variants fail (a user block since fixed): probe those again, with the
    baseline interleaved so that their speed ratios are measured as the others' were, and record them in
    probe.json in place of the errors (replaced atomically; the other variants' entries stay as they were)."""
    suite, probe = plan.suite, plan.probe
    assert probe is not None
    failed = sorted(probe_failures(probe, {v for v, _ in plan.todo}))
    names = [v for v in suite.variants if v in failed or v == suite.baseline]
    on_event("probe", {"variants": names, "rounds": suite.speed.rounds, "label": plan.label})
    again = _probe(dataclasses.replace(suite, variants={v: suite.variants[v] for v in names}), executor,
                   block_paths, on_event, plan.label, max_retries)
    for device, prepared in json.loads(json.dumps(again)).items():
        for variant in failed:
            probe["probes"].setdefault(device, {})[variant] = prepared[variant]
    if dist.is_main:
        try:  # atomic (temp file + rename), never through a link at probe.json
            write_probe({k: v for k, v in probe.items() if k != "probe_schema_version"}, plan.out / PROBE_FILE,
                        replace=True)
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
        _ensure_probe(plan, executor, block_paths, on_event, dist, max_retries)
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
                  dist: DistInfo, max_retries: int = 1) -> None:
    """The plan's speed probe: made (and saved) when it has none or one that lacks a variant, made again for the
    variants that failed in a saved one."""
    suite = plan.suite
    if plan.probe is None or set(suite.variants) - set(plan.probe["variants"]):
        on_event("probe", {"variants": list(suite.variants), "rounds": suite.speed.rounds, "label": plan.label})
        identity, overrides = suite_identity(suite)
        probe = {"suite": identity, "overrides": overrides, "variants": list(suite.variants),
                 "probes": _probe(suite, executor, block_paths, on_event, plan.label, max_retries)}
        if dist.is_main and plan.probe is None:
            try:
                write_probe(probe, plan.out / PROBE_FILE)
            except OSError as exc:
                raise BlockbenchError(f"--out {plan.out}: cannot write {PROBE_FILE} "
                                      f"({exc.strerror or exc})") from None
        plan.probe = json.loads(json.dumps(probe))  # what a resume will read back
    elif probe_failures(plan.probe, {v for v, _ in plan.todo}):
        _reprobe(plan, executor, block_paths, on_event, dist, max_retries)


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
            except (OSError, BlockbenchError) as exc:  # a full disk, a file-size limit: the result survives
                self.record_not_written(job, plan, record, path, exc)
                return
            _failure_path(plan.out, job.variant, job.seed).unlink(missing_ok=True)
        self.result.written.append(path)
        self.on_event("done", {**info, "record": record, "path": str(path)})

    def record_not_written(self, job: Job, plan: Plan, record: dict[str, Any], path: Path,
                           exc: BaseException) -> None:
        """A finished run whose record OUT would not take: the record kept whole elsewhere (or, where nothing can
        hold it, a message that says so), and a failure file in OUT that says where it went."""
        rescued = rescue_record(record, path.name)
        why = write_error_text(exc)
        if rescued:
            where = f"the record is kept at {rescued}"
        else:
            tried = " and ".join(str(p) for p in rescue_places())
            where = f"the record could not be kept whole anywhere (tried {tried}); it is lost"
        payload = {"error_type": "RecordWriteError", "message": f"could not write {path} ({why}); {where}",
                   "traceback": "", "retryable": False}
        info = {"variant": job.variant, "seed": job.seed, "label": job.label, "attempt": job.attempt}
        self.write_failure(job, plan, payload, info)

    def write_failure(self, job: Job, plan: Plan, payload: dict[str, Any], info: dict[str, Any]) -> None:
        failure = _failure(job, payload, self.executor)
        path = _failure_path(plan.out, job.variant, job.seed)
        written = True
        if self.dist.is_main:
            try:
                write_failure(failure, path)
            except (OSError, BlockbenchError) as exc:
                written = False
                why = write_error_text(exc)
                failure["message"] += f" (its failure file {path} could not be written: {why})"
        self.result.failures.append({**failure, "path": str(path), "failure_file": written})
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
    return contextlib.nullcontext()


def _run_plan(plan: Plan, suite: Suite, executor: Executor | None, make_executor: Callable[[], Executor] | None,
              isolate: bool, block_paths: list[str] | None, on_event: EventFn | None, dist: DistInfo,
              max_retries: int) -> RunResult:
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


def run_ladder(suite: Suite, out: Path, *, executor: Executor, block_paths: list[str] | None = None,
               on_event: EventFn | None = None, resume: bool = False, max_retries: int = 1) -> RunResult:
    """A ladder suite: every rung's suite (rungs.py) into OUT/RUNG/, all through one executor. Nothing else forks:
    each rung is planned, probed, run and resumed as a suite is."""
    suites = rung_suites(suite)
    if resume and not out.is_dir():
        raise BlockbenchError(f"--resume {out}: nothing to resume there (no such directory); run without --resume")
    if not resume and out.is_dir() and any(p.name != ".lock" for p in out.iterdir()):
        raise BlockbenchError(f"--out {out}: already holds files; --resume finishes a ladder there, or choose "
                              "another --out")
    with OutLock(out):
        plans = [plan_run(shaped, out / shaped.rung["rung"], resume=resume, must_exist=False,
                          label=shaped.rung["rung"]) for shaped in suites]
        return execute(plans, executor, block_paths=block_paths, on_event=on_event, max_retries=max_retries)
