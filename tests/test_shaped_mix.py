"""The fused shaped-attention mix (blocks/shaped.py) against the same formula written with plain tensor ops."""

import pytest
import torch

from blockbench.blocks.shaped import ShapedMix, shaped_mix


def causal_mean(v):
    return v.cumsum(-2) / torch.arange(1, v.shape[-2] + 1, dtype=v.dtype).unsqueeze(-1)


def plain(s, v, a, b, g, scale, causal=True):
    out = b.view(-1, 1, 1) * s + a.view(-1, 1, 1) * v
    if g is not None:
        out = out - g.view(-1, 1, 1) * (causal_mean(v) if causal else v.mean(-2, keepdim=True))
    return out if scale is None else scale * out


def inputs(dtype=torch.float64, heads=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    # (B, T, H, D) storage seen as (B, H, T, D), the layout the attention hands over
    s = torch.randn(2, 5, heads, 4, generator=gen, dtype=dtype).transpose(1, 2).requires_grad_()
    v = torch.randn(2, 5, heads, 4, generator=gen, dtype=dtype).transpose(1, 2).requires_grad_()
    a, b, g = (torch.rand(heads, generator=gen, dtype=dtype).add(0.5).requires_grad_() for _ in range(3))
    return s, v, a, b, g


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("centred", [True, False])
def test_gradcheck(centred, causal):
    s, v, a, b, g = inputs()
    assert torch.autograd.gradcheck(ShapedMix.apply, (s, v, a, b, g if centred else None, causal))


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("centred", [True, False])
@pytest.mark.parametrize("with_scale", [True, False])
def test_matches_plain_ops(centred, with_scale, causal):
    s, v, a, b, g = inputs(torch.float32)
    g = g if centred else None
    scale = torch.tensor(0.7, requires_grad=True) if with_scale else None
    leaves = [t for t in (s, v, a, b, g, scale) if t is not None]
    upstream = torch.randn(2, 3, 5, 4)
    got = shaped_mix(s, v, a, b, g, scale, causal=causal)
    want = plain(s, v, a, b, g, scale, causal)
    torch.testing.assert_close(got, want)
    grads_got = torch.autograd.grad(got, leaves, upstream)
    grads_want = torch.autograd.grad(want, leaves, upstream)
    for x, y in zip(grads_got, grads_want):
        torch.testing.assert_close(x, y)


def test_fixed_gains_get_no_gradient():
    s, v, a, b, g = inputs(torch.float32)
    a, b, g = a.detach(), b.detach(), g.detach()
    out = shaped_mix(s, v, a, b, g)
    out.sum().backward()
    assert s.grad is not None and v.grad is not None and a.grad is None


@pytest.mark.parametrize("causal", [True, False])
def test_bf16_activations_follow_type_promotion(causal):
    s, v, a, b, g = inputs(torch.float32)
    s16, v16 = s.detach().bfloat16(), v.detach().bfloat16()
    got = shaped_mix(s16, v16, a, b, g, causal=causal)
    assert got.dtype == torch.float32  # fp32 gains times bf16 activations, as the plain formula gives
    torch.testing.assert_close(got, plain(s16.float(), v16.float(), a, b, g, None, causal), rtol=1e-2, atol=1e-2)


def test_bf16_gradients_come_back_in_bf16():
    """Under autocast S and V are bf16 and so are the gains' products; the mix accumulates its running sum and
    mean in float32 and hands each gradient back in its input's dtype."""
    for causal in (True, False):
        s, v, a, b, g = inputs(torch.float32)
        s16, v16 = s.detach().bfloat16().requires_grad_(), v.detach().bfloat16().requires_grad_()
        a16, b16, g16 = (t.detach().bfloat16().requires_grad_() for t in (a, b, g))
        out = ShapedMix.apply(s16, v16, a16, b16, g16, causal)
        assert out.dtype == torch.bfloat16
        out.float().sum().backward()
        assert all(t.grad.dtype == torch.bfloat16 for t in (s16, v16, a16, b16, g16))
