"""The headline every page opens with: differences paired by seed, groups named as groups, one seed said as one."""

import math

from blockbench.views import headline
from blockbench.views.headline import Delta, Result


def record(variant: str, seed: int, loss: float, device: str = "cpu") -> dict:
    return {"variant": variant, "seed": seed, "status": "ok", "curve": [{"step": 10, "eval_loss": loss}],
            "summary": {"final_eval_loss": loss}, "config": {"eval": {}, "baseline": "pre_ln",
                                                             "budget": {"steps": 400},
                                                             "model": {"n_layers": 8, "d_model": 128}},
            "data": {"vocab_size": 257},
            "env": {"device_name": "Xeon" if device == "cpu" else "NVIDIA H200", "device": device, "threads": 2}}


def test_deltas_are_paired_by_seed_with_a_student_t_interval():
    records = [record("pre_ln", s, loss) for s, loss in enumerate([2.0, 2.1, 2.2])]
    records += [record("sas_p", s, loss) for s, loss in enumerate([2.1, 2.2, 2.4])]
    d = headline.deltas(records, "pre_ln")
    assert set(d) == {"sas_p"}
    # differences 0.1, 0.1, 0.2: mean 0.1333, sd 0.05774, t(0.975, 2) = 4.3027 -> half-width 0.14343
    assert math.isclose(d["sas_p"].mean, 0.13333, abs_tol=1e-4)
    assert math.isclose(d["sas_p"].high - d["sas_p"].mean, 0.14343, abs_tol=1e-4)
    assert d["sas_p"].text() == "+0.133 [-0.010, +0.277]"


def test_one_seed_has_no_interval_and_no_baseline_no_deltas():
    records = [record("pre_ln", 0, 2.0), record("sas", 0, 1.9)]
    assert headline.deltas(records, "pre_ln")["sas"].text() == "-0.100"
    assert headline.deltas(records, None) == {}
    assert headline.deltas(records, "transformer_pp") == {}


def test_setup_says_seeds_budget_shape_and_hardware():
    records = [record("pre_ln", s, 2.0) for s in range(8)]
    assert headline.setup_text(records, 8) == "8 seeds x 400 steps, L=8 d=128, Xeon, 2 CPU threads"
    assert headline.setup_text([record("pre_ln", 0, 2.0, "cuda")], 1) == "1 seed x 400 steps, L=8 d=128, NVIDIA H200"


def two_tiers(settled: bool = True, n_seeds: int = 8) -> Result:
    return Result("pre_ln", [["pre_ln", "sas"], ["vskipinit"]],
                  {"sas": Delta(0.007, -0.008, 0.022), "vskipinit": Delta(0.166, 0.140, 0.192)}, n_seeds,
                  "8 seeds x 400 steps", settled)


def test_groups_are_named_as_groups_best_first():
    assert headline.sentence(two_tiers()) == (
        "pre_ln (baseline) and sas +0.007 [-0.008, +0.022] share first place (order not resolved); then vskipinit "
        "+0.166 [+0.140, +0.192] — eval-loss difference to pre_ln in nats, 95% CI; 8 seeds x 400 steps.")


def test_an_unsettled_ranking_says_so_and_unranked_variants_are_named():
    result = two_tiers(settled=False)
    result.unranked = ["sas_p_nonorm (diverged on 1/3 seeds)"]
    text = headline.sentence(result)
    assert "but the order between these groups was still changing when the budget ended" in text
    assert "; not ranked: sas_p_nonorm (diverged on 1/3 seeds) — " in text


def test_one_seed_cannot_judge_ties_and_plateaus_are_not_converged():
    result = Result("pre_ln", [["sas"], ["pre_ln"], ["naive_skipless"]],
                    {"sas": Delta(-0.1), "naive_skipless": Delta(1.2)}, 1, "1 seed x 200 steps", False,
                    not_converged={"naive_skipless": "plateau"})
    assert headline.sentence(result) == (
        "One seed, so no interval and ties cannot be judged; in order: sas -0.100, pre_ln (baseline), "
        "naive_skipless +1.200 (not converged: plateau) — eval-loss difference to pre_ln in nats, one seed; "
        "1 seed x 200 steps.")


def test_a_variant_name_is_escaped_in_the_sentence():
    result = Result("pre_ln", [["pre_ln"], ["[x](javascript:alert(1))"]],
                    {"[x](javascript:alert(1))": Delta(0.5, 0.4, 0.6)}, 3, "3 seeds", True)
    assert "\\[x\\](javascript:alert(1))" in headline.sentence(result)


def test_nothing_ranked_says_why():
    result = Result("pre_ln", [], {}, 0, "", True, unranked=["pre_ln (diverged on 3/3 seeds)"])
    assert headline.sentence(result) == "Nothing ranked: pre_ln (diverged on 3/3 seeds)."
