"""The prepared GPU report (ci/gpu-check.sh): at the paper's shape (`paper-gpu-offline`: L=18, d=768, H=12, T=128,
batch 128, bf16), for every variant and execution mode, in one process and interleaved (A B A B):
tokens/s, speed vs Pre-LN in the same mode, MFU against the spec-table peak and against a bf16 GEMM peak measured
here, host time vs GPU time per step, kernel launches per step (and what the step-cost model predicts), and peak
memory. Writes everything as JSON (--json PATH); docs/performance.md's GPU table is made from that file.

    python ci/gpu_check.py --device cuda --json out.json                        # what gpu-check.sh runs
    python ci/gpu_check.py --device cpu --suite smoke --modes eager --rounds 2  # a dry run of the code path on CPU
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from blockbench.blocks import get_variant, shaped
from blockbench.blocks.attention import Attention
from blockbench.data import load_data
from blockbench.measure.flops import count_flops
from blockbench.measure.memory import PeakMemory
from blockbench.measure.mfu import peak_flops
from blockbench.step_probe import harness_step, speed_ratio, suite_at_shape
from blockbench.suite import load_suite

# Today's baseline and SAS-P on it run at the paper's shape too, with the suite's default optimiser (the paper's
# suites do not list them).
VARIANTS = ("pre_ln", "parallel", "vskipinit", "sas", "sas_p", "sas_p_nonorm", "transformer_pp", "sas_p_pp")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def gemm_peak(device: torch.device, n: int = 8192, iters: int = 20) -> float | None:
    """bf16 dense GEMM throughput (FLOP/s) of an n^3 matmul: what this card's matmuls reach."""
    if device.type != "cuda":
        return None
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    return 2 * n**3 / seconds_per_call(lambda: a @ b, device, iters)


def seconds_per_call(fn: Any, device: torch.device, iters: int, warmup: int = 3) -> float:
    """Mean seconds of one fn() over iters synchronised calls, after warmup untimed ones."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - start) / iters


MATMUL_OPS = {"mm", "addmm", "bmm", "baddbmm", "_scaled_mm"}


def _is_matmul_or_attention(name: str) -> bool:
    return name.split("::")[-1].split(".")[0] in MATMUL_OPS or "scaled_dot_product" in name


def matmul_bound(suite: Any, variant: str, data: Any, device: torch.device, iters: int = 20) -> dict[str, Any]:
    """The step's matmuls and attention kernels alone: every such op of one training step (eager) is recorded,
    each distinct call (op, shapes, strides, dtypes, arguments) replayed on its own, and the times summed over
    the step's calls. That is the step time if every other op (norms, activations, residuals, casts, the loss,
    the optimizer) were free, so the model's FLOPs over it, against the table peak, is the MFU this shape
    allows the step at most with these kernels: a bound that says whether an MFU target is reachable here."""
    from torch.utils._python_dispatch import TorchDispatchMode

    calls: dict[str, dict[str, Any]] = {}

    def signature(func: Any, args: tuple, kwargs: dict) -> str:
        def one(a: Any) -> str:
            if isinstance(a, torch.Tensor):
                return f"T{tuple(a.shape)}{a.stride()}{a.dtype}"
            return repr(a)
        return f"{func.name()}({', '.join(one(a) for a in args)}; {sorted((k, one(v)) for k, v in kwargs.items())})"

    class Recording(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            kwargs = kwargs or {}
            if _is_matmul_or_attention(func.name()):
                key = signature(func, args, kwargs)
                if key not in calls:  # the first call's own inputs, kept for the replay
                    clone = lambda a: a.detach().clone() if isinstance(a, torch.Tensor) else a  # noqa: E731
                    calls[key] = {"func": func, "args": [clone(a) for a in args],
                                  "kwargs": {k: clone(v) for k, v in kwargs.items()}, "count": 0}
                calls[key]["count"] += 1
            return func(*args, **kwargs)

    eager = dataclasses.replace(suite, runtime=dataclasses.replace(suite.runtime, cuda_graphs="off", compile=False))
    step = harness_step(eager, variant, data)
    step()
    sync(device)
    with Recording():
        step()
    sync(device)
    del step
    total = 0.0
    ops: dict[str, dict[str, Any]] = {}
    for call in calls.values():
        seconds = seconds_per_call(lambda c=call: c["func"](*c["args"], **c["kwargs"]), device, iters)
        total += seconds * call["count"]
        name = call["func"].name()
        ops.setdefault(name, {"calls": 0, "ms": 0.0})
        ops[name]["calls"] += call["count"]
        ops[name]["ms"] += 1e3 * seconds * call["count"]
    distinct = len(calls)
    calls.clear()
    return {"ms_per_step": 1e3 * total, "distinct_calls": distinct, "by_op": ops}


def suite_for(base: Any, variants: list[str], mode: str, batch: int | None) -> Any:
    runtime = dataclasses.replace(base.runtime, cuda_graphs="auto" if "graphs" in mode else "off",
                                  compile="compiled" in mode)
    return suite_at_shape(dataclasses.replace(base, runtime=runtime), variants, batch_size=batch)


def step_profile(step: Any, device: torch.device, steps: int = 3, top: int = 12) -> dict[str, Any]:
    """Host time (enqueueing a step), wall time and GPU kernel time per step, kernels launched per step, and the
    `top` ops by self CPU time per step."""
    from torch.profiler import ProfilerActivity, profile

    sync(device)
    host, wall = [], []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        host.append(time.perf_counter() - start)
        sync(device)
        wall.append(time.perf_counter() - start)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        sync(device)
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    gpu = sum(e.device_time for e in kernels) / 1e6 / steps  # device_time is in microseconds
    # Where the host's time goes: the ops (and Python-level ranges) with the most self CPU time per step.
    by_host = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {"host_ms": 1e3 * statistics.median(host), "wall_ms": 1e3 * statistics.median(wall),
            "gpu_kernel_ms": 1e3 * gpu, "kernels_per_step": len(kernels) / steps,
            "gpu_busy": gpu / statistics.median(wall) if device.type == "cuda" else None,
            "top_host_ops": [{"name": e.key, "self_cpu_ms": e.self_cpu_time_total / 1e3 / steps,
                              "calls": e.count / steps} for e in by_host]}


def peak_memory(suite: Any, variant: str, data: Any, device: torch.device) -> int | None:
    """max_memory_allocated over three steps of one variant alone (weights, optimizer state, activations)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    memory = PeakMemory(device)
    memory.start()
    step = harness_step(suite, variant, data)
    for _ in range(3):
        step()
    sync(device)
    peak = memory.peak_bytes()
    del step
    return peak


