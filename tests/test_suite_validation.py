"""Range validation of every numeric suite field and command-line value, before any data is loaded.

A bad value is an unusable input: load_suite raises naming the file and key, and the command line exits 2 with
one line on stderr (no traceback). Nothing here trains or loads a corpus.
"""

from types import SimpleNamespace

import pytest
import torch

from blockbench.cli import main
from blockbench.suite import SuiteError, check_fits, load_suite
from tests.tiny_suite import TINY_SUITE, write_suite


def _set(table: str, line: str) -> tuple[str, str]:
    """An edit of TINY_SUITE that adds `line` to `[table]` (for keys the tiny suite does not set)."""
    return f"[{table}]\n", f"[{table}]\n{line}\n"


BAD_SUITE_VALUES = [
    # [model]
    (("d_model = 32", "d_model = 0"), "model.d_model"),
    (("seq_len = 32", "seq_len = -1"), "model.seq_len"),
    (("n_layers = 1", "n_layers = 100000000000000000000000000000"), "model.n_layers"),
    (("n_heads = 2", "n_heads = 3"), "model.n_heads"),
    # [optim]
    (("lr = 3e-3", "lr = inf"), "optim.lr"),
    (("lr = 3e-3", "lr = nan"), "optim.lr"),
    (("lr = 3e-3", "lr = 1e999"), "optim.lr"),
    (("lr = 3e-3", "lr = -3e-3"), "optim.lr"),
    (_set("optim", "betas = [2, 2]"), "optim.betas"),
    (_set("optim", "betas = [0.9, 1.0]"), "optim.betas"),
    (_set("optim", "betas = [-0.1, 0.9]"), "optim.betas"),
    (_set("optim", "betas = [0.9, nan]"), "optim.betas"),
    (_set("optim", "betas = [0.9]"), "optim.betas"),
    (_set("optim", "betas = [0.9, 100000000000000000000000000000000000000000000000000000000000000000000000000000"
                   "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
                   "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
                   "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
                   "000000000000000000000]"), "optim.betas"),
    (_set("optim", "eps = 0"), "optim.eps"),
    (_set("optim", "eps = inf"), "optim.eps"),
    (_set("optim", "weight_decay = -0.1"), "optim.weight_decay"),
    (_set("optim", "weight_decay = nan"), "optim.weight_decay"),
    (_set("optim", "grad_clip = -1.0"), "optim.grad_clip"),
    (_set("optim", "grad_clip = inf"), "optim.grad_clip"),
    (_set("optim", "warmup_fraction = 1.0"), "optim.warmup_fraction"),
    (_set("optim", "warmup_fraction = -0.1"), "optim.warmup_fraction"),
    (_set("optim", "min_lr_ratio = 1.5"), "optim.min_lr_ratio"),
    (_set("optim", "min_lr_ratio = nan"), "optim.min_lr_ratio"),
    (("batch_size = 4", "batch_size = 0"), "optim.batch_size"),
    (_set("optim", "micro_batch_size = 3"), "optim.micro_batch_size"),
    (_set("optim", "micro_batch_size = 0"), "optim.micro_batch_size"),
    (("[variants.sas_p]\nlr = 1e-2", "[variants.sas_p]\nlr = inf"), "variants.sas_p.lr"),
    (("[variants.sas_p]\nlr = 1e-2", "[variants.sas_p]\nbetas = [2, 2]"), "variants.sas_p.betas"),
    # [budget]
    (_set("budget", "seconds = inf"), "budget.seconds"),
    (_set("budget", "seconds = nan"), "budget.seconds"),
    (_set("budget", "seconds = 0"), "budget.seconds"),
    (_set("budget", "flops = inf"), "budget.flops"),
    (_set("budget", "flops = -1e12"), "budget.flops"),
    (_set("budget", "tokens = 0"), "budget.tokens"),
    (_set("budget", "tokens = 100000000000000000000000000000"), "budget.tokens"),
    (("steps = 6", "steps = -6"), "budget.steps"),
    # [eval]
    (("every_tokens = 256", "every_tokens = 0"), "eval.every_tokens"),
    (("windows = 4", "windows = 0"), "eval.windows"),
    (("target_loss = 4.5", "target_loss = inf"), "eval.target_loss"),
    (("target_loss = 4.5", "target_loss = nan"), "eval.target_loss"),
    (("target_loss = 4.5", "target_loss = 0.0"), "eval.target_loss"),
    # [runtime]
    (("threads = 2", "threads = -1"), "runtime.threads"),
    (("threads = 2", "threads = 0"), "runtime.threads"),
    (("warmup_steps = 1", "warmup_steps = -1"), "runtime.warmup_steps"),
    (_set("runtime", "divergence_loss = 0.0"), "runtime.divergence_loss"),  # 0 must not mean "the default"
    (_set("runtime", "divergence_loss = -1.0"), "runtime.divergence_loss"),
    (_set("runtime", "divergence_loss = nan"), "runtime.divergence_loss"),
    (_set("runtime", "divergence_loss = inf"), "runtime.divergence_loss"),
    (_set("runtime", "stall_seconds = inf"), "runtime.stall_seconds"),
    # [speed]
    (("rounds = 3", "rounds = -1"), "speed.rounds"),
    (("steps_per_round = 1", "steps_per_round = 0"), "speed.steps_per_round"),
    # [suite] seeds
    (("seeds = [0]", "seeds = [-1]"), "suite.seeds"),
    (("seeds = [0]", "seeds = [0, 0]"), "suite.seeds"),
    (("seeds = [0]", "seeds = [1.5]"), "suite.seeds"),
    (("seeds = [0]", "seeds = [100000000000000000000000]"), "suite.seeds"),
    # [data]
    (_set("data", "val_fraction = nan"), "data"),
]


