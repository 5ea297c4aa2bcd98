"""The fused shaped-attention mix (blocks/shaped.py) against the same formula written with plain tensor ops, on
its portable implementation, and on its Triton kernels through Triton's interpreter where Triton is installed."""

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

import blockbench.blocks.gains  # noqa: F401 - registers its launch counts
from blockbench.blocks.shaped import DECLARED_LAUNCHES, _shaped_mix_op, fused_mix, shaped_mix


def causal_mean(v):
    return v.cumsum(-2) / torch.arange(1, v.shape[-2] + 1, dtype=v.dtype).unsqueeze(-1)


def plain(s, v, a, b, g, scale, causal=True, m=None, e=1.0):
    out = b.view(-1, 1, 1) * s + a.view(-1, 1, 1) * v
    if g is not None:
        out = out - g.view(-1, 1, 1) * (causal_mean(v) if causal else v.mean(-2, keepdim=True))
    out = out if scale is None else scale * out
    return out if m is None else out + e * m


def inputs(dtype=torch.float64, heads=3, seed=0, seq=5, dim=4):
    gen = torch.Generator().manual_seed(seed)
    # (B, T, H, D) storage seen as (B, H, T, D), the layout the attention hands over
    s, v, m = (torch.randn(2, seq, heads, dim, generator=gen, dtype=dtype).transpose(1, 2).requires_grad_()
               for _ in range(3))
    a, b, g = (torch.rand(heads, generator=gen, dtype=dtype).add(0.5).requires_grad_() for _ in range(3))
    return s, v, a, b, g, m


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("centred", [True, False])
@pytest.mark.parametrize("extras", [False, True])
def test_gradcheck(centred, causal, extras):
    s, v, a, b, g, m = inputs()
    scale = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    e = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    g = g if centred else None
    if extras:
        fn = lambda s, v, a, b, scale, m, e: fused_mix(s, v, a, b, g, scale, causal, m, e)  # noqa: E731
        op = lambda s, v, a, b, scale, m, e: _shaped_mix_op(s, v, a, b, g, scale, m, e, 1.0, 1.0, causal)  # noqa: E731
        args = (s, v, a, b, scale, m, e)
    else:
        fn = lambda s, v, a, b: fused_mix(s, v, a, b, g, None, causal)  # noqa: E731
        op = lambda s, v, a, b: _shaped_mix_op(s, v, a, b, g, None, None, None, 1.0, 1.0, causal)  # noqa: E731
        args = (s, v, a, b)
    assert torch.autograd.gradcheck(fn, args)  # the autograd.Function a CPU runs
    assert torch.autograd.gradcheck(op, args)  # the custom op CUDA and the step-cost model run


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("centred", [True, False])
@pytest.mark.parametrize("with_scale", [True, False])
@pytest.mark.parametrize("addend", [None, 0.4, "trained"])
def test_matches_plain_ops(centred, with_scale, causal, addend):
    s, v, a, b, g, m = inputs(torch.float32)
    g = g if centred else None
    scale = torch.tensor(0.7, requires_grad=True) if with_scale else None
    e = torch.tensor(0.3, requires_grad=True) if addend == "trained" else addend
    m = None if addend is None else m
    leaves = [t for t in (s, v, a, b, g, scale, m, e) if isinstance(t, torch.Tensor)]
    upstream = torch.randn(2, 3, 5, 4)
    got = shaped_mix(s, v, a, b, g, scale, causal=causal, addend=m, addend_gain=1.0 if e is None else e)
    want = plain(s, v, a, b, g, scale, causal, m, 1.0 if e is None else e)
    torch.testing.assert_close(got, want)
    assert got.transpose(1, 2).is_contiguous()  # stored as (B, T, H, D): the head merge is a view
    grads_got = torch.autograd.grad(got, leaves, upstream)
    grads_want = torch.autograd.grad(want, leaves, upstream)
    for x, y in zip(grads_got, grads_want):
        torch.testing.assert_close(x, y)


def test_fixed_gains_get_no_gradient():
    s, v, a, b, g, _ = inputs(torch.float32)
    a, b, g = a.detach(), b.detach(), g.detach()
    out = shaped_mix(s, v, a, b, g)
    out.sum().backward()
    assert s.grad is not None and v.grad is not None and a.grad is None


