"""The harness: budgets and stop rules, schedule, to-target interpolation, divergence, determinism."""

import dataclasses
import math

import pytest

from blockbench.data import load_data
from blockbench.records import to_target
from blockbench.suite import Budget, OptimConfig, load_suite
from blockbench.train import lr_factor, run_trial, schedule_steps
from tests.tiny_suite import write_suite


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    suite = load_suite(str(write_suite(tmp_path_factory.mktemp("suite"))))
    return suite, load_data(suite.data)


def with_budget(suite, **budget):
    return dataclasses.replace(suite, budget=Budget(**budget))


def test_step_token_and_flop_budgets_stop_exactly(tiny):
    suite, data = tiny
    record = run_trial(with_budget(suite, steps=5), "pre_ln", 0, data)
    assert record["summary"]["steps"] == 5 and record["stop_reason"] == "budget: 5 steps"
    tokens_per_step = 4 * 32
    record = run_trial(with_budget(suite, tokens=3 * tokens_per_step + 1), "pre_ln", 0, data)
    assert record["summary"]["steps"] == 4  # the first step at or past the budget
    flops_per_step = record["static"]["flops_train_per_token"] * tokens_per_step
    record = run_trial(with_budget(suite, flops=2 * flops_per_step), "pre_ln", 0, data)
    assert record["summary"]["steps"] == 2 and record["stop_reason"].startswith("budget:")
    assert record["config"]["schedule_steps"] == 2


def test_first_budget_reached_wins(tiny):
    suite, data = tiny
    record = run_trial(with_budget(suite, steps=3, tokens=10**9, seconds=3600.0), "pre_ln", 0, data)
    assert record["summary"]["steps"] == 3
    record = run_trial(with_budget(suite, steps=10**6, seconds=0.2), "pre_ln", 0, data)
    assert "training seconds" in record["stop_reason"] and record["summary"]["train_seconds"] >= 0.2


def test_curve_has_evals_at_fixed_token_cadence(tiny):
    suite, data = tiny
    record = run_trial(with_budget(suite, steps=6), "sas_p", 0, data)
    tokens = [p["tokens"] for p in record["curve"]]
    assert tokens == [0, 256, 512, 768]  # every 2 steps of 128 tokens, starting at init
    assert all(p["eval_loss"] is not None for p in record["curve"])
    assert record["curve"][0]["train_seconds"] == 0
    seconds = [p["train_seconds"] for p in record["curve"]]
    assert seconds == sorted(seconds)
    assert record["summary"]["final_eval_loss"] == record["curve"][-1]["eval_loss"]
    assert record["summary"]["final_eval_bpb"] == pytest.approx(
        record["summary"]["final_eval_loss"] / math.log(2) / data.val_bytes_per_token)


def test_same_seed_gives_bit_identical_curves_and_variants_share_eval_windows(tiny):
    suite, data = tiny
    a = run_trial(suite, "sas_p", 0, data)
    b = run_trial(suite, "sas_p", 0, data)
    assert [p["eval_loss"] for p in a["curve"]] == [p["eval_loss"] for p in b["curve"]]
    assert [p["train_loss"] for p in a["curve"]] == [p["train_loss"] for p in b["curve"]]
    c = run_trial(suite, "sas_p", 1, data)
    assert [p["train_loss"] for p in a["curve"]] != [p["train_loss"] for p in c["curve"]]


def test_divergence_ends_the_run_with_status_diverged(tiny):
    suite, data = tiny
    suite = dataclasses.replace(suite, runtime=dataclasses.replace(suite.runtime, divergence_loss=1.0))
    record = run_trial(suite, "pre_ln", 0, data)
    assert record["status"] == "diverged" and record["stop_reason"].startswith("diverged")
    assert record["summary"]["steps"] == 1 and record["summary"]["final_eval_loss"] is None


def test_nan_loss_diverges(tiny):
    suite, data = tiny
    optim = dataclasses.replace(suite.optim, lr=1e6, grad_clip=None)
    suite = dataclasses.replace(suite, optim=optim, runtime=dataclasses.replace(suite.runtime,
                                                                                 divergence_loss=1e30))
    record = run_trial(with_budget(suite, steps=40), "pre_ln", 0, data)
    assert record["status"] == "diverged"


def test_to_target_interpolates_linearly_between_evaluations():
    curve = [
        {"step": 0, "tokens": 0, "flops": 0.0, "train_seconds": 0.0, "eval_loss": 5.0},
        {"step": 10, "tokens": 100, "flops": 1000.0, "train_seconds": 2.0, "eval_loss": 4.0},
        {"step": 20, "tokens": 200, "flops": 2000.0, "train_seconds": 4.0, "eval_loss": 3.0},
        {"step": 30, "tokens": 300, "flops": 3000.0, "train_seconds": 6.0, "eval_loss": 2.5},
    ]
    hit = to_target(curve, 3.5)
    assert hit == {"target": 3.5, "steps": 15.0, "tokens": 150.0, "flops": 1500.0, "seconds": 3.0}
    assert to_target(curve, 3.0)["steps"] == 20.0
    assert to_target(curve, 5.5)["steps"] == 0.0
    assert to_target(curve, 2.0) == {"target": 2.0, "steps": None, "tokens": None, "flops": None, "seconds": None}
    assert to_target(curve, None)["steps"] is None


def test_lr_schedule_warmup_then_linear_decay():
    optim = OptimConfig(warmup_fraction=0.1, schedule="linear")
    factors = [lr_factor(s, 100, optim) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[55] == pytest.approx(0.5)
    assert factors[99] == pytest.approx(1 / 90)
    cosine = OptimConfig(warmup_fraction=0.0, schedule="cosine", min_lr_ratio=0.1)
    assert lr_factor(0, 100, cosine) == pytest.approx(1.0) and lr_factor(100, 100, cosine) == pytest.approx(0.1)


def test_schedule_length_comes_from_the_tightest_countable_budget():
    assert schedule_steps(Budget(steps=100), 128, 1e6) == 100
    assert schedule_steps(Budget(steps=100, tokens=128 * 40), 128, 1e6) == 40
    assert schedule_steps(Budget(flops=2.5e6), 128, 1e6) == 3
    assert schedule_steps(Budget(seconds=10.0), 128, 1e6) is None


def test_non_finite_final_eval_loss_is_a_diverged_run(tiny, monkeypatch):
    import blockbench.workloads.causal_lm as causal_lm  # the decoder's evaluation lives with its workload

    suite, data = tiny
    calls = []

    def eval_blows_up_at_the_end(*args):
        calls.append(1)
        return 3.0 if len(calls) < 3 else float("nan")

    monkeypatch.setattr(causal_lm, "evaluate", eval_blows_up_at_the_end)
    record = run_trial(with_budget(suite, steps=4), "pre_ln", 0, data)  # evals at steps 0, 2, 4
    assert record["status"] == "diverged" and record["stop_reason"].startswith("diverged: eval loss nan")
    assert record["summary"]["final_eval_loss"] is None