@pytest.mark.parametrize("edit,key", BAD_SUITE_VALUES, ids=[f"{k}-{i}" for i, (_, k) in enumerate(BAD_SUITE_VALUES)])
def test_bad_suite_value_names_file_and_key(tmp_path, edit, key):
    assert edit[0] in TINY_SUITE  # the edit applies (a typo here would test the unedited suite)
    path = write_suite(tmp_path, TINY_SUITE.replace(*edit, 1))
    with pytest.raises(SuiteError) as info:
        load_suite(str(path))
    message = str(info.value)
    assert str(path) in message and f": {key}" in message and "\n" not in message


@pytest.mark.parametrize("line", ["seconds = 1e9", "flops = 1e15", "tokens = 5000"])
def test_good_budget_values_load(tmp_path, line):
    load_suite(str(write_suite(tmp_path, TINY_SUITE.replace(*_set("budget", line)))))


def test_edge_values_that_are_in_range_load(tmp_path):
    text = TINY_SUITE.replace(*_set("optim", "betas = [0.0, 0.999]\ngrad_clip = 0.0\nmin_lr_ratio = 1.0\n"
                                              "warmup_fraction = 0.0\nweight_decay = 0.0"))
    text = text.replace("warmup_steps = 1", "warmup_steps = 0").replace("rounds = 3", "rounds = 0")
    suite = load_suite(str(write_suite(tmp_path, text)))
    assert suite.optim.grad_clip == 0.0 and suite.speed.rounds == 0  # 0: clipping and the probe off


BAD_CLI_VALUES = [
    (["--budget-seconds", "inf"], "--budget-seconds"),
    (["--budget-seconds", "nan"], "--budget-seconds"),
    (["--budget-seconds", "-1"], "--budget-seconds"),
    (["--budget-flops", "inf"], "--budget-flops"),
    (["--budget-flops", "0"], "--budget-flops"),
    (["--budget-steps", "0"], "--budget-steps"),
    (["--budget-tokens", "-5"], "--budget-tokens"),
    (["--target-loss", "inf"], "--target-loss"),
    (["--target-loss", "nan"], "--target-loss"),
    (["--target-loss", "-1"], "--target-loss"),
    (["--threads", "-1"], "--threads"),
    (["--threads", "0"], "--threads"),
    (["--seeds", "-1"], "--seeds"),
    (["--seeds", "0,0"], "--seeds"),
]


