"""The modern block options and presets: positions owned by the variant, SwiGLU / ReLU², biases, QK-norm, the
output and peri norm placements, the logit soft-cap, and the bad inputs that refuse them.

The presets' agreement with `transformers` is tests/blocks/test_modern_reference.py; this file holds what no reference
layer covers (sas_p_pp, peri_ln, counts, the model around the blocks, the suite checks)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from blockbench import BlockSpec, ModelConfig, build_model, get_variant, register_block
from blockbench.blocks.rope import Rotary, apply_rope, rope_tables
from blockbench.blocks.spec import SpecError
from blockbench.blocks.zoo import MODERN_PRESETS
from blockbench.measure.flops import count_flops
from blockbench.measure.params import count_params
from blockbench.suite import SuiteError, parse_suite

CONFIG = ModelConfig(vocab_size=257, seq_len=32, n_layers=2, d_model=64, n_heads=4)


def test_presets_are_listed_with_their_position_scheme():
    names = [v.name for v in MODERN_PRESETS]
    assert names == ["transformer_pp", "transformer_pp_qknorm", "olmo2", "peri_ln", "sas_p_pp"]
    assert {get_variant(n).positions for n in names} == {"rope"}
    assert get_variant("pre_ln").positions == "learned"


@pytest.mark.parametrize("name", ["transformer_pp", "sas_p_pp", "olmo2"])
def test_a_rope_variant_has_no_position_embedding(name):
    model = build_model(get_variant(name), CONFIG)
    counts = count_params(model)
    assert model.pos_emb is None
    assert counts["params_embedding"] == CONFIG.vocab_size * CONFIG.d_model
    learned = build_model(get_variant(name), CONFIG, get_variant(name).spec.replace(positions="learned"))
    assert count_params(learned)["params_total"] - counts["params_total"] == CONFIG.seq_len * CONFIG.d_model
    none = build_model(get_variant(name), CONFIG, get_variant(name).spec.replace(positions="none"))
    assert none.pos_emb is None and not any(hasattr(b.attn, "rotary") and b.attn.rotary for b in none.blocks)


def test_transformer_pp_counts_exactly():
    """Per block: 4d^2 attention + 3 d h SwiGLU (h = 384 at d = 128... here d = 64: int(8/3 * 64) = 170 -> 192)
    + 2d norm scales; the FLOP counters agree with the analytic formula (RoPE, norms: elementwise, 0)."""
    d, hidden = CONFIG.d_model, 192
    assert get_variant("transformer_pp").spec.mlp_hidden(d) == hidden
    model = build_model(get_variant("transformer_pp"), CONFIG)
    counts = count_params(model)
    assert counts["params_per_block"] == [4 * d * d + 3 * d * hidden + 2 * d] * CONFIG.n_layers
    flops = count_flops(model)
    c = flops["counters"]
    assert c["flopcounter_fwd"] == c["fvcore_fwd_x2"] == c["analytic_fwd"]


@pytest.mark.parametrize("name", [v.name for v in MODERN_PRESETS])
def test_flop_counters_agree_for_every_modern_preset(name):
    c = count_flops(build_model(get_variant(name), CONFIG))["counters"]
    assert c["flopcounter_fwd"] == c["fvcore_fwd_x2"] == c["analytic_fwd"], name
    assert c["flopcounter_train"] == c["analytic_train"], name


def test_swiglu_width_rule_is_llamas():
    """LLaMA-7B: d = 4096, multiple_of 256 -> 11008; blockbench's default multiple of 64 at d = 128 -> 384."""
    assert BlockSpec(activation="swiglu", mlp_multiple_of=256).mlp_hidden(4096) == 11008
    assert BlockSpec(activation="swiglu").mlp_hidden(128) == 384
    assert BlockSpec(activation="swiglu").mlp_hidden(768) == 2048
    assert "384" in BlockSpec(activation="swiglu").mlp_rule(128)
    assert BlockSpec(activation="relu2").mlp_hidden(128) == 512


def test_relu2_and_swiglu_mlps_compute_their_formulas():
    torch.manual_seed(0)
    x = torch.randn(2, 8, CONFIG.d_model)
    relu2 = get_variant("pre_ln").spec.replace(activation="relu2")
    mlp = build_model(get_variant("pre_ln"), CONFIG, relu2).blocks[0].mlp
    torch.testing.assert_close(mlp(x), F.relu(x @ mlp.up.weight.T).square() @ mlp.down.weight.T)
    mlp = build_model(get_variant("transformer_pp"), CONFIG).blocks[0].mlp
    gate, up = mlp.up.weight.chunk(2)
    torch.testing.assert_close(mlp(x), (F.silu(x @ gate.T) * (x @ up.T)) @ mlp.down.weight.T)


