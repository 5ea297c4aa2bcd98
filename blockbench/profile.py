"""Where a training step's time goes, and how fast one variant's step is against another's.

`profile_step` runs one harness training step under torch.profiler and splits its wall time into the
components the model marks with `blockbench.blocks.ranges.scope` (embeddings; per block the norms, the Q/K(/V)
GEMM, the attention kernel, the shaped-attention extras, the projection, the MLP GEMMs and activation, the
residual and gain arithmetic; head and loss), plus backward, optimiser and the step's remaining bookkeeping.
Each component's time is its range's own time (its duration less the ranges nested in it), so the components
add up to the step. Next to the time share it puts the FLOP share of the same component, counted in the same
ranges by a dispatch mode over torch's FLOP formulas.

`speed_ratio` is the interleaved probe of measure/throughput.py applied to two variants of one suite: the same
timing path as a run's speed probe, for scripts and asv.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from blockbench.blocks import ranges
from blockbench.measure.throughput import interleaved_step_times, round_ratios, speed_summary
from blockbench.suite import Suite

# Component order in tables; every range name the model emits maps to one of these.
COMPONENTS = ("embed", "norm", "qkv", "attn_kernel", "shaped", "attn_layout", "proj", "mlp_up", "act",
              "mlp_down", "residual", "final_norm", "head", "loss", "backward", "optimizer", "other")
DESCRIPTIONS = {
    "embed": "token + position embeddings", "norm": "block norms",
    "qkv": "Q/K(/V) GEMM (+ Q/K bias)",
    "attn_kernel": "softmax attention kernel (SDPA)", "shaped": "shaped-attention extras (alpha V, gamma CV)",
    "attn_layout": "head split/merge, value map", "proj": "output projection W^P", "mlp_up": "MLP W_1 GEMM",
    "act": "activation", "mlp_down": "MLP W_2 GEMM", "residual": "residual adds and block gains",
    "final_norm": "final norm", "head": "tied LM head GEMM", "loss": "cross-entropy", "backward": "backward",
    "optimizer": "AdamW step", "other": "grad clip, zero_grad, scheduler",
}


def suite_at_shape(base: Suite, variants: list[str], *, n_layers: int | None = None, d_model: int | None = None,
                   n_heads: int | None = None, seq_len: int | None = None, batch_size: int | None = None,
                   threads: int | None = None, dtype: str | None = None) -> Suite:
    """`base` with another model shape, batch, thread count, dtype and a subset of its variants (for measurement
    only: the result keeps the base suite's hash, so it must never write records)."""
    shape = {k: v for k, v in (("n_layers", n_layers), ("d_model", d_model), ("n_heads", n_heads),
                                ("seq_len", seq_len)) if v is not None}
    missing = [v for v in variants if v not in base.variants]
    if missing:
        raise ValueError(f"suite {base.name!r} has no variant(s) {', '.join(missing)}")
    optim = base.optim if batch_size is None else dataclasses.replace(base.optim, batch_size=batch_size)
    runtime = dataclasses.replace(base.runtime, **{k: v for k, v in (("threads", threads), ("dtype", dtype))
                                                   if v is not None})
    return dataclasses.replace(base, model=dataclasses.replace(base.model, **shape), optim=optim, runtime=runtime,
                               variants={v: base.variants[v] for v in variants})


def harness_step(suite: Suite, variant: str, data: Any, seed: int | None = None) -> Callable[[], Any]:
    """The harness's own training step (Trainer.train_step) on one fixed batch, as the speed probe times it."""
    from blockbench.train import Trainer

    trainer = Trainer(suite, variant, suite.seeds[0] if seed is None else seed, data, None, measure_static=False)
    trainer.compile_model()  # runtime.compile, as a run's warm-up applies it
    optimizer, scheduler = trainer.new_optimizer()
    batch = next(trainer.batches())

    def step() -> Any:
        return trainer.train_step(optimizer, scheduler, *batch)

    step.trainer = trainer  # type: ignore[attr-defined]
    step.optimizer = optimizer  # type: ignore[attr-defined]
    return step


def speed_ratio(steps: dict[str, Callable[[], Any]], baseline: str, rounds: int, steps_per_round: int,
                warmup: int = 2) -> dict[str, dict[str, Any]]:
    """Interleaved probe over named step functions: per name the median step time and the median over rounds of
    baseline_time / time (> 1: faster than the baseline), its IQR and the per-round ratios."""
    cuda = torch.cuda.is_available() and any(
        getattr(getattr(fn, "trainer", None), "device", torch.device("cpu")).type == "cuda" for fn in steps.values())
    times = interleaved_step_times(steps, rounds, steps_per_round, warmup=warmup, cuda=cuda)
    summary = speed_summary(times, baseline)
    for name, ratios in round_ratios(times, baseline).items():
        q = statistics.quantiles(ratios, n=4) if len(ratios) >= 4 else [None, None, None]
        summary[name].update(ratios=ratios, speedup_q1=q[0], speedup_q3=q[2])
    return summary


def component_of(range_name: str) -> str:
    """The table component a range's own time belongs to (`bb.block3` -> residual, `bb.qkv` -> qkv, ...)."""
    name = range_name.removeprefix(ranges.PREFIX)
    if name.startswith("block"):
        return "residual"
    # The step's own time (between its marked phases) is deliberately no component: it is what the ranges miss.
    return {"attn": "attn_layout", "step": "unmarked", "clip": "other", "scheduler": "other",
            "zero_grad": "other"}.get(name, name if name in COMPONENTS else "other")


def _block_of(event: Any) -> int | None:
    while event is not None:
        name = event.name
        if name.startswith(ranges.PREFIX + "block"):
            return int(name.removeprefix(ranges.PREFIX + "block"))
        event = event.cpu_parent
    return None


def _innermost_range(event: Any) -> Any:
    event = event.cpu_parent
    while event is not None and not event.name.startswith(ranges.PREFIX):
        event = event.cpu_parent
    return event


BACKWARD_NODE = "autograd::engine::evaluate_function: "


def attribute_events(events: list[Any]) -> dict[str, Any]:
    """Seconds per component, forward and backward, from one profiler session's events (CPU wall time).

    Forward: each `bb.*` range's own time (duration less the ranges nested in it). Backward: each autograd node's
    evaluation goes to the component whose forward range created that node (matched by sequence number); the
    engine's time between nodes (and gradient accumulation into leaves) is 'backward'."""
    marked = [e for e in events if e.name.startswith(ranges.PREFIX)]
    fwd: dict[str, float] = defaultdict(float)
    bwd: dict[str, float] = defaultdict(float)
    per_block: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    nested: dict[int, float] = defaultdict(float)
    for e in marked:
        parent = _innermost_range(e)
        if parent is not None:
            nested[id(parent)] += e.time_range.elapsed_us()
    seq_component: dict[int, tuple[str, int | None]] = {}
    steps = 0
    backward_ranges = [e for e in marked if e.name == ranges.PREFIX + "backward"]
    for e in events:
        if e.name.startswith(BACKWARD_NODE) or e.sequence_nr is None or e.sequence_nr < 0:
            continue
        rng = _innermost_range(e)
        if rng is not None and rng.name != ranges.PREFIX + "backward":
            seq_component.setdefault(e.sequence_nr, (component_of(rng.name), _block_of(rng)))
    for e in marked:
        own = (e.time_range.elapsed_us() - nested[id(e)]) / 1e6
        if e.name == ranges.PREFIX + "step":
            steps += 1
        if e.name == ranges.PREFIX + "backward":
            continue  # split below, node by node
        component = component_of(e.name)
        fwd[component] += own
        block = _block_of(e)
        if block is not None:
            per_block[block][component] += own
    for b in backward_ranges:
        inside = 0.0
        for child in b.cpu_children:
            if not child.name.startswith(BACKWARD_NODE):
                continue
            seconds = child.time_range.elapsed_us() / 1e6
            inside += seconds
            component, block = seq_component.get(child.sequence_nr, ("backward", None))
            bwd[component] += seconds
            if block is not None:
                per_block[block][component] += seconds
        bwd["backward"] += (b.time_range.elapsed_us() - nested[id(b)]) / 1e6 - inside
        # a range nested in backward (none today) is counted as its own component above
    scale = 1 / max(steps, 1)
    return {"steps": steps,
            "forward": {k: v * scale for k, v in fwd.items()},
            "backward": {k: v * scale for k, v in bwd.items()},
            "per_block": {b: {k: v * scale for k, v in c.items()} for b, c in sorted(per_block.items())}}


def marked_step(trainer: Any, optimizer: torch.optim.Optimizer, scheduler: Any, x: torch.Tensor,
                y: torch.Tensor) -> torch.Tensor:
    """Trainer.train_step for a whole batch in one micro-batch, with the step's phases marked as ranges."""
    from blockbench.train import _null

    with ranges.scope("step"):
        with trainer.autocast or _null():
            loss = trainer.step_model(x, y)
        with ranges.scope("backward"):
            (trainer.scaler.scale(loss) if trainer.scaler else loss).backward()
        with ranges.scope("clip"):
            if trainer.scaler:
                trainer.scaler.unscale_(optimizer)
            if trainer.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), trainer.optim.grad_clip)
        with ranges.scope("optimizer"):
            if trainer.scaler:
                trainer.scaler.step(optimizer)
                trainer.scaler.update()
            else:
                optimizer.step()
        with ranges.scope("scheduler"):
            scheduler.step()
        with ranges.scope("zero_grad"):
            optimizer.zero_grad(set_to_none=True)
    return loss.detach()


