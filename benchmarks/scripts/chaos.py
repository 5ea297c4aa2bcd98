#!/usr/bin/env python3
"""Chaos soak: many tiny runs on a local Ray cluster while workers and the driver are killed.

    python benchmarks/scripts/chaos.py [--seeds 20] [--kill-every 4] [--max-retries 2] [--out DIR] [--json]

Starts a Ray head on loopback (`ray start --head --num-cpus 2 --block`, in a session of its own), runs a tiny
suite of 2 variants x SEEDS seeds through `blockbench run --executor ray`, SIGKILLs a random running worker (a pid
the driver reported, checked to belong to this cluster's session) every few seconds, SIGKILLs the driver once
when a third of the records are in, and finishes the suite with `--resume`. Then it checks that every
(variant, seed) ended as exactly one valid record or one failure file, nothing duplicated, damaged or left as a
temporary file, that the final exit code matches the failures (0 or 3), and that no process of the cluster is
left once it is stopped. Prints the figures (and exits 1 when a check fails). tests/faults/test_hostile.py runs it
when BLOCKBENCH_CHAOS=1.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SUITE = """
[suite]
name = "chaos"
version = "1"
baseline = "pre_ln"
seeds = [0]

[model]
n_layers = 1
d_model = 32
n_heads = 2
seq_len = 32

[data]
corpus = "sympy"
tokenizer = "bytes"

[optim]
lr = 3e-3
batch_size = 4

[budget]
steps = 6

[eval]
every_tokens = 256
windows = 4
target_loss = 4.5

[runtime]
threads = 1
warmup_steps = 1

[speed]
rounds = 3
steps_per_round = 1

[variants.pre_ln]
[variants.sas_p]
lr = 1e-2
"""
VARIANTS = ("pre_ln", "sas_p")
STARTED = re.compile(r"(\S+) seed (\d+): started(?: \(attempt \d+\))?(?: on \S+)? \(pid (\d+)\)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def processes_of(session: int, marker: str) -> list[int]:
    """Live processes of the cluster: in its session, or naming its temp directory on their command line."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (session_of(pid) == session or marker in cmdline):
            found.append(pid)
    return found


class Cluster:
    """A Ray head of this machine alone, in a session of its own, so that exactly its processes can be found and
    stopped (never by name: other Ray clusters on the machine are left alone)."""

    def __init__(self, num_cpus: int = 2) -> None:
        self.port = free_port()
        self.temp = tempfile.mkdtemp(prefix="bbchaos", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
                    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "PYTHONUNBUFFERED": "1"}
        self.env.pop("RAY_ADDRESS", None)
        ray = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
        self.head = subprocess.Popen(
            [ray, "start", "--head", "--port", str(self.port), "--num-cpus", str(num_cpus), "--num-gpus", "0",
             "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", self.temp, "--block"],
            env=self.env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.head.poll() is not None:
                    break
                time.sleep(0.5)
        self.stop()
        raise RuntimeError("the Ray head did not start")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def owns(self, pid: int) -> bool:
        return session_of(pid) == self.head.pid

    def stop(self) -> list[int]:
        """Stop the head (it stops its raylet, GCS and workers), then anything of its session still there; return
        what was left after that (nothing, when all is well)."""
        if self.head.poll() is None:
            self.head.send_signal(signal.SIGTERM)
            try:
                self.head.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 30
        while processes_of(self.head.pid, self.temp) and time.monotonic() < deadline:
            for pid in processes_of(self.head.pid, self.temp):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.5)
        if self.head.poll() is None:
            self.head.kill()
            self.head.wait(timeout=10)
        left = processes_of(self.head.pid, self.temp)
        shutil.rmtree(self.temp, ignore_errors=True)
        return left


