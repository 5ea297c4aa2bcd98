"""The shaped-attention mix b*S + a*V - g*C V as one autograd function with a hand-written backward.

Written with plain tensor ops, the mix costs about seven passes over a (B, H, T, d_head) tensor forward and a
score more backward (autograd saves and reduces each product separately), which at CPU scale ate half of what
dropping W^V and W^P saves (blockbench profile, issue 15). Here the forward is four passes (one scaling, two
fused multiply-adds, one running sum) and the backward computes each gradient once, skipping those not needed.

The math is Eq. 5 of He & Hofmann exactly, regrouped. Causal C (row t uniform over positions <= t):
g * (cumsum(V) / t) is computed as cumsum(V) * (g / t), and the backward's reverse running sum
sum_{t >= s} x_t as total - cumsum(x) + x, which needs no reversed copies. Bidirectional C = (1/T) 1 1^T (the
encoder): C V is one mean row per (batch, head) that broadcasts over the T queries, and its backward one column
sum of the gradient. Results agree with the explicit (alpha I + beta A - gamma C) V to rounding
(tests/test_blocks.py, tests/test_workloads.py, tests/test_shaped_mix.py).
"""

from __future__ import annotations

import warnings

import torch


def _positions(seq: int, like: torch.Tensor) -> torch.Tensor:
    """1, 2, ..., T as a (T, 1) column: the row sums of the causal centring matrix's support."""
    return torch.arange(1, seq + 1, device=like.device, dtype=like.dtype).unsqueeze(-1)


def _accumulation_dtype(t: torch.Tensor) -> torch.dtype:
    # Running sums and means in float32 at least: bf16 would lose them over long sequences.
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


