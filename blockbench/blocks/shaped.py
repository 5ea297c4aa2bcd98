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
(tests/blocks/test_zoo.py, tests/workloads/test_workloads.py, tests/blocks/test_shaped.py).
"""

from __future__ import annotations

import os
import warnings
from typing import Optional

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode as _current_dispatch_mode


def _positions(seq: int, like: torch.Tensor) -> torch.Tensor:
    """1, 2, ..., T as a (T, 1) column: the row sums of the causal centring matrix's support."""
    return torch.arange(1, seq + 1, device=like.device, dtype=like.dtype).unsqueeze(-1)


def _accumulation_dtype(t: torch.Tensor) -> torch.dtype:
    # Running sums and means in float32 at least: bf16 would lose them over long sequences.
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


# ----------------------------------------------------------------------------------------------------------------
# The portable implementation: torch ops, what CPUs run (and CUDA without Triton). Shapes: S, V, M (B, H, T, D);
# a, b, g (H,); scale and e 0-d tensors or None (then the numbers scale_const, e_const apply).


def _head(t: torch.Tensor) -> torch.Tensor:
    return t.view(-1, 1, 1)


def _merged_layout(like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """An empty (B, H, T, D) tensor stored as (B, T, H, D): the head merge after the mix is then a free view."""
    batch, heads, seq, dim = like.shape
    return torch.empty(batch, seq, heads, dim, dtype=dtype, device=like.device).transpose(1, 2)


def _centred(v: torch.Tensor, causal: bool) -> torch.Tensor:
    """C V in float32 at least: the running mean (causal) or the mean row (bidirectional, broadcast over T)."""
    acc = _accumulation_dtype(v)
    if causal:
        running = v.cumsum(dim=-2, dtype=acc)
        return running.div_(_positions(v.shape[-2], running))
    return v.mean(dim=-2, keepdim=True, dtype=acc)


def _portable_forward(s, v, a, b, g, scale, m, e, scale_const, e_const, causal):  # noqa: ANN001, ANN202
    sc = scale if scale is not None else scale_const
    out = _merged_layout(s, torch.promote_types(s.dtype, v.dtype))
    torch.mul(s, _head(b * sc), out=out)
    out.addcmul_(v, _head(a * sc))
    if g is not None:
        out.addcmul_(_centred(v, causal).to(out.dtype), _head(g * sc).to(out.dtype), value=-1)
    if m is not None and e is None:
        out.add_(m, alpha=e_const)
    elif m is not None:
        out.addcmul_(m, e.to(out.dtype))
    return out


def _portable_backward(grad, s, v, a, b, g, scale, m, e, scale_const, e_const, causal):  # noqa: ANN001, ANN202
    sc = scale if scale is not None else scale_const
    dims = (0, 2, 3)
    acc = _accumulation_dtype(grad)
    grad_s = (grad * _head(b * sc)).to(s.dtype)
    # Per-head sums of the gradient times each input; one scratch tensor holds each product in turn.
    scratch = torch.empty_like(grad)
    p_s = torch.mul(grad, s, out=scratch).sum(dims, dtype=acc)
    p_v = torch.mul(grad, v, out=scratch).sum(dims, dtype=acc)
    grad_v = grad.to(acc) * _head(a * sc).to(acc)
    p_c = None
    if g is not None:
        seq = s.shape[-2]
        if causal:
            # C^T G: sum_{t >= s} G_t / t = total - cumsum(G / t) + G / t, with no reversed copies.
            weighted = grad.to(acc) / _positions(seq, grad_v)
            back = weighted.cumsum(-2).neg_().add_(weighted).add_(weighted.sum(-2, keepdim=True))
            p_c = (v.to(acc) * back).sum(dims)
        else:
            back = grad.sum(-2, keepdim=True, dtype=acc) / seq
            p_c = (back * v.sum(-2, keepdim=True, dtype=acc)).sum(dims)
        grad_v.addcmul_(back, _head(g * sc).to(acc), value=-1)
    grad_v = grad_v.to(v.dtype)
    grad_a, grad_b = (p_v * sc).to(a.dtype), (p_s * sc).to(b.dtype)
    unscaled = b * p_s + a * p_v
    grad_g = None
    if g is not None:
        grad_g = (-p_c * sc).to(g.dtype)
        unscaled = unscaled - g * p_c
    grad_scale = unscaled.sum().to(scale.dtype) if scale is not None else None
    grad_m = grad_e = None
    if m is not None:
        grad_m = (grad * (e if e is not None else e_const)).to(m.dtype)
        if e is not None:
            grad_e = torch.mul(grad, m, out=scratch).sum(dtype=acc).to(e.dtype)
    return grad_s, grad_v, grad_a, grad_b, grad_g, grad_scale, grad_m, grad_e


# ----------------------------------------------------------------------------------------------------------------
# The Triton implementation (blocks/kernels.py): one launch forward, two backward, on CUDA where Triton imports.

_BACKEND: dict[str, object] = {}  # "kernels": the module, or "error": why Triton cannot be used in this process


def _triton_kernels():  # noqa: ANN202 - the kernels module, or None with the reason kept in triton_error()
    if "kernels" not in _BACKEND and "error" not in _BACKEND:
        try:
            from blockbench.blocks import kernels  # deferred: needs Triton, an optional dependency

            _BACKEND["kernels"] = kernels
        except Exception as exc:  # noqa: BLE001 - no Triton, an incompatible one: the portable path, recorded
            _BACKEND["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            warnings.warn(f"Triton unavailable ({_BACKEND['error']}): the fused ops run as portable torch ops, "
                          "several kernels each (recorded as config.execution.fused_ops)", stacklevel=3)
    return _BACKEND.get("kernels")


def triton_error() -> str | None:
    """Why this process's shaped mix on CUDA runs the portable torch ops instead of the Triton kernels."""
    return _BACKEND.get("error")  # type: ignore[return-value]


def uses_triton(t: torch.Tensor) -> bool:
    """Whether the mix of a tensor on t's device runs the Triton kernels (CUDA, Triton importable), or
    everywhere with BLOCKBENCH_TRITON_INTERPRET=1 (tests, through Triton's interpreter on CPU tensors)."""
    if t.device.type != "cuda" and os.environ.get("BLOCKBENCH_TRITON_INTERPRET") != "1":
        return False
    return _triton_kernels() is not None


def _strides(t: torch.Tensor | None) -> tuple[int, int, int]:
    return (0, 0, 0) if t is None else (t.stride(0), t.stride(1), t.stride(2))


def _last_dim_dense(t: torch.Tensor | None) -> torch.Tensor | None:
    return t if t is None or t.stride(-1) == 1 else t.contiguous()


def _blocks(seq: int, dim: int) -> tuple[int, int]:
    block_d = max(16, next_power_of_2(dim))
    return max(16, min(64, 4096 // block_d, next_power_of_2(seq))), block_d


def next_power_of_2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def cdiv(n: int, d: int) -> int:
    return -(-n // d)


def _flags(g, scale, m, e, causal):  # noqa: ANN001, ANN202
    return dict(CENTRE=0 if g is None else (1 if causal else 2), HAS_SCALE=scale is not None,
                HAS_M=m is not None, HAS_MG=e is not None)


def _triton_forward(s, v, a, b, g, scale, m, e, scale_const, e_const, causal):  # noqa: ANN001, ANN202
    k = _triton_kernels()
    s, v, m = _last_dim_dense(s), _last_dim_dense(v), _last_dim_dense(m)
    batch, heads, seq, dim = s.shape
    out = _merged_layout(s, torch.promote_types(s.dtype, v.dtype))
    block_t, block_d = _blocks(seq, dim)
    k._mix_fwd[(batch * heads,)](
        s, v, s if m is None else m, out, a, b, a if g is None else g, a if scale is None else scale,
        a if e is None else e, float(scale_const), float(e_const), heads, seq, dim,
        *_strides(s), *_strides(v), *_strides(m), *_strides(out),
        **_flags(g, scale, m, e, causal), BLOCK_T=block_t, BLOCK_D=block_d)
    return out


def _triton_backward(grad, s, v, a, b, g, scale, m, e, scale_const, e_const, causal):  # noqa: ANN001, ANN202
    k = _triton_kernels()
    grad, s, v, m = _last_dim_dense(grad), _last_dim_dense(s), _last_dim_dense(v), _last_dim_dense(m)
    batch, heads, seq, dim = s.shape
    grad_s, grad_v = _merged_layout(s, s.dtype), _merged_layout(v, v.dtype)
    grad_m = None if m is None else _merged_layout(m, m.dtype)
    partials = torch.empty(batch * heads * 4, dtype=torch.float32, device=s.device)
    block_t, block_d = _blocks(seq, dim)
    dummy = a
    k._mix_bwd[(batch * heads,)](
        grad, s, v, s if m is None else m, grad_s, grad_v, grad_s if grad_m is None else grad_m, partials,
        a, b, dummy if g is None else g, dummy if scale is None else scale, dummy if e is None else e,
        float(scale_const), float(e_const), heads, seq, dim,
        *_strides(grad), *_strides(s), *_strides(v), *_strides(m), *_strides(grad_s), *_strides(grad_v),
        *_strides(grad_m), **_flags(g, scale, m, e, causal), BLOCK_T=block_t, BLOCK_D=block_d)
    # Separate tensors (a custom op's outputs may not alias one another); allocation launches nothing.
    grad_a, grad_b, grad_g = (torch.empty(heads, dtype=torch.float32, device=s.device) for _ in range(3))
    grad_scale, grad_e = (torch.empty((), dtype=torch.float32, device=s.device) for _ in range(2))
    k._mix_gains_bwd[(1,)](
        partials, a, b, dummy if g is None else g, dummy if scale is None else scale, grad_a, grad_b, grad_g,
        grad_scale, grad_e, float(scale_const), batch, heads,
        CENTRE=0 if g is None else 1, HAS_SCALE=scale is not None, BLOCK_B=32,
        BLOCK_H=max(16, next_power_of_2(heads)))
    # The gains' gradients are float32, as every gain parameter is.
    grad_scale = None if scale is None else grad_scale
    grad_e = None if e is None else grad_e
    return (grad_s, grad_v, grad_a, grad_b, None if g is None else grad_g, grad_scale, grad_m, grad_e)


# ----------------------------------------------------------------------------------------------------------------
# The op: one dispatched operation forward and one backward on every device, so the same op is counted everywhere.


# typing.Optional: the schema inference of older torch releases (the GPU machines') reads no `X | None`.
Opt = Optional[torch.Tensor]  # noqa: UP007, UP045


@torch.library.custom_op("blockbench::shaped_mix", mutates_args=())
def _shaped_mix_op(s: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor, g: Opt,
                   scale: Opt, m: Opt, e: Opt, scale_const: float, e_const: float, causal: bool) -> torch.Tensor:
    impl = _triton_forward if uses_triton(s) else _portable_forward
    return impl(s, v, a, b, g, scale, m, e, scale_const, e_const, causal)


@_shaped_mix_op.register_fake
def _(s, v, a, b, g, scale, m, e, scale_const, e_const, causal):  # noqa: ANN001, ANN202
    return _merged_layout(s, torch.promote_types(s.dtype, v.dtype))


@torch.library.custom_op("blockbench::shaped_mix_backward", mutates_args=())
def _shaped_mix_backward_op(grad: torch.Tensor, s: torch.Tensor, v: torch.Tensor, a: torch.Tensor,
                            b: torch.Tensor, g: Opt, scale: Opt, m: Opt, e: Opt, scale_const: float,
                            e_const: float, causal: bool) -> list[torch.Tensor]:
    impl = _triton_backward if uses_triton(s) else _portable_backward
    grads = impl(grad, s, v, a, b, g, scale, m, e, scale_const, e_const, causal)
    # A custom op returns tensors only: an absent input's gradient travels as an empty tensor.
    return [t if t is not None else grad.new_empty(0) for t in grads]


@_shaped_mix_backward_op.register_fake
def _(grad, s, v, a, b, g, scale, m, e, scale_const, e_const, causal):  # noqa: ANN001, ANN202
    def like(t: torch.Tensor | None) -> torch.Tensor:
        return grad.new_empty(0) if t is None else torch.empty_like(t)

    return [_merged_layout(s, s.dtype), _merged_layout(v, v.dtype), like(a), like(b), like(g), like(scale),
            grad.new_empty(0) if m is None else _merged_layout(m, m.dtype), like(e)]


def _setup(ctx, inputs, output):  # noqa: ANN001, ANN202
    s, v, a, b, g, scale, m, e, scale_const, e_const, causal = inputs
    ctx.save_for_backward(s, v, a, b, g, scale, m, e)
    ctx.consts = (scale_const, e_const, causal)


def _backward(ctx, grad):  # noqa: ANN001, ANN202
    s, v, a, b, g, scale, m, e = ctx.saved_tensors
    grads = _shaped_mix_backward_op(grad, s, v, a, b, g, scale, m, e, *ctx.consts)
    present = (s, v, a, b, g, scale, m, e)
    return (*(gr if t is not None else None for gr, t in zip(grads, present)), None, None, None)


_shaped_mix_op.register_autograd(_backward, setup_context=_setup)


def plain_dispatch() -> bool:
    """Whether a fused op may skip its custom-op wrapper here: whenever no dispatch mode is watching (the step-cost
    model counts the op as one launch only through the wrapper) and nothing is being compiled (a compiled graph
    takes the plain formula instead, see compiling). The wrapper's Python dispatch costs ~0.15 ms a call forward
    and backward on a CPU (the CI gate's SAS measured 12% slower with it), and on a GPU in eager mode that is host
    time a launch-bound step pays per layer; an autograd.Function runs the same kernels (Triton on CUDA, the
    portable math elsewhere) for less."""
    # dynamo itself, not the formula choice: the dispatch-mode check would break the graph while tracing
    return not torch.compiler.is_compiling() and _current_dispatch_mode() is None


def compiling() -> bool:
    """Whether a fused op is being traced by torch.compile: it then gives the compiler its plain formula, which
    inductor fuses with its neighbours into its own kernels. An opaque custom op there would be an extern call
    per layer that the compiled step must leave the generated code for (host time, and no fusion across it)."""
    return torch.compiler.is_compiling()


class _DirectMix(torch.autograd.Function):
    """The op's forward and backward (Triton kernels where uses_triton, else the portable math) without the
    custom-op wrapper (see plain_dispatch)."""

    @staticmethod
    def forward(ctx, s, v, a, b, g, scale, m, e, scale_const, e_const, causal):  # noqa: ANN001, ANN205
        ctx.save_for_backward(s, v, a, b, g, scale, m, e)
        ctx.consts = (scale_const, e_const, causal)
        ctx.triton = uses_triton(s)
        impl = _triton_forward if ctx.triton else _portable_forward
        return impl(s, v, a, b, g, scale, m, e, scale_const, e_const, causal)

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        saved = ctx.saved_tensors
        impl = _triton_backward if ctx.triton else _portable_backward
        grads = impl(grad, *saved, *ctx.consts)
        return (*(gr if t is not None and need else None
                  for gr, t, need in zip(grads, saved, ctx.needs_input_grad)), None, None, None)


def fused_mix(s: torch.Tensor, v: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor,
              gamma: torch.Tensor | None, scale: torch.Tensor | float | None = None, causal: bool = True,
              addend: torch.Tensor | None = None, addend_gain: torch.Tensor | float = 1.0) -> torch.Tensor:
    """scale * (beta S + alpha V - gamma C V) + addend_gain * addend, per head, as one op forward and one backward
    (under torch.compile: the plain formula, fused by the compiler).
    The result is (B, H, T, D) stored as (B, T, H, D), in the activations' dtype (float32 arithmetic inside)."""
    if compiling():
        return _by_formula(mix_formula, s, v, alpha, beta, gamma, scale, causal, addend, addend_gain)
    scale_t = scale if isinstance(scale, torch.Tensor) else None
    scale_const = 1.0 if scale is None or scale_t is not None else float(scale)
    e_t = addend_gain if isinstance(addend_gain, torch.Tensor) else None
    e_const = 1.0 if e_t is not None else float(addend_gain)
    op = _DirectMix.apply if plain_dispatch() else _shaped_mix_op
    return op(s, v, alpha, beta, gamma, scale_t, addend, e_t if addend is not None else None, scale_const, e_const,
              causal)


def _by_formula(mix, s, v, alpha, beta, gamma, scale, causal, addend, addend_gain):  # noqa: ANN001, ANN202
    """The op's function through mix (mix_formula, plain or compiled), the scale folded into the gains and the
    result in the fused op's dtype (the activations'), so a compiled graph carries what an eager one does."""
    if scale is not None and not (isinstance(scale, float) and scale == 1.0):
        alpha, beta = alpha * scale, beta * scale
        gamma = None if gamma is None else gamma * scale
    out = mix(s, v, alpha, beta, gamma, causal).to(torch.promote_types(s.dtype, v.dtype))
    return out if addend is None else out + addend_gain * addend


def mix_formula(s: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor, g: torch.Tensor | None,
                causal: bool = True) -> torch.Tensor:
    """ShapedMix's forward as plain tensor ops: what torch.compile fuses for `runtime.compile_shaped`, and, left
    uncompiled, the pre-fusion path that benchmarks/scripts/sasp_speed.py --before times (autograd's backward)."""
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
               causal: bool = True, compiled: bool = False, addend: torch.Tensor | None = None,
               addend_gain: torch.Tensor | float = 1.0) -> torch.Tensor:
    """scale * (beta S + alpha V - gamma C V) + addend_gain * addend, per head, for the causal or the bidirectional
    C; `addend` (B, H, T, D) is what a parallel block adds to the attention branch (its gained MLP output), so the
    block's combination costs no pass of its own. The result is stored as (B, T, H, D). `compiled`: the
    torch.compile'd formula (runtime.compile_shaped) instead of the fused op (same math)."""
    if compiled and "error" not in _compiled and not compiling():
        try:
            return _by_formula(compiled_mix_formula(), s, v, alpha, beta, gamma, scale, causal, addend, addend_gain)
        except Exception as exc:  # noqa: BLE001 - no compiler, an inductor bug: the fused op, same math
            _compiled["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            warnings.warn(f"compiling the shaped mix failed, using the fused op: {_compiled['error']}", stacklevel=2)
    return fused_mix(s, v, alpha, beta, gamma, scale, causal, addend, addend_gain)


def declared_launches(op_name: str) -> int | None:
    """The CUDA kernel launches of one call of custom op `op_name` (e.g. 'blockbench::shaped_mix'); None for an
    op this package does not define, or where this process's CUDA would run the portable chain (no Triton): the
    step-cost model then counts that chain's own ops."""
    if torch.cuda.is_available() and _triton_kernels() is None:
        return None
    return DECLARED_LAUNCHES.get(op_name)


# Kernels each of this package's custom ops launches on CUDA (its Triton implementation), per call, declared beside
# the op; blocks/gains.py adds its own. The step-cost model (measure/cost.py) counts a custom op as this many
# launches; tests check the declarations against the kernels, through Triton's interpreter on CPU and with the
# profiler on a GPU.
DECLARED_LAUNCHES: dict[str, int] = {"blockbench::shaped_mix": 1, "blockbench::shaped_mix_backward": 2}
