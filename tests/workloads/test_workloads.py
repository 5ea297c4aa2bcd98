"""Workloads: the causal_lm / masked_lm split, bidirectional shaped attention, the MLM objective, Crammed BERT."""

import dataclasses
import math

import pytest
import torch

from blockbench.blocks import get_variant
from blockbench.blocks.attention import Attention
from blockbench.blocks.spec import BlockSpec, Gain
from blockbench.blocks.zoo import CRAMMED_BERT, crammed_bert
from blockbench.data import load_data
from blockbench.measure.flops import count_flops
from blockbench.measure.params import count_params
from blockbench.model import ModelConfig, build_model
from blockbench.records import validate_record
from blockbench.suite import SuiteError, load_suite, parse_suite
from blockbench.train import Trainer, run_trial
from blockbench.workloads import get_workload, workload_of
from blockbench.workloads.masked_lm import IGNORE, mask_generator, mask_tokens
from tests.tiny_suite import TINY_SUITE, write_suite

TABLE1 = ("pre_ln", "parallel", "vskipinit", "sas", "sas_p", "sas_p_nonorm")
SHAPED = BlockSpec(attention="shaped", query_init_std=0.0, value="identity", proj="identity")
MLM_SUITE = TINY_SUITE.replace('seeds = [0]', 'seeds = [0]\nworkload = "masked_lm"')


def crammed_model(name, config, seed=0):
    return build_model(get_variant(name), config, get_variant(name).spec.replace(**crammed_bert(name)), seed=seed)


@pytest.fixture(scope="module")
def mlm(tmp_path_factory):
    suite = load_suite(str(write_suite(tmp_path_factory.mktemp("suite"), MLM_SUITE)))
    return suite, load_data(suite.data)


# ------------------------------------------------------------------ parameters and FLOPs at the crammed config

# Crammed BERT as the paper ran it (spec 4.4): L=16, d=768, H=12, T=128, WordPiece vocabulary 32,768 (here the
# model's vocabulary, [MASK] included), GEGLU MLP 768 -> 3072 -> (gate) 1536 -> 768, LayerNorm, the MLM head.
# The spec's check: 16 x (4d^2 + 768*3072 + 1536*768) + 32,768*768 = 119,537,664, plus the head's d x d dense
# (589,824) = 120,127,488 ~ 120M (Table 1); minus 31 d^2 = 18,284,544 for the SAS family = 101,842,944 ~ 101.8M.
# blockbench adds what that check leaves out: learned positions (128 x 768 = 98,304), LayerNorm weights and
# biases (2 x 768 each: two per sequential block, one per parallel block, the final norm, the head's norm), and
# the trainable scalars of the skipless blocks (3H per block for alpha_h, beta_h, gamma_h, + beta_SA, beta_FF,
# + alpha_FF when sequential; + alpha_V, beta_V of block 1's W^V).
CRAMMED = ModelConfig(vocab_size=32768, seq_len=128, n_layers=16, d_model=768, n_heads=12, workload="masked_lm")
CRAMMED_PARAMS = {
    "pre_ln": 120_278_016,        # 120,127,488 + 98,304 + 16 x 2 x 1,536 + 2 x 1,536
    "parallel": 120_253_440,      # pre_ln - 16 x 1,536 (one norm per block)
    "vskipinit": 120_278_640,     # pre_ln + 16 x (3 x 12 + 3) scalars
    "sas": 101_994_098,           # pre_ln - 31 d^2 + 16 x 39 + 2 scalars
    "sas_p": 101_969_506,         # sas - 16 x 1,536 (one norm) - 16 (alpha_FF fixed at 0)
    "sas_p_nonorm": 101_944_930,  # sas_p - 15 x 1,536 (only block 1 keeps its input norm)
}


@pytest.mark.parametrize("name", TABLE1)
def test_crammed_bert_parameter_counts_are_exact(name):
    with torch.device("meta"):  # counts need shapes only; no 120M-parameter initialisation
        counts = count_params(crammed_model(name, CRAMMED))
    assert counts["params_total"] == CRAMMED_PARAMS[name]
    d = CRAMMED.d_model
    skipless = name.startswith("sas")
    assert counts["params_block_matrices"] == 16 * 10 * d * d - (31 * d * d if skipless else 0)
    spec_check = 119_537_664 + d * d - (31 * d * d if skipless else 0)
    assert abs(counts["params_total"] - spec_check) / spec_check < 0.0015  # 120.1M / 101.8M, within 0.15%