class Driver:
    """`blockbench run` on the cluster, its stdout read for the pids of the workers that started runs."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "blockbench", *args], cwd=REPO, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.pids: list[int] = []
        self.lines: list[str] = []
        self.stderr = ""
        threading.Thread(target=self._read, daemon=True).start()
        self.err_reader = threading.Thread(target=self._read_err, daemon=True)
        self.err_reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
            match = STARTED.search(line)
            if match:
                self.pids.append(int(match.group(3)))

    def _read_err(self) -> None:
        self.stderr = self.process.stderr.read()

    def finish(self, timeout: float) -> int:
        code = self.process.wait(timeout=timeout)
        self.err_reader.join(timeout=10)
        return code


def soak(seeds: int = 20, kill_every: float = 4.0, max_retries: int = 2, out: Path | None = None,
         seed: int = 0, timeout: float = 1500) -> dict[str, Any]:
    rng = random.Random(seed)
    out = Path(out or tempfile.mkdtemp(prefix="bbchaos-out-")) / "run"
    suite = out.parent / "chaos.toml"
    suite.parent.mkdir(parents=True, exist_ok=True)
    suite.write_text(SUITE)
    started = time.monotonic()
    cluster = Cluster()
    figures: dict[str, Any] = {"runs": seeds * len(VARIANTS), "worker_kills": 0, "driver_kills": 0}
    try:
        args = ["run", "--suite", str(suite), "--out", str(out), "--seeds", ",".join(map(str, range(seeds))),
                "--executor", "ray", "--ray-address", cluster.address, "--max-retries", str(max_retries), "--quiet"]
        driver = Driver(args, cluster.env)
        killed_driver = False
        next_kill = time.monotonic() + rng.uniform(0.5, 1.5) * kill_every
        while True:
            if driver.process.poll() is not None:
                if killed_driver or driver.process.returncode >= 0:
                    break
            records = len(list((out / "records").glob("*.json"))) if (out / "records").is_dir() else 0
            if not killed_driver and records >= figures["runs"] // 3:
                driver.process.send_signal(signal.SIGKILL)
                driver.finish(60)
                figures["driver_kills"] += 1
                figures["records_when_driver_killed"] = records
                killed_driver = True
                driver = Driver([*args, "--resume"], cluster.env)
                continue
            if time.monotonic() >= next_kill:
                alive = [pid for pid in driver.pids[-4:] if cluster.owns(pid)]  # the latest starts: running
                if alive:
                    os.kill(rng.choice(alive), signal.SIGKILL)
                    figures["worker_kills"] += 1
                next_kill = time.monotonic() + rng.uniform(0.5, 1.5) * kill_every
            if time.monotonic() - started > timeout:
                driver.process.kill()
                raise RuntimeError(f"the soak ran past {timeout} s")
            time.sleep(0.2)
        code = driver.finish(60)
        figures["exit_code"] = code
        figures["stderr_last_line"] = ([line for line in driver.stderr.splitlines() if line.strip()] or [""])[-1]
        figures["traceback"] = "Traceback" in driver.stderr
    finally:
        figures["ray_processes_left"] = len(cluster.stop())
    figures["seconds"] = round(time.monotonic() - started, 1)
    figures.update(check(out, seeds))
    return figures


def check(out: Path, seeds: int) -> dict[str, Any]:
    """Every (variant, seed): exactly one valid record or one valid failure file; nothing else in records/."""
    from blockbench.records import RecordError, load_failure, load_record, record_filename

    records = failures = lost = duplicated = damaged = 0
    expected = {record_filename(v, s) for v in VARIANTS for s in range(seeds)}
    for name in sorted(expected):
        record, failure = out / "records" / name, out / "failures" / name
        try:
            if record.exists():
                load_record(record)
            if failure.exists():
                load_failure(failure)
        except RecordError:
            damaged += 1
        records += record.exists()
        failures += failure.exists()
        lost += not record.exists() and not failure.exists()
        duplicated += record.exists() and failure.exists()
    strays = [p.name for p in out.rglob("*") if p.is_file() and (p.name.endswith(".tmp") or (
        p.parent.name in ("records", "failures") and p.name not in expected))]
    return {"records": records, "failures": failures, "lost": lost, "duplicated": duplicated, "damaged": damaged,
            "stray_files": strays, "probes": len(list(out.glob("probe.json")))}


def verdict(figures: dict[str, Any]) -> list[str]:
    """What is wrong with a soak's figures ([] when every check holds)."""
    problems = []
    for key in ("lost", "duplicated", "damaged", "ray_processes_left"):
        if figures[key]:
            problems.append(f"{key}: {figures[key]}")
    if figures["stray_files"]:
        problems.append(f"stray files: {figures['stray_files'][:5]}")
    if figures["records"] + figures["failures"] != figures["runs"]:
        problems.append(f"{figures['records']} records + {figures['failures']} failures != {figures['runs']} runs")
    if figures["exit_code"] != (3 if figures["failures"] else 0):
        problems.append(f"exit code {figures['exit_code']} with {figures['failures']} failure(s)")
    if figures["traceback"]:
        problems.append("a traceback on stderr")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="seeds per variant (2 variants; default 20: 40 runs)")
    parser.add_argument("--kill-every", type=float, default=4.0, help="mean seconds between worker kills")
    parser.add_argument("--max-retries", type=int, default=2)
    parser.add_argument("--random-seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="where the suite's directory goes (default: a temp directory)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    figures = soak(args.seeds, args.kill_every, args.max_retries, args.out, args.random_seed)
    problems = verdict(figures)
    if args.json:
        print(json.dumps({**figures, "problems": problems}, indent=1))
    else:
        print(f"chaos soak: {figures['runs']} runs, {figures['worker_kills']} worker kills, "
              f"{figures['driver_kills']} driver kill (+ --resume): {figures['records']} records, "
              f"{figures['failures']} failures, {figures['lost']} lost, {figures['duplicated']} duplicated, "
              f"{figures['damaged']} damaged; exit {figures['exit_code']}; {figures['ray_processes_left']} Ray "
              f"processes left; {figures['seconds']:.0f} s")
        for problem in problems:
            print(f"  FAILED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
