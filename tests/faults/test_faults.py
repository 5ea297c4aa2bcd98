"""Fault injection, one test per row of docs/reliability.md's reliability table (see tests/faults/table.py).

Each test injects one fault into a real `blockbench` process (a signal, a broken user block, a full or read-only
filesystem, a damaged cache or record, a second driver) and asserts the exit code, the line printed, and what is
on disk afterwards: every finished record intact and loadable, no temporary file, nothing overwritten.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from blockbench.cli import main
from blockbench.records import load_failure, load_record, seal
from tests.faults.table import fault
from tests.tiny_suite import TINY_SUITE, write_suite

REPO = Path(__file__).resolve().parents[2]
LONG = TINY_SUITE.replace("steps = 6", "steps = 40")
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


# ---------------------------------------------------------------------------------------------------------------
# helpers

def cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "blockbench", *args], cwd=REPO, capture_output=True, text=True,
                          env=env or ENV, timeout=timeout)


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "blockbench", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)


def wait_for(process: subprocess.Popen, pattern: str, timeout: float = 120) -> re.Match:
    """Read the process's stdout until a line matches `pattern` (its progress log under --quiet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            raise AssertionError(f"exited {process.returncode} before {pattern!r}: {process.stderr.read()[-2000:]}")
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s")


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=timeout)
    return process.returncode, stderr


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def last_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    return [line for line in stderr.splitlines() if line.strip()][-1]


def intact(out: Path) -> list[str]:
    """Every record under out loads (schema, integrity, summary vs curve); no temporary file anywhere."""
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")], "a temporary file was left behind"
    records = sorted((out / "records").glob("*.json")) if (out / "records").is_dir() else []
    for path in records:
        load_record(path)
    return [p.name for p in records]


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file's bytes, but the driver lock's (it names the last driver that held it)."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def mount_tmpfs(path: Path, options: str) -> None:
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root to mount a small tmpfs")
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")


# ---------------------------------------------------------------------------------------------------------------
# a run that breaks

@fault("a user block raises in forward", 3, "blockbench: 1 run(s) failed (raising_block seed 0); see OUT/failures/",
       "the other variants' records; failures/raising_block-seed0.json with type, message, traceback, host")
def test_user_block_raises(tmp_path):
    out = tmp_path / "out"
    result = cli("--block", "tests.user_blocks:raising_block", "run", "--suite", str(write_suite(tmp_path)),
                 "--out", str(out), "--variants", "pre_ln,raising_block,sas_p", "--quiet")
    assert result.returncode == 3
    assert "1 run(s) failed (raising_block seed 0)" in last_line(result.stderr)
    assert intact(out) == ["pre_ln-seed0.json", "sas_p-seed0.json"]
    failure = load_failure(out / "failures" / "raising_block-seed0.json")
    assert failure["error_type"] == "RuntimeError" and "boom from a user block" in failure["traceback"]


@fault("a user block raises MemoryError", 3, "blockbench: 1 run(s) failed (oom_block seed 0); ...",
       "the other records; a failure file with error_type MemoryError")
def test_user_block_memory_error(tmp_path):
    out = tmp_path / "out"
    result = cli("--block", "tests.user_blocks:oom_block", "run", "--suite", str(write_suite(tmp_path)),
                 "--out", str(out), "--variants", "pre_ln,oom_block", "--quiet")
    assert result.returncode == 3 and "1 run(s) failed (oom_block seed 0)" in last_line(result.stderr)
    assert intact(out) == ["pre_ln-seed0.json"]
    assert load_failure(out / "failures" / "oom_block-seed0.json")["error_type"] == "MemoryError"


@fault("a user block returns NaN", 0, "(none: a diverged run is a result, not a failure)",
       "a record with status diverged and the reason; no failure file")
def test_user_block_returns_nan(tmp_path):
    out = tmp_path / "out"
    result = cli("--block", "tests.user_blocks:nan_block", "run", "--suite", str(write_suite(tmp_path)),
                 "--out", str(out), "--variants", "pre_ln,nan_block", "--quiet")
    assert result.returncode == 0, result.stderr
    assert intact(out) == ["nan_block-seed0.json", "pre_ln-seed0.json"]
    record = load_record(out / "records" / "nan_block-seed0.json")
    assert record["status"] == "diverged" and "diverged" in record["stop_reason"]
    assert not (out / "failures").exists()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