# Ops that only describe memory (a view, an allocation, a new tensor header) and launch no kernel on CUDA.
# Views are told apart by their schema (func.is_view); these are the rest.
NO_KERNEL_OPS = frozenset({
    "aten::empty", "aten::empty_like", "aten::empty_strided", "aten::new_empty", "aten::new_empty_strided",
    "aten::_unsafe_view", "aten::resize_", "aten::set_", "aten::lift_fresh", "aten::detach", "aten::alias",
    "aten::_reshape_alias", "aten::unsafe_split", "aten::unsafe_chunk"})
HOST_SYNC_OPS = frozenset({"aten::_local_scalar_dense"})  # .item(), bool(tensor): the host waits for the device
CAST_OPS = frozenset({"aten::_to_copy", "aten::copy_"})
OPTIMIZER_RANGES = frozenset(ranges.PREFIX + n for n in ("clip", "optimizer", "scheduler", "zero_grad"))
# Metrics DispatchCounter keeps per (range, phase); all integers, so counts are exact.
METRICS = ("ops", "syncs", "casts", "cast_bytes", "bytes", "saved_bytes", "saved_weight_bytes", "flops")


def _sdpa_cpu_flops(query, key, value, *args, out_val=None, **kwargs) -> int:  # noqa: ANN001
    # The fused CPU attention kernel is missing from torch's registry; it does what the CUDA flash kernel does.
    return flop_counter.sdpa_flop_count(query.shape, key.shape, value.shape)


