"""Fault injection, part three (issue 32): files received from a stranger, and limits.

A run directory, a results folder or a cache may come from someone else: a link where blockbench writes, a FIFO
where it reads, a 1 GiB or 100,000-deep JSON file, a forged name in a record, a record under another run's file
name. And a machine has limits: a file-size limit (`ulimit -f`), a probe process that dies, a pre-warmed standby
that stalls. Like test_faults.py, each test is one row of docs/reliability.md's reliability
table (tests/faults/table.py).
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blockbench.cli import main
from blockbench.errors import BlockbenchError
from blockbench.records import load_failure, load_record, seal, write_failure, write_probe
from tests.faults.table import fault
from tests.faults.test_faults import ENV, REPO, cli, finish, intact, last_line, one_line, snapshot, start, wait_for
from tests.tiny_suite import TINY_SUITE, write_suite


def tree(directory: Path) -> dict[str, bytes | str]:
    """Every entry under `directory`, the lock included: a file's bytes (a large one's size), a link's target, a
    directory's or FIFO's kind."""
    out: dict[str, bytes | str] = {}
    for p in sorted(directory.rglob("*")):
        key = str(p.relative_to(directory))
        if p.is_symlink():
            out[key] = f"-> {os.readlink(p)}"
        elif p.is_dir() or not p.is_file():  # a FIFO is never opened here: that would block the test itself
            out[key] = "dir" if p.is_dir() else "special"
        elif p.stat().st_size > 2**20:  # the sparse 1 GiB file: its size stands for its content
            out[key] = f"{p.stat().st_size} bytes"
        else:
            out[key] = p.read_bytes()
    return out


def limited(limit_bytes: int):
    """A preexec_fn: a file-size limit (`ulimit -f`), with SIGXFSZ ignored so that a write past it fails with
    EFBIG instead of killing the process (Python ignores it too; said here so the test does not rely on that)."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


def cli_limited(limit_bytes: int, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "blockbench", *args], cwd=REPO, capture_output=True, text=True,
                          env=env or ENV, timeout=300, preexec_fn=limited(limit_bytes))


# ---------------------------------------------------------------------------------------------------------------
# writes never follow links

@fault("OUT/.lock is a symbolic link to another file (a received run directory, --resume or a fresh run)", 2,
       "blockbench: error: OUT/.lock: is a symbolic link; blockbench never writes its run lock through a link",
       "the link's target unchanged; OUT exactly as it was (nothing created)")
def test_lock_is_a_link(tmp_path, finished_run):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    suite = str(write_suite(tmp_path))
    resumed = tmp_path / "resumed"
    shutil.copytree(finished_run, resumed)
    (resumed / ".lock").unlink()
    (resumed / ".lock").symlink_to(victim)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / ".lock").symlink_to(victim)
    for out, extra in ((resumed, ("--resume",)), (fresh, ())):
        before = tree(out)
        result = cli("run", "--suite", suite, "--out", str(out), "--quiet", *extra)
        line = one_line(result.stderr)
        assert result.returncode == 2 and f"{out / '.lock'}: is a symbolic link" in line, line
        assert tree(out) == before
    assert victim.read_text() == "precious\n"


@fault("a page, failure file, probe.json or token-cache file is a symbolic link (or a FIFO)", 2,
       "blockbench: error: OUT/leaderboard.md: is a symbolic link; blockbench never writes its page through a "
       "link; ...", "the link's target unchanged; no page written (all are checked before any is)")
def test_outputs_are_links(tmp_path, finished_run):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    (out / "leaderboard.md").symlink_to(victim)
    before = tree(out)
    result = cli("leaderboard", str(out))
    line = one_line(result.stderr)
    assert result.returncode == 2 and "leaderboard.md: is a symbolic link" in line, line
    assert tree(out) == before and victim.read_text() == "precious\n"

    failure = load_failure_like(finished_run)
    link = tmp_path / "failures" / "sas_p-seed0.json"
    link.parent.mkdir()
    link.symlink_to(victim)
    with pytest.raises(BlockbenchError, match="is a symbolic link"):
        write_failure(failure, link)
    probe = json.loads((finished_run / "probe.json").read_text())
    probe.pop("probe_schema_version")
    (tmp_path / "probe.json").symlink_to(victim)
    for replace in (False, True):
        with pytest.raises(BlockbenchError, match="symbolic link|already exists"):
            write_probe(probe, tmp_path / "probe.json", replace=replace)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(BlockbenchError, match="not a regular file"):
        write_probe(probe, fifo, replace=True)

    from blockbench import data

    cache_link = tmp_path / "cache" / "train.npy"
    cache_link.parent.mkdir()
    cache_link.symlink_to(victim)
    with pytest.raises(data.DataError, match="is a symbolic link"):
        data._atomic_write(cache_link, lambda f: f.write(b"x" * 100))
    assert victim.read_text() == "precious\n"
    assert not [p for p in tmp_path.rglob("*.tmp")]


