"""docs/performance.md's GPU tables, made from ci/gpu_check.py's JSON (never typed by hand).

    python ci/gpu_table.py results/gpu-check/2026-12-04-h200/gpu-check.json [--paper]

Per variant and mode: step time, speed vs the baseline in the same mode (interleaved, same process), MFU against
the spec-table peak, host and GPU time per step, kernels launched per step, and peak memory.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# He & Hofmann 2024, Table 1 / Fig. 6 (CodeParrot, 18 layers): training speed relative to Pre-LN.
PAPER = {"pre_ln": 1.0, "parallel": 1.05, "vskipinit": 0.95, "sas": 1.09, "sas_p": 1.16}


def fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def table(report: dict) -> str:
    probe, prof, mem = report["probe"], report.get("profile", {}), report.get("peak_memory_bytes", {})
    rows = ["| variant | mode | ms / step | speed vs Pre-LN (same mode) | paper | MFU (table peak) | host ms | "
            "GPU ms | GPU busy | kernels / step | peak GiB |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in probe.items():
        variant, mode = name.split("/")
        p = prof.get(name, {}) if "error" not in prof else {}
        m = mem.get(name) if "error" not in mem else None
        paper = PAPER.get(variant)
        rows.append(f"| {variant} | {mode} | {r['step_ms']:.1f} | **{r['vs_baseline_same_mode']:.3f}** | "
                    f"{'' if paper is None else paper} | {fmt(r['mfu_table'], '.3f')} | "
                    f"{p.get('host_ms', float('nan')):.1f} | {p.get('gpu_kernel_ms', float('nan')):.1f} | "
                    f"{p.get('gpu_busy') or float('nan'):.2f} | {p.get('kernels_per_step', float('nan')):.0f} | "
                    f"{'' if m is None else f'{m / 2**30:.2f}'} |")
    return "\n".join(rows)


def bounds(report: dict) -> list[str]:
    """What the figures allow at most: the MFU left when only matmuls and attention cost time, and how much
    faster graphs can make eager when they remove all host time (eager's step over the GPU time under graphs)."""
    lines = []
    for variant, b in (report.get("matmul_bound") or {}).items():
        if not isinstance(b, dict) or "ms_per_step" not in b:
            continue
        ceiling = b.get("mfu_ceiling_table")
        lines.append(f"- {variant}: its matmuls and attention kernels alone take {b['ms_per_step']:.1f} ms per step "
                     "(each distinct call replayed on its own)" + (
                         "" if ceiling is None else f", so MFU at this shape is at most {ceiling:.3f} of the table "
                         "peak with these kernels") + ".")
    probe, prof = report["probe"], report.get("profile", {})
    for name, r in probe.items():
        variant, mode = name.split("/")
        graphed = prof.get(f"{variant}/graphs") if isinstance(prof, dict) and "error" not in prof else None
        if mode == "eager" and graphed and graphed.get("gpu_kernel_ms"):
            lines.append(f"- {variant}: graphs can be at most {r['step_ms'] / graphed['gpu_kernel_ms']:.2f}x eager "
                         f"(eager {r['step_ms']:.1f} ms per step, {graphed['gpu_kernel_ms']:.1f} ms of kernels "
                         "under graphs).")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("json", type=Path)
    args = parser.parse_args()
    report = json.loads(args.json.read_text())
    env = report["env"]
    gemm, table_peak = report.get("gemm_peak_flops"), report.get("peak_flops_table")
    print(f"{env['device']}, torch {env['torch']}, Triton {env['triton']} (shaped mix on Triton: "
          f"{env['triton_mix']}); bf16 GEMM peak measured "
          f"{f'{gemm / 1e12:.0f} TFLOP/s' if isinstance(gemm, float) else 'n/a'}, table peak "
          f"{'n/a' if table_peak is None else f'{table_peak / 1e12:.1f}'}\n")
    print(table(report))
    lines = bounds(report)
    if lines:
        print("\nBounds:\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
