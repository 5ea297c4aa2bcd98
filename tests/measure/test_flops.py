"""FLOP counting: FlopCounterMode, fvcore and the analytic formula must agree."""

import pytest

from blockbench.blocks import get_variant, variants
from blockbench.blocks.zoo import AUTHORS_CODE
from blockbench.measure.flops import count_flops
from blockbench.model import ModelConfig, build_model

CONFIG = ModelConfig(vocab_size=97, seq_len=32, n_layers=2, d_model=48, n_heads=4)


@pytest.mark.parametrize("name", [v.name for v in variants()])
def test_counters_agree_for_every_preset(name):
    counters = count_flops(build_model(get_variant(name), CONFIG))["counters"]
    assert counters["flopcounter_fwd"] == counters["fvcore_fwd_x2"]  # exactly: 2 FLOPs per fvcore MAC
    assert counters["fvcore_unsupported"] == []
    assert abs(counters["flopcounter_fwd"] - counters["analytic_fwd"]) <= 0.01 * counters["analytic_fwd"]
    assert counters["flopcounter_train"] == 3 * counters["flopcounter_fwd"]


@pytest.mark.parametrize("name", [v.name for v in variants() if v.spec is not None])
@pytest.mark.parametrize("option", sorted(AUTHORS_CODE))
def test_counters_agree_with_the_authors_code_options(name, option):
    """A Q/K bias, a final LayerNorm and the eps placement are elementwise work: no counter counts them, so every
    preset's FLOPs stay what they are without the option and the three counters still agree exactly."""
    spec = get_variant(name).spec.replace(**{option: AUTHORS_CODE[option]})
    counters = count_flops(build_model(get_variant(name), CONFIG, spec))["counters"]
    plain = count_flops(build_model(get_variant(name), CONFIG), use_fvcore=False)["counters"]
    assert counters["flopcounter_fwd"] == counters["fvcore_fwd_x2"] == plain["flopcounter_fwd"]
    assert counters["fvcore_unsupported"] == []
    assert counters["analytic_fwd"] == plain["analytic_fwd"]
    assert counters["flopcounter_train"] == 3 * counters["flopcounter_fwd"]


def test_analytic_formula_by_hand():
    c, r, d = CONFIG, 4, CONFIG.d_model
    attention = 4 * c.n_layers * c.seq_len * d
    head = 2 * c.vocab_size * d
    pre = count_flops(build_model(get_variant("pre_ln"), CONFIG), use_fvcore=False)["flops_fwd_per_token"]
    sas = count_flops(build_model(get_variant("sas"), CONFIG), use_fvcore=False)["flops_fwd_per_token"]
    assert pre == 2 * c.n_layers * (4 + 2 * r) * d * d + attention + head
    assert sas == 2 * (c.n_layers * (2 + 2 * r) * d * d + d * d) + attention + head
