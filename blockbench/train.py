"""The harness: train one (variant, seed) of a suite under its budget, measure it, and return its run record.

Every variant of a suite gets the same data order (seeded by the seed alone), the same evaluation windows, the
same optimiser and schedule (up to the suite's per-variant overrides) and the same budget. The training clock
runs only around optimisation steps: evaluation and warm-up are outside it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from datetime import UTC, datetime
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from blockbench import cuda_graph
from blockbench.blocks import get_variant, shaped
from blockbench.blocks.attention import Attention
from blockbench.data import TokenData
from blockbench.distributed import SINGLE, DistInfo, all_reduce, local_batch_size, shard
from blockbench.errors import BlockbenchError
from blockbench.measure.env import environment
from blockbench.measure.flops import count_flops
from blockbench.measure.memory import PeakMemory
from blockbench.measure.params import count_params
from blockbench.measure.throughput import (
    NO_PROBE,
    control_name,
    interleaved_step_times,
    speed_summary,
    stop_rule,
)
from blockbench.measure.timing import StepTimer
from blockbench.model import Model, build_model
from blockbench.records import RunTally, build_record, data_section
from blockbench.suite import Budget, OptimConfig, Suite, check_fits

ProgressFn = Callable[[dict[str, Any]], None]


def resolve_device(requested: str, info: DistInfo = SINGLE) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise BlockbenchError("--device cuda: CUDA is not available on this machine (use --device cpu or auto)")
    kind = ("cuda" if torch.cuda.is_available() else "cpu") if requested == "auto" else requested
    return torch.device(f"cuda:{info.local_rank}") if kind == "cuda" else torch.device("cpu")


def resolve_dtype(requested: str, device: torch.device) -> str:
    if requested == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return requested


def schedule_steps(budget: Budget, tokens_per_step: int, flops_per_step: float) -> int | None:
    """The LR schedule's length: the smallest step count that a steps, tokens or FLOPs budget allows."""
    candidates = []
    if budget.steps is not None:
        candidates.append(budget.steps)
    if budget.tokens is not None:
        candidates.append(math.ceil(budget.tokens / tokens_per_step))
    if budget.flops is not None:
        candidates.append(math.ceil(budget.flops / flops_per_step))
    return min(candidates) if candidates else None


def lr_factor(step: int, horizon: int | None, optim: OptimConfig) -> float:
    """Linear warm-up over warmup_fraction of the horizon, then linear / cosine decay to min_lr_ratio."""
    if horizon is None or optim.schedule == "constant":
        warmup = 0 if horizon is None else int(optim.warmup_fraction * horizon)
        return min(1.0, (step + 1) / warmup) if warmup else 1.0
    warmup = int(optim.warmup_fraction * horizon)
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, horizon - warmup))
    shape = 1 - progress if optim.schedule == "linear" else 0.5 * (1 + math.cos(math.pi * progress))
    return optim.min_lr_ratio + (1 - optim.min_lr_ratio) * shape


def make_optimizer(model: Model, optim: OptimConfig, device: torch.device,
                   capturable: bool = False) -> torch.optim.Optimizer:
    """AdamW, fused on CUDA. capturable: its step stays on the device (CUDA graphs), with each group's learning
    rate a device tensor that the scheduler fills in place."""
    if not capturable:
        return torch.optim.AdamW(model.param_groups(optim.weight_decay), lr=optim.lr, betas=optim.betas,
                                 eps=optim.eps, fused=device.type == "cuda")
    groups = [{**g, "lr": torch.tensor(optim.lr, device=device)} for g in model.param_groups(optim.weight_decay)]
    return torch.optim.AdamW(groups, lr=torch.tensor(optim.lr, device=device), betas=optim.betas, eps=optim.eps,
                             fused=True, capturable=True)


