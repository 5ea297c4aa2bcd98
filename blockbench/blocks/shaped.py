"""The shaped-attention mix b*S + a*V - g*cummean(V) as one autograd function with a hand-written backward.

Written with plain tensor ops, the mix costs about seven passes over a (B, H, T, d_head) tensor forward and a
score more backward (autograd saves and reduces each product separately), which at CPU scale ate half of what
dropping W^V and W^P saves (blockbench profile, issue 15). Here the forward is four passes (one scaling, two
fused multiply-adds, one running sum) and the backward computes each gradient once, skipping those not needed.

The math is Eq. 5 of He & Hofmann exactly, regrouped: g * (cumsum(V) / t) is computed as cumsum(V) * (g / t),
and the reverse running sum in the backward is flip-cumsum-flip; results agree with the explicit
(alpha I + beta A - gamma C) V to rounding (tests/test_blocks.py).
"""

from __future__ import annotations

import torch


def _positions(seq: int, like: torch.Tensor) -> torch.Tensor:
    """1, 2, ..., T as a (T, 1) column: the row sums of the causal centring matrix's support."""
    return torch.arange(1, seq + 1, device=like.device, dtype=like.dtype).unsqueeze(-1)


class ShapedMix(torch.autograd.Function):
    """out = b_h S + a_h V - g_h C V for causal C (row t uniform over positions <= t); g None drops the last
    term (alpha I + beta A, V-SkipInit's Eq. 4). S, V: (B, H, T, D); a, b, g: (H,)."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor,  # noqa: ANN001
                g: torch.Tensor | None) -> torch.Tensor:
        heads = s.shape[1]
        out = s * b.view(heads, 1, 1)
        out.addcmul_(v, a.view(heads, 1, 1))
        running = None
        if g is not None:
            # The running sum in float32 at least: bf16 would lose it over long sequences.
            running = v.cumsum(dim=-2, dtype=torch.float32 if v.dtype in (torch.float16, torch.bfloat16)
                               else v.dtype)
            weight = g.view(heads, 1, 1).to(running.dtype) / _positions(s.shape[-2], running)
            out.addcmul_(running.to(out.dtype), weight.to(out.dtype), value=-1)
        ctx.save_for_backward(s, v, a, b, g, running)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        s, v, a, b, g, running = ctx.saved_tensors
        heads = s.shape[1]
        need_s, need_v, need_a, need_b, need_g = ctx.needs_input_grad
        grad_s = grad_v = grad_a = grad_b = grad_g = None
        dims = (0, 2, 3)
        if need_s:
            grad_s = (grad * b.view(heads, 1, 1)).to(s.dtype)
        if need_b:
            grad_b = (grad * s).sum(dims).to(b.dtype)
        if need_a:
            grad_a = (grad * v).sum(dims).to(a.dtype)
        if need_v:
            grad_v = grad * a.view(heads, 1, 1)
        if g is not None and (need_v or need_g):
            inv_t = 1 / _positions(s.shape[-2], running)
            if need_v:
                # d/dV_s of sum_t w_t G_t . cumsum(V)_t is sum_{t >= s} w_t G_t: a reverse running sum.
                weighted = grad.to(running.dtype) * (g.view(heads, 1, 1).to(running.dtype) * inv_t)
                reverse = weighted.flip(-2).cumsum(-2).flip(-2)
                grad_v = grad_v.sub_(reverse.to(grad_v.dtype))
            if need_g:
                per_step = (grad.to(running.dtype) * running).sum((0, 3))  # (H, T)
                grad_g = -(per_step * inv_t.view(1, -1)).sum(-1).to(g.dtype)
        if grad_v is not None:
            grad_v = grad_v.to(v.dtype)
        return grad_s, grad_v, grad_a, grad_b, grad_g


def shaped_mix(s: torch.Tensor, v: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor,
               gamma: torch.Tensor | None, scale: torch.Tensor | float | None = None) -> torch.Tensor:
    """scale * (beta S + alpha V - gamma cummean(V)), per head, causal. `scale` (a block's branch gain) is folded
    into the three (H,) gains, so it costs no pass over the activations."""
    if scale is not None and not (isinstance(scale, float) and scale == 1.0):
        alpha, beta = alpha * scale, beta * scale
        gamma = None if gamma is None else gamma * scale
    dtype = torch.result_type(s, beta)
    return ShapedMix.apply(s.to(dtype), v.to(dtype), alpha, beta, gamma)
