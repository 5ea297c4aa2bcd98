"""torchrun + DDP on CPU (gloo, 2 processes): one record per run, the same curve as one process."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny_suite import TINY_SUITE, write_suite

REPO = Path(__file__).resolve().parents[1]


def torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    # --standalone: a local rendezvous on a free port, so parallel test runs do not collide.
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(nproc), "-m", "blockbench", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=600)


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    suite = write_suite(tmp_path, TINY_SUITE.replace("batch_size = 4", "batch_size = 8"))
    two = torchrun(2, "run", "--suite", str(suite), "--out", str(tmp_path / "two"), "--threads", "1", "--quiet")
    assert two.returncode == 0, two.stderr[-2000:]
    one = subprocess.run([sys.executable, "-m", "blockbench", "run", "--suite", str(suite), "--out",
                          str(tmp_path / "one"), "--threads", "1", "--quiet", "--in-process"],
                         capture_output=True, text=True, cwd=REPO, timeout=600)
    assert one.returncode == 0, one.stderr
    assert sorted(p.name for p in (tmp_path / "two" / "records").iterdir()) == ["pre_ln-seed0.json",
                                                                                 "sas_p-seed0.json"]
    for variant in ("pre_ln", "sas_p"):
        a = json.loads((tmp_path / "one" / "records" / f"{variant}-seed0.json").read_text())
        b = json.loads((tmp_path / "two" / "records" / f"{variant}-seed0.json").read_text())
        assert b["env"]["world_size"] == 2 and a["env"]["world_size"] == 1
        assert b["summary"]["tokens"] == a["summary"]["tokens"]  # throughput counts global tokens
        # Same update up to float summation order: gradients are averaged over two half batches.
        for p, q in zip(a["curve"], b["curve"]):
            assert q["eval_loss"] == pytest.approx(p["eval_loss"], abs=1e-4)


def test_world_size_must_divide_the_batch(tmp_path):
    suite = write_suite(tmp_path, TINY_SUITE.replace("batch_size = 4", "batch_size = 5"))
    result = torchrun(2, "run", "--suite", str(suite), "--out", str(tmp_path / "out"), "--threads", "1",
                      "--quiet")
    assert result.returncode != 0
    assert "world size 2 does not divide the global batch of 5" in result.stderr
    assert not list((tmp_path / "out").glob("records/*.json"))
