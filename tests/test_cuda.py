"""The CUDA paths, on a CUDA machine (skipped elsewhere, saying so): bf16 autocast, the Triton shaped mix against
its portable twin and its declared launches, CUDA-graph capture against the eager step, the capture fallback,
and CUDA peak memory. ci/gpu-check.sh runs this module on the GPU machine."""

import pytest
import torch

from blockbench.blocks import shaped
from blockbench.data import load_data
from blockbench.suite import load_suite
from blockbench.train import Trainer, run_trial
from tests.tiny_suite import TINY_SUITE, with_runtime, write_suite

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    suite = load_suite(str(write_suite(tmp_path_factory.mktemp("suite")))).with_overrides(device="cuda")
    return suite, load_data(suite.data)


def mix_inputs(dtype, causal_seq=130, heads=12, dim=64, batch=3):
    gen = torch.Generator(device="cuda").manual_seed(0)
    s, v, m = (torch.randn(batch, causal_seq, heads, dim, device="cuda", generator=gen).to(dtype)
               .transpose(1, 2).requires_grad_() for _ in range(3))
    a, b, g = (torch.rand(heads, device="cuda", generator=gen).add(0.5).requires_grad_() for _ in range(3))
    scale = torch.tensor(0.8, device="cuda", requires_grad=True)
    e = torch.tensor(0.3, device="cuda", requires_grad=True)
    return s, v, a, b, g, scale, m, e


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("causal", [True, False])
def test_triton_mix_matches_the_portable_one(dtype, causal):
    assert shaped.uses_triton(torch.empty(1, device="cuda")), shaped.triton_error()
    leaves = mix_inputs(dtype)
    s, v, a, b, g, scale, m, e = leaves
    upstream = torch.randn(s.shape, device="cuda").to(dtype)
    got = shaped.fused_mix(s, v, a, b, g, scale, causal, m, e)
    got_grads = torch.autograd.grad(got, leaves, upstream)
    with torch.no_grad():  # the portable twin called directly, outside its op: no autograd
        want = shaped._portable_forward(s, v, a, b, g, scale, m, e, 1.0, 1.0, causal)
        want_grads = shaped._portable_backward(upstream, s, v, a, b, g, scale, m, e, 1.0, 1.0, causal)
    tol = dict(rtol=2e-2, atol=2e-2) if dtype == torch.bfloat16 else dict(rtol=1e-4, atol=1e-4)
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), want.float(), **tol)
    for x, y in zip(got_grads, want_grads):
        torch.testing.assert_close(x.float(), y.float(), rtol=tol["rtol"], atol=tol["atol"] * 10)


