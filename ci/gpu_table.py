"""The README's GPU table, made from ci/gpu_check.py's JSON (never typed by hand).

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
                    f"{'' if paper is None else paper} | {r['mfu_table']:.3f} | "
                    f"{p.get('host_ms', float('nan')):.1f} | {p.get('gpu_kernel_ms', float('nan')):.1f} | "
                    f"{p.get('gpu_busy') or float('nan'):.2f} | {p.get('kernels_per_step', float('nan')):.0f} | "
                    f"{'' if m is None else f'{m / 2**30:.2f}'} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("json", type=Path)
    args = parser.parse_args()
    report = json.loads(args.json.read_text())
    env = report["env"]
    print(f"{env['device']}, torch {env['torch']}, Triton {env['triton']} (shaped mix on Triton: "
          f"{env['triton_mix']}); bf16 GEMM peak measured {report['gemm_peak_flops'] / 1e12:.0f} TFLOP/s, "
          f"table peak {report['peak_flops_table'] / 1e12:.1f}\n")
    print(table(report))


if __name__ == "__main__":
    main()