def attention_memory(variant: str, seq_len: int, device: torch.device, batch: int = 8, width: int = 768,
                     heads: int = 12) -> int | None:
    """Peak memory of one attention sub-block forward + backward at seq_len (bf16 autocast on CUDA)."""
    attn = Attention(width, heads, get_variant(variant).spec.for_layer(1)).to(device)
    x = torch.randn(batch, seq_len, width, device=device, requires_grad=True)
    gc.collect()
    memory = PeakMemory(device)
    memory.start()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        attn(x).float().pow(2).mean().backward()
    return memory.peak_bytes()


def predicted_launches(suite: Any, variant: str, data: Any) -> Any:
    """The step-cost model's count of kernel launches for one step (measure/cost.py), where it exists."""
    try:
        from blockbench.step_probe import step_cost
    except ImportError:
        return None
    try:
        return step_cost(suite, variant, data)["totals"]["ops"]
    except Exception as exc:  # noqa: BLE001 - the report goes on without it
        return f"{type(exc).__name__}: {exc}"


def section(report: dict[str, Any], name: str, fn: Any) -> None:
    start = time.perf_counter()
    try:
        report[name] = fn()
    except Exception as exc:  # noqa: BLE001 - one failing section must not take the others' figures with it
        report[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
    print(f"[{name}: {time.perf_counter() - start:.1f} s] {json.dumps(report[name], default=str)[:3000]}",
          flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--suite", default="paper-gpu-offline")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--modes", default="eager,graphs", help="comma list of eager, graphs, compiled, "
                                                                "compiled+graphs")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps-per-round", type=int, default=5)
    parser.add_argument("--batch", type=int, help="sequences per step (default: the suite's)")
    parser.add_argument("--seq-len", type=int, default=2048, help="T of the attention-memory check")
    parser.add_argument("--skip", default="", help="comma list of sections to skip: memory, profile, attention, bound, "
                                                "predicted")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args()
    device = torch.device(args.device)
    variants = args.variants.split(",")
    modes = args.modes.split(",")
    skip = set(args.skip.split(",")) - {""}
    base = load_suite(args.suite).with_overrides(device=args.device)
    data = load_data(base.data)
    report: dict[str, Any] = {"suite": base.name, "suite_version": base.version, "variants": variants,
                              "modes": modes, "model": base.model.shape(),
                              "batch": args.batch or base.optim.batch_size}
    env = {"torch": torch.__version__, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
           "triton_mix": shaped.uses_triton(torch.empty(1, device=device)), "triton_error": shaped.triton_error()}
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    report["env"] = env
    print(json.dumps(env), flush=True)
    peak = peak_flops(env["device"], "bf16") if device.type == "cuda" else None
    report["peak_flops_table"] = peak
    section(report, "gemm_peak_flops", lambda: gemm_peak(device))
    suites = {mode: suite_for(base, variants, mode, args.batch) for mode in modes}
    steps: dict[str, Any] = {}

    def build() -> dict[str, Any]:
        built: dict[str, Any] = {}
        flops: dict[str, int] = {}
        for mode in modes:
            for v in variants:
                start = time.perf_counter()
                steps[f"{v}/{mode}"] = harness_step(suites[mode], v, data)
                steps[f"{v}/{mode}"]()  # untimed: captures the graph / compiles / JIT-compiles Triton
                sync(device)
                trainer = steps[f"{v}/{mode}"].trainer
                if v not in flops:
                    flops[v] = count_flops(trainer.model, use_fvcore=False)["flops_train_per_token"]
                built[f"{v}/{mode}"] = {"seconds": time.perf_counter() - start, "mode": trainer.mode(),
                                        "graphs_fallback": trainer.execution.get("graphs_fallback"),
                                        "compile_error": trainer.compile_info.get("error"),
                                        "flops_train_per_token": flops[v]}
        return built

    section(report, "build", build)
    first = next(iter(suites.values()))
    tokens_per_step = first.optim.batch_size * first.model.seq_len

    def probe() -> dict[str, Any]:
        baseline = f"{variants[0]}/{modes[0]}"
        result = speed_ratio(steps, baseline, args.rounds, args.steps_per_round, warmup=2)
        out = {}
        for name, r in result.items():
            v, mode = name.split("/")
            t = r["step_time_median"]
            base_t = result[f"{variants[0]}/{mode}"]["step_time_median"]
            flops = report["build"][name]["flops_train_per_token"] * tokens_per_step
            gemm = report.get("gemm_peak_flops")
            out[name] = {"step_ms": 1e3 * t, "tokens_per_s": tokens_per_step / t,
                         "vs_baseline_same_mode": base_t / t,
                         f"vs_{variants[0]}_{modes[0]}": r["speedup_vs_baseline"], "iqr": r["speedup_iqr"],
                         "mfu_table": flops / t / peak if peak else None,
                         "mfu_gemm": flops / t / gemm if isinstance(gemm, float) else None}
        return out

    section(report, "probe", probe)
    if "profile" not in skip:
        section(report, "profile", lambda: {name: step_profile(fn, device) for name, fn in steps.items()})
    steps.clear()
    gc.collect()
    if "bound" not in skip:
        def bounds() -> dict[str, Any]:
            out = {}
            for v in variants[:1] + [v for v in ("sas_p",) if v in variants[1:]]:
                b = matmul_bound(first, v, data, device)
                flops = report["build"][f"{v}/{modes[0]}"]["flops_train_per_token"] * tokens_per_step
                b["mfu_ceiling_table"] = flops / (b["ms_per_step"] / 1e3) / peak if peak else None
                out[v] = b
            return out

        section(report, "matmul_bound", bounds)
    if "predicted" not in skip:
        section(report, "predicted_launches", lambda: {
            v: predicted_launches(suites[modes[0]], v, data) for v in variants})
    if "memory" not in skip:
        section(report, "peak_memory_bytes", lambda: {
            f"{v}/{mode}": peak_memory(suites[mode], v, data, device) for mode in modes for v in variants})
    if "attention" not in skip:
        section(report, "attention_memory_bytes", lambda: {
            v: attention_memory(v, args.seq_len, device) for v in ("pre_ln", "sas_p")})
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=str))
    print_summary(report)
    return 0


