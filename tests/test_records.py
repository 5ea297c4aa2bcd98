"""Run records: round trip, atomic never-overwriting writes, rejection of corrupt or foreign files."""

import copy
import json

import pytest

from blockbench.records import RecordError, load_record, load_records, validate_record, write_record
from blockbench.runner import run_suite
from blockbench.suite import load_suite
from tests.tiny_suite import write_suite


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    suite = load_suite(str(write_suite(tmp))).with_overrides(variants=["sas_p"])
    [path] = run_suite(suite, tmp / "out", isolate=False)
    return load_record(path)


def test_record_has_the_public_schema(record):
    for key in ("schema_version", "blockbench_version", "git", "suite", "variant", "block_spec", "seed", "status",
                "stop_reason", "config", "env", "data", "static", "summary", "curve", "to_target", "speed"):
        assert key in record
    assert set(record["suite"]) == {"name", "version", "hash"}
    for key in ("steps", "tokens", "train_seconds", "tokens_per_second", "step_time_median", "step_time_iqr",
                "peak_memory_bytes", "peak_memory_kind", "final_train_loss", "final_eval_loss", "final_eval_bpb",
                "mfu"):
        assert key in record["summary"]
    assert set(record["curve"][0]) == {"step", "tokens", "flops", "train_seconds", "train_loss", "eval_loss"}
    assert record["static"]["params_total"] > 0 and record["data"]["fingerprint"]


def test_round_trip_and_no_overwrite(record, tmp_path):
    path = write_record(record, tmp_path / "r.json")
    assert load_record(path) == record
    before = path.read_bytes()
    changed = copy.deepcopy(record)
    changed["seed"] = 99
    with pytest.raises(RecordError, match="never overwritten"):
        write_record(changed, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp files left behind


def test_invalid_record_is_not_written(record, tmp_path):
    broken = copy.deepcopy(record)
    del broken["summary"]["steps"]
    with pytest.raises(RecordError, match="missing key 'steps'"):
        write_record(broken, tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("corrupt,needle", [
    (lambda text: text[: len(text) // 2], "not valid JSON"),
    (lambda text: "[1, 2]", "not a JSON object"),
    (lambda text: json.dumps({**json.loads(text), "schema_version": 99}), "schema_version 99"),
    (lambda text: json.dumps({"hello": "world"}), "schema_version None"),
    (lambda text: text.replace('"status": "ok"', '"status": "great"'), "status 'great'"),
    (lambda text: text.replace('"seed": 0', '"seed": "zero"'), "'seed' has type str"),
])
def test_corrupt_or_foreign_files_are_rejected(record, tmp_path, corrupt, needle):
    path = write_record(record, tmp_path / "good.json")
    bad = tmp_path / "bad.json"
    bad.write_text(corrupt(path.read_text()))
    with pytest.raises(RecordError, match=needle):
        load_record(bad)
    with pytest.raises(RecordError):
        load_records(tmp_path)


def test_nan_is_stored_as_null(record, tmp_path):
    diverged = copy.deepcopy(record)
    diverged["curve"][-1]["train_loss"] = float("nan")
    loaded = load_record(write_record(diverged, tmp_path / "d.json"))
    assert loaded["curve"][-1]["train_loss"] is None
    assert validate_record(loaded) is loaded


def test_ok_record_without_final_eval_loss_is_rejected(record, tmp_path):
    unevaluated = copy.deepcopy(record)
    unevaluated["summary"]["final_eval_loss"] = float("inf")  # stored as null
    with pytest.raises(RecordError, match="without a final eval loss"):
        write_record(unevaluated, tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []
    unevaluated["status"] = "diverged"
    assert load_record(write_record(unevaluated, tmp_path / "r.json"))["summary"]["final_eval_loss"] is None


def test_filesystem_without_hard_links_still_writes_and_never_overwrites(record, tmp_path, monkeypatch):
    import blockbench.records as records_module

    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(records_module.os, "link", no_links)
    path = write_record(record, tmp_path / "r.json")
    assert load_record(path) == record
    with pytest.raises(RecordError, match="never overwritten"):
        write_record(record, path)
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