def load_failure_like(run: Path) -> dict:
    """A valid failure file's content for the tiny suite's sas_p seed 0."""
    record = load_record(run / "records" / "sas_p-seed0.json")
    return {"failure_schema_version": 1, "suite": record["suite"], "overrides": record["config"]["overrides"],
            "variant": "sas_p", "seed": 0, "error_type": "RuntimeError", "message": "x", "traceback": "",
            "host": "h", "attempt": 1, "retryable": False, "executor": "local", "created_at": "2026-01-01"}


# ---------------------------------------------------------------------------------------------------------------
# names checked on the way in

@pytest.mark.parametrize("name", ["=cmd|' /C calc'!A0", "a\nb\n# heading\n<script>x</script>", "$\\frac{a}{b}$",
                                  "[red]x[/red]", "\x1b[31mred"],
                         ids=["formula", "newlines-html", "mathtext", "rich-markup", "escape"])
@fault("a record whose variant name is forged (newlines, '=' formula, $mathtext$, rich markup, ESC, '/')", 2,
       "blockbench: error: PATH: variant '=cmd...': use only letters, digits and '_', '.', '+', '-' ...",
       "the record unchanged; no page or CSV written")
def test_forged_variant_name_in_a_record(tmp_path, finished_run, name):
    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    path = out / "records" / "sas_p-seed0.json"
    record = json.loads(path.read_text())
    record["variant"] = name
    path.write_text(json.dumps(seal(record)))
    before = tree(out)
    for args in (("leaderboard", str(out)), ("compare", str(out), str(finished_run))):
        result = cli(*args)
        line = one_line(result.stderr)
        assert result.returncode == 2 and "sas_p-seed0.json: variant" in line, line
        assert "\x1b" not in line and "\n" not in line.strip()
    assert tree(out) == before
    record["variant"], record["suite"]["version"] = "sas_p", "../x"
    path.write_text(json.dumps(seal(record)))
    with pytest.raises(BlockbenchError, match=r"suite.version '../x' starts with '.'"):
        load_record(path)


# ---------------------------------------------------------------------------------------------------------------
# one guarded loader for every file read

@pytest.mark.parametrize("kind,needle", [
    ("FIFO", "diagnose.json: not a regular file"),
    ("1 GiB (sparse)", "1,073,741,824 bytes, more than"),
    ("100,000-deep", "JSON nested too deeply"),
    ("a string where a list belongs", "variants.pre_ln.rms_norm must be a list, not str"),
])
@fault("diagnose.json beside a results folder is a FIFO, 1 GiB, 100,000-deep or mistyped (`blockbench report`)",
       2, "blockbench: error: DIR/diagnose.json: not a regular file / N bytes, more than the 4,194,304 ... / JSON "
       "nested too deeply ... / variants.X.rms_norm must be a list ...; rerun blockbench diagnose",
       "unchanged; in under a second per case, no hang, no RecursionError, nothing read whole")
def test_damaged_diagnose_json(tmp_path, finished_run, kind, needle):
    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    (out / "diagnose.png").write_bytes(b"png")
    path = out / "diagnose.json"
    if kind == "FIFO":
        os.mkfifo(path)
    elif kind.startswith("1 GiB"):
        with open(path, "wb") as f:
            f.truncate(2**30)
    elif kind.startswith("100,000"):
        path.write_text("[" * 100_000 + "]" * 100_000)
    else:
        path.write_text(json.dumps({"suite": "tiny", "model": {"n_layers": 1, "d_model": 32},
                                    "variants": {"pre_ln": {"cosine": [1.0], "rms_norm": "1.0"}}}))
    before = tree(out)
    began = time.monotonic()
    result = cli("report", str(out), timeout=120)
    line = one_line(result.stderr)
    assert result.returncode == 2 and needle in line and "rerun blockbench diagnose" in line, line
    assert time.monotonic() - began < 60 and tree(out) == before