@fault("SIGKILL / SIGTERM / SIGINT of a trial's child process", 0, "(stdout: '... retrying (attempt 2 of 2)')",
       "every record, the killed run's from its retry, written once; no failure file")
def test_child_killed_is_retried(tmp_path, sig):
    out = tmp_path / "out"
    driver = start("run", "--suite", str(write_suite(tmp_path, LONG)), "--out", str(out), "--quiet")
    pid = int(wait_for(driver, r"sas_p seed 0: started \(pid (\d+)\)").group(1))
    os.kill(pid, sig)
    code, stderr = finish(driver)
    assert code == 0, stderr
    assert intact(out) == ["pre_ln-seed0.json", "sas_p-seed0.json"] and not (out / "failures").exists()


@fault("SIGKILL of a trial's child with --max-retries 0", 3, "blockbench: 1 run(s) failed (sas_p seed 0); ...",
       "the other records; a failure file: WorkerDied, 'exit code -9', retryable")
def test_child_killed_without_retries(tmp_path):
    out = tmp_path / "out"
    driver = start("run", "--suite", str(write_suite(tmp_path, LONG)), "--out", str(out), "--quiet",
                   "--max-retries", "0")
    pid = int(wait_for(driver, r"sas_p seed 0: started \(pid (\d+)\)").group(1))
    os.kill(pid, signal.SIGKILL)
    code, stderr = finish(driver)
    assert code == 3 and "1 run(s) failed (sas_p seed 0)" in last_line(stderr)
    assert intact(out) == ["pre_ln-seed0.json"]
    failure = load_failure(out / "failures" / "sas_p-seed0.json")
    assert failure["error_type"] == "WorkerDied" and "exit code -9" in failure["message"] and failure["retryable"]


@fault("SIGSTOP of a trial's child (a hang)", 3, "blockbench: 1 run(s) failed (sas_p seed 0); ...",
       "the other records; a failure file: Stalled, 'no progress for N s' (runtime.stall_seconds)", ci=False)
def test_child_stopped_is_killed_by_the_watchdog(tmp_path):
    out = tmp_path / "out"
    suite = LONG.replace("warmup_steps = 1", "warmup_steps = 1\nstall_seconds = 3")
    driver = start("run", "--suite", str(write_suite(tmp_path, suite)), "--out", str(out), "--quiet")
    pid = int(wait_for(driver, r"sas_p seed 0: started \(pid (\d+)\)", timeout=300).group(1))
    os.kill(pid, signal.SIGSTOP)  # at once ("started" comes before its imports): a tiny run is over in seconds
    code, stderr = finish(driver, timeout=120)
    assert code == 3 and "1 run(s) failed (sas_p seed 0)" in last_line(stderr)
    assert intact(out) == ["pre_ln-seed0.json"]
    failure = load_failure(out / "failures" / "sas_p-seed0.json")
    assert failure["error_type"] == "Stalled" and "no progress for" in failure["message"]


# ---------------------------------------------------------------------------------------------------------------
# the driver is stopped

