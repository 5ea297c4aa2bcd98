"""FLOPs per token, forward and train, counted three ways that must agree.

Convention: FLOPs = 2 per multiply-accumulate; attention scores and attention-times-values are counted as the
full T x T square (as torch's FlopCounterMode counts scaled_dot_product_attention), not causally halved.
Elementwise work (norms, activations, the shaped-attention alpha*V and cummean terms) is not counted by any of
the three; they are O(T d) per sequence, against O(T d^2) for the matmuls.

1. torch.utils.flop_counter.FlopCounterMode, forward and forward+backward, under the MATH SDPA backend
   (torch 2.13 counts 0 for the fused CPU attention kernel).
2. fvcore's FlopCountAnalysis (forward only; it counts multiply-accumulates, so x2), with a handle for
   aten::scaled_dot_product_attention, which it does not know.
3. The analytic formula: 2 * block matrix params + the workload's attention term (4 * L * T * d for either mask:
   the full square) + 2 * the workload head's matrix params (masked_lm's d x d dense) + 2 * V * d (tied head),
   forward; train = 3 x forward (backward does two matmuls per forward matmul). Only defined for zoo (BlockSpec)
   blocks.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from blockbench.measure.params import count_params
from blockbench.model import Model
from blockbench.workloads import get_workload

MATMUL_OPS = ("linear", "matmul", "mm", "bmm", "addmm", "einsum", "scaled_dot_product_attention")


def _sdpa_macs(inputs: list, outputs: list) -> int:
    from fvcore.nn.jit_handles import get_shape  # deferred: fvcore takes ~3 s to import

    q, k, v = (get_shape(t) for t in inputs[:3])
    batch_heads = math.prod(q[:-2])
    return batch_heads * q[-2] * k[-2] * (q[-1] + v[-1])


def analytic_flops_fwd_per_token(model: Model) -> int | None:
    if model.spec is None:
        return None
    c = model.config
    block_matrices = count_params(model)["params_block_matrices"]
    head = getattr(model, "head", None)
    head_matrices = 0 if head is None else sum(p.numel() for p in head.parameters() if p.ndim >= 2)
    attention = get_workload(c.workload).attention_flops_per_token(c.n_layers, c.seq_len, c.d_model)
    return 2 * block_matrices + attention + 2 * head_matrices + 2 * c.vocab_size * c.d_model


def flopcounter_per_token(model: Model, batch_size: int = 1) -> tuple[int, int]:
    """(forward, forward+backward) FLOPs per token at the model's full sequence length."""
    idx = torch.zeros(batch_size, model.config.seq_len, dtype=torch.long, device=_device(model))
    tokens = idx.numel()
    with sdpa_kernel(SDPBackend.MATH):
        forward = FlopCounterMode(display=False)
        with forward, torch.no_grad():
            model(idx)
        train = FlopCounterMode(display=False)
        with train:
            model(idx, idx).backward()
    model.zero_grad(set_to_none=True)
    return forward.get_total_flops() // tokens, train.get_total_flops() // tokens


def fvcore_fwd_per_token(model: Model) -> tuple[int, dict[str, int], list[str]]:
    """(2 x fvcore matmul-class MACs per token, per-operator FLOPs, unsupported matmul-class ops)."""
    from fvcore.nn import FlopCountAnalysis  # deferred: fvcore takes ~3 s to import

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    idx = torch.zeros(1, model.config.seq_len, dtype=torch.long, device=_device(model))
    was_training = model.training
    analysis = (FlopCountAnalysis(model.eval(), (idx,))
                .set_op_handle("aten::scaled_dot_product_attention", _sdpa_macs)
                .unsupported_ops_warnings(False).tracer_warnings("none").uncalled_modules_warnings(False))
    with torch.no_grad():
        by_op = {op: 2 * macs // idx.numel() for op, macs in analysis.by_operator().items()}
    model.train(was_training)
    unsupported = [op for op in analysis.unsupported_ops() if op.removeprefix("aten::") in MATMUL_OPS]
    return sum(v for op, v in by_op.items() if op in MATMUL_OPS), by_op, unsupported


def count_flops(model: Model, use_fvcore: bool = True) -> dict[str, Any]:
    """All three counts and their agreement. The FlopCounterMode figures are the ones reported."""
    fwd, train = flopcounter_per_token(model)
    analytic = analytic_flops_fwd_per_token(model)
    result: dict[str, Any] = {
        "flops_fwd_per_token": fwd,
        "flops_train_per_token": train,
        "flops_convention": "2 per multiply-accumulate; attention counted as the full T x T square",
        "counters": {"flopcounter_fwd": fwd, "flopcounter_train": train, "analytic_fwd": analytic,
                     "analytic_train": None if analytic is None else 3 * analytic},
    }
    if use_fvcore:
        fv_fwd, by_op, unsupported = fvcore_fwd_per_token(model)
        result["counters"].update(fvcore_fwd_x2=fv_fwd, fvcore_by_operator=by_op, fvcore_unsupported=unsupported)
        result["counters"]["fvcore_agrees"] = fv_fwd == fwd
    if analytic is not None:
        result["counters"]["analytic_rel_diff"] = abs(fwd - analytic) / analytic
    return result


def _device(model: Model) -> torch.device:
    return model.tok_emb.weight.device