def test_crammed_overrides_follow_the_spec():
    assert crammed_bert("pre_ln") == CRAMMED_BERT
    assert crammed_bert("sas")["beta_ff"] == {"init": 0.05, "trainable": True}
    nonorm = get_variant("sas_p_nonorm").spec.replace(**crammed_bert("sas_p_nonorm"))
    assert nonorm.norm == "none" and nonorm.for_layer(0).norm == "layer"
    assert nonorm.for_layer(0).value == "reparam_identity" and nonorm.norm_eps == 1e-12


FLOP_CONFIG = ModelConfig(vocab_size=97, seq_len=32, n_layers=2, d_model=48, n_heads=4, workload="masked_lm")


@pytest.mark.parametrize("name", TABLE1)
def test_encoder_flop_counters_agree(name):
    counters = count_flops(crammed_model(name, FLOP_CONFIG))["counters"]
    assert counters["flopcounter_fwd"] == counters["fvcore_fwd_x2"] == counters["analytic_fwd"]
    assert counters["fvcore_unsupported"] == []
    assert counters["flopcounter_train"] == 3 * counters["flopcounter_fwd"]


def test_encoder_analytic_formula_by_hand():
    c, d = FLOP_CONFIG, FLOP_CONFIG.d_model
    attention = 4 * c.n_layers * c.seq_len * d  # full square: no causal halving in either workload
    head = 2 * d * d + 2 * c.vocab_size * d     # the MLM head's dense, then the tied unembedding
    pre = count_flops(crammed_model("pre_ln", c), use_fvcore=False)["flops_fwd_per_token"]
    sas = count_flops(crammed_model("sas", c), use_fvcore=False)["flops_fwd_per_token"]
    assert pre == 2 * c.n_layers * 10 * d * d + attention + head  # QKV+P 4d^2, GEGLU 4d^2 + 2d^2
    assert sas == 2 * (c.n_layers * 8 * d * d + d * d) + attention + head
    causal = dataclasses.replace(c, workload="causal_lm")
    assert count_flops(crammed_model("pre_ln", causal), use_fvcore=False)["flops_fwd_per_token"] == pre - 2 * d * d


# ------------------------------------------------------------------ bidirectional shaped attention


def test_bidirectional_shaped_attention_is_the_identity_at_init():
    torch.manual_seed(0)
    attn = Attention(32, 4, SHAPED, causal=False)
    x = torch.randn(3, 10, 32)
    torch.testing.assert_close(attn(x), x)
    eye = torch.eye(10).expand(3, 4, 10, 10)
    torch.testing.assert_close(attn.attention_matrix(x), eye)


def perturbed(spec, causal, seed=1):
    torch.manual_seed(seed)
    attn = Attention(32, 4, spec, causal=causal)
    with torch.no_grad():
        attn.qkv.weight.normal_(std=0.3)  # W^Q != 0: A is no longer C
        for name in ("alpha", "beta", "gamma"):
            getattr(attn, name).uniform_(0.2, 1.5)
    return attn