@pytest.mark.parametrize("text,needle", [
    ('["default/1"]\nwhat = "x"\n', None),
    ('"default/1" = "a string"\n', "['default/1'] must be a table, not str"),
    ('notes = "one paragraph"\n', "notes must be a list, not str"),
    ('notes = [1]\n', "notes[0] must be a string, not int"),
    ('["default/1"]\nwhat = ["x"]\n', "['default/1'].what must be a string, not list"),
    ('["default/1"]\nwhen = "x"\n', "['default/1'].when: unknown field"),
    ("x = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
], ids=["well-formed", "string-for-table", "notes-string", "notes-int", "what-list", "unknown-field", "deep"])
@fault("results/provenance.toml mistyped (a string where a table belongs, notes a string, unknown field, deep)", 2,
       "blockbench: error: results/provenance.toml: ['default/1'] must be a table, not str / notes must be a list, "
       "not str / ...", "unchanged; no index page written")
def test_mistyped_provenance(tmp_path, text, needle):
    root = tmp_path / "results"
    root.mkdir()
    (root / "provenance.toml").write_text(text)
    result = cli("leaderboard", "--index", str(root))
    line = one_line(result.stderr)
    assert result.returncode == 2, line
    if needle is None:  # well-formed: refused only for naming a directory that is not there (as before)
        assert "entries for directories that do not exist: default/1" in line, line
    else:
        assert "provenance.toml: " in line and needle in line, line
    assert sorted(p.name for p in root.iterdir()) == ["provenance.toml"]


@fault("a FIFO as the suite file, the override file or a resumed run's probe.json", 2,
       "blockbench: error: PATH: not a regular file; not a suite file / ... probe file",
       "unchanged; no hang")
def test_fifo_inputs(tmp_path, finished_run):
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    suite = str(write_suite(tmp_path))
    for args in (("run", "--suite", str(fifo), "--out", str(tmp_path / "a")),
                 ("run", "--suite", suite, "--overrides", str(fifo), "--out", str(tmp_path / "b"))):
        result = cli(*args, "--quiet", timeout=120)
        line = one_line(result.stderr)
        assert result.returncode == 2 and f"{fifo}: not a regular file" in line, line
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    (out / "probe.json").unlink()
    os.mkfifo(out / "probe.json")
    (out / "records" / "sas_p-seed0.json").unlink()
    before = tree(out)
    result = cli("run", "--suite", suite, "--out", str(out), "--quiet", "--resume", timeout=120)
    line = one_line(result.stderr)
    assert result.returncode == 2 and "probe.json: not a regular file" in line, line
    assert tree(out) == before


@pytest.mark.parametrize("cached", ['{"peak_flops": Infinity}', '{"peak_flops": 1e999}', '{"peak_flops": NaN}',
                                    '{"peak_flops": true}', "[" * 10_000 + "]" * 10_000],
                         ids=["Infinity", "1e999", "NaN", "bool", "deep"])
@fault("a cached CPU peak (MFU's denominator) that is non-finite, not a number or deeply nested", 0, "(none)",
       "the figure ignored and measured again; the cache rewritten with the new, finite figure")
def test_non_finite_cached_peak(tmp_path, monkeypatch, cached):
    from blockbench.measure import mfu

    calls = []

    def probe() -> dict:
        calls.append(1)
        return {"peak_flops": 1.5e10, "by_size": {}, "threads": 2, "seconds": 0.1,
                "probe_version": mfu.CPU_PROBE_VERSION}

    monkeypatch.setattr(mfu, "probe_cpu_peak", probe)
    path = mfu._cpu_cache_path(__import__("torch").get_num_threads(), tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cached)
    assert mfu.cpu_peak_flops(tmp_path)["peak_flops"] == 1.5e10 and calls == [1]
    assert json.loads(path.read_text())["peak_flops"] == 1.5e10
    assert mfu.cpu_peak_flops(tmp_path)["peak_flops"] == 1.5e10 and calls == [1]  # now read from the cache


# ---------------------------------------------------------------------------------------------------------------
# nothing lost at a limit

@fault("a file-size limit (ulimit -f 32) below a record's size", 2,
       "blockbench: error: --out OUT: the file-size limit (ulimit -f) is 32 KiB, a record needs up to about 64 KiB; "
       "raise the limit", "nothing trained; OUT not created (or, when it existed, exactly as it was)")
def test_file_size_limit_before_training(tmp_path):
    suite = str(write_suite(tmp_path))
    existing = tmp_path / "existing"
    existing.mkdir()
    for out in (tmp_path / "new" / "out", existing):
        result = cli_limited(32 * 1024, "run", "--suite", suite, "--out", str(out), "--quiet")
        line = one_line(result.stderr)
        assert result.returncode == 2 and "the file-size limit (ulimit -f) is 32 KiB" in line, line
    assert not (tmp_path / "new").exists() and list(existing.iterdir()) == []


@fault("a record larger than the file-size limit, rescued under that limit", "-",
       "(rescue_record returns None: the message then says the record is lost)",
       "no file named like a record anywhere: neither $TMPDIR/blockbench-rescued/ nor ~/blockbench-rescued/ "
       "holds a truncated one")
def test_rescue_under_a_file_size_limit(tmp_path, finished_run):
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    record = finished_run / "records" / "sas_p-seed0.json"
    assert record.stat().st_size > 4096
    script = ("from blockbench.records import load_record; from blockbench.runner import rescue_record; "
              f"print(rescue_record(load_record({str(record)!r}), 'sas_p-seed0.json'))")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**ENV, "HOME": str(home), "TMPDIR": str(tmp)}, preexec_fn=limited(4096))
    assert result.returncode == 0 and result.stdout.strip() == "None", result.stderr[-2000:]
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    # without the limit the same call keeps it whole, at the first place
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**ENV, "HOME": str(home), "TMPDIR": str(tmp)})
    kept = Path(result.stdout.strip())
    assert kept.parent == tmp / "blockbench-rescued" and load_record(kept)["variant"] == "sas_p"


