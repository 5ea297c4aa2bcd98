"""Issue 23: GPU suites that can decide, and the eval-count rule every suite file meets."""

import dataclasses
from pathlib import Path

import pytest

from blockbench.cli import main
from blockbench.suite import (
    MIN_EVALUATIONS,
    SuiteError,
    builtin_suites,
    evaluations_per_run,
    load_suite,
)


def count(suite) -> int:
    tokens_per_step = suite.optim.batch_size * suite.model.seq_len
    return evaluations_per_run(suite.budget.steps, tokens_per_step, suite.eval.every_tokens)


def warmup_steps(suite, variant: str = "sas") -> int:
    return int(suite.optim_for(variant).warmup_fraction * suite.budget.steps)


@pytest.mark.parametrize("name", ["paper-gpu-offline", "paper-gpu-quick"])
def test_gpu_suites_evaluate_ten_times_at_any_budget(name):
    suite = load_suite(name)
    assert count(suite) >= 10
    for steps in (60, 300, 5000):
        assert count(suite.with_overrides(budget={"steps": steps})) >= 10
    assert suite.eval.target_loss is not None and suite.data.tokenizer == "bpe"


def test_gpu_suites_warm_up_with_a_floor():
    v2 = load_suite("paper-gpu-offline")
    assert v2.version == "2" and warmup_steps(v2) == 150  # max(5% of 600 = 30, the floor 150)
    # The floor never takes more than half the schedule; a longer budget keeps 5% when that is more.
    assert warmup_steps(v2.with_overrides(budget={"steps": 200})) == 100
    assert warmup_steps(v2.with_overrides(budget={"steps": 10_000})) == 500
    assert warmup_steps(load_suite("paper-gpu-quick")) == 100


def test_the_first_gpu_runs_cadence_counts_three():
    """v1 at --budget-steps 300 (the H200 run): evaluations at steps 0, 200 and 300."""
    v1_cadence = 3276800
    assert evaluations_per_run(300, 128 * 128, v1_cadence) == 3
    assert evaluations_per_run(60, 16 * 64, 15360) == 5  # smoke: 0, 15, 30, 45, 60
    assert evaluations_per_run(2, 16 * 64, 15360) == 2   # a two-step check: 0 and the end


def test_every_builtin_suite_has_enough_evaluations():
    for name in builtin_suites():
        suite = load_suite(name)
        if suite.budget.steps is not None:
            assert count(suite) >= MIN_EVALUATIONS, name


def write_suite(tmp_path: Path, every: int, steps: int = 60) -> Path:
    text = (Path(__file__).resolve().parents[1] / "blockbench" / "suites" / "smoke.toml").read_text()
    text = text.replace("every_tokens = 15360", f"every_tokens = {every}").replace("steps = 60", f"steps = {steps}")
    path = tmp_path / "few.toml"
    path.write_text(text)
    return path


def test_a_suite_with_fewer_than_three_evaluations_is_refused_in_one_line(tmp_path, capsys):
    path = write_suite(tmp_path, every=15360 * 8)  # 0 and the end only
    with pytest.raises(SuiteError, match="gives 2 evaluation"):
        load_suite(str(path))
    assert main(["run", "--suite", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "fewer than 3" in err


def test_evaluations_and_every_tokens_exclude_each_other(tmp_path):
    path = write_suite(tmp_path, every=15360)
    path.write_text(path.read_text().replace("every_tokens = 15360", "every_tokens = 15360\nevaluations = 10"))
    with pytest.raises(SuiteError, match="give one of every_tokens"):
        load_suite(str(path))


def test_a_budget_override_keeps_the_evaluation_count():
    quick = load_suite("paper-gpu-quick")
    shorter = quick.with_overrides(budget={"steps": 100})
    assert shorter.eval.every_tokens == 10 * 128 * 128
    assert dataclasses.asdict(shorter.eval)["evaluations"] == 10
