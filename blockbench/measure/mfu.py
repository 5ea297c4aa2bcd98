"""Model FLOPs utilisation: model FLOPs per second / the device's peak dense FLOPs for the training dtype.

GPUs: the peak comes from the table below. CPUs have no such table (the same model name runs at different
clocks, SIMD widths and thread counts), so their fp32 peak is measured: a short GEMM probe, cached per CPU model,
thread count and torch version under the blockbench cache directory.

PEAK_FLOPS is versioned: change a number, bump PEAK_TABLE_VERSION (it is recorded with every MFU).
Figures are the vendors' dense (no sparsity) tensor-core peaks; fp32 runs use the TF32 tensor-core peak on
GPUs that have one, since blockbench turns TF32 matmuls on.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch

from blockbench.data import default_cache_dir
from blockbench.errors import BlockbenchError
from blockbench.measure.env import cpu_model
from blockbench.safeio import atomic_write_text, load_json_guarded

PEAK_TABLE_VERSION = "1"

# (substring of torch.cuda.get_device_name(), dtype) -> FLOP/s. Longest matching substring wins.
PEAK_FLOPS: dict[tuple[str, str], float] = {
    ("H200", "bf16"): 989.5e12, ("H200", "fp16"): 989.5e12, ("H200", "fp32"): 494.7e12,
    ("H100 SXM", "bf16"): 989.5e12, ("H100 SXM", "fp16"): 989.5e12, ("H100 SXM", "fp32"): 494.7e12,
    ("H100 80GB HBM3", "bf16"): 989.5e12, ("H100 80GB HBM3", "fp16"): 989.5e12,
    ("H100 80GB HBM3", "fp32"): 494.7e12,
    ("H100 PCIe", "bf16"): 756.5e12, ("H100 PCIe", "fp16"): 756.5e12, ("H100 PCIe", "fp32"): 378.0e12,
    ("H100", "bf16"): 989.5e12, ("H100", "fp16"): 989.5e12, ("H100", "fp32"): 494.7e12,
    ("A100", "bf16"): 312e12, ("A100", "fp16"): 312e12, ("A100", "fp32"): 156e12,
    ("A5000", "bf16"): 111.1e12, ("A5000", "fp16"): 111.1e12, ("A5000", "fp32"): 55.6e12,
    ("L4", "bf16"): 121e12, ("L4", "fp16"): 121e12, ("L4", "fp32"): 60e12,
    ("RTX 4090", "bf16"): 165.2e12, ("RTX 4090", "fp16"): 165.2e12, ("RTX 4090", "fp32"): 82.6e12,
}


def peak_flops(device_name: str, dtype: str) -> float | None:
    matches = [(len(name), flops) for (name, kind), flops in PEAK_FLOPS.items()
               if kind == dtype and name in device_name]
    return max(matches)[1] if matches else None


def mfu(flops_per_token: int, tokens_per_second: float, device_name: str, dtype: str) -> float | None:
    peak = peak_flops(device_name, dtype)
    return None if peak is None else flops_per_token * tokens_per_second / peak


# The CPU probe: fp32 GEMMs at these square sizes (large enough for the BLAS to reach its steady rate, small
# enough that the probe stays under ~2 s on 2 cores); the peak is the best rate seen, since a shared machine can
# only make a GEMM slower, never faster.
PROBE_SIZES = (1024, 1536)
PROBE_SECONDS = 1.5
CPU_PROBE_VERSION = "1"


def _cpu_cache_path(threads: int, cache_dir: Path | None) -> Path:
    key = json.dumps([cpu_model(), threads, torch.__version__, CPU_PROBE_VERSION])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return (cache_dir or default_cache_dir()) / "mfu" / f"cpu-peak-{digest}.json"


def probe_cpu_peak(seconds: float = PROBE_SECONDS, sizes: tuple[int, ...] = PROBE_SIZES) -> dict[str, Any]:
    """The best dense fp32 matmul rate (FLOP/s, 2 per multiply-add) of this process's threads, per size."""
    best: dict[int, float] = {}
    deadline = time.perf_counter() + seconds
    with torch.no_grad():
        mats = {n: (torch.randn(n, n), torch.randn(n, n)) for n in sizes}
        for a, b in mats.values():
            a @ b  # first call: BLAS thread pool and packing buffers
        while time.perf_counter() < deadline:
            for n, (a, b) in mats.items():
                start = time.perf_counter()
                a @ b
                elapsed = time.perf_counter() - start
                best[n] = max(best.get(n, 0.0), 2 * n**3 / elapsed)
    return {"peak_flops": max(best.values()), "by_size": {str(n): f for n, f in best.items()},
            "threads": torch.get_num_threads(), "seconds": seconds, "probe_version": CPU_PROBE_VERSION}


# A model step mixes small GEMMs with element-wise work, so a real training step on CPU runs well below the large-
# GEMM rate. A cached peak that a run's own FLOP/s comes near was measured while the machine was busy (a shared
# machine only makes the probe slower): probe again and keep the higher figure.
PLAUSIBLE_CPU_MFU = 0.8


def cpu_peak_flops(cache_dir: Path | None = None, achieved: float | None = None) -> dict[str, Any]:
    """This machine's measured fp32 GEMM peak at the current thread count: from the cache (per CPU model, thread
    count and torch version) or probed once and cached. `achieved` (the run's model FLOP/s) above
    PLAUSIBLE_CPU_MFU of the cached peak sends it to probe again; the cache keeps the best probe seen. An
    unwritable cache only means probing again."""
    threads = torch.get_num_threads()
    path = _cpu_cache_path(threads, cache_dir)
    cached = _read_cached_peak(path)
    if cached and (achieved is None or achieved <= PLAUSIBLE_CPU_MFU * cached["peak_flops"]):
        return cached
    result = probe_cpu_peak()
    if cached and cached["peak_flops"] > result["peak_flops"]:
        result = cached
    try:  # atomic, never through a link at the cache's name; a cache that cannot be written is probed again
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(result), "cached peak")
    except (OSError, BlockbenchError):
        pass
    return result


def _read_cached_peak(path: Path) -> dict[str, Any]:
    """The cached probe, or {} when there is none usable: not a regular file, too large, not JSON, or a peak that
    is not a finite positive number (an `Infinity` or 1e999 there would make every MFU 0: ignored, re-measured)."""
    if not os.path.lexists(path):
        return {}
    try:
        cached = load_json_guarded(path, 1 << 16, 4, "cached peak")
    except BlockbenchError:
        return {}
    peak = cached.get("peak_flops") if isinstance(cached, dict) else None
    if isinstance(peak, bool) or not isinstance(peak, (int, float)) or not math.isfinite(peak) or peak <= 0:
        return {}
    return cached


def mfu_fields(flops_per_token: int, tokens_per_second: float, device_type: str, device_name: str,
               dtype: str) -> dict[str, Any]:
    """What a record's summary says about MFU: the figure, its peak and where the peak came from (`table`: the
    versioned vendor table, GPUs; `measured`: this machine's GEMM probe, CPUs; null when neither applies)."""
    if device_type == "cuda":
        peak, source = peak_flops(device_name, dtype), "table"
    elif device_type == "cpu" and dtype == "fp32":
        peak, source = cpu_peak_flops(achieved=flops_per_token * tokens_per_second)["peak_flops"], "measured"
    else:
        peak, source = None, None
    if peak is None:
        source = None
    return {"mfu": None if peak is None else flops_per_token * tokens_per_second / peak,
            "mfu_peak_flops": peak, "mfu_peak_source": source, "mfu_peak_table_version": PEAK_TABLE_VERSION}
