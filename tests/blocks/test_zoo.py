"""Exact properties of the block zoo, from the spec's §8 (parameter counts, identity at init, shaped attention)."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from blockbench.blocks import Block, BlockSpec, Gain, SpecError, get_variant, variants
from blockbench.blocks.attention import Attention
from blockbench.measure.params import count_params
from blockbench.model import ModelConfig, build_model

FULL_V_P = ("pre_ln", "post_ln", "parallel", "naive_skipless", "vskipinit", "vskipinit_eq4")
SIMPLIFIED = ("sas", "sas_p", "sas_p_nonorm")
CONFIGS = [(2, 64, 4, 4.0), (3, 96, 6, 2.0), (5, 48, 3, 4.0)]  # (L, d, H, r)


@pytest.mark.parametrize("layers,width,heads,ratio", CONFIGS)
@pytest.mark.parametrize("name", FULL_V_P + SIMPLIFIED)
def test_block_matrix_params_follow_spec_formula(name, layers, width, heads, ratio):
    variant = get_variant(name)
    config = ModelConfig(vocab_size=101, seq_len=16, n_layers=layers, d_model=width, n_heads=heads)
    counts = count_params(build_model(variant, config, variant.spec.replace(mlp_ratio=ratio)))
    d2 = width * width
    expected = layers * (4 + 2 * ratio) * d2 if name in FULL_V_P else layers * (2 + 2 * ratio) * d2 + d2
    assert counts["params_block_matrices"] == expected
    assert counts["params_embedding"] == 101 * width + 16 * width


def test_simplified_blocks_remove_2L_minus_1_d_squared():
    config = ModelConfig(vocab_size=50, seq_len=8, n_layers=6, d_model=64, n_heads=4)
    pre = count_params(build_model(get_variant("pre_ln"), config))["params_block_matrices"]
    sas = count_params(build_model(get_variant("sas"), config))["params_block_matrices"]
    assert pre - sas == (2 * 6 - 1) * 64 * 64


def test_scalar_counts_of_sas_and_sas_p_blocks():
    heads, width = 4, 32
    for name, scalars in (("sas", 3 * heads + 3), ("sas_p", 3 * heads + 2)):
        spec = get_variant(name).spec
        block = Block(width, heads, spec.for_layer(1))
        n_scalar = sum(p.numel() for p in block.parameters() if p.ndim < 2) - (2 if name == "sas" else 1) * width
        assert n_scalar == scalars
        first = Block(width, heads, spec.for_layer(0))
        extra = sum(p.numel() for p in first.parameters()) - sum(p.numel() for p in block.parameters())
        assert extra == width * width + 2  # W^V_1: dW plus alpha_V, beta_V


def explicit_mix(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """(alpha I + beta A - gamma C) V with every matrix materialised."""
    batch, seq, dim = x.shape
    q, k = attn.qkv(x).split(dim, dim=-1)[:2]
    v = x if attn.value is None else attn.value(x)
    if attn.qkv.out_features == 3 * dim:
        v = attn.qkv(x).split(dim, dim=-1)[2]
    out = attn.attention_matrix(x) @ attn.split_heads(v)
    out = out.transpose(1, 2).reshape(batch, seq, dim)
    return out if attn.proj is None else attn.proj(out)


@pytest.mark.parametrize("name", ["pre_ln", "vskipinit", "vskipinit_eq4", "sas"])
def test_fast_attention_matches_explicit_matrix(name):
    torch.manual_seed(0)
    spec = get_variant(name).spec.replace(query_init_std=0.3)
    attn = Attention(32, 4, spec.for_layer(1))
    with torch.no_grad():
        for gain in ("alpha", "beta", "gamma"):
            if hasattr(attn, gain):
                getattr(attn, gain).uniform_(-1.5, 1.5)
    x = torch.randn(3, 17, 32)
    torch.testing.assert_close(attn(x), explicit_mix(attn, x), atol=1e-5, rtol=0)


def test_shaped_matrix_is_identity_at_init_and_sas_attention_returns_normalised_input():
    torch.manual_seed(0)
    spec = get_variant("sas").spec
    x = torch.randn(2, 12, 32)
    for layer in (0, 1):
        block = Block(32, 4, spec.for_layer(layer))
        eye = torch.eye(12).expand(2, 4, 12, 12)
        torch.testing.assert_close(block.attn.attention_matrix(block.norm1(x)), eye, atol=1e-6, rtol=0)
        normalised = block.norm1(x)
        torch.testing.assert_close(block.attn(normalised), normalised, atol=1e-6, rtol=0)


def test_shaped_rows_sum_to_alpha_plus_beta_minus_gamma():
    torch.manual_seed(1)
    attn = Attention(24, 3, get_variant("sas").spec.replace(query_init_std=0.5))
    with torch.no_grad():
        attn.alpha.copy_(torch.tensor([0.3, 1.2, -0.4]))
        attn.beta.copy_(torch.tensor([0.9, 0.1, 2.0]))
        attn.gamma.copy_(torch.tensor([0.5, 1.7, 0.2]))
    rows = attn.attention_matrix(torch.randn(2, 9, 24)).sum(-1)
    expected = (attn.alpha + attn.beta - attn.gamma).view(1, 3, 1).expand_as(rows)
    torch.testing.assert_close(rows, expected, atol=1e-6, rtol=0)


def test_centring_matrix_is_softmax_of_zero_logits_under_causal_mask():
    seq = 7
    attn = Attention(8, 1, get_variant("sas").spec)  # W^Q = 0, so A = C; set alpha=0, beta=1, gamma=0 to read A
    with torch.no_grad():
        attn.alpha.zero_()
        attn.gamma.zero_()
    mask = torch.ones(seq, seq, dtype=torch.bool).tril()
    softmax_zero = torch.zeros(seq, seq).masked_fill(~mask, float("-inf")).softmax(-1)
    explicit_c = torch.stack([torch.cat([torch.full((i + 1,), 1 / (i + 1)), torch.zeros(seq - i - 1)])
                              for i in range(seq)])
    torch.testing.assert_close(softmax_zero, explicit_c)
    torch.testing.assert_close(attn.attention_matrix(torch.randn(1, seq, 8))[0, 0], explicit_c)


def test_sas_equals_sas_p_at_init_up_to_norm_eps():
    torch.manual_seed(0)
    sas = Block(32, 4, get_variant("sas").spec.for_layer(1))
    sas_p = Block(32, 4, get_variant("sas_p").spec.for_layer(1))
    sas_p.load_state_dict(sas.state_dict(), strict=False)  # same MLP and QK weights
    x = torch.randn(2, 10, 32) * 3
    torch.testing.assert_close(sas(x), sas_p(x), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(sas(x), x)  # the comparison is not vacuous


class ShapeRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.shapes.append((str(func), tuple(t.shape)))
        return out


@pytest.mark.parametrize("name", ["sas", "sas_p", "vskipinit", "vskipinit_eq4"])
def test_shaped_attention_never_materialises_t_by_t(name):
    seq = 2048
    attn = Attention(32, 2, get_variant(name).spec.for_layer(1))
    x = torch.randn(1, seq, 32, requires_grad=True)
    with ShapeRecorder() as recorder:
        attn(x).sum().backward()
    biggest = max(recorder.shapes, key=lambda s: torch.Size(s[1]).numel())
    assert torch.Size(biggest[1]).numel() < seq * seq // 16, biggest
    assert len(recorder.shapes) > 10


@pytest.mark.parametrize("variant", [v.name for v in variants()])
def test_model_is_causal_and_every_parameter_gets_a_gradient(variant):
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=64, seq_len=12, n_layers=3, d_model=32, n_heads=4)
    model = build_model(get_variant(variant), config)
    idx = torch.randint(0, 64, (2, 12))
    changed = idx.clone()
    changed[:, 6] = (changed[:, 6] + 1) % 64
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :6], b[:, :6], atol=0, rtol=0)
    assert not torch.allclose(a[:, 6:], b[:, 6:])
    model(idx, idx).backward()
    assert all(param.grad is not None for param in model.parameters())
    # Some gradients are exactly zero at init by construction (beta_V multiplies dW = 0; Eq. 4's beta = 0
    # blocks W^Q, W^K), so check after one SGD step that every parameter is trained.
    torch.optim.SGD(model.parameters(), lr=0.05).step()
    model.zero_grad()
    model(idx, idx).backward()
    for name, param in model.named_parameters():
        assert param.grad.abs().sum() > 0, name


def test_weight_decay_groups_exclude_gains_and_norms():
    model = build_model(get_variant("sas"), ModelConfig(vocab_size=50, seq_len=8, n_layers=2, d_model=16, n_heads=2))
    decay, no_decay = model.param_groups(0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.ndim >= 2 for p in decay["params"])
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    expected = {"blocks.0.beta_ff", "blocks.0.attn.alpha", "blocks.0.norm1.scale", "blocks.0.attn.value.alpha"}
    assert expected <= no_decay_names
    assert "tok_emb.weight" in {names[id(p)] for p in decay["params"]}


def test_ablations_are_spec_overrides():
    pre_identity = get_variant("pre_ln").spec.replace(value="identity", proj="identity")
    config = ModelConfig(vocab_size=50, seq_len=8, n_layers=2, d_model=16, n_heads=2)
    counts = count_params(build_model(get_variant("pre_ln"), config, pre_identity))
    assert counts["params_block_matrices"] == 2 * (2 + 8) * 16 * 16
    no_mlp_skip = get_variant("sas").spec.replace(alpha_ff=Gain(0.0))
    block = Block(16, 2, no_mlp_skip.for_layer(1))
    assert not hasattr(block, "alpha_ff") and block.fixed_gains["alpha_ff"] == 0.0
    assert get_variant("sas").spec.replace(beta_ff={"init": 0.2, "trainable": True}).beta_ff == Gain(0.2, True)


@pytest.mark.parametrize("overrides", [{"layout": "diagonal"}, {"mlp_ratio": 0}, {"nope": 1},
                                       {"layout": "parallel"}, {"first_block": {"bogus": 1}},
                                       {"beta_ff": "big"}])
def test_bad_specs_are_rejected(overrides):
    with pytest.raises(SpecError):
        BlockSpec().replace(**overrides)


def test_bad_model_configs_are_rejected():
    with pytest.raises(SpecError, match="divisible"):
        ModelConfig(d_model=30, n_heads=4)
    with pytest.raises(SpecError, match="positive"):
        ModelConfig(n_layers=0)
