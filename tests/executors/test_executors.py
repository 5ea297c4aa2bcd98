"""Executors on a real local Ray cluster (num_cpus=2, shut down after the module) and the local executor's
failure isolation: same records as the local executor, a killed worker retried into exactly one record, a raising
user block isolated into one failure file, and the Ray bad-input contract."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blockbench.cli import main
from blockbench.errors import BlockbenchError
from blockbench.executors import make_executor
from blockbench.records import load_failure, load_record
from blockbench.runner import run
from blockbench.suite import load_suite
from tests.tiny_suite import TINY_SUITE, write_suite

ray = pytest.importorskip("ray")
REPO = Path(__file__).resolve().parents[2]
ONE_THREAD = TINY_SUITE.replace("threads = 2", "threads = 1")


@pytest.fixture(scope="module")
def ray_cluster():
    import logging

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()


def run_on_ray(suite, out: Path, **options):
    executor = make_executor("ray")
    try:
        return run(suite, out, executor=executor, **options)
    finally:
        executor.close()


def curves(path: Path) -> list[tuple]:
    record = load_record(path)
    return [(p["step"], p["train_loss"], p["eval_loss"]) for p in record["curve"]]


def test_ray_records_match_the_local_executors(tmp_path, ray_cluster):
    suite = load_suite(str(write_suite(tmp_path, ONE_THREAD))).with_overrides(seeds=[0, 1])
    local = run(suite, tmp_path / "local")
    remote = run_on_ray(suite, tmp_path / "ray")
    assert not local.failures and not remote.failures
    names = sorted(p.name for p in (tmp_path / "ray" / "records").iterdir())
    assert names == ["pre_ln-seed0.json", "pre_ln-seed1.json", "sas_p-seed0.json", "sas_p-seed1.json"]
    for name in names:  # same seed and threads: bit-identical loss curves, whichever process trained them
        assert curves(tmp_path / "local" / "records" / name) == curves(tmp_path / "ray" / "records" / name)
    record = load_record(tmp_path / "ray" / "records" / "sas_p-seed1.json")
    probe = json.loads((tmp_path / "ray" / "probe.json").read_text())
    device = record["env"]["device_name"]
    assert record["speed"] == probe["probes"][device]["sas_p"]["speed"]
    assert record["speed"]["method"] == "interleaved" and record["env"]["threads"] == 1


def test_a_killed_ray_worker_is_retried_into_exactly_one_record(tmp_path, ray_cluster):
    suite = load_suite(str(write_suite(tmp_path, ONE_THREAD))).with_overrides(variants=["sas_p"],
                                                                               budget={"steps": 40})
    events = []

    def kill_first_attempt(kind, info):
        events.append((kind, info.get("attempt")))
        if kind == "start" and info["attempt"] == 1:
            os.kill(info["pid"], signal.SIGKILL)

    result = run_on_ray(suite, tmp_path / "out", on_event=kill_first_attempt, max_retries=1)
    assert ("retry", 1) in events and ("done", 2) in events
    assert [p.name for p in (tmp_path / "out" / "records").iterdir()] == ["sas_p-seed0.json"]
    assert len(result.written) == 1 and not result.failures
    assert not (tmp_path / "out" / "failures").exists()


def test_a_raising_user_block_fails_alone_through_ray(tmp_path, ray_cluster, capsys):
    suite = write_suite(tmp_path, ONE_THREAD)
    out = tmp_path / "out"
    code = main(["--block", "tests.user_blocks:raising_block", "run", "--suite", str(suite), "--out", str(out),
                 "--variants", "pre_ln,raising_block,sas_p", "--executor", "ray", "--quiet"])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "1 run(s) failed (raising_block seed 0)" in err.splitlines()[-1]
    assert sorted(p.name for p in (out / "records").iterdir()) == ["pre_ln-seed0.json", "sas_p-seed0.json"]
    failure = load_failure(out / "failures" / "raising_block-seed0.json")
    assert failure["error_type"] == "RuntimeError"
    assert failure["message"] == "boom from a user block (in the speed probe)"  # it raised there first
    assert failure["executor"] == "ray" and not failure["retryable"] and "Traceback" in failure["traceback"]


def test_a_cluster_without_the_resources_a_run_needs_is_one_line(tmp_path, ray_cluster, capsys):
    suite = write_suite(tmp_path, ONE_THREAD)
    code = main(["run", "--suite", str(suite), "--out", str(tmp_path / "out"), "--executor", "ray", "--threads", "4",
                 "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "no node of the Ray cluster has CPU >= 4" in err[0]
    assert not (tmp_path / "out").exists()  # an exit 2 leaves nothing behind: the run had created OUT


def test_executor_ray_without_ray_installed_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(BlockbenchError, match=r"pip install -e '\.\[ray\]'"):
        make_executor("ray")
    suite = write_suite(tmp_path)
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "o"), "--executor", "ray", "--quiet"]) == 2
    assert "pip install -e '.[ray]'" in capsys.readouterr().err


def test_an_unreachable_ray_address_is_one_line_within_30_seconds(tmp_path):
    suite = write_suite(tmp_path)
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "blockbench", "run", "--suite", str(suite), "--out",
                             str(tmp_path / "o"), "--executor", "ray", "--ray-address", "127.0.0.1:9", "--quiet"],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert time.monotonic() - start < 30
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "--ray-address 127.0.0.1:9: cannot reach a Ray cluster there" in lines[0]


@pytest.mark.parametrize("args,needle", [
    (["--max-retries", "-1"], "--max-retries must be >= 0"),
    (["--ray-address", "127.0.0.1:9"], "--ray-address is for --executor ray"),
    (["--executor", "ray", "--in-process"], "not with --in-process"),
    (["--executor", "ray", "--ray-address", "nohost"], "expected HOST:PORT"),
])
def test_executor_bad_input_is_one_line_exit_2(tmp_path, capsys, args, needle):
    suite = write_suite(tmp_path)
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "o"), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_a_killed_local_child_is_retried_and_a_raising_one_is_not(tmp_path):
    suite = load_suite(str(write_suite(tmp_path))).with_overrides(variants=["pre_ln"], budget={"steps": 40})
    seen = []

    def kill_first_attempt(kind, info):
        seen.append((kind, info.get("attempt")))
        if kind == "start" and info["attempt"] == 1:
            os.kill(info["pid"], signal.SIGKILL)

    result = run(suite, tmp_path / "killed", on_event=kill_first_attempt, max_retries=1)
    assert ("retry", 1) in seen and len(result.written) == 1 and not result.failures

    seen.clear()
    result = run(suite, tmp_path / "no-retries", on_event=kill_first_attempt, max_retries=0)
    assert not result.written and len(result.failures) == 1
    failure = load_failure(tmp_path / "no-retries" / "failures" / "pre_ln-seed0.json")
    assert failure["error_type"] == "WorkerDied" and failure["retryable"] and failure["attempt"] == 1
    assert "exit code -9" in failure["message"]


@pytest.mark.slow
def test_the_smoke_suite_through_ray_gives_the_local_executors_loss_curves(tmp_path, ray_cluster):
    suite = load_suite("smoke").with_overrides(threads=1)
    local = run(suite, tmp_path / "local")
    remote = run_on_ray(suite, tmp_path / "ray")
    assert len(local.written) == len(remote.written) == 8 and not remote.failures  # 4 variants x 2 seeds
    for path in local.written:
        assert curves(path) == curves(tmp_path / "ray" / "records" / path.name)
