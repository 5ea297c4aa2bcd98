"""The CUDA-facing paths that can run on CPU: bf16 autocast, fp16 scaling, compile fallback, MFU table."""

import pytest
import torch

from blockbench.data import load_data
from blockbench.measure.mfu import mfu, peak_flops
from blockbench.suite import load_suite
from blockbench.train import Trainer, resolve_dtype, run_trial
from tests.tiny_suite import with_runtime, write_suite


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    # On CPU explicitly: these are the CPU-side checks of CUDA paths (tests/test_cuda.py has the CUDA ones), and
    # "auto" would pick a GPU where one exists.
    suite = load_suite(str(write_suite(tmp_path_factory.mktemp("suite")))).with_overrides(device="cpu")
    return suite, load_data(suite.data)


def test_auto_dtype_is_bf16_on_cuda_and_fp32_on_cpu():
    assert resolve_dtype("auto", torch.device("cuda", 0)) == "bf16"
    assert resolve_dtype("auto", torch.device("cpu")) == "fp32"
    assert resolve_dtype("fp16", torch.device("cpu")) == "fp16"


def test_bf16_autocast_runs_matmuls_in_bf16_and_keeps_the_loss_in_fp32(tiny):
    suite, data = tiny
    trainer = Trainer(with_runtime(suite, dtype="bf16"), "sas_p", 0, data, None)
    seen = []
    trainer.model.blocks[0].mlp.up.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    optimizer, scheduler = trainer.new_optimizer()
    loss = trainer.train_step(optimizer, scheduler, *next(trainer.batches()))
    assert seen == [torch.bfloat16] and loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # master weights stay fp32
    record = run_trial(with_runtime(suite, dtype="bf16"), "sas_p", 0, data)
    assert record["config"]["dtype"] == "bf16" and record["status"] == "ok"
    fp32 = run_trial(suite, "sas_p", 0, data)
    assert record["summary"]["final_eval_loss"] == pytest.approx(fp32["summary"]["final_eval_loss"], abs=0.05)
    assert record["summary"]["final_eval_loss"] != fp32["summary"]["final_eval_loss"]


def test_fp16_uses_a_grad_scaler(tiny):
    suite, data = tiny
    trainer = Trainer(with_runtime(suite, dtype="fp16"), "pre_ln", 0, data, None)
    assert trainer.scaler is not None
    record = run_trial(with_runtime(suite, dtype="fp16"), "pre_ln", 0, data)
    assert record["status"] == "ok" and record["config"]["dtype"] == "fp16"


def test_compile_failure_falls_back_to_eager_and_is_recorded(tiny, monkeypatch):
    suite, data = tiny

    def broken_compile(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken_compile)
    record = run_trial(with_runtime(suite, compile=True), "pre_ln", 0, data)
    assert record["status"] == "ok"
    assert record["config"]["compile"]["enabled"] is True
    assert "no compiler here" in record["config"]["compile"]["error"]
    eager = run_trial(suite, "pre_ln", 0, data)
    assert [p["eval_loss"] for p in record["curve"]] == [p["eval_loss"] for p in eager["curve"]]


def test_compile_shaped_fuses_only_the_mix_with_the_same_math(tiny, monkeypatch):
    """runtime.compile_shaped: SAS-P trains with the torch.compile'd shaped mix and ends where eager does."""
    import shutil

    from blockbench.blocks import shaped

    if not (shutil.which("g++") or shutil.which("c++")):
        pytest.skip("no C++ compiler for inductor on this machine")
    suite, data = tiny
    monkeypatch.setattr(shaped, "_compiled", {})
    calls = []
    real = shaped.compiled_mix_formula
    monkeypatch.setattr(shaped, "compiled_mix_formula", lambda: calls.append(1) or real())
    record = run_trial(with_runtime(suite, compile_shaped=True), "sas_p", 0, data)
    assert calls and record["status"] == "ok" and record["config"]["compile"]["shaped"] is True
    if record["config"]["compile"]["error"]:  # a machine whose toolchain inductor cannot use: say so, not fail
        pytest.skip(f"inductor cannot compile here: {record['config']['compile']['error']}")
    eager = run_trial(suite, "sas_p", 0, data)
    for c, e in zip(record["curve"], eager["curve"]):
        assert c["eval_loss"] == pytest.approx(e["eval_loss"], abs=1e-4)


def test_whole_model_compile_trains_sas_p_where_eager_does(tiny):
    """runtime.compile with inductor: the fused ops hand it their formula; SAS-P trains compiled (no fallback)
    and every evaluation lands where the eager run's does, to rounding."""
    import shutil

    if not (shutil.which("g++") or shutil.which("c++")):
        pytest.skip("no C++ compiler for inductor on this machine")
    suite, data = tiny
    torch._dynamo.reset()
    record = run_trial(with_runtime(suite, compile=True), "sas_p", 0, data)
    if record["config"]["compile"]["error"]:
        pytest.skip(f"inductor cannot compile here: {record['config']['compile']['error']}")
    assert record["status"] == "ok" and record["config"]["execution"]["mode"] == "compiled"
    assert record["config"]["execution"]["fused_ops"].startswith("formula fused by torch.compile")
    eager = run_trial(suite, "sas_p", 0, data)
    assert eager["config"]["execution"]["fused_ops"] == "portable torch ops"
    for c, e in zip(record["curve"], eager["curve"], strict=True):
        assert c["eval_loss"] == pytest.approx(e["eval_loss"], abs=1e-4)


def test_compile_shaped_failure_falls_back_to_the_eager_mix_and_is_recorded(tiny, monkeypatch):
    from blockbench.blocks import shaped

    suite, data = tiny
    monkeypatch.setattr(shaped, "_compiled", {})

    def broken_compile(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(UserWarning, match="no compiler here"):
        record = run_trial(with_runtime(suite, compile_shaped=True), "sas_p", 0, data)
    assert record["status"] == "ok" and "no compiler here" in record["config"]["compile"]["error"]
    eager = run_trial(suite, "sas_p", 0, data)
    assert [p["eval_loss"] for p in record["curve"]] == [p["eval_loss"] for p in eager["curve"]]


def test_mfu_peak_table():
    assert peak_flops("NVIDIA H100 80GB HBM3", "bf16") == 989.5e12
    assert peak_flops("NVIDIA H100 PCIe", "bf16") == 756.5e12
    assert peak_flops("NVIDIA A100-SXM4-80GB", "bf16") == 312e12
    for name in ("NVIDIA H200", "NVIDIA RTX A5000", "NVIDIA L4", "NVIDIA GeForce RTX 4090"):
        assert peak_flops(name, "bf16") is not None
    assert peak_flops("AMD EPYC", "fp32") is None
    assert mfu(6 * 10**8, 1000.0, "NVIDIA A100-SXM4-80GB", "bf16") == pytest.approx(6e11 / 312e12)


def test_the_record_says_what_the_fused_ops_ran_on(tiny):
    suite, data = tiny
    record = run_trial(suite, "sas_p", 0, data)
    assert record["config"]["execution"]["fused_ops"] == "portable torch ops"
    assert record["config"]["execution"]["mode"] == "eager"
    assert record["config"]["execution"]["graphs_fallback"] == "not a CUDA device (cpu)"
