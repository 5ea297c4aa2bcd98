"""The three options that make a preset the authors' code exactly (bobby-he/simplified_transformers):
qk_bias, final_norm=layer and norm_eps_placement=outside. Defaults must not move (see test_blocks / leaderboards)."""

import pytest
import torch
from torch import nn

from blockbench.blocks import BlockSpec, SpecError, get_variant
from blockbench.blocks.attention import Attention
from blockbench.blocks.norms import RMSNorm
from blockbench.blocks.zoo import AUTHORS_CODE, MODERN_PRESETS, PAPER_PRESETS, PRESETS
from blockbench.commands.show import describe_variant
from blockbench.measure.params import count_params
from blockbench.model import ModelConfig, build_model
from blockbench.suite import SuiteError, load_suite

D, H = 64, 4
CONFIG = ModelConfig(vocab_size=101, seq_len=16, n_layers=3, d_model=D, n_heads=H)


def authors(name: str) -> BlockSpec:
    return get_variant(name).spec.replace(**AUTHORS_CODE)


def test_per_block_parameter_counts_match_the_authors_trainable_parameters():
    """d=64, H=4, r=4, counted from their model_utils.py / config/model/*.yaml (requires_grad=True only):
    pre_ln (model=default): QK 2d^2 + 2d bias, W^V and W^P d^2 each (their zero biases are frozen), MLP 8d^2 (frozen
    biases), two RMSNorm scales 2d: 49,408 = 49,280 + 2d. sas (model=skipless): QK 2d^2 + 2d, MLP 8d^2, 2d norms,
    3H attention-matrix gains and the 4 block gains, of which alpha_SA is built trainable but unused (it never
    gets a gradient): 41,232 for them, 41,231 here; block 1 adds W^V_1's dW (d^2) and alpha_V, beta_V: 45,330 vs
    45,329. blockbench builds no frozen or unused parameter, so every count here is a trainable one."""
    pre = build_model(get_variant("pre_ln"), CONFIG, authors("pre_ln"))
    sas = build_model(get_variant("sas"), CONFIG, authors("sas"))
    for model in (pre, sas):
        assert all(p.requires_grad for p in model.parameters())
    assert count_params(pre)["params_per_block"] == [49_408] * 3
    assert count_params(sas)["params_per_block"] == [45_329, 41_231, 41_231]
    # The defaults (no QK bias) are 2d = 128 per block fewer, and end in a bias-free RMSNorm.
    assert count_params(build_model(get_variant("pre_ln"), CONFIG))["params_per_block"] == [49_280] * 3
    assert count_params(build_model(get_variant("sas"), CONFIG))["params_per_block"] == [45_201, 41_103, 41_103]
    # Whole model: tied token embedding, learned positions, blocks, final LayerNorm (weight and bias, 2d).
    embedding = 101 * D + 16 * D
    assert count_params(pre)["params_total"] == embedding + 3 * 49_408 + 2 * D
    assert count_params(sas)["params_total"] == embedding + 45_329 + 2 * 41_231 + 2 * D
    assert count_params(build_model(get_variant("sas"), CONFIG))["params_total"] == embedding + 45_201 + 2 * 41_103 + D


def test_show_counts_the_options_and_the_flop_counters_still_agree():
    """What `blockbench show sas --set qk_bias=true --set final_norm=layer --set norm_eps_placement=outside` prints.
    Bias adds and norms are elementwise work, which none of the three FLOP counters counts."""
    info = describe_variant("sas", CONFIG, dict(AUTHORS_CODE), use_fvcore=True)
    default = describe_variant("sas", CONFIG, {}, use_fvcore=False)
    assert info["params_per_block"] == [45_329, 41_231, 41_231]
    assert info["block_spec"]["qk_bias"] is True and info["block_spec"]["final_norm"] == "layer"
    counters = info["counters"]
    assert counters["flopcounter_fwd"] == counters["fvcore_fwd_x2"] == counters["analytic_fwd"]
    assert info["flops_fwd_per_token"] == default["flops_fwd_per_token"]


def test_qk_bias_is_zero_at_init_trainable_and_never_decayed():
    model = build_model(get_variant("pre_ln"), CONFIG, authors("pre_ln"))
    decay, no_decay = model.param_groups(0.1)
    no_decay_ids = {id(p) for p in no_decay["params"]}
    for block in model.blocks:
        bias = block.attn.qk_bias
        assert bias.shape == (2 * D,) and bias.requires_grad and torch.equal(bias, torch.zeros(2 * D))
        assert id(bias) in no_decay_ids
    assert all(p.ndim >= 2 for p in decay["params"])
    assert build_model(get_variant("pre_ln"), CONFIG).blocks[0].attn.qk_bias is None


@pytest.mark.parametrize("name", ["pre_ln", "sas"])
def test_key_bias_is_inert_and_query_bias_trains(name):
    """Softmax ignores a shift shared by one query's logits, and q.(k_j + b_k) shifts them all by q.b_k: the key
    half gets a zero gradient (up to rounding) and changing it changes nothing; the query half does both."""
    torch.manual_seed(0)
    attn = Attention(D, H, authors(name).for_layer(1)).double()
    with torch.no_grad():  # away from init (SAS has W^Q = 0), so that every term is generic
        for p in attn.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(2, 9, D, dtype=torch.float64)
    out = attn(x)
    out.pow(2).sum().backward()
    q_grad, k_grad = attn.qk_bias.grad.split(D)
    assert q_grad.abs().max() > 1e-2
    assert k_grad.abs().max() < 1e-10 * q_grad.abs().max()
    with torch.no_grad():
        attn.qk_bias[D:].add_(torch.randn(D, dtype=torch.float64))
        torch.testing.assert_close(attn(x), out, atol=1e-12, rtol=0)
        attn.qk_bias[:D].add_(torch.randn(D, dtype=torch.float64))
        assert (attn(x) - out).abs().max() > 1e-3