def _sdpa_cpu_backward_flops(grad_out, query, key, value, *args, out_val=None, **kwargs) -> int:  # noqa: ANN001
    return flop_counter.sdpa_backward_flop_count(grad_out.shape, query.shape, key.shape, value.shape)


FLOP_FORMULAS = {**flop_registry,
                 torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops,
                 torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward_flops}


# Ops CUDA runs as one fused kernel each way that other devices decompose before dispatch (CompositeImplicit on
# CPU), so a dispatch mode would see their parts. The counter runs them through stand-ins that launch what CUDA
# launches: the stand-in op's name -> launches (forward one kernel; backward one for the input's gradient, one
# for the weight's reduction).
CUDA_FUSED_LAUNCHES = {"blockbench_cost::fused_rms_norm": 1, "blockbench_cost::fused_rms_norm_backward": 2}


@torch.library.custom_op("blockbench_cost::fused_rms_norm", mutates_args=())
def _fused_rms_norm(x: torch.Tensor, shape: list[int], weight: torch.Tensor,
                    eps: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    out, rstd = torch.ops.aten._fused_rms_norm(x, shape, weight, eps)
    return out, rstd


@torch.library.custom_op("blockbench_cost::fused_rms_norm_backward", mutates_args=())
def _fused_rms_norm_backward(grad: torch.Tensor, x: torch.Tensor, rstd: torch.Tensor, shape: list[int],
                             weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # y = x r w with r = 1/rms(x): dx = r (g w) - x r^3 mean(g w x), dw = sum over rows of g x r
    dims = tuple(range(-len(shape), 0))
    acc = torch.promote_types(x.dtype, torch.float32)
    g, xf, r = grad.to(acc), x.to(acc), rstd.to(acc)
    gw = g * weight.to(acc)
    grad_x = r * gw - xf * r.pow(3) * (gw * xf).mean(dim=dims, keepdim=True)
    grad_weight = (g * xf * r).reshape(-1, *weight.shape).sum(0)
    return grad_x.to(x.dtype), grad_weight.to(weight.dtype)


def _rms_setup(ctx: Any, inputs: tuple, output: tuple) -> None:
    x, ctx.shape, weight, _ = inputs
    ctx.set_materialize_grads(False)  # no zeros made for 1/rms's unused gradient: CUDA makes none
    ctx.save_for_backward(x, weight, output[1])  # what CUDA's kernel saves: input, weight, 1/rms per row


def _rms_backward(ctx: Any, grad: torch.Tensor, grad_rstd: torch.Tensor) -> tuple:
    x, weight, rstd = ctx.saved_tensors
    grad_x, grad_weight = _fused_rms_norm_backward(grad, x, rstd, ctx.shape, weight)
    return grad_x, None, grad_weight, None


_fused_rms_norm.register_autograd(_rms_backward, setup_context=_rms_setup)


class _AsOnCuda(TorchFunctionMode):
    """Routes the CUDA-fused ops a non-CUDA device decomposes (CUDA_FUSED_LAUNCHES) through their stand-ins."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's protocol
        kwargs = kwargs or {}
        if (getattr(func, "_qualified_op_name", None) == "aten::_fused_rms_norm" and not kwargs
                and len(args) == 4 and args[2] is not None and args[0].device.type != "cuda"):
            return _fused_rms_norm(*args)
        return func(*args, **kwargs)


def _tensors(tree: Any) -> list[torch.Tensor]:
    return [t for t in torch.utils._pytree.tree_leaves(tree) if isinstance(t, torch.Tensor)]


def _storage(t: torch.Tensor) -> tuple[int, int]:
    """(data pointer, bytes) of the memory a tensor lives in: views of one buffer share it."""
    s = t.untyped_storage()
    return s.data_ptr(), s.nbytes()


class DispatchCounter(TorchDispatchMode):
    """What the dispatched ATen ops of a piece of work cost, per (range, phase), in METRICS.

    Forward ops go to the innermost open range, backward ops to the range whose forward created the autograd
    node being evaluated (`node_range`, filled by `tagging`). The phase is 'backward' inside an autograd node or
    the `bb.backward` range, 'optimizer' inside the step's clip/optimizer/scheduler/zero_grad ranges, else
    'forward'.

    - ops: kernel launches on CUDA, one per dispatched op that is not a view or a bare allocation (a foreach or
      fused multi-tensor op counts once). A custom op (not ATen) counts as `declared_launches(name)` when
      blocks/shaped.py declares it; otherwise as the ops its implementation dispatches here (at least one), so
      wrapping a chain of ops in one custom op does not change the count. Under `counting()`, aten's
      _fused_rms_norm, which CUDA runs as one kernel and the CPU decomposes, counts as on CUDA.
    - syncs: host syncs (.item()), also counted in ops. casts / cast_bytes: dtype conversions (_to_copy, copy_
      between dtypes), bytes read + written.
    - bytes: read + written by ops that are not matmuls (no FLOP formula): every tensor argument read, every
      returned tensor written (an in-place op that returns nothing, like a foreach op, writes its mutated
      arguments). A tensor is counted at its own size even when it is a broadcast view.
    - saved_bytes: what autograd saves for backward (saved_tensors_hooks, once per storage), leaving out the
      `persistent` tensors (parameters, buffers); saved_weight_bytes: the part that is autocast's low-precision
      copies of those tensors.
    - flops: matmul FLOPs from torch's formulas (2 per multiply-accumulate).
    """

    def __init__(self, persistent: Any = ()) -> None:
        super().__init__()
        self.tallies: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(METRICS, 0))
        self.node_range: dict[int, str] = {}
        self.op_launches: dict[tuple[str, str], int] = defaultdict(int)  # (phase, op name) -> launches
        self.persistent = {_storage(t)[0] for t in persistent}
        self.weight_copies: set[int] = set()
        self.saved: set[int] = set()

    @property
    def flops(self) -> dict[tuple[str, str], int]:
        return {key: tally["flops"] for key, tally in self.tallies.items() if tally["flops"]}

    def _key(self) -> tuple[str, str]:
        node = torch._C._current_autograd_node()
        if node is not None:
            return self.node_range.get(node._sequence_nr(), ranges.PREFIX + "backward"), "backward"
        name = ranges.current() or ""
        if name == ranges.PREFIX + "backward":
            return name, "backward"
        return name, "optimizer" if name in OPTIMIZER_RANGES else "forward"

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's protocol
        kwargs = kwargs or {}
        name = func._schema.name
        launches = None
        if func.namespace == "profiler":  # the ranges' own record_function ops: host-side bookkeeping
            return func(*args, **kwargs)
        if func.namespace not in ("aten", "prim", "prims"):
            from blockbench.blocks.shaped import declared_launches

            launches = CUDA_FUSED_LAUNCHES.get(name) or declared_launches(name)
            if launches is None:
                return self._count_inside(func, args, kwargs)
        out = func(*args, **kwargs)
        key = self._key()
        tally = self.tallies[key]
        formula = FLOP_FORMULAS.get(func._overloadpacket)
        if formula is not None:
            tally["flops"] += formula(*args, **kwargs, out_val=out)
        if launches is None:
            launches = 0 if func.is_view or name in NO_KERNEL_OPS else 1
        if not launches:
            return out
        tally["ops"] += launches
        self.op_launches[key[1], name] += launches
        if name in HOST_SYNC_OPS:
            tally["syncs"] += 1
        read = _tensors((args, kwargs))
        written = _tensors(out) if func._schema.returns else [
            a for a, arg in zip(args, func._schema.arguments) if arg.alias_info and arg.alias_info.is_write]
        written = _tensors(written)
        moved = sum(t.nbytes for t in read) + sum(t.nbytes for t in written)
        if formula is None:
            tally["bytes"] += moved
        source = args[1] if name == "aten::copy_" else args[0] if name in CAST_OPS else None
        if source is not None and source.dtype != out.dtype:
            tally["casts"] += 1
            tally["cast_bytes"] += moved
            if _storage(source)[0] in self.persistent:
                # autocast's copy of a weight: saved for backward, it is weight memory, not activation memory
                self.weight_copies.add(_storage(out)[0])
        return out

    def _count_inside(self, func, args, kwargs):  # noqa: ANN001
        """An undeclared custom op: run its implementation for this device with the mode on, counting its ops."""
        tensors = _tensors((args, kwargs))
        before = sum(t["ops"] for t in self.tallies.values())
        if tensors:
            keys = torch._C._dispatch_keys(tensors[0]) & torch._C._dispatch_keyset_full_after(
                torch._C.DispatchKey.Python)
            with self:
                out = func.redispatch(keys, *args, **kwargs)
        else:
            out = func(*args, **kwargs)
        if sum(t["ops"] for t in self.tallies.values()) == before:  # a kernel we cannot see into: one launch
            key = self._key()
            self.tallies[key]["ops"] += 1
            self.op_launches[key[1], func._schema.name] += 1
        return out

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        try:
            ptr, nbytes = _storage(t)
        except (RuntimeError, NotImplementedError):  # a tensor without storage (a subclass): nothing to count
            return t
        if ptr not in self.persistent and ptr not in self.saved:
            self.saved.add(ptr)
            tally = self.tallies[self._key()]
            tally["saved_bytes"] += nbytes
            if ptr in self.weight_copies:
                tally["saved_weight_bytes"] += nbytes
        return t

    @contextlib.contextmanager
    def counting(self) -> Iterator[DispatchCounter]:
        """Count everything run inside: the open ranges tracked, new autograd nodes tagged with their range,
        saved tensors measured."""
        with ranges.tracking(), self, _Tagger(self.node_range), _AsOnCuda(), \
                torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t):
            yield self

    def by_component(self) -> dict[str, dict[str, dict[str, int]]]:
        """phase -> component -> metric -> total."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for (name, phase), tally in self.tallies.items():
            row = out.setdefault(phase, {}).setdefault(component_of(name) if name else "other",
                                                      dict.fromkeys(METRICS, 0))
            for metric, value in tally.items():
                row[metric] += value
        return out


class _Tagger(TorchFunctionMode):
    """Tags the autograd nodes each torch function creates with the range open at the time."""

    def __init__(self, tags: dict[int, str]) -> None:
        super().__init__()
        self.tags = tags

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's protocol
        out = func(*args, **(kwargs or {}))
        name = ranges.current()
        if name is not None:
            for t in torch.utils._pytree.tree_leaves(out):
                if isinstance(t, torch.Tensor) and t.grad_fn is not None:
                    _tag_graph(t.grad_fn, name, self.tags)
        return out


def _tag_graph(root: Any, name: str, tags: dict[int, str]) -> None:
    """Tag every autograd node reachable from `root` that no earlier range tagged: the nodes this range made."""
    stack = [root]
    while stack:
        node = stack.pop()
        if node is None:
            continue
        seq = node._sequence_nr()
        if seq in tags:
            continue
        tags[seq] = name
        stack.extend(n for n, _ in node.next_functions)


def count_component_flops(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, dict[str, int]]:
    """FLOPs of one forward + backward per component and phase; the math SDPA backend, as measure/flops.py."""
    counter = DispatchCounter()
    with sdpa_kernel(SDPBackend.MATH), ranges.tracking(), counter:
        with _Tagger(counter.node_range):
            loss = model(x, y)
        loss.backward()
    model.zero_grad(set_to_none=True)
    out: dict[str, dict[str, int]] = {"forward": defaultdict(int), "backward": defaultdict(int)}
    for (name, phase), flops in counter.flops.items():
        out[phase][component_of(name) if name else "other"] += flops
    return {phase: dict(v) for phase, v in out.items()}


class _Profiled:
    """One variant's harness step, warmed up, ready to be profiled step by step."""

    def __init__(self, suite: Suite, variant: str, data: Any, warmup: int, seed: int | None) -> None:
        self.variant = variant
        self.step = harness_step(suite, variant, data, seed)
        self.trainer, self.optimizer = self.step.trainer, self.step.optimizer  # type: ignore[attr-defined]
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: 1.0)
        self.x, self.y = next(self.trainer.batches())
        if self.trainer.micro_batch != len(self.x) or self.trainer.dist.enabled:
            raise ValueError("profile needs the whole batch in one micro-batch on one process")
        self.cuda = self.trainer.device.type == "cuda"
        for _ in range(warmup):
            self.step()
        self.walls: list[float] = []
        self.plain: list[float] = []
        self.attributed: list[dict[str, Any]] = []

    def plain_step(self) -> None:
        _sync(self.cuda)
        start = time.perf_counter()
        self.step()
        _sync(self.cuda)
        self.plain.append(time.perf_counter() - start)

    def profiled_step(self) -> None:
        """One marked step inside the caller's profiler session; its wall time, perf_counter around it."""
        _sync(self.cuda)
        start = time.perf_counter()
        marked_step(self.trainer, self.optimizer, self.scheduler, self.x, self.y)
        _sync(self.cuda)
        self.walls.append(time.perf_counter() - start)

    def summary(self) -> dict[str, Any]:
        """Per component the median over profiled steps (robust to a step that a busy machine slowed down)."""
        flops = count_component_flops(self.trainer.model, self.x, self.y)
        measured = statistics.median(self.walls)
        total_flops = sum(sum(p.values()) for p in flops.values()) or 1
        rows = []
        for component in COMPONENTS:
            f = statistics.median(a["forward"].get(component, 0.0) for a in self.attributed)
            b = statistics.median(a["backward"].get(component, 0.0) for a in self.attributed)
            fl = flops["forward"].get(component, 0) + flops["backward"].get(component, 0)
            if f or b or fl:
                rows.append({"component": component, "description": DESCRIPTIONS[component], "forward_s": f,
                             "backward_s": b, "seconds": f + b, "time_share": (f + b) / measured,
                             "flops": fl, "flop_share": fl / total_flops})
        summed = sum(r["seconds"] for r in rows)
        blocks = sorted({b for a in self.attributed for b in a["per_block"]})
        per_block = {b: {c: statistics.median(a["per_block"].get(b, {}).get(c, 0.0) for a in self.attributed)
                         for c in COMPONENTS if any(c in a["per_block"].get(b, {}) for a in self.attributed)}
                     for b in blocks}
        suite = self.trainer.suite
        return {
            "variant": self.variant, "device": self.trainer.device.type, "threads": torch.get_num_threads(),
            "shape": dataclasses.asdict(suite.model), "batch_size": len(self.x), "profiled_steps": len(self.walls),
            "step_seconds_profiled": measured, "step_seconds_unprofiled": statistics.median(self.plain),
            "components_seconds": summed,
            # per step, the part of its wall time no component covers; the median over steps
            "unattributed_share": statistics.median(
                (wall - sum(sum(a[phase].get(c, 0.0) for c in COMPONENTS) for phase in ("forward", "backward")))
                / wall for wall, a in zip(self.walls, self.attributed)),
            "components": rows, "per_block": per_block,
            "flops_forward": flops["forward"], "flops_backward": flops["backward"],
        }


def profile_variants(suite: Suite, variants: list[str], data: Any, steps: int = 5, warmup: int = 2,
                     seed: int | None = None) -> list[dict[str, Any]]:
    """Each variant's training step split into components. The variants' steps alternate (plain and profiled,
    A B A B) so that a slow spell of a shared machine hits them alike; each figure is a median over `steps`.

    Per component: forward and backward seconds, time share of the profiled step, FLOPs (forward + backward)
    and FLOP share. `unattributed_share` is the part of the step no component covers."""
    from torch.profiler import ProfilerActivity, profile

    states = [_Profiled(suite, v, data, warmup, seed) for v in variants]
    orders = [states[r % len(states):] + states[:r % len(states)] for r in range(steps)]
    for order in orders:
        for state in order:
            state.plain_step()
    # One profiler session for all profiled steps (starting one costs seconds on a busy machine); each step's
    # events are then told apart by the `bb.step` range at their root.
    executed = [state for order in orders for state in order]
    cuda = any(state.cuda for state in states)
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        for state in executed:
            state.profiled_step()
    events = list(prof.events())
    roots = sorted((e for e in events if e.name == ranges.PREFIX + "step"), key=lambda e: e.time_range.start)
    if len(roots) != len(executed):
        raise RuntimeError(f"profiler saw {len(roots)} steps, {len(executed)} were run")
    for state, root in zip(executed, roots):
        state.attributed.append(attribute_events(_subtree(root)))
    return [state.summary() for state in states]


def _subtree(root: Any) -> list[Any]:
    out, stack = [], [root]
    while stack:
        event = stack.pop()
        out.append(event)
        stack.extend(event.cpu_children)
    return out


def profile_variant(suite: Suite, variant: str, data: Any, steps: int = 5, warmup: int = 2,
                    seed: int | None = None) -> dict[str, Any]:
    """profile_variants for one variant."""
    return profile_variants(suite, [variant], data, steps, warmup, seed)[0]


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def format_table(profiles: list[dict[str, Any]]) -> str:
    """Plain-text table: per component, each variant's ms per step (forward / backward), time and FLOP shares."""
    names = [p["variant"] for p in profiles]
    by = [{r["component"]: r for r in p["components"]} for p in profiles]
    components = [c for c in COMPONENTS if any(c in b for b in by)]
    head = f"{'component':<12}" + "".join(f" | {n + ' ms (fwd+bwd)':>24} {'time%':>6} {'FLOP%':>6}" for n in names)
    lines = [head, "-" * len(head)]
    for c in components:
        cells = []
        for b in by:
            r = b.get(c)
            if r is None:
                cells.append(f" | {'-':>24} {'':>6} {'':>6}")
            else:
                ms = f"{1e3 * r['seconds']:.1f} ({1e3 * r['forward_s']:.1f}+{1e3 * r['backward_s']:.1f})"
                cells.append(f" | {ms:>24} {100 * r['time_share']:>5.1f}% {100 * r['flop_share']:>5.1f}%")
        lines.append(f"{c:<12}" + "".join(cells))
    lines.append("-" * len(head))
    lines.append(f"{'sum':<12}" + "".join(f" | {1e3 * p['components_seconds']:>24.1f} "
                                          f"{100 * p['components_seconds'] / p['step_seconds_profiled']:>5.1f}% "
                                          f"{'':>6}" for p in profiles))
    lines.append(f"{'step':<12}" + "".join(f" | {1e3 * p['step_seconds_profiled']:>24.1f} {'':>6} {'':>6}"
                                           for p in profiles))
    lines.append(f"{'unprofiled':<12}" + "".join(f" | {1e3 * p['step_seconds_unprofiled']:>24.1f} {'':>6} {'':>6}"
                                                 for p in profiles))
    return "\n".join(lines)


def profile_command(args: Any) -> int:
    """`blockbench profile VARIANT [--compare OTHER] [--cost]`: the table (or --json) of one or two variants'
    steps, timed (the default) or counted (--cost, measure/cost.py)."""
    import json

    from blockbench.data import load_data
    from blockbench.suite import load_suite

    names = [args.variant] + ([args.compare] if args.compare and args.compare != args.variant else [])
    suite = load_suite(args.suite).with_overrides(variants=names, device=args.device, threads=args.threads)
    suite = suite_at_shape(suite, names, n_layers=args.layers, d_model=args.width, n_heads=args.heads,
                           seq_len=args.seq_len, batch_size=args.batch, dtype=args.dtype)
    if suite.runtime.threads:
        torch.set_num_threads(suite.runtime.threads)
    data = load_data(suite.data)
    if args.cost:
        from blockbench.measure.cost import cost_command

        return cost_command(suite, names, data, args.compare, args.json)
    profiles = profile_variants(suite, names, data, steps=args.steps)
    if args.json:
        print(json.dumps(profiles if len(profiles) > 1 else profiles[0], indent=2))
        return 0
    m = suite.model
    print(f"suite {suite.name} v{suite.version}: L={m.n_layers} d={m.d_model} H={m.n_heads} T={m.seq_len}, "
          f"batch {suite.optim.batch_size}, {profiles[0]['device']}, {torch.get_num_threads()} threads; "
          f"medians of {args.steps} profiled steps, interleaved")
    print(format_table(profiles))
    for p in profiles:
        print(f"{p['variant']}: components cover {100 * (1 - p['unattributed_share']):.1f}% of the profiled step; "
              f"profiler overhead x{p['step_seconds_profiled'] / p['step_seconds_unprofiled']:.2f}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("profile", help="where one training step's time goes, per component (torch.profiler)",
                       description="Profile training steps of VARIANT under the suite's conditions and split the "
                                   "step's time into components (embeddings, norms, attention GEMMs and kernel, "
                                   "shaped-attention extras, MLP, residual arithmetic, head, loss; forward and "
                                   "backward), next to each component's share of the step's FLOPs.")
    p.add_argument("variant", help="the preset (or --block) to profile, e.g. sas_p")
    p.add_argument("--compare", metavar="VARIANT", help="a second variant, side by side (e.g. pre_ln)")
    p.add_argument("--suite", default="default", help="built-in suite name or path to a suite .toml")
    p.add_argument("--steps", type=int, default=5,
                   help="profiled steps per variant; every figure is a median over them (default 5)")
    p.add_argument("--json", action="store_true", help="print the breakdown as JSON instead of a table")
    p.add_argument("--cost", action="store_true",
                   help="instead of timing, count one training step: kernel launches (dispatched ATen ops), dtype "
                        "casts, non-matmul bytes, bytes saved for backward and matmul FLOPs per component, with "
                        "ratios to --compare (exact, the same on any machine; exit 3 when some variant cannot be "
                        "counted, each with its reason)")
    p.add_argument("--dtype", choices=("auto", "fp32", "bf16", "fp16"),
                   help="training dtype (default: the suite's; bf16/fp16 are autocast, on CPU too)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"),
                   help="where to profile (default: the suite's device, auto: CUDA when available)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--layers", type=int, help="number of blocks L (default: the suite's)")
    p.add_argument("--width", type=int, help="model width d")
    p.add_argument("--heads", type=int, help="attention heads H")
    p.add_argument("--seq-len", type=int, help="sequence length T")
    p.add_argument("--batch", type=int, help="sequences per step")
    p.set_defaults(func=profile_command)