@pytest.mark.parametrize("sig,code,word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
@fault("SIGINT / SIGTERM of the driver", "130 / 143",
       "blockbench: interrupted (terminated); N finished record(s) kept in OUT/records (--resume --out OUT ...)",
       "the finished records; the run in progress writes nothing; no temporary file")
def test_driver_interrupted(tmp_path, sig, code, word):
    if sig == signal.SIGINT and signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        pytest.skip("SIGINT is ignored here (started in the background), and so in the driver started from here")
    out = tmp_path / "out"
    driver = start("run", "--suite", str(write_suite(tmp_path, LONG)), "--out", str(out), "--quiet",
                   "--seeds", "0,1")
    wait_for(driver, r"pre_ln seed 0: ok after")
    driver.send_signal(sig)
    returncode, stderr = finish(driver, timeout=60)
    assert returncode == code
    assert word in last_line(stderr) and "--resume" in last_line(stderr)
    assert 1 <= len(intact(out)) < 4


@fault("SIGKILL of the driver, then --resume", "-9, then 0", "(the resumed run: 'runs: N to run (M already "
       "finished: kept)')", "after --resume: every record exactly once, the first ones byte-identical, one probe",
       ci=False)
def test_driver_killed_then_resumed(tmp_path):
    out = tmp_path / "out"
    args = ("run", "--suite", str(write_suite(tmp_path, LONG)), "--out", str(out), "--quiet", "--seeds", "0,1")
    driver = start(*args)
    wait_for(driver, r"pre_ln seed 0: ok after")
    driver.send_signal(signal.SIGKILL)
    finish(driver)
    first = snapshot(out / "records")
    result = cli(*args, "--resume")
    assert result.returncode == 0, result.stderr
    assert intact(out) == ["pre_ln-seed0.json", "pre_ln-seed1.json", "sas_p-seed0.json", "sas_p-seed1.json"]
    assert all(snapshot(out / "records")[name] == data for name, data in first.items())


@fault("two runs into one --out at once (same or other overrides)", 2,
       "blockbench: error: --out OUT: in use by another blockbench run (pid N on HOST); ...",
       "the first run's records, untouched; the second wrote nothing")
def test_two_runs_into_one_out(tmp_path):
    out = tmp_path / "out"
    suite = str(write_suite(tmp_path, LONG.replace("steps = 40", "steps = 600")))
    first = start("run", "--suite", suite, "--out", str(out), "--quiet")
    wait_for(first, r"pre_ln seed 0: started")
    for extra in ((), ("--target-loss", "1.0")):
        second = cli("run", "--suite", suite, "--out", str(out), "--quiet", *extra)
        assert second.returncode == 2 and "in use by another blockbench run (pid" in one_line(second.stderr)
    code, stderr = finish(first)
    assert code == 0, stderr
    assert intact(out) == ["pre_ln-seed0.json", "sas_p-seed0.json"]


# ---------------------------------------------------------------------------------------------------------------
# the filesystem

@fault("a full filesystem (a 256 KiB tmpfs)", 2, "blockbench: error: --out OUT: N KiB free, the records of 2 run(s) "
       "need about M KiB; ...", "nothing trained, nothing written (root only: skipped otherwise)")
def test_full_filesystem(tmp_path):
    mount = tmp_path / "small"
    mount_tmpfs(mount, "size=256k")
    try:
        result = cli("run", "--suite", str(write_suite(tmp_path)), "--out", str(mount / "out"), "--quiet")
        assert result.returncode == 2 and "KiB free, the records of 2 run(s) need about" in one_line(result.stderr)
        assert intact(mount / "out") == []
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@fault("the disk fills up as a finished record is written (ENOSPC injected)", 3,
       "blockbench: 1 run(s) failed (sas_p seed 0); ... (stdout: 'could not write ...; the record is kept at PATH')",
       "the record, complete and loadable, under $TMPDIR/blockbench-rescued/; the other records in OUT")
def test_record_write_fails(tmp_path, monkeypatch, capsys):
    import blockbench.runner as runner

    real = runner.write_record

    def full_disk(record, path):
        if "sas_p" in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(record, path)

    monkeypatch.setattr(runner, "write_record", full_disk)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    out = tmp_path / "out"
    code = main(["run", "--suite", str(write_suite(tmp_path)), "--out", str(out), "--quiet", "--in-process"])
    captured = capsys.readouterr()
    assert code == 3 and "1 run(s) failed (sas_p seed 0)" in last_line(captured.err)
    rescued = re.search(r"the record is kept at (\S+\.json)", captured.out).group(1)
    assert load_record(rescued)["variant"] == "sas_p" and rescued.startswith(str(tmp_path / "tmp"))
    assert intact(out) == ["pre_ln-seed0.json"]


@fault("a read-only output filesystem", 2, "blockbench: error: --out OUT: not writable (Read-only file system)",
       "nothing (root only: skipped otherwise)")
def test_read_only_output(tmp_path):
    mount = tmp_path / "ro"
    mount_tmpfs(mount, "ro,size=64k")
    try:
        result = cli("run", "--suite", str(write_suite(tmp_path)), "--out", str(mount / "out"), "--quiet")
        assert result.returncode == 2 and "not writable (Read-only file system)" in one_line(result.stderr)
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@fault("a symlink loop as --out, as records/ or as a record", 2,
       "blockbench: error: ...: not writable / cannot read (Too many levels of symbolic links)", "unchanged")
def test_symlink_loops(tmp_path, finished_run):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    result = cli("run", "--suite", str(write_suite(tmp_path)), "--out", str(loop), "--quiet")
    assert result.returncode == 2 and "not writable" in one_line(result.stderr)
    results = tmp_path / "results"
    (results / "records").mkdir(parents=True)
    (results / "records" / "x.json").symlink_to(results / "records" / "x.json")
    for args in (("leaderboard", str(results)), ("compare", str(finished_run), str(results))):
        result = cli(*args)
        assert result.returncode == 2 and "Too many levels of symbolic links" in one_line(result.stderr), args


# ---------------------------------------------------------------------------------------------------------------
# damaged inputs

def _damage(kind: str, record: dict, text: str) -> str:
    if kind == "non-UTF-8 byte":
        return text[:40] + "\udcff" + text[40:]
    if kind == "100,000-deep array":
        return "[" * 100_000 + "]" * 100_000
    if kind == "NaN literal":
        return text.replace('"final_eval_loss": ', '"final_eval_loss": NaN, "x": ', 1)
    if kind == "config.overrides a list":
        record["config"]["overrides"] = ["budget"]
        return json.dumps(seal(record))
    if kind == "final_eval_loss edited":
        record["summary"]["final_eval_loss"] -= 0.5
        return json.dumps(record)
    if kind == "summary and curve edited together":
        record["summary"]["final_eval_loss"] -= 0.5
        record["curve"][-1]["eval_loss"] -= 0.5
        return json.dumps(record)
    if kind == "summary edited and resealed":
        record["summary"]["final_eval_loss"] -= 0.5
        return json.dumps(seal(record))
    raise AssertionError(kind)


@pytest.mark.parametrize("kind,needle", [
    ("non-UTF-8 byte", "not UTF-8 text"),
    ("100,000-deep array", "nested too deeply"),
    ("NaN literal", "NaN is not a JSON number"),
    ("config.overrides a list", "config: 'overrides' has type list"),
    ("final_eval_loss edited", "does not match the curve's last point"),
    ("summary and curve edited together", "integrity check failed"),
    ("summary edited and resealed", "does not match the curve's last point"),
])
@fault("a malformed or hand-edited baseline record (non-UTF-8, 100,000-deep, NaN literal, wrong types, edited "
       "summary, edited summary and curve)", 2, "blockbench: error: baseline: PATH: <what is wrong>",
       "the baseline unchanged (compare and ci/gate never exit 1 on a damaged baseline)")
def test_malformed_baseline_record(tmp_path, finished_run, kind, needle):
    base = tmp_path / "base"
    shutil.copytree(finished_run, base)
    path = base / "records" / "sas_p-seed0.json"
    text = path.read_text()
    damaged = _damage(kind, json.loads(text), text)
    path.write_bytes(damaged.encode("utf-8", "surrogateescape"))
    before = snapshot(base)
    result = cli("compare", str(base), str(finished_run))
    line = one_line(result.stderr)
    assert result.returncode == 2 and needle in line and "sas_p-seed0.json" in line, line
    assert snapshot(base) == before


@fault("a damaged probe.json or record in the directory being resumed", 2,
       "blockbench: error: ...probe.json: not valid JSON... / --resume: ...: move the file away to rerun that run",
       "unchanged")
def test_damaged_files_in_a_resumed_directory(tmp_path, finished_run):
    suite = str(write_suite(tmp_path))
    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    (out / "probe.json").write_text("{oops")
    before = snapshot(out)
    result = cli("run", "--suite", suite, "--out", str(out), "--quiet", "--resume")
    assert result.returncode == 2 and "probe.json: not valid JSON" in one_line(result.stderr)
    assert snapshot(out) == before
    shutil.copy(finished_run / "probe.json", out / "probe.json")
    (out / "records" / "pre_ln-seed0.json").write_text("{")
    before = snapshot(out)
    result = cli("run", "--suite", suite, "--out", str(out), "--quiet", "--resume")
    assert result.returncode == 2 and "move the file away" in one_line(result.stderr)
    assert snapshot(out) == before


@pytest.fixture
def cache(tmp_path) -> dict:
    return {**ENV, "BLOCKBENCH_CACHE": str(tmp_path / "cache")}


@fault("a corrupted token cache (bytes garbled), or one edited consistently (tokens and meta.json together)", 0,
       "(none)", "the cache rebuilt; records identical in loss to a run on a clean cache")
def test_corrupted_and_consistently_edited_token_cache(tmp_path, cache):
    suite = str(write_suite(tmp_path))
    args = ("run", "--suite", suite, "--variants", "pre_ln", "--quiet", "--budget-steps", "2")
    assert cli(*args, "--out", str(tmp_path / "clean"), env=cache).returncode == 0
    def losses(run: str) -> list[tuple]:
        return [(p["train_loss"], p["eval_loss"]) for p in load_record(tmp_path / run / "records" /
                                                                         "pre_ln-seed0.json")["curve"]]

    reference = losses("clean")
    [train] = (tmp_path / "cache").rglob("train.npy")
    meta_path = train.parent / "meta.json"
    tokens = np.load(train)
    garbled = bytearray(train.read_bytes())
    garbled[-1000:] = bytes(1000)
    train.write_bytes(bytes(garbled))
    assert cli(*args, "--out", str(tmp_path / "garbled"), env=cache).returncode == 0
    edited = tokens.copy()
    edited[:50] = 7  # a consistent edit: meta.json updated to the edited array, so size and sha256 agree
    np.save(train, edited, allow_pickle=False)
    meta = json.loads(meta_path.read_text())
    import hashlib

    meta["train"]["sha256"] = hashlib.sha256(edited.tobytes()).hexdigest()
    meta_path.write_text(json.dumps(meta))
    assert cli(*args, "--out", str(tmp_path / "edited"), env=cache).returncode == 0
    for run in ("garbled", "edited"):
        assert losses(run) == reference
    assert np.array_equal(np.load(train), tokens)


@fault("a cached tokenizer.json edited yet still valid", "0, then 2 for compare",
       "blockbench: error: nothing comparable: different tokenizations (data.tokenizer 'bpe-300-…' vs 'bpe-300-…')",
       "new runs carry the edited tokenizer's id and sha256; leaderboards leave the other tokenization out")
def test_edited_tokenizer_is_never_mixed(tmp_path, cache):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(40):
        (corpus / f"m{i}.py").write_text("".join(f"def f{j}_{i}(x):\n    return x * {j} + {i}\n" for j in range(60)))
    suite_text = TINY_SUITE.replace('corpus = "sympy"\ntokenizer = "bytes"',
                                    f'corpus = "files"\ndata_files = ["{corpus}/*.py"]\ntokenizer = "bpe"\n'
                                    'vocab_size = 300\nval_fraction = 0.2')
    suite = str(write_suite(tmp_path, suite_text.replace("windows = 4", "windows = 2")))
    args = ("run", "--suite", suite, "--variants", "pre_ln", "--quiet", "--budget-steps", "2")
    first = cli(*args, "--out", str(tmp_path / "a"), env=cache)
    assert first.returncode == 0, first.stderr
    [tokenizer] = (tmp_path / "cache").rglob("tokenizer.json")
    tokenizer.write_text(json.dumps(json.loads(tokenizer.read_text()), indent=2))  # same merges, other bytes
    assert cli(*args, "--out", str(tmp_path / "b"), env=cache).returncode == 0
    a, b = (load_record(tmp_path / d / "records" / "pre_ln-seed0.json")["data"] for d in "ab")
    assert a["tokenizer"] != b["tokenizer"] and a["tokenizer_sha256"] != b["tokenizer_sha256"]
    result = cli("compare", str(tmp_path / "a"), str(tmp_path / "b"))
    assert result.returncode == 2 and "different tokenizations (data.tokenizer" in one_line(result.stderr)
    mixed = tmp_path / "mixed"
    shutil.copytree(tmp_path / "a", mixed)
    b_record = load_record(tmp_path / "b" / "records" / "pre_ln-seed0.json")
    b_record["seed"] = 1
    (mixed / "records" / "pre_ln-seed1.json").write_text(json.dumps(seal(b_record)))
    result = cli("leaderboard", str(mixed))
    assert result.returncode == 0 and "tokenized differently" in result.stderr and "data.tokenizer" in result.stderr
