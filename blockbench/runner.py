"""Run a whole suite: every (seed, variant) in turn, each in a fresh process, each record written as it finishes.

A fresh process per run keeps runs independent: no allocator or cache state, no CPU peak-memory high-water mark
and no thread pool carries over from one variant to the next. Variants are interleaved within each seed, so
slow drift of a shared machine spreads over all of them instead of penalising whichever ran last.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from blockbench.data import load_data
from blockbench.distributed import SINGLE, DistInfo, barrier, init
from blockbench.errors import BlockbenchError
from blockbench.records import (
    RecordError,
    comparable_overrides,
    find_record_files,
    load_record,
    record_filename,
    write_record,
)
from blockbench.suite import Suite
from blockbench.train import ProgressFn, prepare_variants, resolve_device, run_trial

EventFn = Callable[[str, dict[str, Any]], None]  # ("start" | "progress" | "done", info)


def default_out_dir(suite: Suite) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / suite.name / suite.version / stamp


def why_not_comparable(record: dict[str, Any], suite: Suite) -> str:
    """Why `record` could not be ranked with runs of `suite` as configured now ('' when it could)."""
    theirs = f"{record['suite']['name']!r} version {record['suite']['version']}"
    if (record["suite"]["name"], record["suite"]["version"]) != (suite.name, suite.version):
        return f"holds records of suite {theirs}; one results directory holds one suite's runs"
    if record["suite"]["hash"] != suite.hash:
        return f"holds records of suite {theirs} with another content hash; the suite was edited without a version bump"
    if comparable_overrides(record) != comparable_overrides({"config": json.loads(json.dumps(suite.to_config()))}):
        theirs = json.dumps(comparable_overrides(record), sort_keys=True)
        return f"holds records made with other overrides ({theirs}); they could not be ranked with these runs"
    return ""


def prepare_out_dir(out: Path, suite: Suite) -> Path:
    """Create and check the output directory before any training, so a bad --out fails in one line, early."""
    records_dir = out / "records"
    try:
        records_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=records_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise BlockbenchError(f"--out {out}: not writable ({exc.strerror})") from None
    for path in find_record_files(records_dir):
        try:
            record = load_record(path)
        except RecordError:
            continue  # foreign files are left alone; leaderboards will name them
        reason = why_not_comparable(record, suite)
        if reason:
            raise BlockbenchError(f"--out {out}: {reason} (choose another --out)")
    clashes = [record_filename(v, s) for s in suite.seeds for v in suite.variants
               if (records_dir / record_filename(v, s)).exists()]
    if clashes:
        raise BlockbenchError(f"--out {out}: already holds {clashes[0]} (records are never overwritten; "
                              "choose another --out)")
    return records_dir


def _child(conn: Any, job: str, suite: Suite, args: tuple, block_paths: list[str]) -> None:
    from blockbench.cli import register_user_blocks

    try:
        if suite.runtime.threads:
            torch.set_num_threads(suite.runtime.threads)
        register_user_blocks(block_paths)
        data = load_data(suite.data)
        progress = lambda info: conn.send(("progress", info))  # noqa: E731
        if job == "prepare":
            result = prepare_variants(suite, data)
        else:
            variant, seed, prepared = args
            result = run_trial(suite, variant, seed, data, progress, prepared["speed"], prepared["static"])
        conn.send(("result", result))
    except KeyboardInterrupt:
        conn.send(("interrupted", None))
    except BlockbenchError as exc:
        conn.send(("error", str(exc)))
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line, the suite goes on
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def run_isolated(job: str, suite: Suite, args: tuple, block_paths: list[str], progress: ProgressFn,
                 what: str) -> Any:
    """Run a probe or a trial in a fresh (spawned) process; progress messages stream back through a pipe."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(send, job, suite, args, block_paths), daemon=True)
    process.start()
    send.close()
    try:
        while True:
            try:
                kind, payload = receive.recv()
            except EOFError:
                process.join()
                raise BlockbenchError(f"{what}: the run's process died (exit code {process.exitcode})") from None
            if kind == "progress":
                progress(payload)
            elif kind == "result":
                return payload
            elif kind == "interrupted":
                raise KeyboardInterrupt
            else:
                raise BlockbenchError(f"{what}: {payload}")
    except KeyboardInterrupt:
        process.terminate()
        raise
    finally:
        process.join(timeout=30)


def run_suite(suite: Suite, out: Path, *, isolate: bool = True, block_paths: list[str] | None = None,
              on_event: EventFn | None = None, dist: DistInfo = SINGLE) -> list[Path]:
    """Train every (seed, variant); return the record paths. KeyboardInterrupt leaves finished records intact.

    Under torchrun (dist.enabled) every rank runs this in lockstep, in its own process; only rank 0 checks the
    output directory and writes records.
    """
    on_event = on_event or (lambda kind, info: None)
    device = resolve_device(suite.runtime.device, dist)
    if dist.enabled:
        isolate = False  # torchrun already gives each rank a fresh process
        init(dist, device.type)
    records_dir = prepare_out_dir(out, suite) if dist.is_main else out / "records"
    barrier(dist)
    if suite.runtime.threads:
        torch.set_num_threads(suite.runtime.threads)
    on_event("data", {"corpus": suite.data.corpus, "tokenizer": suite.data.tokenizer})
    data = load_data(suite.data)  # builds the tokenizer and token caches once, before any run
    on_event("data_ready", data.describe())
    on_event("probe", {"variants": list(suite.variants), "rounds": suite.speed.rounds})
    if isolate:
        prepared = run_isolated("prepare", suite, (), block_paths or [], lambda info: None, "speed probe")
    else:
        prepared = prepare_variants(suite, data, dist)
    written = []
    for seed in suite.seeds:
        for variant in suite.variants:
            info = {"variant": variant, "seed": seed}
            on_event("start", info)

            def progress(update: dict[str, Any], info: dict[str, Any] = info) -> None:
                on_event("progress", {**info, **update})

            if isolate:
                record = run_isolated("trial", suite, (variant, seed, prepared[variant]), block_paths or [],
                                      progress, f"{variant} seed {seed}")
            else:
                p = prepared[variant]
                record = run_trial(suite, variant, seed, data, progress, p["speed"], p["static"], dist)
            if dist.is_main:
                path = write_record(record, records_dir / record_filename(variant, seed))
                written.append(path)
                on_event("done", {**info, "record": record, "path": str(path)})
    barrier(dist)
    return written


def isolate_default() -> bool:
    return os.environ.get("BLOCKBENCH_IN_PROCESS", "") not in ("1", "true")