class ShapedMix(torch.autograd.Function):
    """out = b_h S + a_h V - g_h C V, with C causal (row t uniform over positions <= t) or bidirectional
    (C = (1/T) 1 1^T); g None drops the last term (alpha I + beta A, V-SkipInit's Eq. 4). S, V: (B, H, T, D);
    a, b, g: (H,)."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor,  # noqa: ANN001
                g: torch.Tensor | None, causal: bool = True) -> torch.Tensor:
        heads, seq = s.shape[1], s.shape[-2]
        out = s * b.view(heads, 1, 1)
        out.addcmul_(v, a.view(heads, 1, 1))
        centred = None  # causal: the running sum cumsum(V); bidirectional: the mean row (B, H, 1, D)
        if g is not None:
            acc = _accumulation_dtype(v)
            if causal:
                centred = v.cumsum(dim=-2, dtype=acc)
                weight = g.view(heads, 1, 1).to(acc) / _positions(seq, centred)
            else:
                centred = v.mean(dim=-2, keepdim=True, dtype=acc)
                weight = g.view(heads, 1, 1).to(acc)
            out.addcmul_(centred.to(out.dtype), weight.to(out.dtype), value=-1)
        ctx.causal = causal
        ctx.save_for_backward(s, v, a, b, g, centred)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        s, v, a, b, g, centred = ctx.saved_tensors
        heads, seq = s.shape[1], s.shape[-2]
        need_s, need_v, need_a, need_b, need_g, _ = ctx.needs_input_grad
        grad_s = grad_v = grad_a = grad_b = grad_g = None
        dims = (0, 2, 3)
        if need_s:
            grad_s = (grad * b.view(heads, 1, 1)).to(s.dtype)
        # The gains' gradients are sums of products; one scratch tensor holds each product in turn (a fresh
        # activation-sized allocation per product costs page faults on CPU).
        scratch = torch.empty_like(grad) if need_a or need_b else None
        if need_b:
            grad_b = torch.mul(grad, s, out=scratch).sum(dims).to(b.dtype)
        if need_a:
            grad_a = torch.mul(grad, v, out=scratch).sum(dims).to(a.dtype)
        if g is None or not (need_v or need_g):
            if need_v:
                grad_v = (grad * a.view(heads, 1, 1)).to(v.dtype)
            return grad_s, grad_v, grad_a, grad_b, grad_g, None
        acc = centred.dtype
        gains = g.view(heads, 1, 1).to(acc)
        if ctx.causal:
            inv_t = 1 / _positions(seq, centred)
            if need_v:
                # d/dV_s of sum_t w_t G_t . cumsum(V)_t = sum_{t >= s} w_t G_t = total - cumsum(w G)_s + w_s G_s,
                # so grad_V = G (a - w) + cumsum(w G) - total, with w_t = g / t.
                weight = gains * inv_t
                weighted = grad.to(acc) * weight
                total = weighted.sum(-2, keepdim=True)
                grad_v = weighted.cumsum_(-2).sub_(total)
                grad_v.addcmul_(grad.to(acc), a.view(heads, 1, 1).to(acc) - weight)
            if need_g:
                product = torch.mul(grad, centred, out=scratch) if scratch is not None and acc == grad.dtype else (
                    grad.to(acc) * centred)
                per_step = product.sum((0, 3))  # (H, T)
                grad_g = -(per_step * inv_t.view(1, -1)).sum(-1).to(g.dtype)
        else:
            column = grad.sum(-2, keepdim=True, dtype=acc)  # (B, H, 1, D): what every query's C row sends back
            if need_v:
                grad_v = (grad * a.view(heads, 1, 1)).to(acc).sub_(column * (gains / seq))
            if need_g:
                grad_g = -(column * centred).sum(dims).to(g.dtype)
        if grad_v is not None:
            grad_v = grad_v.to(v.dtype)
        return grad_s, grad_v, grad_a, grad_b, grad_g, None


def mix_formula(s: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor, g: torch.Tensor | None,
                causal: bool = True) -> torch.Tensor:
    """ShapedMix's forward as plain tensor ops: what torch.compile fuses for `runtime.compile_shaped`, and, left
    uncompiled, the pre-fusion path that ci/sasp_speed.py --before times (autograd's backward)."""
    heads = s.shape[1]
    out = b.view(heads, 1, 1) * s + a.view(heads, 1, 1) * v
    if g is None:
        return out
    acc = _accumulation_dtype(v)
    if causal:
        centred = v.to(acc).cumsum(-2) / _positions(s.shape[-2], v.to(acc))
    else:
        centred = v.to(acc).mean(-2, keepdim=True)
    return out - (g.view(heads, 1, 1).to(acc) * centred).to(out.dtype)


_compiled: dict[str, object] = {}  # "mix": the compiled callable; "error": why compiling it failed


def compile_error() -> str | None:
    """Why the compiled shaped mix fell back to the eager one in this process, if it did."""
    return _compiled.get("error")  # type: ignore[return-value]


def compiled_mix_formula():  # noqa: ANN201 - a torch.compile'd callable
    """mix_formula compiled once per process (inductor: one fused loop forward, one backward); its guards
    recompile for a new shape, dtype or mask kind."""
    if "mix" not in _compiled:
        _compiled["mix"] = torch.compile(mix_formula, dynamic=False, fullgraph=True)
    return _compiled["mix"]


def shaped_mix(s: torch.Tensor, v: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor,
               gamma: torch.Tensor | None, scale: torch.Tensor | float | None = None,
               causal: bool = True, compiled: bool = False) -> torch.Tensor:
    """scale * (beta S + alpha V - gamma C V), per head, for the causal or the bidirectional C. `scale` (a block's
    branch gain) is folded into the three (H,) gains, so it costs no pass over the activations. `compiled`:
    the torch.compile'd formula instead of the hand-written autograd function (same math)."""
    if scale is not None and not (isinstance(scale, float) and scale == 1.0):
        alpha, beta = alpha * scale, beta * scale
        gamma = None if gamma is None else gamma * scale
    dtype = torch.result_type(s, beta)
    if compiled and "error" not in _compiled:
        try:
            return compiled_mix_formula()(s.to(dtype), v.to(dtype), alpha, beta, gamma, causal)
        except Exception as exc:  # noqa: BLE001 - no compiler, an inductor bug: the eager function, same math
            _compiled["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            warnings.warn(f"compiling the shaped mix failed, using the eager one: {_compiled['error']}", stacklevel=2)
    return ShapedMix.apply(s.to(dtype), v.to(dtype), alpha, beta, gamma, causal)


# Kernels a custom op of this package launches on CUDA, per call, declared beside the op (the step-cost model,
# measure/cost.py, counts a custom op as this many launches; tests check the declaration against the kernels).
DECLARED_LAUNCHES: dict[str, int] = {}


def declared_launches(op_name: str) -> int | None:
    """The CUDA kernel launches of one call of custom op `op_name` (e.g. 'blockbench::shaped_mix'); None for an
    op this package does not define."""
    return DECLARED_LAUNCHES.get(op_name)
