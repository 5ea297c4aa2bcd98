"""What an executor costs: a suite's wall clock through the local executor (one run at a time, the suite's threads)
and through a local Ray cluster (runs side by side, fewer threads each), per-run overhead from the driver's
submit to the run's process starting and to its first training step, and the driver's own peak memory.

    python ci/executor_overhead.py --suite smoke --ray-workers 2

Each executor runs in its own fresh process (so peak RSS is that driver's alone) into a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(suite_name: str, executor_name: str, threads: int, workers: int, out: Path) -> dict:
    from blockbench.executors import make_executor
    from blockbench.runner import run
    from blockbench.suite import load_suite

    suite = load_suite(suite_name).with_overrides(threads=threads)
    marks: dict[tuple[str, int], dict[str, float]] = {}

    def on_event(kind: str, info: dict) -> None:
        now = time.monotonic()
        if kind == "queued":
            marks["submitted"] = {"t": now}
        elif kind in ("start", "progress", "done") and "variant" in info:
            mark = marks.setdefault((info["variant"], info["seed"]), {})
            mark.setdefault({"start": "started", "progress": "first_step", "done": "done"}[kind], now)

    options = {"num_cpus": workers * threads} if executor_name == "ray" else {}
    start = time.monotonic()
    executor = make_executor(executor_name, **options)
    try:
        result = run(suite, out, executor=executor, on_event=on_event)
    finally:
        executor.close()
    wall = time.monotonic() - start
    submitted = marks.pop("submitted")["t"]
    runs = list(marks.values())
    return {
        "executor": executor_name, "threads_per_run": threads, "workers": workers, "runs": len(result.written),
        "failed": len(result.failures), "wall_seconds": round(wall, 1),
        # The first run of each worker waits for nothing but its own start; later ones queue behind others.
        "submit_to_start_first_s": round(min(r["started"] for r in runs) - submitted, 2),
        "start_to_first_step_median_s": round(statistics.median(r["first_step"] - r["started"] for r in runs), 2),
        "driver_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="smoke")
    parser.add_argument("--ray-workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="threads per run of the local executor")
    parser.add_argument("--only", choices=("local", "ray"), help=argparse.SUPPRESS)  # the child's job
    args = parser.parse_args()
    if args.only:
        threads = args.threads if args.only == "local" else max(1, args.threads // args.ray_workers)
        workers = 1 if args.only == "local" else args.ray_workers
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(measure(args.suite, args.only, threads, workers, Path(tmp) / "out")))
        return
    for name in ("local", "ray"):
        child = subprocess.run([sys.executable, __file__, "--suite", args.suite, "--ray-workers",
                                str(args.ray_workers), "--threads", str(args.threads), "--only", name],
                               capture_output=True, text=True)
        if child.returncode:
            sys.exit(f"{name}: {child.stderr.strip().splitlines()[-1]}")
        print(child.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