def test_the_custom_op_route_and_the_direct_route_agree_on_cuda():
    """Eager runs the Triton kernels from an autograd.Function; under a dispatch mode (the step-cost model's) the
    same kernels run through the custom op. Both give the same output and gradients, bit for bit."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen = []

    class Watching(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(func.name())
            return func(*args, **(kwargs or {}))

    leaves = mix_inputs(torch.bfloat16)
    results = []
    for route in (None, Watching):
        with route() if route else torch.enable_grad():
            out = shaped.fused_mix(*leaves[:5], leaves[5], True, leaves[6], leaves[7])
            grads = torch.autograd.grad(out, leaves, torch.ones_like(out))
        results.append((out, grads))
    assert "blockbench::shaped_mix" in seen and "blockbench::shaped_mix_backward" in seen
    (out_direct, grads_direct), (out_op, grads_op) = results
    torch.testing.assert_close(out_op, out_direct, rtol=0, atol=0)
    for x, y in zip(grads_op, grads_direct):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_triton_mix_launches_what_it_declares():
    from torch.profiler import ProfilerActivity, profile

    leaves = mix_inputs(torch.bfloat16)
    out = shaped.fused_mix(*leaves[:5], leaves[5], True, leaves[6], leaves[7])
    out.backward(torch.ones_like(out))  # JIT-compiles both kernels outside the profile
    torch.cuda.synchronize()
    counts = {}
    for phase in ("forward", "backward"):
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            out = shaped.fused_mix(*leaves[:5], leaves[5], True, leaves[6], leaves[7])
            if phase == "backward":
                torch.cuda.synchronize()
                prof.step()
                grads = torch.autograd.grad(out, leaves, torch.ones_like(out))  # noqa: F841
            torch.cuda.synchronize()
        counts[phase] = sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
                            and "mix" in e.name)
    assert counts["forward"] == shaped.DECLARED_LAUNCHES["blockbench::shaped_mix"]
    assert counts["backward"] - counts["forward"] == shaped.DECLARED_LAUNCHES["blockbench::shaped_mix_backward"]


def test_bf16_autocast_on_cuda(tiny):
    suite, data = tiny
    trainer = Trainer(with_runtime(suite, dtype="bf16", cuda_graphs="off"), "sas_p", 0, data, None)
    seen = []
    trainer.model.blocks[0].mlp.up.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    optimizer, scheduler = trainer.new_optimizer()
    loss = trainer.train_step(optimizer, scheduler, *next(trainer.batches()))
    assert seen == [torch.bfloat16] and loss.dtype == torch.float32 and torch.isfinite(loss)


@pytest.fixture(scope="module")
def tiny_modern(tmp_path_factory):
    """The tiny suite with today's baseline and SAS-P on it beside the paper's two blocks."""
    text = TINY_SUITE + "[variants.transformer_pp]\n[variants.sas_p_pp]\nlr = 1e-2\n"
    suite = load_suite(str(write_suite(tmp_path_factory.mktemp("suite"), text))).with_overrides(device="cuda")
    return suite, load_data(suite.data)


@pytest.mark.parametrize("variant", ["pre_ln", "sas_p", "transformer_pp", "sas_p_pp"])
def test_cuda_graphs_train_as_eager_does(tiny_modern, variant):
    suite, data = tiny_modern
    graphed = run_trial(with_runtime(suite, dtype="bf16", cuda_graphs="on"), variant, 0, data)
    eager = run_trial(with_runtime(suite, dtype="bf16", cuda_graphs="off"), variant, 0, data)
    assert graphed["config"]["execution"]["mode"] == "graphs"
    assert eager["config"]["execution"]["mode"] == "eager"
    for g, e in zip(graphed["curve"], eager["curve"]):
        assert g["eval_loss"] == pytest.approx(e["eval_loss"], abs=2e-2)
    assert graphed["summary"]["peak_memory_kind"] == "cuda_max_allocated"
    assert graphed["summary"]["peak_memory_bytes"] > 0


def test_capture_failure_falls_back_under_auto_and_fails_under_on(tiny, monkeypatch):
    from blockbench import cuda_graph

    suite, data = tiny

    def broken(*args, **kwargs):
        raise cuda_graph.CaptureError("CUDA graph capture failed: RuntimeError: an op synced (test)")

    monkeypatch.setattr(cuda_graph, "GraphedStep", broken)
    with pytest.warns(UserWarning, match="an op synced"):
        record = run_trial(with_runtime(suite, dtype="bf16", cuda_graphs="auto"), "pre_ln", 0, data)
    assert record["config"]["execution"]["mode"] == "eager"
    assert "an op synced" in record["config"]["execution"]["graphs_fallback"]
    with pytest.raises(cuda_graph.CaptureError, match="an op synced"):
        run_trial(with_runtime(suite, dtype="bf16", cuda_graphs="on"), "pre_ln", 0, data)


def test_compile_runs_without_graph_breaks_on_cuda(tiny):
    suite, data = tiny
    torch._dynamo.reset()
    record = run_trial(with_runtime(suite, dtype="bf16", compile=True, cuda_graphs="off"), "sas_p", 0, data)
    assert record["config"]["execution"]["mode"] == "compiled", record["config"]["compile"]
    assert record["status"] == "ok"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_gain_sum_matches_the_portable_one_and_launches_what_it_declares(dtype):
    from torch.profiler import ProfilerActivity, profile

    from blockbench.blocks import gains

    gen = torch.Generator(device="cuda").manual_seed(0)
    x, y = (torch.randn(4, 130, 96, device="cuda", generator=gen).to(dtype).requires_grad_() for _ in range(2))
    a = torch.tensor(0.7, device="cuda", requires_grad=True)
    b = torch.tensor(-0.2, device="cuda", requires_grad=True)
    upstream = torch.randn(x.shape, device="cuda").to(dtype)
    got = gains.gain_sum(x, y, a, b)
    got_grads = torch.autograd.grad(got, (x, y, a, b), upstream)
    with torch.no_grad():
        want = gains._portable_forward(x, y, a, b, 1.0, 1.0)
        want_grads = gains._portable_backward(upstream, x, y, a, b, 1.0, 1.0)
    tol = dict(rtol=2e-2, atol=2e-2) if dtype == torch.bfloat16 else dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got.float(), want.float(), **tol)
    for g1, g2 in zip(got_grads, want_grads):
        torch.testing.assert_close(g1.float(), g2.float(), rtol=tol["rtol"], atol=tol["atol"] * 10)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        out = gains.gain_sum(x, y, a, b)
        torch.autograd.grad(out, (x, y, a, b), upstream)
        torch.cuda.synchronize()
    names = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    assert sum("gain_sum" in n for n in names) == (shaped.DECLARED_LAUNCHES["blockbench::gain_sum"]
                                                   + shaped.DECLARED_LAUNCHES["blockbench::gain_sum_backward"])


def test_prewarmed_runs_on_cuda(tiny, tmp_path):
    """auto pre-warms on CUDA: each run's process had its CUDA context before its turn, and every run finishes."""
    from blockbench.executors.local import LocalExecutor
    from blockbench.runner import run

    suite, _ = tiny
    executor = LocalExecutor(prewarm="auto")
    starts = []
    try:
        result = run(suite.with_overrides(seeds=[0, 1]), tmp_path / "o", executor=executor,
                     on_event=lambda kind, info: starts.append(info) if kind == "start" else None)
    finally:
        executor.close()
    assert not result.failures and len(result.written) == 4
    assert all(s.get("prewarmed") for s in starts) and len({s["pid"] for s in starts}) == 4