def print_summary(report: dict[str, Any]) -> None:
    probe = report.get("probe", {})
    if "error" in probe:
        return
    prof = report.get("profile", {})
    mem = report.get("peak_memory_bytes", {})
    print(f"\n{report['env']['device']}, torch {report['env']['torch']}, triton {report['env']['triton']} "
          f"(mix on Triton: {report['env']['triton_mix']}), GEMM peak "
          f"{(report.get('gemm_peak_flops') or 0) / 1e12:.0f} TFLOP/s, table peak "
          f"{(report.get('peak_flops_table') or 0) / 1e12:.0f}")
    head = (f"{'variant/mode':24} {'ms/step':>8} {'tok/s':>10} {'vs base':>8} {'MFU tbl':>8} {'host ms':>8} "
            f"{'GPU ms':>8} {'busy':>6} {'kernels':>8} {'peak GiB':>9}")
    print(head)
    for name, r in probe.items():
        p = prof.get(name, {}) if "error" not in prof else {}
        m = mem.get(name) if isinstance(mem, dict) and "error" not in mem else None
        print(f"{name:24} {r['step_ms']:8.2f} {r['tokens_per_s']:10.0f} {r['vs_baseline_same_mode']:8.3f} "
              f"{(r['mfu_table'] or 0):8.3f} {p.get('host_ms', 0):8.2f} {p.get('gpu_kernel_ms', 0):8.2f} "
              f"{(p.get('gpu_busy') or 0):6.2f} {p.get('kernels_per_step', 0):8.0f} "
              f"{(m or 0) / 2**30:9.2f}")


if __name__ == "__main__":
    sys.exit(main())