def test_bias_puts_one_on_every_linear_map():
    d = CONFIG.d_model
    plain = build_model(get_variant("pre_ln"), CONFIG)
    biased = build_model(get_variant("pre_ln"), CONFIG, get_variant("pre_ln").spec.replace(bias=True))
    extra = count_params(biased)["params_per_block"][0] - count_params(plain)["params_per_block"][0]
    assert extra == 3 * d + d + 4 * d + d  # Q, K, V; W^P; the MLP's up and down maps
    block = biased.blocks[0]
    biases = (block.attn.qkv.bias, block.attn.proj.bias, block.mlp.up.bias, block.mlp.down.bias)
    assert all(float(b.detach().abs().sum()) == 0 for b in biases)


def test_fast_rotation_is_the_rope_formula():
    torch.manual_seed(0)
    rotary = Rotary(16, 32)
    x = torch.randn(2, 4, 32, 16)
    cos, sin = rope_tables(32, 16)
    torch.testing.assert_close(rotary.rotate(x), apply_rope(x, cos, sin), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(rotary.rotate(x[..., :20, :]), apply_rope(x[..., :20, :], cos[:20], sin[:20]),
                               atol=1e-6, rtol=1e-6)
    # position 0 is not rotated, and a rotation keeps each pair's norm
    torch.testing.assert_close(rotary.rotate(x)[..., 0, :], x[..., 0, :])
    torch.testing.assert_close(rotary.rotate(x).norm(dim=-1), x.norm(dim=-1))


def test_sas_p_pp_attention_is_the_identity_at_init_with_rope():
    """W^Q = 0: the rotated queries are 0 too, A is the causal average C, and alpha I + beta A - gamma C = I."""
    model = build_model(get_variant("sas_p_pp"), CONFIG)
    torch.manual_seed(1)
    h = torch.randn(2, CONFIG.seq_len, CONFIG.d_model)
    for block in model.blocks:
        attn = block.attn
        assert attn.rotary is not None
        eye = torch.eye(CONFIG.seq_len).expand(2, CONFIG.n_heads, -1, -1)
        torch.testing.assert_close(attn.attention_matrix(h), eye, atol=1e-6, rtol=0)
    torch.testing.assert_close(model.blocks[1].attn(h), h, atol=1e-6, rtol=0)


def test_qk_norm_conventions_normalise_what_they_say():
    torch.manual_seed(0)
    x = torch.randn(2, 8, CONFIG.d_model)
    head = build_model(get_variant("transformer_pp_qknorm"), CONFIG).blocks[0].attn
    whole = build_model(get_variant("olmo2"), CONFIG).blocks[0].attn
    assert head.q_norm.scale.shape == (CONFIG.d_model // CONFIG.n_heads,)
    assert whole.q_norm.scale.shape == (CONFIG.d_model,)
    for attn in (head, whole):
        attn.rotary = None  # look at the norm alone
    q, k = head.heads_qk(*head.qkv(x).split(CONFIG.d_model, dim=-1)[:2])
    torch.testing.assert_close(q.pow(2).mean(-1), torch.ones_like(q[..., 0]), atol=5e-3, rtol=0)  # eps
    q, k = whole.heads_qk(*whole.qkv(x).split(CONFIG.d_model, dim=-1)[:2])
    per_token = q.transpose(1, 2).reshape(2, 8, -1).pow(2).mean(-1)
    torch.testing.assert_close(per_token, torch.ones_like(per_token), atol=5e-3, rtol=0)
    assert not torch.allclose(q.pow(2).mean(-1), torch.ones_like(q[..., 0]), atol=1e-2)  # heads differ in scale


def test_peri_ln_is_input_and_output_norm_on_each_sublayer():
    model = build_model(get_variant("peri_ln"), CONFIG)
    block = model.blocks[0]
    with torch.no_grad():
        for norm in (block.norm1, block.norm2, block.attn_out_norm, block.mlp_out_norm):
            norm.scale.uniform_(0.5, 1.5)
    torch.manual_seed(2)
    x = torch.randn(2, CONFIG.seq_len, CONFIG.d_model)
    h = x + block.attn_out_norm(block.attn(block.norm1(x)))
    expected = h + block.mlp_out_norm(block.mlp(block.norm2(h)))
    torch.testing.assert_close(block(x), expected)
    olmo = build_model(get_variant("olmo2"), CONFIG).blocks[0]
    assert olmo.norm1 is None and olmo.norm2 is None and olmo.attn_out_norm is not None


def test_logit_softcap_bounds_the_logits():
    spec = get_variant("transformer_pp").spec.replace(logit_softcap=2.0)
    capped = build_model(get_variant("transformer_pp"), CONFIG, spec)
    plain = build_model(get_variant("transformer_pp"), CONFIG)
    capped.load_state_dict(plain.state_dict())
    idx = torch.randint(0, CONFIG.vocab_size, (2, CONFIG.seq_len))
    with torch.no_grad():
        raw, logits = plain(idx), capped(idx)
    torch.testing.assert_close(logits, 2.0 * torch.tanh(raw / 2.0))
    assert float(logits.abs().max()) < 2.0
    loss = capped(idx, idx)
    loss.backward()
    assert torch.isfinite(loss)


def test_a_user_factory_says_its_position_scheme():
    def rope_block(config: ModelConfig, index: int) -> torch.nn.Module:
        return torch.nn.Identity()

    rope_block.positions = "rope"
    variant = register_block("test_rope_factory", rope_block, replace=True)
    assert variant.positions == "rope" and build_model(variant, CONFIG).pos_emb is None
    with pytest.raises(SpecError, match="positions='alibi' is not one of learned, rope, none"):
        register_block("test_bad_factory", rope_block, positions="alibi", replace=True)
    with pytest.raises(SpecError, match="states its positions in its own field"):
        register_block("test_spec_block", BlockSpec(), positions="rope", replace=True)


SUITE = {
    "suite": {"name": "t", "version": "1", "baseline": "pre_ln", "seeds": [0]},
    "model": {"n_layers": 2, "d_model": 12, "n_heads": 4, "seq_len": 16},
    "data": {"corpus": "sympy", "tokenizer": "bytes"},
    "budget": {"steps": 30},
    "eval": {"every_tokens": 1000, "windows": 2},
}


@pytest.mark.parametrize("spec, message", [
    ({"positions": "rope"}, r"variants.pre_ln.spec: positions='rope' needs an even head dimension; d_model / "
                            r"n_heads = 12 / 4 = 3"),
    ({"positions": "alibi"}, "positions='alibi' is not one of learned, rope, none"),
    ({"norm_position": "middle"}, "norm_position='middle' is not one of pre, post, output, peri"),
    ({"activation": "swish"}, "activation='swish' is not one of relu, gelu, geglu, swiglu, relu2"),
    ({"logit_softcap": 0}, "logit_softcap must be a positive number"),
    ({"logit_softcap": -3.0}, "logit_softcap must be a positive number"),
    ({"qk_norm": "layer"}, "qk_norm='layer' is not one of none, head, whole"),
    ({"norm_position": "output", "norm": "none"}, "norm_position='output' needs a norm"),
    ({"first_block": {"positions": "rope"}}, "positions is a model-level field"),
])
def test_bad_modern_fields_are_refused_at_parse_time(spec, message):
    data = {**SUITE, "variants": {"pre_ln": {"spec": spec}}}
    with pytest.raises(SuiteError, match=message):
        parse_suite(data, "t.toml")


def test_parallel_layout_refuses_output_norms():
    with pytest.raises(SpecError, match="norm_position='peri' is only defined for the sequential layout"):
        get_variant("sas_p").spec.replace(norm_position="peri")


def test_value_residual_plugin_trains(tmp_path):
    """examples/value_residual.py: RoPE through the public helper (no position embedding), later layers' values
    mixed with the first layer's, and the harness trains it: the loss falls and the gains move."""
    from blockbench.blocks import load_block_path
    from blockbench.data import load_data
    from blockbench.suite import load_suite
    from blockbench.train import Trainer
    from tests.tiny_suite import TINY_SUITE, write_suite

    variant = load_block_path("examples.value_residual:value_residual")
    assert variant.positions == "rope"
    text = TINY_SUITE.replace("n_layers = 1", "n_layers = 3") + "[variants.value_residual]\n"
    suite = load_suite(str(write_suite(tmp_path, text)))
    trainer = Trainer(suite, "value_residual", 0, load_data(suite.data), None, measure_static=False)
    model = trainer.model
    assert model.pos_emb is None
    first, later = model.blocks[0], model.blocks[2]
    assert later.first is first.first and not hasattr(first, "value_gains")
    optimizer, scheduler = trainer.new_optimizer()
    batch = next(trainer.batches())
    losses = [float(trainer.train_step(optimizer, scheduler, *batch)) for _ in range(6)]
    assert losses[-1] < losses[0] - 0.3
    assert not torch.equal(later.value_gains.detach(), torch.tensor([0.5, 0.5]))