def _one_line_exit_2(capsys, argv: list[str], needle: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert needle in err and "Traceback" not in err and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("args,flag", BAD_CLI_VALUES, ids=[" ".join(a) for a, _ in BAD_CLI_VALUES])
def test_bad_run_value_is_one_line_exit_2(tmp_path, capsys, args, flag):
    suite = write_suite(tmp_path)
    _one_line_exit_2(capsys, ["run", "--suite", str(suite), "--out", str(tmp_path / "out"), "--quiet", *args], flag)
    assert not (tmp_path / "out").exists()  # refused before anything ran


@pytest.mark.parametrize("args,needle", [
    (["--grid", "lr=inf"], "lr"),
    (["--grid", "lr=1e-3,nan"], "lr"),  # every point is checked before any training, not just the first
    (["--grid", "warmup_fraction=1.5"], "warmup_fraction"),
    (["--grid", "lr=1e-3", "--speed-rounds", "-1"], "--speed-rounds"),
    (["--grid", "lr=1e-3", "--budget-seconds", "inf"], "--budget-seconds"),
])
def test_bad_sweep_value_is_one_line_exit_2(tmp_path, capsys, args, needle):
    suite = write_suite(tmp_path)
    err = _one_line_exit_2(capsys, ["sweep", "--suite", str(suite), "--out", str(tmp_path / "out"), *args], needle)
    assert "--grid" in err or needle.startswith("--")
    assert not (tmp_path / "out" / "sweep.toml").exists()


def test_bad_suite_file_through_the_cli(tmp_path, capsys):
    path = write_suite(tmp_path, TINY_SUITE.replace(*_set("budget", "seconds = inf")))
    err = _one_line_exit_2(capsys, ["run", "--suite", str(path), "--out", str(tmp_path / "out"), "--quiet"],
                           "budget.seconds")
    assert str(path) in err


def _tokens(n_train: int, n_val: int) -> SimpleNamespace:
    return SimpleNamespace(train=torch.zeros(n_train, dtype=torch.int16), val=torch.zeros(n_val, dtype=torch.int16))


def test_check_fits_needs_every_eval_window_and_one_training_sequence(tmp_path):
    suite = load_suite(str(write_suite(tmp_path)))  # seq_len 32, windows 4: 4 * 32 + 1 = 129 val tokens
    check_fits(suite, _tokens(1000, 129))
    with pytest.raises(SuiteError, match=r"model\.seq_len=32, eval\.windows=4: the validation split .* 128 tokens"):
        check_fits(suite, _tokens(1000, 128))
    with pytest.raises(SuiteError, match="training split has 32 tokens"):
        check_fits(suite, _tokens(32, 1000))


def test_a_seq_len_the_data_cannot_fill_fails_before_any_model_is_built(tmp_path, monkeypatch):
    import blockbench.train as train

    def no_model(*args, **kwargs):
        raise AssertionError("a model was built for a suite the data cannot fill")

    monkeypatch.setattr(train, "build_model", no_model)
    text = TINY_SUITE.replace("seq_len = 32", "seq_len = 1000000")
    suite = load_suite(str(write_suite(tmp_path, text)))
    data = _tokens(10_000, 10_000)
    with pytest.raises(SuiteError, match=r"model\.seq_len=1000000"):
        train.prepare_variants(suite, data)
    with pytest.raises(SuiteError, match=r"model\.seq_len=1000000"):
        train.run_trial(suite, "pre_ln", 0, data)


@pytest.mark.parametrize("content,needle", [
    (TINY_SUITE.encode().replace(b'"tiny"', b'"ti\xffny"'), "not UTF-8"),
    (b"a = " + b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (TINY_SUITE.encode() + b"\n[model]\n", "malformed TOML"),
])
def test_unreadable_suite_files_are_one_line_errors(tmp_path, capsys, content, needle):
    path = tmp_path / "tiny.toml"
    path.write_bytes(content)
    with pytest.raises(SuiteError, match=needle):
        load_suite(str(path))
    _one_line_exit_2(capsys, ["run", "--suite", str(path), "--out", str(tmp_path / "out")], needle)


def test_a_directory_where_the_suite_file_should_be(tmp_path):
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(SuiteError, match="dir.toml: cannot read"):
        load_suite(str(tmp_path / "dir.toml"))


@pytest.mark.parametrize("line,key", [("lr = inf", "variants.sas_p.lr"), ("betas = [2, 2]", "variants.sas_p.betas"),
                                      ("warmup_fraction = 1.0", "variants.pre_ln.warmup_fraction")])
def test_bad_override_file_values_name_the_file_and_key(tmp_path, capsys, line, key):
    variant = key.split(".")[1]
    overrides = tmp_path / "sweep.toml"
    overrides.write_text(f"[variants.{variant}]\n{line}\n")
    suite = load_suite(str(write_suite(tmp_path)))
    with pytest.raises(SuiteError) as info:
        suite.with_override_file(overrides)
    assert f"{overrides}: {key}" in str(info.value)
    _one_line_exit_2(capsys, ["run", "--suite", str(write_suite(tmp_path)), "--overrides", str(overrides),
                              "--out", str(tmp_path / "out")], key)
