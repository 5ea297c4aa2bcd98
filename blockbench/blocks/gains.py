"""A block's gained sum a*x + b*y (e.g. alpha_FF h + beta_FF MLP(N(h)) in SAS and V-SkipInit) as one op.

Written with plain ops, two trained scalar gains cost three kernels forward and six backward per block (each
product, the sum, each gain's gradient as a product and a reduction). Here it is one dispatched op each way:
on CUDA one Triton kernel forward and two backward (blocks/kernels.py: the elementwise pass with per-program
partial sums, then their sum), elsewhere the same math in torch ops. A gain fixed at a number costs nothing extra.
"""

from __future__ import annotations

from typing import Optional

import torch

from blockbench.blocks import shaped

Opt = Optional[torch.Tensor]  # noqa: UP007, UP045 - older torch's schema inference reads no `X | None`
BLOCK = 4096


def _portable_forward(x, y, a, b, a_const, b_const):  # noqa: ANN001, ANN202
    dtype = torch.promote_types(x.dtype, y.dtype)
    out = x.to(dtype) * (a if a is not None else a_const)
    return out.add_(y * b) if b is not None else out.add_(y, alpha=b_const)


def _portable_backward(grad, x, y, a, b, a_const, b_const):  # noqa: ANN001, ANN202
    grad_x = (grad * (a if a is not None else a_const)).to(x.dtype)
    grad_y = (grad * (b if b is not None else b_const)).to(y.dtype)
    acc = torch.float32 if grad.dtype in (torch.float16, torch.bfloat16) else grad.dtype
    grad_a = (grad * x).sum(dtype=acc).to(a.dtype) if a is not None else grad.new_empty(0)
    grad_b = (grad * y).sum(dtype=acc).to(b.dtype) if b is not None else grad.new_empty(0)
    return [grad_x, grad_y, grad_a, grad_b]


def _triton_forward(x, y, a, b, a_const, b_const):  # noqa: ANN001, ANN202
    k = shaped._triton_kernels()
    x, y = x.contiguous(), y.contiguous()
    out = torch.empty(x.shape, dtype=torch.promote_types(x.dtype, y.dtype), device=x.device)
    n = x.numel()
    k._gain_sum_fwd[(shaped.cdiv(n, BLOCK),)](x, y, out, x if a is None else a, x if b is None else b,
                                              float(a_const), float(b_const), n, HAS_A=a is not None,
                                              HAS_B=b is not None, BLOCK=BLOCK)
    return out


def _triton_backward(grad, x, y, a, b, a_const, b_const):  # noqa: ANN001, ANN202
    k = shaped._triton_kernels()
    grad, x, y = grad.contiguous(), x.contiguous(), y.contiguous()
    n = x.numel()
    programs = shaped.cdiv(n, BLOCK)
    grad_x, grad_y = torch.empty_like(x), torch.empty_like(y)
    partials = torch.empty(2 * programs, dtype=torch.float32, device=x.device)
    k._gain_sum_bwd[(programs,)](grad, x, y, grad_x, grad_y, partials, x if a is None else a,
                                 x if b is None else b, float(a_const), float(b_const), n,
                                 HAS_A=a is not None, HAS_B=b is not None, BLOCK=BLOCK)
    grad_a = torch.empty((), dtype=torch.float32, device=x.device) if a is not None else grad.new_empty(0)
    grad_b = torch.empty((), dtype=torch.float32, device=x.device) if b is not None else grad.new_empty(0)
    k._gain_sum_finish[(1,)](partials, grad_a, grad_b, programs, HAS_A=a is not None, HAS_B=b is not None,
                             BLOCK=1024)
    return [grad_x, grad_y, grad_a, grad_b]


@torch.library.custom_op("blockbench::gain_sum", mutates_args=())
def _gain_sum_op(x: torch.Tensor, y: torch.Tensor, a: Opt, b: Opt, a_const: float,
                 b_const: float) -> torch.Tensor:
    impl = _triton_forward if shaped.uses_triton(x) else _portable_forward
    return impl(x, y, a, b, a_const, b_const)


@_gain_sum_op.register_fake
def _(x, y, a, b, a_const, b_const):  # noqa: ANN001, ANN202
    return torch.empty(x.shape, dtype=torch.promote_types(x.dtype, y.dtype), device=x.device)


@torch.library.custom_op("blockbench::gain_sum_backward", mutates_args=())
def _gain_sum_backward_op(grad: torch.Tensor, x: torch.Tensor, y: torch.Tensor, a: Opt, b: Opt, a_const: float,
                          b_const: float) -> list[torch.Tensor]:
    impl = _triton_backward if shaped.uses_triton(x) else _portable_backward
    return impl(grad, x, y, a, b, a_const, b_const)


@_gain_sum_backward_op.register_fake
def _(grad, x, y, a, b, a_const, b_const):  # noqa: ANN001, ANN202
    return [torch.empty_like(x), torch.empty_like(y),
            torch.empty_like(a) if a is not None else grad.new_empty(0),
            torch.empty_like(b) if b is not None else grad.new_empty(0)]


def _setup(ctx, inputs, output):  # noqa: ANN001, ANN202
    x, y, a, b, a_const, b_const = inputs
    ctx.save_for_backward(x, y, a, b)
    ctx.consts = (a_const, b_const)


def _backward(ctx, grad):  # noqa: ANN001, ANN202
    x, y, a, b = ctx.saved_tensors
    grad_x, grad_y, grad_a, grad_b = _gain_sum_backward_op(grad, x, y, a, b, *ctx.consts)
    return grad_x, grad_y, grad_a if a is not None else None, grad_b if b is not None else None, None, None


_gain_sum_op.register_autograd(_backward, setup_context=_setup)
shaped.DECLARED_LAUNCHES.update({"blockbench::gain_sum": 1, "blockbench::gain_sum_backward": 2})


class _DirectGainSum(torch.autograd.Function):
    """The op's Triton kernels without the custom-op wrapper (see shaped.plain_dispatch)."""

    @staticmethod
    def forward(ctx, x, y, a, b, a_const, b_const):  # noqa: ANN001, ANN205
        ctx.save_for_backward(x, y, a, b)
        ctx.consts = (a_const, b_const)
        return _triton_forward(x, y, a, b, a_const, b_const)

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        x, y, a, b = ctx.saved_tensors
        grad_x, grad_y, grad_a, grad_b = _triton_backward(grad, x, y, a, b, *ctx.consts)
        return grad_x, grad_y, grad_a if a is not None else None, grad_b if b is not None else None, None, None


def gain_sum(x: torch.Tensor, y: torch.Tensor, a: torch.Tensor | float, b: torch.Tensor | float) -> torch.Tensor:
    """a * x + b * y, each gain a trained 0-d tensor or a fixed number, as one op forward and one backward
    (under torch.compile, and without Triton outside the step-cost model: autograd's own nodes, the same math)."""
    a_t = a if isinstance(a, torch.Tensor) else None
    b_t = b if isinstance(b, torch.Tensor) else None
    a_const, b_const = 1.0 if a_t is not None else float(a), 1.0 if b_t is not None else float(b)
    if shaped.compiling() or (shaped.plain_dispatch() and not shaped.uses_triton(x)):
        return a * x + b * y
    if shaped.plain_dispatch():
        return _DirectGainSum.apply(x, y, a_t, b_t, a_const, b_const)
    return _gain_sum_op(x, y, a_t, b_t, a_const, b_const)