@pytest.mark.parametrize("also", ["nowhere to rescue it", "nor a failure file"])
@fault("a finished record OUT will not take (EFBIG), with nowhere to rescue it, and no failure file either", 3,
       "blockbench: 1 run(s) failed (sas_p seed 0); see OUT/failures/ ... / ...; 1 failure file(s) could not be "
       "written: the FAILED line(s) above say where each record and error went (stdout: 'could not write PATH (File "
       "too large); the record could not be kept whole anywhere (tried ...); it is lost')",
       "a failure file saying so, or none and the message says where; no truncated record-named file anywhere")
def test_record_lost_at_a_limit_says_so(tmp_path, monkeypatch, capsys, also):
    import blockbench.runner as runner

    real_record = runner.write_record

    def too_large(*args):
        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))

    monkeypatch.setattr(runner, "write_record",
                        lambda record, path: too_large() if "sas_p" in str(path) else real_record(record, path))
    if also == "nor a failure file":
        monkeypatch.setattr(runner, "write_failure", lambda failure, path: too_large())
    from blockbench.data import default_cache_dir

    monkeypatch.setenv("BLOCKBENCH_CACHE", str(default_cache_dir()))  # the token cache stays where it is
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setattr("tempfile.tempdir", str(blocker / "tmp"))
    monkeypatch.setenv("HOME", str(blocker / "home"))
    out = tmp_path / "out"
    code = main(["run", "--suite", str(write_suite(tmp_path)), "--out", str(out), "--quiet", "--in-process"])
    captured = capsys.readouterr()
    assert code == 3 and "1 run(s) failed (sas_p seed 0)" in last_line(captured.err)
    assert f"could not write {out / 'records' / 'sas_p-seed0.json'} (File too large)" in captured.out
    assert "the record could not be kept whole anywhere" in captured.out and "it is lost" in captured.out
    assert "is and nowhere" not in captured.out + captured.err
    assert intact(out) == ["pre_ln-seed0.json"]
    failure_path = out / "failures" / "sas_p-seed0.json"
    if also == "nor a failure file":
        assert not failure_path.exists()
        assert "its failure file" in captured.out and "could not be written: File too large" in captured.out
        assert "the FAILED line(s) above say where each record and error went" in last_line(captured.err)
    else:
        failure = load_failure(failure_path)
        assert failure["error_type"] == "RecordWriteError" and "it is lost" in failure["message"]
        assert f"see {out}/failures/" in last_line(captured.err)
    assert not [p for p in tmp_path.rglob("*sas_p-seed0.json") if p != failure_path]


@fault("the token cache is written under a file-size limit (ulimit -f 1 MiB, a 31 MB train split)", 2,
       "blockbench: error: cannot write the data cache file CACHE/.../train.npy (... written; the file-size limit "
       "(ulimit -f) is 1024 KiB); nothing partial was left; ...", "no cache file, no temporary file; OUT not created")
