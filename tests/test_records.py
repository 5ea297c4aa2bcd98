"""Run records: round trip, atomic never-overwriting writes, rejection of corrupt or foreign files."""

import copy
import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from blockbench.records import RecordError, load_record, load_records, seal, validate_record, write_record
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
    import blockbench.records.store as records_module

    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(records_module.os, "link", no_links)
    path = write_record(record, tmp_path / "r.json")
    assert load_record(path) == record
    with pytest.raises(RecordError, match="never overwritten"):
        write_record(record, path)
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


# ---------------------------------------------------------------------------------------------------------------
# Hostile files: anything malformed is a RecordError (exit 2, one line), never a traceback or a "regression".
# Built from a copy of a real published record; no training.

PUBLISHED = Path(__file__).resolve().parents[1] / "results" / "smoke" / "1" / "records"


def _published() -> dict:
    return json.loads((PUBLISHED / "pre_ln-seed0.json").read_text())


def _edit(change):
    def apply(record):
        change(record)
        return record
    return apply


def _set(path: str, value):
    """A change that sets the dotted `path` of a record to `value`."""
    def change(record):
        *parents, last = path.split(".")
        target = record
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return change


def _delete(path: str):
    def change(record):
        *parents, last = path.split(".")
        target = record
        for key in parents:
            target = target[key]
        del target[last]
    return change


MALFORMED_CONTENT = [
    (_set("config.overrides", ["budget"]), "config: 'overrides' has type list"),
    (_set("config.overrides", "none"), "config: 'overrides' has type str"),
    (_delete("config.overrides"), "config: missing key 'overrides'"),
    (_set("config", []), "'config' has type list"),
    (_set("config.overrides", {"fields": ["lr", 1]}), "config.overrides: 'fields' has type list"),
    (_set("config.overrides", {"budget": {"steps": "six"}}), "config.overrides.budget: 'steps' has type str"),
    (_set("config.overrides", {"threads": "2"}), "config.overrides: 'threads' has type str"),
    (_set("config.optim.lr", "fast"), "config.optim: 'lr' has type str"),
    (_delete("config.optim"), "config: 'optim' is missing"),
    (_set("config.model.seq_len", 64.5), "config.model: 'seq_len' has type float"),
    (_set("config.budget", {"steps": [60]}), "config.budget.steps has type list"),
    (_set("config.baseline", 3), "config: 'baseline' has type int"),
    (_set("curve.1.step", "15"), "curve[1]: 'step' has type str"),
    (_set("curve.1.eval_loss", [3.5]), "curve[1]: 'eval_loss' has type list"),
    (_set("curve.1", [15, 3.5]), "curve[1] is not an object"),
    (_set("curve", {"0": {}}), "'curve' has type dict"),
    (_set("env", []), "'env' has type list"),
    (_set("env.device_name", None), "env: 'device_name' has type NoneType"),
    (_set("data.n_tokens_val", "many"), "data: 'n_tokens_val' has type str"),
    (_set("data.tokenizer_sha256", 12), "data: 'tokenizer_sha256' has type int"),
    (_set("block_spec", {"layout": "sequential"}), "block_spec: missing key 'mlp_ratio'"),
    (_set("block_spec.mlp_ratio", "four"), "block_spec: 'mlp_ratio' has type str"),
    (_set("block_spec.mlp_ratio", -1.0), "'mlp_ratio' is -1.0, out of range"),
    (_set("static.params_total", 0), "'params_total' is 0, out of range"),
    (_set("speed.rounds", -1), "'rounds' is negative"),
    (_set("speed.speedup_vs_baseline", 0.0), "'speedup_vs_baseline' is 0.0"),
    (_set("summary.final_eval_loss", True), "'final_eval_loss' has type bool"),
    (_set("seed", True), "'seed' has type bool"),
]


@pytest.mark.parametrize("change,needle", MALFORMED_CONTENT, ids=[n for _, n in MALFORMED_CONTENT])
@pytest.mark.parametrize("sealed", [False, True], ids=["v1", "v2-resealed"])
def test_malformed_record_content_is_a_record_error(tmp_path, change, needle, sealed):
    record = _published()
    assert validate_record(copy.deepcopy(record))  # the unedited copy is valid: the edit is what fails
    change(record)
    if sealed:  # a record re-sealed after the edit passes its integrity check: the schema must catch it
        record = seal(record)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(record))
    with pytest.raises(RecordError) as info:
        load_record(path)
    assert needle in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def _text_edit(old: str, new: str):
    def edit(text: str) -> str:
        assert old in text
        return text.replace(old, new, 1)
    return edit


