"""Normalisation layers. RMSNorm has one scale vector and no bias; LayerNorm keeps torch's affine bias."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# aten's fused RMSNorm (forward and backward each one kernel on CUDA); F.rms_norm reaches it only on some devices.
_FUSED_RMS_NORM = getattr(torch.ops.aten, "_fused_rms_norm", None)

class RMSNorm(nn.Module):
    """scale * x / sqrt(mean(x^2) + eps) through torch's fused kernel, or scale * x / (rms(x) + eps) with
    eps_placement='outside' (the authors' RMSNorm). The two differ only where rms(x) is near sqrt(eps)."""

    def __init__(self, dim: int, eps: float = 1e-5, eps_placement: str = "inside_sqrt") -> None:
        super().__init__()
        if eps_placement not in ("inside_sqrt", "outside"):
            raise ValueError(f"unknown eps placement {eps_placement!r}")
        self.eps, self.eps_placement = eps, eps_placement
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.eps_placement == "inside_sqrt":
            # torch's fused kernel needs the scale in the input's dtype (a bf16 activation under autocast meets a
            # float32 parameter); called directly, the CPU dispatches it too, so CPUs count what CUDA launches.
            scale = self.scale if self.scale.dtype == x.dtype else self.scale.to(x.dtype)
            if _FUSED_RMS_NORM is not None:
                return _FUSED_RMS_NORM(x, [x.shape[-1]], scale, self.eps)[0]
            return F.rms_norm(x, (x.shape[-1],), scale, self.eps)
        # The mean of squares is taken in float32 at least, as the fused kernel does, so bf16 inputs keep it exact.
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        rms = xf.pow(2).mean(dim=-1, keepdim=True).sqrt()
        return self.scale * (xf / (rms + self.eps)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.scale.shape[0]}, eps={self.eps}, eps_placement={self.eps_placement}"


def make_norm(kind: str, dim: int, eps: float, eps_placement: str = "inside_sqrt") -> nn.Module:
    """eps_placement applies to RMSNorm; LayerNorm adds eps inside the sqrt (torch's and HF's LayerNorm)."""
    if kind == "rms":
        return RMSNorm(dim, eps, eps_placement)
    if kind == "layer":
        return nn.LayerNorm(dim, eps=eps)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")