def test_token_cache_at_a_limit(tmp_path):
    cache = tmp_path / "cache"
    env = {**ENV, "BLOCKBENCH_CACHE": str(cache)}
    out = tmp_path / "out"
    result = cli_limited(2**20, "run", "--suite", str(write_suite(tmp_path)), "--out", str(out), "--quiet", env=env)
    line = one_line(result.stderr)
    assert result.returncode == 2 and "cannot write the data cache file" in line, line
    assert "the file-size limit (ulimit -f) is 1024 KiB" in line and "nothing partial was left" in line, line
    assert not [p for p in cache.rglob("*") if p.suffix in (".npy", ".tmp") or p.name.endswith(".tmp")]
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------------------
# resume by name and content

@fault("a record saved under another run's file name, then --resume", 2,
       "blockbench: error: --resume: OUT/records/pre_ln-seed0.json: holds the record of sas_p seed 0, which belongs "
       "in records/sas_p-seed0.json (move the file away to rerun that run)", "unchanged; nothing trained")
def test_record_under_another_runs_name(tmp_path, finished_run):
    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    shutil.copy(out / "records" / "sas_p-seed0.json", out / "records" / "pre_ln-seed0.json")
    before = snapshot(out)
    result = cli("run", "--suite", str(write_suite(tmp_path)), "--out", str(out), "--quiet", "--resume")
    line = one_line(result.stderr)
    assert result.returncode == 2, line
    assert "pre_ln-seed0.json: holds the record of sas_p seed 0, which belongs in records/sas_p-seed0.json" in line
    assert snapshot(out) == before and not (out / "failures").exists()


# ---------------------------------------------------------------------------------------------------------------
# the probe is a run like any other