@pytest.mark.parametrize("causal", [True, False])
def test_bf16_activations_stay_bf16(causal):
    """Under autocast S and V are bf16: the mix returns bf16 (no float32 round trip through memory), computed from
    float32 running sums, and hands each gradient back in its input's dtype (the gains' in float32)."""
    s, v, a, b, g, _ = inputs(torch.float32)
    s16, v16 = s.detach().bfloat16().requires_grad_(), v.detach().bfloat16().requires_grad_()
    got = shaped_mix(s16, v16, a, b, g, causal=causal)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), plain(s16.float(), v16.float(), a, b, g, None, causal),
                               rtol=1e-2, atol=1e-2)
    got.float().sum().backward()
    assert s16.grad.dtype == v16.grad.dtype == torch.bfloat16 and a.grad.dtype == torch.float32


def test_the_op_is_one_dispatch_forward_and_one_backward():
    """What the step-cost model sees: the mix is one op each way, whatever its implementation runs inside."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen = []

    class Ops(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(func.name())
            return func(*args, **(kwargs or {}))

    s, v, a, b, g, _ = inputs(torch.float32)
    with Ops():
        out = fused_mix(s, v, a, b, g)
    assert seen == ["blockbench::shaped_mix"]
    seen.clear()
    with Ops():
        out.backward(torch.ones_like(out))
    assert "blockbench::shaped_mix_backward" in seen
    assert not [name for name in seen if name.startswith("aten::") and name not in (
        "aten::ones_like", "aten::detach", "aten::copy_", "aten::add_", "aten::_to_copy", "aten::expand",
        "aten::view", "aten::select", "aten::as_strided", "aten::slice")]


_TRITON = importlib.util.find_spec("triton") is not None
_INTERPRETED = r"""
import contextlib, torch, itertools, sys
from torch.utils._python_dispatch import TorchDispatchMode
sys.path.insert(0, "tests/blocks")
from test_shaped import inputs, plain
from blockbench.blocks import shaped
from blockbench.blocks.shaped import fused_mix
assert shaped.uses_triton(torch.empty(1)), shaped.triton_error()
launches = []
kernels = shaped._triton_kernels()
for name in ("_mix_fwd", "_mix_bwd", "_mix_gains_bwd"):
    kernel = getattr(kernels, name)
    class Counted:
        def __init__(self, k, n): self.k, self.n = k, n
        def __getitem__(self, grid):
            launches.append(self.n)
            return self.k[grid]
    setattr(kernels, name, Counted(kernel, name))
seen = []
class Watching(TorchDispatchMode):  # any dispatch mode (the step-cost model's) routes through the custom op
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        seen.append(func.name())
        return func(*args, **(kwargs or {}))
routes = (contextlib.nullcontext, Watching)  # the autograd.Function eager path, and the custom op's
for route, causal, centred, extras, seq in itertools.product(routes, (True, False), (True, False), (True, False),
                                                             (5, 70)):
    s, v, a, b, g, m = inputs(torch.float32, seq=seq, dim=5)
    g = g if centred else None
    scale = torch.tensor(0.7, requires_grad=True) if extras else None
    e = torch.tensor(0.3, requires_grad=True) if extras else 1.0
    m = m if extras else None
    leaves = [t for t in (s, v, a, b, g, scale, m, e) if isinstance(t, torch.Tensor)]
    launches.clear()
    with route():
        got = fused_mix(s, v, a, b, g, scale, causal, m, e)
    assert launches == ["_mix_fwd"], launches
    want = plain(s, v, a, b, g, scale, causal, m, e)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    upstream = torch.randn_like(want)
    launches.clear()
    with route():
        got_grads = torch.autograd.grad(got, leaves, upstream)
    assert launches == ["_mix_bwd", "_mix_gains_bwd"], launches
    assert ("blockbench::shaped_mix_backward" in seen) == (route is Watching), route
    seen.clear()
    for x, y in zip(got_grads, torch.autograd.grad(want, leaves, upstream)):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-4)