def test_eps_placement_formula():
    x = torch.tensor([[0.01, -0.02, 0.03, 0.0]], dtype=torch.float64)
    mean_sq = (0.01**2 + 0.02**2 + 0.03**2) / 4  # 3.5e-4, rms ~0.0187
    inside, outside = RMSNorm(4, eps=1e-3).double(), RMSNorm(4, eps=1e-3, eps_placement="outside").double()
    torch.testing.assert_close(inside(x), x / (mean_sq + 1e-3) ** 0.5, atol=1e-15, rtol=0)
    torch.testing.assert_close(outside(x), x / (mean_sq**0.5 + 1e-3), atol=1e-15, rtol=0)
    assert (inside(x) - outside(x)).abs().max() > 0.1  # a small input is where the two differ
    big = 100 * x
    torch.testing.assert_close(inside(big), outside(big), atol=1e-3, rtol=0)


def test_eps_placement_reaches_every_rms_norm_and_bf16_is_computed_in_float32():
    model = build_model(get_variant("sas"), CONFIG, get_variant("sas").spec.replace(norm_eps_placement="outside"))
    norms = [m for m in model.modules() if isinstance(m, RMSNorm)]
    assert len(norms) == 2 * 3 + 1 and all(m.eps_placement == "outside" for m in norms)
    norm = RMSNorm(8, eps_placement="outside")
    x = torch.randn(3, 8)
    torch.testing.assert_close(norm(x.bfloat16()).float(), norm(x), atol=2e-2, rtol=2e-2)


def test_final_layer_norm_has_a_trained_undecayed_bias():
    model = build_model(get_variant("sas"), CONFIG, get_variant("sas").spec.replace(final_norm="layer"))
    final = model.final_norm
    assert isinstance(final, nn.LayerNorm) and final.bias.shape == (D,) and final.bias.requires_grad
    assert final.eps == 1e-5  # HF GPT-2's layer_norm_epsilon
    _, no_decay = model.param_groups(0.1)
    assert {id(final.weight), id(final.bias)} <= {id(p) for p in no_decay["params"]}
    idx = torch.randint(0, 101, (2, 16), generator=torch.Generator().manual_seed(0))
    model(idx, idx).backward()
    assert final.bias.grad.abs().sum() > 0
    # auto keeps what blockbench always built: the blocks' norm, RMSNorm when the blocks have none.
    assert isinstance(build_model(get_variant("sas"), CONFIG).final_norm, RMSNorm)
    assert isinstance(build_model(get_variant("sas_p_nonorm"), CONFIG).final_norm, RMSNorm)
    layer_blocks = get_variant("pre_ln").spec.replace(norm="layer")
    assert isinstance(build_model(get_variant("pre_ln"), CONFIG, layer_blocks).final_norm, nn.LayerNorm)
    rms_final = layer_blocks.replace(final_norm="rms")
    assert isinstance(build_model(get_variant("pre_ln"), CONFIG, rms_final).final_norm, RMSNorm)


@pytest.mark.parametrize("overrides", [{"qk_bias": "yes"}, {"qk_bias": 1}, {"final_norm": "batch"},
                                       {"final_norm": "none"}, {"norm_eps_placement": "before"},
                                       {"first_block": {"final_norm": "layer"}}])
def test_bad_options_are_rejected(overrides):
    with pytest.raises(SpecError):
        BlockSpec().replace(**overrides)


def test_options_are_suite_overrides(tmp_path):
    path = tmp_path / "authors.toml"
    path.write_text('[variants.sas]\nlr = 0.003\nspec = { qk_bias = true, final_norm = "layer", '
                    'norm_eps_placement = "outside" }\n')
    suite = load_suite("paper-cpu").with_override_file(path)
    assert suite.variants["sas"].spec == AUTHORS_CODE
    assert suite.variants["pre_ln"].spec == {}
    path.write_text('[variants.sas]\nspec = { final_norm = "group" }\n')
    with pytest.raises(SuiteError, match="final_norm='group'"):
        load_suite("paper-cpu").with_override_file(path)


def test_every_preset_names_the_remaining_differences_from_the_authors_code():
    for variant in PAPER_PRESETS:
        for option in ("qk_bias=true", "final_norm=layer", "norm_eps_placement=outside"):
            assert option in variant.notes, (variant.name, option)
    # The old pre_ln note said "no biases" outright, which the authors' Q/K bias contradicts.
    assert "(r=4), no biases," not in get_variant("pre_ln").notes
    assert "LayerNorm" in get_variant("sas_p_nonorm").notes and "first_block" in get_variant("sas_p_nonorm").notes


def test_modern_presets_name_their_reference_not_the_authors_code():
    for variant in MODERN_PRESETS:
        assert "qk_bias=true" not in variant.notes
        assert "half-split" in variant.notes and "RoPE" in variant.notes, variant.name
    assert {v.name for v in MODERN_PRESETS} == {"transformer_pp", "transformer_pp_qknorm", "olmo2", "peri_ln",
                                                 "sas_p_pp"}
    assert [v.name for v in PRESETS] == [v.name for v in (*PAPER_PRESETS, *MODERN_PRESETS)]


def test_defaults_are_unchanged_in_the_recorded_spec():
    spec = BlockSpec().to_dict()
    assert (spec["qk_bias"], spec["final_norm"], spec["norm_eps_placement"]) == (False, "auto", "inside_sqrt")
