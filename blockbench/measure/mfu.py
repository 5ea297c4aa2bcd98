"""Model FLOPs utilisation: model FLOPs per second / the device's peak dense FLOPs for the training dtype.

PEAK_FLOPS is versioned: change a number, bump PEAK_TABLE_VERSION (it is recorded with every MFU).
Figures are the vendors' dense (no sparsity) tensor-core peaks; fp32 runs use the TF32 tensor-core peak on
GPUs that have one, since blockbench turns TF32 matmuls on.
"""

from __future__ import annotations

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
