"""The prepared GPU check (ci/gpu-check.sh): throughput, MFU and memory of pre_ln vs sas_p at the paper's width,
and the peak memory of shaped vs softmax attention at T = 2048. Prints one report; writes nothing else.

    python ci/gpu_check.py --device cuda                       # what gpu-check.sh runs
    python ci/gpu_check.py --device cpu --suite smoke --budget-steps 5 --seq-len 256   # a dry run on CPU
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from blockbench.blocks import get_variant
from blockbench.blocks.attention import Attention
from blockbench.measure.memory import PeakMemory
from blockbench.records import load_records


def attention_memory(variant: str, seq_len: int, device: torch.device, batch: int = 8, width: int = 768,
                     heads: int = 12) -> tuple[int | None, str]:
    """Peak memory of one attention sub-block forward + backward at seq_len (bf16 autocast on CUDA)."""
    attn = Attention(width, heads, get_variant(variant).spec.for_layer(1)).to(device)
    x = torch.randn(batch, seq_len, width, device=device, requires_grad=True)
    memory = PeakMemory(device)
    memory.start()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        attn(x).float().pow(2).mean().backward()
    return memory.peak_bytes(), memory.kind


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--suite", default="paper-gpu-offline")
    parser.add_argument("--budget-steps", default="60")
    parser.add_argument("--seq-len", type=int, default=2048)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="gpu-check-")) / "run"
    cmd = [sys.executable, "-m", "blockbench", "run", "--suite", args.suite, "--variants", "pre_ln,sas_p",
           "--budget-steps", args.budget_steps, "--device", args.device, "--out", str(out), "--quiet"]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    records = {r["variant"]: r for r in load_records(out / "records")}
    print(f"\ndevice: {records['pre_ln']['env']['device_name']}, torch {records['pre_ln']['env']['torch']}, "
          f"dtype {records['pre_ln']['config']['dtype']}, model {records['pre_ln']['config']['model']}")
    for name, r in records.items():
        s = r["summary"]
        print(f"{name:8s} tokens/s {s['tokens_per_second']:>12,.0f}  step median {s['step_time_median'] * 1e3:8.2f} ms"
              f"  MFU {s['mfu'] if s['mfu'] is None else round(s['mfu'], 4)}  peak memory "
              f"{s['peak_memory_bytes'] / 2**30 if s['peak_memory_bytes'] else 0:.2f} GiB ({s['peak_memory_kind']})"
              f"  params {r['static']['params_total']:,}")
    ratio = records["sas_p"]["summary"]["tokens_per_second"] / records["pre_ln"]["summary"]["tokens_per_second"]
    print(f"SAS-P / Pre-LN tokens/s, whole runs: {ratio:.3f}")
    print(f"SAS-P / Pre-LN interleaved speedup (same process): {records['sas_p']['speed']['speedup_vs_baseline']:.3f}"
          f"  (matmul-only bound (4+2r)/(2+2r) = {12 / 10:.3f})")
    device = torch.device(args.device)
    report = {}
    for variant in ("pre_ln", "sas_p"):
        peak, kind = attention_memory(variant, args.seq_len, device)
        report[variant] = peak
        print(f"attention sub-block fwd+bwd at T={args.seq_len}, B=8, d=768, H=12 ({variant}): "
              f"{(peak or 0) / 2**20:.1f} MiB ({kind})")
    t_by_t = 8 * 12 * args.seq_len**2 * 4
    print(f"one B*H*T*T fp32 tensor would be {t_by_t / 2**20:.1f} MiB")
    print(json.dumps({"sas_p_over_pre_ln_tokens_per_s": ratio, "attention_peak_bytes": report}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