def explicit(attn, x, key_mask=None):
    """(alpha I + beta A - gamma C) V with C = (1/T) 1 1^T (or uniform over real tokens), built by hand."""
    seq, heads = x.shape[1], attn.heads
    q, k = (attn.split_heads(t) for t in attn.qkv(x).split(32, dim=-1)[:2])
    logits = q @ k.transpose(-1, -2) / (32 // heads) ** 0.5
    real = torch.ones(x.shape[0], seq, dtype=torch.bool) if key_mask is None else key_mask
    probs = logits.masked_fill(~real[:, None, None, :], float("-inf")).softmax(-1)
    centre = real[:, None, None, :].float().expand(-1, 1, seq, seq) / real.sum(-1)[:, None, None, None]
    g = {n: getattr(attn, n).view(1, heads, 1, 1) for n in ("alpha", "beta", "gamma")}
    matrix = g["alpha"] * torch.eye(seq) + g["beta"] * probs - g["gamma"] * centre
    return matrix, (matrix @ attn.split_heads(x)).transpose(1, 2).reshape(x.shape)


def test_bidirectional_shaped_attention_equals_the_explicit_matrix():
    attn = perturbed(SHAPED, causal=False)
    x = torch.randn(2, 9, 32)
    matrix, out = explicit(attn, x)
    torch.testing.assert_close(attn(x), out)
    torch.testing.assert_close(attn.attention_matrix(x), matrix)
    # every row of the shaped matrix sums to alpha + beta - gamma, per head
    sums = (attn.alpha + attn.beta - attn.gamma).view(1, 4, 1).expand(2, 4, 9)
    torch.testing.assert_close(matrix.sum(-1), sums)


def test_padding_aware_centring_averages_over_real_tokens_only():
    attn = perturbed(SHAPED, causal=False)
    x = torch.randn(2, 8, 32)
    key_mask = torch.ones(2, 8, dtype=torch.bool)
    key_mask[0, 5:] = False  # the first sequence has 5 real tokens, then padding
    matrix, out = explicit(attn, x, key_mask)
    torch.testing.assert_close(attn(x, key_mask), out)
    torch.testing.assert_close(attn.attention_matrix(x, key_mask), matrix)
    # real positions of the padded sequence do not see the padding: their output ignores the padded inputs
    changed = x.clone()
    changed[0, 5:] = torch.randn(3, 32)
    torch.testing.assert_close(attn(changed, key_mask)[0, :5], attn(x, key_mask)[0, :5])
    # a mask with every token real is the unpadded computation
    torch.testing.assert_close(attn(x, torch.ones(2, 8, dtype=torch.bool)), attn(x), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ the masks the workloads give the blocks


@pytest.mark.parametrize("name", ["pre_ln", "sas", "sas_p"])
def test_causal_lm_never_sees_the_future_while_masked_lm_sees_everything(name):
    seq = 8
    for workload in ("causal_lm", "masked_lm"):
        config = ModelConfig(vocab_size=40, seq_len=seq, n_layers=2, d_model=32, n_heads=4, workload=workload)
        model = build_model(get_variant(name), config, seed=3)
        with torch.no_grad():  # leave init, where shaped attention is the identity and would mix nothing
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        idx = torch.randint(0, 40, (1, seq), generator=torch.Generator().manual_seed(0))
        base = model(idx)
        for position in range(seq):
            other = idx.clone()
            other[0, position] = (idx[0, position] + 1) % 40
            moved = (model(other) - base).abs().amax(-1)[0] > 1e-6  # which outputs changed
            if workload == "causal_lm":
                assert not moved[:position].any(), f"{name}: a position before {position} saw it"
                assert moved[position:].all()
            else:
                assert moved.all(), f"{name}: not every position saw token {position}"


# ------------------------------------------------------------------ the masked-LM objective


def test_mask_rates_and_replacement_split():
    tokens = torch.randint(0, 50, (64, 256), generator=torch.Generator().manual_seed(0))
    inputs, targets = mask_tokens(tokens, mask_generator("train", 0, 0), 0.25, 50, 50)
    chosen = targets != IGNORE
    assert abs(chosen.float().mean().item() - 0.25) < 0.01
    masked = (inputs == 50) & chosen
    kept = (inputs == tokens) & chosen
    assert abs(masked.sum().item() / chosen.sum().item() - 0.8) < 0.015
    assert abs(kept.sum().item() / chosen.sum().item() - 0.1 - 0.1 / 50) < 0.015  # 10% kept + random hits
    assert torch.equal(targets[chosen], tokens[chosen]) and torch.equal(inputs[~chosen], tokens[~chosen])
    assert not (inputs[~chosen] == 50).any()
    # every sequence predicts at least one token, even at a rate that would often choose none
    _, few = mask_tokens(tokens[:, :4], mask_generator("train", 0, 1), 0.01, 50, 50)
    assert ((few != IGNORE).sum(-1) >= 1).all()


def test_masks_are_identical_across_variants_and_set_by_the_seed(mlm):
    suite, data = mlm
    suite = suite.with_overrides(variants=["pre_ln", "sas", "sas_p"])

    def first_batches(variant, seed, n=3):
        batches = Trainer(suite, variant, seed, data, None, measure_static=False).batches()
        return [next(batches) for _ in range(n)]

    reference = first_batches("pre_ln", 0)
    for variant in ("sas", "sas_p"):
        for (x, y), (rx, ry) in zip(first_batches(variant, 0), reference, strict=True):
            assert torch.equal(x, rx) and torch.equal(y, ry)
    assert not torch.equal(first_batches("pre_ln", 1)[0][1], reference[0][1])
    assert torch.equal(first_batches("pre_ln", 0)[2][0], reference[2][0])  # deterministic
    # the evaluation windows are fixed: the same for every seed
    workload = suite.get_workload()
    first = workload.eval_windows(data, suite.model.seq_len, 4)
    again = workload.eval_windows(data, suite.model.seq_len, 4)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_mlm_loss_at_init_is_near_ln_vocab(mlm):
    suite, data = mlm
    workload = suite.get_workload()
    windows = workload.eval_windows(data, suite.model.seq_len, 8)
    for name in ("pre_ln", "sas_p"):
        model = build_model(get_variant(name), ModelConfig(vocab_size=workload.model_vocab_size(data.vocab_size),
                                                           seq_len=32, n_layers=2, d_model=32, n_heads=2,
                                                           workload="masked_lm"))
        metrics = workload.evaluate(model, windows, 4, None)
        vocab = data.vocab_size + 1  # the bytes and end-of-text, plus [MASK]
        assert abs(metrics["eval_loss"] - math.log(vocab)) < 0.05, metrics
        assert 0 <= metrics["eval_accuracy"] <= 1


# ------------------------------------------------------------------ suites and records


def test_suite_names_its_workload(tmp_path):
    assert load_suite(str(write_suite(tmp_path))).workload == "causal_lm"
    assert "workload" not in load_suite(str(write_suite(tmp_path))).to_config()
    suite = load_suite("mlm-smoke")
    assert suite.workload == "masked_lm" and suite.get_workload().mask_rate == 0.25
    assert suite.to_config()["workload"]["name"] == "masked_lm"
    import tomllib

    base = tomllib.loads(MLM_SUITE)
    for change, message in ((lambda d: d["suite"].update(workload="prefix_lm"), "unknown workload"),
                            (lambda d: d.update(workload={"mask_rate": 1.5}), "mask_rate"),
                            (lambda d: d.update(workload={"rate": 0.2}), "unknown option")):
        data = tomllib.loads(MLM_SUITE)
        change(data)
        with pytest.raises(SuiteError, match=message):
            parse_suite(data, "x.toml")
    causal = tomllib.loads(TINY_SUITE)
    causal["workload"] = {"mask_rate": 0.2}
    with pytest.raises(SuiteError, match="takes none"):
        parse_suite(causal, "x.toml")
    assert parse_suite(base, "x.toml").workload == "masked_lm"


@pytest.mark.parametrize("name", ["mlm-smoke", "paper-bert-cpu", "paper-crammed-bert", "paper-crammed-bert-offline"])
def test_bert_suites_use_the_crammed_conventions(name):
    suite = load_suite(name)
    assert suite.workload == "masked_lm" and suite.get_workload().mask_rate == 0.25
    assert suite.optim.betas == (0.9, 0.98) and suite.optim.eps == 1e-12 and suite.optim.grad_clip == 0.5
    assert suite.optim.warmup_fraction == 0.75 and suite.optim.schedule == "linear"  # one-cycle
    for entry in suite.variants.values():
        assert entry.spec == crammed_bert(entry.preset), entry.name


def test_record_carries_workload_and_mlm_metrics(mlm):
    suite, data = mlm
    record = run_trial(suite, "sas_p", 0, data)
    assert record["workload"] == workload_of(record) == "masked_lm"
    assert record["summary"]["final_eval_bpb"] is None
    accuracy = record["summary"]["final_eval_accuracy"]
    assert 0 <= accuracy <= 1 and accuracy == record["curve"][-1]["eval_accuracy"]
    assert all("eval_accuracy" in p for p in record["curve"])
    assert record["config"]["workload"] == {"name": "masked_lm", **get_workload("masked_lm").options()}
    from blockbench.records import seal

    validate_record(seal(record))
    assert workload_of({k: v for k, v in record.items() if k != "workload"}) == "causal_lm"


def test_workload_is_not_a_block_property():
    """One preset, two workloads: the same spec builds both, and the blocks' weights of a seed are identical."""
    shapes = {}
    for workload in ("causal_lm", "masked_lm"):
        config = ModelConfig(vocab_size=40, seq_len=8, n_layers=2, d_model=32, n_heads=4, workload=workload)
        model = build_model(get_variant("sas"), config, seed=5)
        shapes[workload] = {k: v for k, v in model.state_dict().items() if k.startswith("blocks.")}
        assert model.spec == get_variant("sas").spec
    assert shapes["causal_lm"].keys() == shapes["masked_lm"].keys()
    assert all(torch.equal(shapes["causal_lm"][k], shapes["masked_lm"][k]) for k in shapes["causal_lm"])


def test_geglu_mlp_widths():
    spec = BlockSpec(activation="geglu", beta_ff=Gain(1.0))
    config = ModelConfig(vocab_size=40, seq_len=8, n_layers=1, d_model=32, n_heads=4)
    mlp = build_model(get_variant("pre_ln"), config, spec).blocks[0].mlp
    assert mlp.up.weight.shape == (128, 32) and mlp.down.weight.shape == (32, 64)


# ------------------------------------------------------------------ show, diagnose, leaderboards


def test_show_prints_the_encoder(capsys):
    import json

    from blockbench.cli import main

    args = ["show", "sas", "--layers", "2", "--width", "48", "--heads", "4", "--vocab", "97", "--seq-len", "32"]
    assert main([*args, "--json"]) == 0
    decoder = json.loads(capsys.readouterr().out)
    assert main([*args, "--workload", "masked_lm", "--crammed-bert", "--json"]) == 0
    encoder = json.loads(capsys.readouterr().out)
    assert encoder["config"]["workload"] == "masked_lm" and decoder["config"]["workload"] == "causal_lm"
    assert encoder["block_spec"]["activation"] == "geglu" and encoder["block_spec"]["norm"] == "layer"
    expected = count_flops(crammed_model("sas", FLOP_CONFIG), use_fvcore=False)["flops_fwd_per_token"]
    assert encoder["flops_fwd_per_token"] == expected
    assert encoder["counters"]["fvcore_fwd_x2"] == encoder["counters"]["analytic_fwd"] == expected


def test_diagnose_works_on_both_workloads():
    from blockbench.diagnose import diagnose

    encoder = diagnose(["sas", "naive_skipless"], "mlm-smoke", layers=6)
    assert encoder["workload"] == "masked_lm"
    decoder = diagnose(["sas"], "smoke", layers=6)
    assert "workload" not in decoder
    forced = diagnose(["sas"], "smoke", layers=6, workload="masked_lm")
    assert forced["workload"] == "masked_lm"
    for result in (encoder, decoder, forced):
        cosine = result["variants"]["sas"]["cosine"]
        assert len(cosine) == 7 and cosine[-1] < 0.1  # shaped attention keeps tokens apart under either mask
    assert encoder["variants"]["naive_skipless"]["cosine"][-1] > 0.9


def test_leaderboards_and_compare_never_mix_workloads():
    from pathlib import Path

    from blockbench.views.selection import select_group

    decoder = {"suite": {"name": "s", "version": "1", "hash": "h"}, "config": {"overrides": {}},
               "data": {"tokenizer": "bytes", "vocab_size": 257, "n_tokens_train": 1, "n_tokens_val": 1},
               "variant": "pre_ln", "seed": 0}
    encoder = {**decoder, "workload": "masked_lm", "seed": 1}
    old = {**decoder, "seed": 2}
    kept, left_out = select_group([(Path("a"), decoder), (Path("b"), old), (Path("c"), encoder)])
    assert [p.name for p, _ in kept] == ["a", "b"]  # a record without a workload is causal_lm
    assert left_out[0][0].name == "c" and "workload masked_lm" in left_out[0][1]


def test_encoder_leaderboard_shows_masked_token_accuracy(mlm, tmp_path):
    """An encoder's leaderboard carries its masked-token accuracy (table and CSV); a decoder's has no such column."""
    import csv

    from blockbench.records import record_filename, seal, write_record
    from blockbench.views import leaderboard

    suite, data = mlm
    results = tmp_path / "enc"
    records = [seal(run_trial(suite, v, 0, data)) for v in ("pre_ln", "sas_p")]
    for r in records:
        write_record(r, results / "records" / record_filename(r["variant"], r["seed"]))
    leaderboard.generate(results)
    rows = {r["variant"]: r for r in csv.DictReader((results / "leaderboard.csv").open())}
    for r in records:
        assert float(rows[r["variant"]]["eval_accuracy_mean"]) == pytest.approx(r["summary"]["final_eval_accuracy"])
    assert "masked-token accuracy" in (results / "leaderboard.md").read_text()
    header = (results / "leaderboard.csv").read_text().splitlines()[0].split(",")
    assert header[header.index("eval_bpb_mean") + 1] == "eval_accuracy_mean"

    causal = load_suite(str(write_suite(tmp_path, TINY_SUITE, "dec.toml")))
    decoder = tmp_path / "dec-results"
    record = seal(run_trial(causal, "pre_ln", 0, load_data(causal.data)))
    write_record(record, decoder / "records" / record_filename("pre_ln", 0))
    leaderboard.generate(decoder)
    assert "eval_accuracy_mean" not in (decoder / "leaderboard.csv").read_text().splitlines()[0]
    assert "accuracy" not in (decoder / "leaderboard.md").read_text()