def build_for_suite(suite: Suite, variant_name: str, seed: int, vocab_size: int) -> Model:
    """The suite's model for a corpus of `vocab_size` token ids (the workload may add ids, e.g. [MASK])."""
    entry = suite.variants[variant_name]
    variant = get_variant(entry.preset)
    spec = variant.spec.replace(**entry.spec) if entry.spec and variant.spec else None
    config = dataclasses.replace(suite.model, vocab_size=suite.get_workload().model_vocab_size(vocab_size),
                                 workload=suite.workload)
    return build_model(variant, config, spec, seed=seed)


class Trainer:
    """One (variant, seed) run. `run()` returns the record; KeyboardInterrupt propagates with nothing written."""

    def __init__(self, suite: Suite, variant_name: str, seed: int, data: TokenData,
                 windows: tuple[torch.Tensor, torch.Tensor] | None, progress: ProgressFn | None = None,
                 speed: dict[str, Any] | None = None, static: dict[str, Any] | None = None,
                 measure_static: bool = True, dist: DistInfo = SINGLE) -> None:
        self.suite, self.variant_name, self.seed, self.data, self.dist = suite, variant_name, seed, data, dist
        self.workload = suite.get_workload()
        self.device = resolve_device(suite.runtime.device, dist)
        self.dtype = resolve_dtype(suite.runtime.dtype, self.device)
        self.optim = suite.optim_for(variant_name)
        self.local_batch = local_batch_size(self.optim.batch_size, dist)
        self.micro_batch = self.optim.micro_batch_size or self.local_batch
        if self.local_batch % self.micro_batch:
            raise BlockbenchError(f"micro_batch_size {self.micro_batch} does not divide the per-process batch "
                                  f"of {self.local_batch} sequences")
        self.progress = progress or (lambda info: None)
        self.windows = None if windows is None else tuple(t.to(self.device) for t in windows)
        self.speed = speed or NO_PROBE
        self.model = build_for_suite(suite, variant_name, seed, data.vocab_size)
        if static is None:
            static = static_measures(self.model) if measure_static else {"flops_train_per_token": 0}
        self.static = static
        self.model.to(self.device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        graphs_setting = suite.runtime.cuda_graphs
        graphs_reason = cuda_graph.unavailable_reason(self.device, dist.enabled, self.dtype)
        if graphs_setting == "on" and graphs_reason:
            raise BlockbenchError(f"runtime.cuda_graphs = on, but the step cannot be captured: {graphs_reason}")
        self.graphs_wanted = graphs_setting != "off" and graphs_reason is None
        self.graphed: cuda_graph.GraphedStep | None = None
        # What the record says of how the step ran (records.execution_mode reads `mode`).
        self.execution: dict[str, Any] = {"mode": "eager", "cuda_graphs": graphs_setting,
                                          "graphs_fallback": graphs_reason if graphs_setting != "off" else None}
        autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.dtype)
        # A captured step cannot use autocast's weight-cast cache (it would hold casts from the capture).
        self.autocast = (torch.autocast(self.device.type, dtype=autocast_dtype, cache_enabled=not self.graphs_wanted)
                         if autocast_dtype else None)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.dtype == "fp16" else None
        self.tokens_per_step = self.optim.batch_size * suite.model.seq_len
        self.flops_per_token = self.static["flops_train_per_token"]
        self.horizon = (schedule_steps(suite.budget, self.tokens_per_step, self.flops_per_token * self.tokens_per_step)
                        if measure_static else None)
        divergence = suite.runtime.divergence_loss  # None: the default; 0 is refused when the suite loads
        self.divergence_loss = 2 * math.log(data.vocab_size) if divergence is None else divergence
        self.compile_info: dict[str, Any] = {"enabled": suite.runtime.compile, "seconds": None, "error": None}
        if suite.runtime.compile_shaped:
            self.compile_info["shaped"] = True  # present only when asked for: older records read as before
            for module in self.model.modules():
                if isinstance(module, Attention):
                    module.compiled_mix = True
        self.ddp_model: torch.nn.Module = self.model
        if dist.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = DistributedDataParallel(self.model, device_ids=device_ids)
        self.step_model: torch.nn.Module = self.ddp_model

    def train_step(self, optimizer: torch.optim.Optimizer, scheduler: Any, x: torch.Tensor,
                   y: torch.Tensor) -> torch.Tensor:
        """One optimiser update on this process's share (x, y) of the global batch; returns its mean loss. Under
        CUDA graphs the first call with an optimizer captures the step (untimed callers capture first)."""
        if self.graphs_wanted and (self.graphed is None or self.graphed.optimizer is not optimizer):
            self.capture(optimizer, x, y)
        if self.graphed is not None and self.graphed.optimizer is optimizer and x.shape == self.graphed.static_x.shape:
            total = self.graphed(x, y)
        else:
            total = self.update(optimizer, x, y)
            optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        return total

    def capture(self, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
        """Capture the step for `optimizer`; where capture fails, `auto` goes on eagerly (said once, recorded) and
        `on` fails the run with the reason."""
        self.graphed = None
        try:
            self.graphed = cuda_graph.GraphedStep(lambda xs, ys: self.update(optimizer, xs, ys), self.model,
                                                  optimizer, x, y)
        except cuda_graph.CaptureError as exc:
            if self.suite.runtime.cuda_graphs == "on":
                raise
            self.graphs_wanted = False
            self.execution["graphs_fallback"] = str(exc)
            warnings.warn(f"{exc}; this run's step executes eagerly", stacklevel=2)

    def mode(self) -> str:
        """eager, compiled, graphs or compiled+graphs: how the step executes now (records.EXECUTION_MODES)."""
        parts = (("compiled", self.step_model is not self.ddp_model), ("graphs", self.graphed is not None))
        return "+".join(name for name, on in parts if on) or "eager"

    def update(self, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Forward, backward, clip and optimizer step: the part of a step that CUDA graphs capture."""
        micro = self.micro_batch
        n_micro = len(x) // micro
        total = torch.zeros((), device=self.device)
        for i in range(n_micro):
            xs, ys = x[i * micro:(i + 1) * micro], y[i * micro:(i + 1) * micro]
            # DDP all-reduces gradients once, on the last micro-batch.
            sync = self.dist.enabled and i < n_micro - 1
            with (self.ddp_model.no_sync() if sync else nullcontext()), (self.autocast or nullcontext()):
                loss = self.step_model(xs, ys) / n_micro
            (self.scaler.scale(loss) if self.scaler else loss).backward()
            total += loss.detach()
        if self.scaler:
            self.scaler.unscale_(optimizer)
        if self.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.optim.grad_clip)
        if self.scaler:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        return total

    def batches(self):
        for x, y in self.workload.train_batches(self.data, self.seed, self.optim.batch_size,
                                                self.suite.model.seq_len):
            x, y = shard(x, self.dist), shard(y, self.dist)
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def new_optimizer(self) -> tuple[torch.optim.Optimizer, Any]:
        optimizer = make_optimizer(self.model, self.optim, self.device, capturable=self.graphs_wanted)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, self.horizon, self.optim))
        return optimizer, scheduler

    def compile_model(self) -> None:
        """runtime.compile: the model torch.compile'd for the steps (compilation itself happens at the first step;
        a failure there falls back to eager in warm_up)."""
        if self.suite.runtime.compile and self.step_model is self.ddp_model:
            try:
                self.step_model = torch.compile(self.ddp_model, dynamic=False)
            except Exception as exc:  # noqa: BLE001 - any compile failure falls back to eager, recorded
                self.compile_info["error"] = f"{type(exc).__name__}: {exc}"

    def warm_up(self) -> float:
        """Untimed steps (kernel selection, allocator, compilation), then the exact initial state is restored."""
        start = time.perf_counter()
        initial = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        self.compile_model()
        optimizer, _ = self.new_optimizer()
        batches = self.batches()
        for _ in range(self.suite.runtime.warmup_steps):
            try:
                self.update(optimizer, *next(batches))
                optimizer.zero_grad(set_to_none=True)
            except Exception as exc:
                if self.step_model is self.ddp_model:
                    raise
                warnings.warn(f"torch.compile failed, falling back to eager: {exc}", stacklevel=1)
                self.compile_info["error"] = f"{type(exc).__name__}: {exc}"
                self.step_model = self.ddp_model
                optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.model.load_state_dict(initial)
        seconds = time.perf_counter() - start
        if self.suite.runtime.compile or self.suite.runtime.compile_shaped:
            self.compile_info["seconds"] = seconds
        return seconds

    def run(self) -> dict[str, Any]:
        tally = RunTally(created_at=datetime.now(UTC).isoformat(timespec="seconds"), workload=self.workload.name,
                         data=data_section(self.suite, self.data), static=self.static, speed=self.speed,
                         block_spec=self.model.spec.to_dict() if self.model.spec else None,
                         flops_per_token=self.flops_per_token, world_size=self.dist.world_size)
        memory = PeakMemory(self.device)
        memory.start()
        tally.warmup_seconds = self.warm_up()
        optimizer, scheduler = self.new_optimizer()
        batches = self.batches()
        if self.graphs_wanted:  # captured here, untimed, on the first batch (which is then trained on)
            first = next(batches)
            start = time.perf_counter()
            self.capture(optimizer, *first)
            tally.warmup_seconds += time.perf_counter() - start
            batches = itertools.chain([first], batches)
        self.execution["mode"] = self.mode()
        timer = StepTimer(self.device)
        self._train(tally, timer, optimizer, scheduler, batches)
        timer.pause()
        tally.train_seconds, tally.step_seconds = timer.seconds, timer.step_seconds
        tally.peak_memory_bytes, tally.peak_memory_kind = memory.peak_bytes(), memory.kind
        return self._record(tally)

    def _train(self, tally: RunTally, timer: StepTimer, optimizer: torch.optim.Optimizer, scheduler: Any,
               batches: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """The timed loop: steps until the budget or a divergence, an evaluation point every eval.every_tokens."""
        every = self.suite.eval.every_tokens
        window_losses: list[torch.Tensor] = []
        check_every = 1 if self.device.type == "cpu" else 16
        self._add_point(tally, timer, None)
        next_eval = every
        while True:
            stop = self._stop(tally, timer)
            if stop:
                tally.stop_reason = stop
                break
            x, y = next(batches)
            timer.step_begin()
            window_losses.append(self.train_step(optimizer, scheduler, x, y))
            timer.step_end()
            tally.steps += 1
            tally.tokens += self.tokens_per_step
            if tally.steps % check_every == 0 or tally.tokens >= next_eval:
                if self._diverged(tally, window_losses[-check_every:]):
                    break
                self._report(tally, timer, None)
            if tally.tokens >= next_eval:
                mean_train = self._mean_loss(window_losses)
                window_losses.clear()
                self._add_point(tally, timer, mean_train)
                next_eval += every * max(1, math.ceil((tally.tokens - next_eval + 1) / every))
                self._report(tally, timer, tally.curve[-1]["eval_loss"])
        if tally.ok and tally.curve[-1]["step"] != tally.steps:
            self._add_point(tally, timer, self._mean_loss(window_losses) if window_losses else None)
        if tally.ok and not math.isfinite(tally.curve[-1]["eval_loss"]):
            tally.status = "diverged"
            tally.stop_reason = f"diverged: eval loss {tally.curve[-1]['eval_loss']} at step {tally.steps}"

    def _add_point(self, tally: RunTally, timer: StepTimer, train_loss: float | None) -> None:
        """An evaluation point on the curve; the evaluation is off the training clock."""
        timer.pause()
        t0 = time.perf_counter()
        metrics = self.workload.evaluate(self.model, self.windows, self.local_batch, self.autocast, self.dist)
        tally.eval_seconds += time.perf_counter() - t0
        tally.curve.append({"step": tally.steps, "tokens": tally.tokens,
                            "flops": float(tally.tokens * self.flops_per_token), "train_seconds": timer.seconds,
                            "train_loss": train_loss, **metrics})
        timer.resume()

    def _stop(self, tally: RunTally, timer: StepTimer) -> str:
        """Why the run stops now ('' when it goes on); under torchrun a seconds budget stops every rank together."""
        budget = self.suite.budget
        stop = self._budget_reached(budget, tally.steps, tally.tokens, timer.elapsed(), self.flops_per_token)
        if self.dist.enabled and budget.seconds is not None:  # ranks' clocks differ: stop together
            flag = all_reduce(torch.tensor([float(bool(stop))], device=self.device), self.dist, "max").item()
            stop = (stop or f"budget: {budget.seconds} training seconds") if flag else ""
        return stop

    def _diverged(self, tally: RunTally, losses: list[torch.Tensor]) -> bool:
        """Whether the recent train losses left the divergence bound (then the tally says so)."""
        # Every rank must reach the same verdict, so they judge the loss averaged over ranks.
        recent = (all_reduce(torch.stack(losses).float(), self.dist) / self.dist.world_size).tolist()
        tally.last_train_loss = recent[-1]
        bad = [v for v in recent if not math.isfinite(v) or v > self.divergence_loss]
        if bad:
            tally.status = "diverged"
            tally.stop_reason = (f"diverged: train loss {bad[0]:.4g} at step {tally.steps} "
                                 f"(bound {self.divergence_loss:.4g})")
        return bool(bad)

    def _report(self, tally: RunTally, timer: StepTimer, eval_loss: float | None) -> None:
        self.progress({"step": tally.steps, "horizon": self.horizon, "tokens": tally.tokens,
                       "train_loss": tally.last_train_loss, "eval_loss": eval_loss,
                       "tokens_per_second": tally.tokens / max(timer.elapsed(), 1e-9)})

    def _mean_loss(self, losses: list[torch.Tensor]) -> float:
        mean = torch.stack(losses).float().mean()
        return float(all_reduce(mean, self.dist)) / self.dist.world_size

    @staticmethod
    def _budget_reached(budget: Budget, step: int, tokens: int, seconds: float, flops_per_token: int) -> str:
        if budget.steps is not None and step >= budget.steps:
            return f"budget: {budget.steps} steps"
        if budget.tokens is not None and tokens >= budget.tokens:
            return f"budget: {budget.tokens} tokens"
        if budget.flops is not None and tokens * flops_per_token >= budget.flops:
            return f"budget: {budget.flops:.4g} FLOPs"
        if budget.seconds is not None and seconds >= budget.seconds:
            return f"budget: {budget.seconds} training seconds"
        return ""

    def _record(self, tally: RunTally) -> dict[str, Any]:
        """The run record (records.build_record) of what this trainer ran and measured."""
        if self.suite.runtime.compile_shaped:
            # the compiled mix falls back at its first failing call, in warm-up, training or evaluation
            self.compile_info["error"] = self.compile_info["error"] or shaped.compile_error()
        tally.config = {"schedule_steps": self.horizon, "dtype": self.dtype, "compile": self.compile_info,
                        "execution": {**self.execution, "fused_ops": fused_ops_backend(
                            self.device, compiled=self.execution["mode"].startswith("compiled"))},
                        "divergence_loss": self.divergence_loss}
        tally.metrics = self.workload.summary_metrics(tally.curve[-1] if tally.ok else None, self.data)
        return build_record(self.suite, self.variant_name, self.seed, tally, environment(self.device))


def fused_ops_backend(device: torch.device, compiled: bool = False) -> str:
    """What the package's fused ops (shaped mix, gained sum) ran on in the training step: their Triton kernels on
    CUDA, or the portable torch ops, on CUDA with the reason Triton could not be used (said once by
    blocks/shaped.py when it happens); in a compiled step, their formula, fused by the compiler."""
    if compiled:
        return "formula fused by torch.compile (evaluation: " + fused_ops_backend(device) + ")"
    if device.type != "cuda":
        return "portable torch ops"
    error = shaped.triton_error()
    return "triton" if error is None and shaped.uses_triton(torch.empty(0, device=device)) else (
        f"portable torch ops (Triton unavailable: {error})")


def static_measures(model: Model) -> dict[str, Any]:
    """Parameters and FLOPs: properties of the architecture, identical for every seed."""
    return {**count_params(model), **count_flops(model)}


def run_trial(suite: Suite, variant_name: str, seed: int, data: TokenData, progress: ProgressFn | None = None,
              speed: dict[str, Any] | None = None, static: dict[str, Any] | None = None,
              dist: DistInfo = SINGLE) -> dict[str, Any]:
    check_fits(suite, data)
    windows = suite.get_workload().eval_windows(data, suite.model.seq_len, suite.eval.windows)
    return Trainer(suite, variant_name, seed, data, windows, progress, speed, static, dist=dist).run()


def prepare_variants(suite: Suite, data: TokenData, dist: DistInfo = SINGLE,
                     fails: Callable[[BaseException], bool] | None = None) -> dict[str, dict[str, Any]]:
    """Per variant, once for all seeds: its static measures and its interleaved speed probe result.

    A variant that cannot be built or stepped (a user block that raises, or runs out of memory) in any round of
    the probe leaves it with its error (`error`: one line; `failure`: type, message, traceback), and the other
    variants' rounds go on, so that it fails as its own runs, not as the whole suite. `fails` says which
    exceptions are such a failure (any Exception by default; the executors add a KeyboardInterrupt or SystemExit
    that user code raised itself). Under torchrun ranks must agree, so it raises."""
    fails = fails or (lambda exc: isinstance(exc, Exception))
    check_fits(suite, data)  # before any model is built: a seq_len the data cannot fill is the suite's error
    seed = suite.seeds[0]
    prepared: dict[str, dict[str, Any]] = {}
    steps: dict[str, Callable[[], Any]] = {}
    horizons: dict[str, int | None] = {}
    for name in suite.variants:
        _prepare_variant(suite, name, seed, data, dist, fails, prepared, steps, horizons)
    if suite.speed.rounds == 0 or not steps:
        return prepared
    control = control_name(suite.baseline)
    if suite.baseline in steps:
        # The A/A control (measure/throughput.py): the baseline built again from another initialisation draw,
        # with its own parameters and optimiser state, timed in the same rounds as a variant. A control that
        # cannot be built leaves the probe without one (its records say so), never fails the suite.
        try:
            twin = Trainer(suite, suite.baseline, seed + 1, data, None, dist=dist,
                           static=prepared[suite.baseline]["static"])
            twin.compile_model()
            steps[control] = _probe_step(twin)
        except BaseException as exc:
            if dist.enabled or not fails(exc):
                raise
            _release(exc)
        finally:
            twin = None
    _probe_speed(suite, dist, fails, prepared, steps, horizons, control)
    return prepared


def _prepare_variant(suite: Suite, name: str, seed: int, data: TokenData, dist: DistInfo,
                     fails: Callable[[BaseException], bool], prepared: dict[str, dict[str, Any]],
                     steps: dict[str, Callable[[], Any]], horizons: dict[str, int | None]) -> None:
    """One variant's static measures and its probe step (into `prepared`, `steps`, `horizons`), or its failure."""
    try:
        trainer = Trainer(suite, name, seed, data, None, dist=dist)
        trainer.compile_model()  # the probe times the step in the mode the runs train in
        prepared[name] = {"static": trainer.static, "speed": None}
        if suite.speed.rounds:
            horizons[name] = trainer.horizon
            steps[name] = _probe_step(trainer)  # a block that raises in forward or backward is found here
    except BaseException as exc:
        if dist.enabled or not fails(exc):
            raise
        steps.pop(name, None)
        _failed(prepared, name, exc)
        _release(exc)
    finally:
        trainer = None  # a failed variant's model and optimizer go now, not when the next one is built


def _failed(prepared: dict[str, dict[str, Any]], name: str, exc: BaseException) -> None:
    text = (str(exc).strip().splitlines() or [""])[0]
    prepared[name] = {"static": None, "speed": None, "error": f"{type(exc).__name__}: {text}"[:500],
                      "failure": {"error_type": type(exc).__name__, "message": text[:500],
                                  "traceback": "".join(traceback.format_exception(exc))}}


def _release(exc: BaseException) -> None:
    """Let a failed build's tensors go: its traceback's frames hold them."""
    traceback.clear_frames(exc.__traceback__)
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _probe_speed(suite: Suite, dist: DistInfo, fails: Callable[[BaseException], bool],
                 prepared: dict[str, dict[str, Any]], steps: dict[str, Callable[[], Any]],
                 horizons: dict[str, int | None], control: str) -> None:
    """The interleaved speed probe over `steps`: each variant's speed summary into `prepared` (a variant whose step
    fails in a round fails as its own runs)."""
    device = resolve_device(suite.runtime.device, dist)
    dropped: dict[str, BaseException] = {}
    stopped: dict[str, Any] = {}
    cap = probe_time_cap(suite, horizons)
    until = stop_rule(suite.baseline, suite.speed.target_half_width, lambda times: cap(times)[0],
                      agree=_agreement(dist, device) if dist.enabled else None)
    times = interleaved_step_times(steps, suite.speed.rounds, suite.speed.steps_per_round,
                                   warmup=max(0, suite.runtime.warmup_steps - 1), cuda=device.type == "cuda",
                                   failed=None if dist.enabled else dropped, fails=fails, until=until,
                                   stopped=stopped)
    for name, exc in dropped.items():
        if name != control:
            _failed(prepared, name, exc)
    seconds, basis = cap(times)
    facts = {"min_rounds": suite.speed.rounds, "stop_reason": stopped["reason"],
             "target_half_width": suite.speed.target_half_width, "time_cap_seconds": seconds, "time_cap": basis,
             "probe_seconds": stopped["seconds"]}
    for name, summary in speed_summary(times, suite.baseline, control, facts).items():
        prepared[name]["speed"] = summary
        prepared[name]["round_seconds"] = times[name]  # probe.json keeps them; a record keeps the summary
    if control in times and suite.baseline in prepared:
        prepared[suite.baseline]["control_round_seconds"] = times[control]


def _probe_step(trainer: Trainer) -> Callable[[], Any]:
    """The probe's step of one model: its own optimiser, one fixed batch; stepped once here, so that a block that
    raises in forward or backward is found before any timing."""
    optimizer, scheduler = trainer.new_optimizer()
    batch = next(trainer.batches())

    def step() -> torch.Tensor:
        return trainer.train_step(optimizer, scheduler, *batch)

    step()
    return step


def probe_time_cap(suite: Suite, horizons: dict[str, int | None]
                   ) -> Callable[[dict[str, list[float]]], tuple[float, str]]:
    """The speed probe's time cap, in seconds of timed rounds, and how it was set: [speed] max_seconds when given,
    else max_share of the suite's training time, estimated from the probe's own median step time of each variant
    times its runs' budgeted steps (the schedule's length; a seconds budget bounds it) and the number of seeds."""
    speed = suite.speed
    if speed.max_seconds is not None:
        return lambda times: (speed.max_seconds, f"max_seconds = {speed.max_seconds:g}")

    def cap(times: dict[str, list[float]]) -> tuple[float, str]:
        total = 0.0
        for name, values in times.items():
            if name not in suite.variants or not values:
                continue
            horizon = horizons.get(name)
            run = math.inf if horizon is None else horizon * sorted(values)[len(values) // 2]
            if suite.budget.seconds is not None:
                run = min(run, suite.budget.seconds)
            total += 0.0 if math.isinf(run) else run
        total *= len(suite.seeds)
        return speed.max_share * total, (f"max_share = {speed.max_share:g} of the suite's training time, "
                                         f"estimated at {total:.3g} s")

    return cap


def _agreement(dist: DistInfo, device: torch.device) -> Callable[[bool, bool], tuple[bool, bool]]:
    """Ranks time in step, so they stop together: tight when every rank's intervals are, capped when any rank's
    clock is."""

    def agree(done: bool, capped: bool) -> tuple[bool, bool]:
        flags = all_reduce(torch.tensor([float(not done), float(capped)], device=device), dist, op="max")
        return not bool(flags[0].item()), bool(flags[1].item())

    return agree