def _spawned_children(pid: int) -> list[int]:
    """The multiprocessing children (spawn) of `pid`, not its resource tracker."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            children.append(int(entry.name))
    return children


def _kill_the_probe(driver: subprocess.Popen, not_pid: int | None = None, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in _spawned_children(driver.pid) if p != not_pid]
        if found:
            os.kill(found[0], signal.SIGKILL)
            return found[0]
        time.sleep(0.1)
    raise AssertionError("no probe process appeared")


@fault("SIGKILL of the speed probe's process, every attempt (--max-retries 1)", 3,
       "blockbench: 2 run(s) failed (pre_ln seed 0, sas_p seed 0); ... (stdout: 'speed probe: the speed probe's "
       "process died (exit code -9); retrying (attempt 2 of 2)')",
       "a failure file per run: WorkerDied, '... (2 attempt(s)) (in the speed probe)'; probe.json saying so "
       "(--resume probes again); without a speed probe in the suite the runs go on and measure their own figures")
def test_probe_killed(tmp_path):
    out = tmp_path / "out"
    driver = start("run", "--suite", str(write_suite(tmp_path)), "--out", str(out), "--quiet", "--max-retries", "1")
    wait_for(driver, r"speed probe: 2 variants")
    first = _kill_the_probe(driver)
    wait_for(driver, r"speed probe: the speed probe's process died \(exit code -9\); retrying \(attempt 2 of 2\)")
    _kill_the_probe(driver, not_pid=first)
    code, stderr = finish(driver)
    assert code == 3 and "2 run(s) failed (pre_ln seed 0, sas_p seed 0)" in last_line(stderr), stderr[-2000:]
    assert intact(out) == []
    for variant in ("pre_ln", "sas_p"):
        failure = load_failure(out / "failures" / f"{variant}-seed0.json")
        assert failure["error_type"] == "WorkerDied" and "(in the speed probe)" in failure["message"]
        assert "2 attempt(s)" in failure["message"]
    assert all(entry["error"] for entry in next(iter(json.loads((out / "probe.json").read_text())["probes"]
                                                       .values())).values())


def test_probe_that_dies_without_a_speed_probe_lets_the_runs_go_on(tmp_path):
    """The runner's side, with an executor whose probe always dies: with speed rounds the runs fail with the
    probe's failure; without, every variant's entry is empty and the runs measure their own static figures."""
    from blockbench.executors import ProbeDied, died_payload
    from blockbench.runner import _probe, probe_failures
    from blockbench.suite import load_suite

    class Dying:
        remote = False
        calls = 0

        def probe(self, suite, block_paths):
            Dying.calls += 1
            raise ProbeDied(died_payload("the speed probe's process died (exit code -9)"))

    events = []
    suite = load_suite(str(write_suite(tmp_path)))
    probes = _probe(suite, Dying(), [], lambda kind, info: events.append(kind), "", 2)
    assert Dying.calls == 3 and events == ["probe_retry", "probe_retry"]
    assert set(probe_failures({"probes": probes}, set(suite.variants))) == set(suite.variants)
    import dataclasses

    no_speed = dataclasses.replace(suite, speed=dataclasses.replace(suite.speed, rounds=0))
    probes = _probe(no_speed, Dying(), [], lambda kind, info: None, "", 0)
    assert probe_failures({"probes": probes}, set(suite.variants)) == {}
    assert all(entry == {"static": None, "speed": None} for entry in next(iter(probes.values())).values())


@fault("a pre-warmed standby process stalls (SIGSTOP) before it is handed its run", 0,
       "(none)", "the run's record, trained in a fresh process; the standby killed; no failure")
def test_stalled_standby_falls_back_to_a_fresh_process(tmp_path):
    from blockbench.executors import Job
    from blockbench.executors.local import LocalExecutor
    from blockbench.suite import load_suite

    suite = load_suite(str(write_suite(tmp_path)))
    executor = LocalExecutor(stall_seconds=15, prewarm="on")
    try:
        executor._start_standby(suite, (), str(REPO))
        standby = executor.standby
        os.kill(standby.process.pid, signal.SIGSTOP)
        job = Job(suite, "pre_ln", 0, cwd=str(REPO))
        executor.submit(job)
        events = []
        deadline = time.monotonic() + 240
        while not any(e.kind in ("result", "failed") for e in events) and time.monotonic() < deadline:
            executor.poll(events.append, 0.5)
        kinds = [e.kind for e in events]
        assert kinds[-1] == "result", [(e.kind, e.payload.get("message")) for e in events]
        assert "failed" not in kinds and not standby.process.is_alive()
        started = next(e for e in events if e.kind == "started")
        assert not started.payload.get("prewarmed") and started.payload["pid"] != standby.process.pid
    finally:
        executor.close()


# ---------------------------------------------------------------------------------------------------------------
# refuse early what is knowable early

@fault('runtime.cuda_graphs = "on" with runtime.device = "cpu" (or --device cpu)', 2,
       'blockbench: error: SUITE: runtime.cuda_graphs: "on" with runtime.device = "cpu": a CUDA graph needs a CUDA '
       "device ...", "nothing: refused while the suite is read, before any directory or probe")
def test_cuda_graphs_on_cpu(tmp_path):
    text = TINY_SUITE.replace("[runtime]\n", '[runtime]\ncuda_graphs = "on"\n')
    on_cpu = write_suite(tmp_path, text.replace("[runtime]\n", '[runtime]\ndevice = "cpu"\n'), "on-cpu.toml")
    result = cli("run", "--suite", str(on_cpu), "--out", str(tmp_path / "a"), "--quiet")
    line = one_line(result.stderr)
    assert result.returncode == 2 and 'runtime.cuda_graphs: "on" with runtime.device = "cpu"' in line, line
    result = cli("run", "--suite", str(write_suite(tmp_path, text, "on.toml")), "--device", "cpu",
                 "--out", str(tmp_path / "b"), "--quiet")
    line = one_line(result.stderr)
    assert result.returncode == 2 and "--device cpu:" in line and "a CUDA graph needs a CUDA device" in line, line
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@fault("profile --cost on a block whose forward dynamo gives up on (skip_frame: the frame runs eagerly)", 0,
       "(stdout: 'NAME: compiled forward in 1 graph(s), 0 break(s), ...; dynamo gave up on 1 frame(s), which run "
       "eagerly (first: ...)')", "-")
def test_dynamo_giving_up_is_said():
    import torch

    from blockbench.measure.graph import compile_graph

    class Inner(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 4)

        def forward(self, x):
            return self.linear(x).relu()

    class GivesUp(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Inner()

        def forward(self, x):
            torch._dynamo.skip_frame()
            return self.inner(x) * 2

    graph = compile_graph(GivesUp(), (torch.randn(2, 4),))
    assert (graph["graphs"], graph["graph_breaks"], graph["frames_given_up"]) == (1, 0, 1)
    assert "skip_frame" in graph["given_up_reasons"][0]
    assert "frames_given_up" not in compile_graph(Inner(), (torch.randn(2, 4),))