from blockbench.blocks import gains
for name in ("_gain_sum_fwd", "_gain_sum_bwd", "_gain_sum_finish"):
    setattr(kernels, name, Counted(getattr(kernels, name), name))
for route, a_kind, b_kind, n in itertools.product(routes, ("t", 0.5), ("t", 2.0), (7, 5000)):
    x, y = torch.randn(n, requires_grad=True), torch.randn(n, requires_grad=True)
    a = torch.tensor(0.7, requires_grad=True) if a_kind == "t" else a_kind
    b = torch.tensor(-0.3, requires_grad=True) if b_kind == "t" else b_kind
    launches.clear()
    with route():
        got = gains.gain_sum(x, y, a, b)
    assert launches == ["_gain_sum_fwd"], launches
    torch.testing.assert_close(got, a * x + b * y)
    leaves = [t for t in (x, y, a, b) if isinstance(t, torch.Tensor)]
    upstream = torch.randn(n)
    launches.clear()
    with route():
        got_grads = torch.autograd.grad(got, leaves, upstream)
    assert launches == ["_gain_sum_bwd", "_gain_sum_finish"], launches
    assert ("blockbench::gain_sum_backward" in seen) == (route is Watching), route
    seen.clear()
    for g1, g2 in zip(got_grads, torch.autograd.grad(a * x + b * y, leaves, upstream)):
        torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-4)
print("ok", shaped.DECLARED_LAUNCHES)
"""


@pytest.mark.skipif(not _TRITON, reason="Triton is not installed (CUDA builds of torch ship it; pip install triton "
                                        "runs this test on CPU through Triton's interpreter)")
def test_triton_kernels_match_the_formula_and_launch_what_is_declared():
    env = {**os.environ, "TRITON_INTERPRET": "1", "BLOCKBENCH_TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", _INTERPRETED], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert DECLARED_LAUNCHES == {"blockbench::shaped_mix": 1, "blockbench::shaped_mix_backward": 2,
                                 "blockbench::gain_sum": 1, "blockbench::gain_sum_backward": 2}


@pytest.mark.parametrize("a,b", [("t", "t"), ("t", 0.1), (1.0, "t"), (0.5, 2.0)])
def test_gain_sum_matches_plain_ops_and_gradchecks(a, b):
    """Through the custom op (what CUDA and the step-cost model run; a CPU without a dispatch mode takes autograd's
    own nodes for the same formula)."""
    from blockbench.blocks import gains

    def gain_sum(x, y, a, b):
        ta, tb = (g if isinstance(g, torch.Tensor) else None for g in (a, b))
        return gains._gain_sum_op(x, y, ta, tb, 1.0 if ta is not None else a, 1.0 if tb is not None else b)

    gen = torch.Generator().manual_seed(1)
    x, y = (torch.randn(2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(2))
    ga = torch.tensor(0.7, dtype=torch.float64, requires_grad=True) if a == "t" else a
    gb = torch.tensor(-0.3, dtype=torch.float64, requires_grad=True) if b == "t" else b
    torch.testing.assert_close(gain_sum(x, y, ga, gb), ga * x + gb * y)
    leaves = [t for t in (x, y, ga, gb) if isinstance(t, torch.Tensor)]
    assert torch.autograd.gradcheck(lambda *t: gain_sum(*_place(t, a, b)), tuple(leaves))


def _place(t, a, b):
    t = list(t)
    x, y = t.pop(0), t.pop(0)
    return x, y, t.pop(0) if a == "t" else a, t.pop(0) if b == "t" else b


def test_a_missing_triton_on_cuda_is_said_once_and_kept(monkeypatch):
    import builtins

    from blockbench.blocks import shaped

    monkeypatch.setattr(shaped, "_BACKEND", {})
    real_import = builtins.__import__

    def no_triton(name, *args, **kwargs):
        if name == "triton" or name.startswith("triton."):
            raise ImportError("No module named 'triton'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_triton)
    monkeypatch.delitem(sys.modules, "blockbench.blocks.kernels", raising=False)
    with pytest.warns(UserWarning, match="Triton unavailable"):
        assert shaped._triton_kernels() is None
    assert "triton" in shaped.triton_error()
    assert shaped._triton_kernels() is None  # the second time: no second warning, the reason kept
