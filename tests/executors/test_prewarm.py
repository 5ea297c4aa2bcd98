"""The local executor's pre-warmed worker (`--prewarm`): each run still trains in a fresh process of its own and
gives the same record, a standby that dies or fails to set up costs no run, nothing is left running, and the
setting's bad input is one line. Also the closing line that says where a suite's wall time went."""

import multiprocessing
import os
import signal

import pytest

from blockbench.cli import main
from blockbench.display import time_line
from blockbench.executors.local import LocalExecutor
from blockbench.records import load_record
from blockbench.runner import run
from blockbench.suite import load_suite
from tests.tiny_suite import TINY_SUITE, write_suite

TWO_SEEDS = TINY_SUITE.replace("seeds = [0]", "seeds = [0, 1]").replace("threads = 2", "threads = 1")


def curve(path) -> list[tuple]:
    return [(p["step"], p["train_loss"], p["eval_loss"]) for p in load_record(path)["curve"]]


def run_recording(suite, out, executor, on_start=None):
    starts = []

    def event(kind, info):
        if kind == "start":
            starts.append(info)
            if on_start:
                on_start(info)

    try:
        result = run(suite, out, executor=executor, on_event=event)
    finally:
        executor.close()
    return result, starts


def test_prewarmed_runs_train_in_fresh_processes_and_give_the_same_records(tmp_path):
    suite = load_suite(str(write_suite(tmp_path, TWO_SEEDS)))
    fresh, fresh_starts = run_recording(suite, tmp_path / "fresh", LocalExecutor(prewarm="off"))
    warm, warm_starts = run_recording(suite, tmp_path / "warm", LocalExecutor(prewarm="on"))
    assert not fresh.failures and not warm.failures and len(warm.written) == 4
    assert not any(s.get("prewarmed") for s in fresh_starts)
    assert all(s.get("prewarmed") for s in warm_starts)  # the first run's standby set up beside the probe
    assert len({s["pid"] for s in warm_starts}) == 4  # one process per run, none reused
    for path in fresh.written:  # same seed and threads: bit-identical curves
        assert curve(path) == curve(tmp_path / "warm" / "records" / path.name)
    assert not multiprocessing.active_children()


def test_a_standby_killed_before_its_turn_costs_no_run(tmp_path):
    suite = load_suite(str(write_suite(tmp_path, TWO_SEEDS)))
    executor = LocalExecutor(prewarm="on")
    killed = []

    def kill_the_standby(info):
        if not killed and executor.standby is not None:
            killed.append(executor.standby.process.pid)
            os.kill(killed[0], signal.SIGKILL)

    result, starts = run_recording(suite, tmp_path / "o", executor, kill_the_standby)
    assert killed and not result.failures and len(result.written) == 4
    assert killed[0] not in {s["pid"] for s in starts}
    assert not multiprocessing.active_children()


class _Pipe:
    def __init__(self, job=None):
        self.sent, self.job = [], job

    def send(self, message):
        self.sent.append(message)

    def recv(self):
        return self.job


def test_a_standby_that_failed_to_set_up_fails_the_job_it_is_handed(monkeypatch, tmp_path):
    from blockbench.blocks.spec import SpecError
    from blockbench.executors import Job, local

    def broken_setup(*args):
        raise SpecError("--block 'gone:block': cannot import 'gone'")

    monkeypatch.setattr(local, "standby_setup", broken_setup)
    suite = load_suite(str(write_suite(tmp_path)))
    conn = _Pipe()
    with pytest.raises(SpecError, match="cannot import 'gone'"):  # raised as the run's own failure
        local._standby(conn, _Pipe(Job(suite, "pre_ln", 0)), (suite, (), str(tmp_path)))
    assert [kind for kind, _ in conn.sent] == ["ready", "started"]
    conn = _Pipe()
    assert local._standby(conn, _Pipe(None), (suite, (), str(tmp_path))) is None  # no job: it just ends
    assert [kind for kind, _ in conn.sent] == ["ready"]


def test_auto_prewarms_on_cuda_only():
    cpu = load_suite("smoke").with_overrides(device="cpu")
    assert not LocalExecutor(prewarm="auto")._prewarms(cpu)
    assert LocalExecutor(prewarm="on")._prewarms(cpu)
    assert not LocalExecutor(prewarm="off")._prewarms(cpu)


@pytest.mark.parametrize("args", [["--prewarm", "on", "--in-process"], ["--prewarm", "on", "--executor", "ray"]])
def test_prewarm_on_outside_the_local_executor_is_one_line_exit_2(tmp_path, capsys, args):
    suite = write_suite(tmp_path)
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "o"), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--prewarm on is for the local executor" in err[0], err
    assert not (tmp_path / "o").exists()


def test_an_unknown_prewarm_setting_is_refused(tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--suite", str(write_suite(tmp_path)), "--prewarm", "sometimes"])
    assert exit_.value.code == 2


def test_time_line_splits_the_wall_time():
    records = [{"summary": {"train_seconds": 30.0, "eval_seconds": 5.0, "warmup_seconds": 3.0}},
               {"summary": {"train_seconds": 30.0, "eval_seconds": 5.0, "warmup_seconds": 2.0}}]
    assert time_line(records, 100.0, probe_seconds=10.0) == (
        "time: 100 s wall; training steps 60% (60 s), evaluations 10% (10 s), warm-up 5% (5 s), "
        "speed probe 10% (10 s), start-ups, data, builds 15% (15 s)")