MALFORMED_BYTES = [
    (lambda text: text.encode().replace(b'"pre_ln"', b'"pre\xff_ln"', 1), "not UTF-8"),
    (lambda text: b"\xef\xbb\xbf" + text.encode("utf-16-le"), "not valid JSON"),
    (lambda text: text.encode("utf-16"), "not UTF-8"),
    (lambda text: ("[" * 100_000 + "]" * 100_000).encode(), "nested too deeply"),
    (lambda text: ('{"schema_version": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}").encode(),
     "nested too deeply"),
    (lambda text: _text_edit('"seed": 0', '"seed": 1' + "0" * 5000)(text).encode(), "too large"),
    (lambda text: _text_edit('"seed": 0', '"seed": 100000000000000000000')(text).encode(), "too large"),
    (lambda text: _text_edit('"step": 15', '"step": 1e999')(text).encode(), "out of range"),
    (lambda text: _text_edit('"lr": 0.003', '"lr": 1e999')(text).encode(), "out of range"),
    (lambda text: _text_edit('"train_loss": null', '"train_loss": NaN')(text).encode(), "NaN"),
    (lambda text: _text_edit('"speedup_iqr": 0.0', '"speedup_iqr": Infinity')(text).encode(), "Infinity"),
    (lambda text: _text_edit('"lr": 0.003', '"lr": -Infinity')(text).encode(), "-Infinity"),
    (lambda text: b"", "not valid JSON"),
]


@pytest.mark.parametrize("corrupt,needle", MALFORMED_BYTES,
                         ids=[f"{n}-{i}" for i, (_, n) in enumerate(MALFORMED_BYTES)])
def test_malformed_record_bytes_are_a_record_error(tmp_path, corrupt, needle):
    path = tmp_path / "bad.json"
    path.write_bytes(corrupt((PUBLISHED / "pre_ln-seed0.json").read_text()))
    with pytest.raises(RecordError) as info:
        load_record(path)
    assert needle in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_paths_that_are_not_record_files_are_record_errors(tmp_path):
    (tmp_path / "dir.json").mkdir()
    (tmp_path / "loop.json").symlink_to(tmp_path / "loop.json")
    (tmp_path / "dangling.json").symlink_to(tmp_path / "nowhere.json")
    os.mkfifo(tmp_path / "fifo.json")  # reading it would block forever

    def blocked(signum, frame):
        raise AssertionError("load_record blocked on a FIFO")

    previous = signal.signal(signal.SIGALRM, blocked)
    signal.alarm(20)
    try:
        for name, needle in (("dir.json", "is a directory"), ("loop.json", "cannot read"),
                             ("dangling.json", "cannot read"), ("fifo.json", "not a regular file"),
                             ("missing.json", "cannot read")):
            with pytest.raises(RecordError, match=needle):
                load_record(tmp_path / name)
        with pytest.raises(RecordError):
            load_records(tmp_path)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("damage", [
    lambda path: path.write_bytes(path.read_bytes().replace(b'"pre_ln"', b'"pre\xff_ln"', 1)),
    lambda path: path.write_text("[" * 100_000 + "]" * 100_000),
    lambda path: path.write_text(json.dumps({**json.loads(path.read_text()),
                                             "config": {**json.loads(path.read_text())["config"], "overrides": []}})),
    lambda path: path.write_text(path.read_text().replace('"train_loss": null', '"train_loss": NaN')),
], ids=["non-utf8", "deep", "overrides-list", "nan"])
@pytest.mark.parametrize("side", ["baseline", "candidate"])
def test_compare_with_a_damaged_record_exits_2_not_1(tmp_path, capsys, damage, side):
    from blockbench.cli import main

    good = tmp_path / "good"
    shutil.copytree(PUBLISHED, good / "records")
    bad = tmp_path / "bad"
    shutil.copytree(PUBLISHED, bad / "records")
    damage(bad / "records" / "pre_ln-seed0.json")
    assert main(["compare", str(good), str(good)]) == 0
    capsys.readouterr()
    args = [str(bad), str(good)] if side == "baseline" else [str(good), str(bad)]
    assert main(["compare", *args]) == 2
    err = capsys.readouterr().err
    assert "pre_ln-seed0.json" in err and "Traceback" not in err and "unexpected" not in err
    assert err.count("\n") == 1, err
    assert main(["leaderboard", str(bad)]) == 2


def test_published_records_still_validate():
    for path in sorted(PUBLISHED.parents[2].glob("*/*/records/*.json")):
        load_record(path)
