"""Issue 24's second lines of defence, without a process: paths built from names stay inside their directory
even for a Suite built past the validation, the name rule itself, a probe that drops a failing step function and
goes on, and the rule that tells a user's KeyboardInterrupt from a real SIGINT."""

from __future__ import annotations

import dataclasses
import os
import signal

import pytest

from blockbench.blocks.zoo import name_problem
from blockbench.errors import BlockbenchError, Terminated
from blockbench.executors import SignalInterrupt, telling_signals, user_failure
from blockbench.measure.throughput import interleaved_step_times, speed_summary
from blockbench.records import RecordError, contained
from blockbench.runner import default_out_dir, plan_run
from blockbench.suite import load_suite
from tests.tiny_suite import write_suite


@pytest.mark.parametrize("name", ["pre_ln", "sas_p", "v1.2", "my-block+qk", "2024", "A" * 100])
def test_names_the_rule_accepts(name):
    assert name_problem(name) == ""


@pytest.mark.parametrize("name", ["", ".", "..", "../x", ".hidden", "a/b", "a\\b", "a b", "a\nb", "é", "A" * 101,
                                  "x\0", 3])
def test_names_the_rule_refuses(name):
    assert name_problem(name)


def test_contained_paths(tmp_path):
    assert contained(tmp_path, "records", "pre_ln-seed0.json") == tmp_path / "records" / "pre_ln-seed0.json"
    for parts in (("..", "x"), ("../x",), ("a/b",), ("",), (".",), ("/etc",)):
        with pytest.raises(RecordError):
            contained(tmp_path, *parts)
    (tmp_path / "out.json").symlink_to("/etc/hostname")  # a plain name, but it resolves outside
    with pytest.raises(RecordError, match="outside"):
        contained(tmp_path, "out.json")
    (tmp_path / "loop.json").symlink_to(tmp_path / "loop.json")
    with pytest.raises(RecordError, match="cannot resolve"):
        contained(tmp_path, "loop.json")


def test_a_suite_built_past_validation_still_cannot_leave_out(tmp_path, monkeypatch):
    """The Python API can build a Suite whose names were never checked; the runner's paths refuse them."""
    suite = load_suite(str(write_suite(tmp_path)))
    entry = dataclasses.replace(suite.variants["pre_ln"], name="../../evil")
    evil = dataclasses.replace(suite, variants={"../../evil": entry})
    with pytest.raises(BlockbenchError, match="not a plain file"):
        plan_run(evil, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.rglob("*evil*"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BlockbenchError, match="default --out"):
        default_out_dir(dataclasses.replace(suite, name="../../esc"))


def test_probe_drops_a_failing_step_and_goes_on():
    calls = {"a": 0, "b": 0, "c": 0}

    def step(name, fail_at=None):
        def run():
            calls[name] += 1
            if fail_at is not None and calls[name] >= fail_at:
                raise MemoryError("4 TB")
        return run

    failed: dict[str, BaseException] = {}
    times = interleaved_step_times({"a": step("a"), "b": step("b", fail_at=4), "c": step("c")}, rounds=6,
                                   steps_per_round=1, warmup=1, failed=failed)
    assert set(times) == {"a", "c"} and len(times["a"]) == len(times["c"]) == 6
    assert isinstance(failed["b"], MemoryError) and calls["b"] == 4
    assert speed_summary(times, "a")["c"]["rounds"] == 6
    with pytest.raises(MemoryError):  # without `failed`, the old contract: the probe raises
        interleaved_step_times({"b": step("b", fail_at=1)}, rounds=1, steps_per_round=1, warmup=0)


@pytest.mark.skipif(signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
                    reason="SIGINT is ignored in this process (started in the background): no Ctrl-C to tell apart")
def test_a_users_keyboard_interrupt_is_told_from_a_signal():
    assert user_failure(ValueError()) and user_failure(SystemExit(3))
    assert not user_failure(KeyboardInterrupt())  # outside a job: always a signal
    with telling_signals():
        assert user_failure(KeyboardInterrupt())  # raised by code, while the handler is installed
        assert not user_failure(Terminated()) and not user_failure(SignalInterrupt())
        with pytest.raises(SignalInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            signal.sigtimedwait([], 0)  # a point where Python runs the handler
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
