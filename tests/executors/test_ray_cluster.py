"""A real Ray cluster started as a user would (`ray start --head` on 127.0.0.1), and `blockbench run` connecting
to it with --ray-address. Slow: starting the head takes seconds."""

import os
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from blockbench.records import load_record
from tests.tiny_suite import TINY_SUITE, write_suite

pytest.importorskip("ray")
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Token authentication, as `ray start` has it on by default since Ray 2.59: the head and the driver share a token
# (here a fresh one in the environment, so a machine without ~/.ray/auth_token works too).
ENV = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
       "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


@pytest.fixture
def ray_head(tmp_path):
    ray_cli = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    port = free_port()
    start = subprocess.run([ray_cli, "start", "--head", "--port", str(port), "--num-cpus", "2", "--num-gpus", "0",
                            "--include-dashboard", "false", "--disable-usage-stats"],
                           capture_output=True, text=True, timeout=120, env=ENV)
    assert start.returncode == 0, start.stderr[-2000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120, env=ENV)


@pytest.mark.slow
def test_run_on_a_cluster_started_with_ray_start(tmp_path, ray_head):
    suite = write_suite(tmp_path, TINY_SUITE.replace("threads = 2", "threads = 1"))
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "blockbench", "run", "--suite", str(suite), "--out", str(out),
                             "--seeds", "0,1", "--executor", "ray", "--ray-address", ray_head, "--quiet"],
                            capture_output=True, text=True, cwd=REPO, timeout=600, env=ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    names = sorted(p.name for p in (out / "records").iterdir())
    assert names == ["pre_ln-seed0.json", "pre_ln-seed1.json", "sas_p-seed0.json", "sas_p-seed1.json"]
    assert all(load_record(out / "records" / n)["speed"]["method"] == "interleaved" for n in names)
    assert "runs: 4 to run" in result.stdout
