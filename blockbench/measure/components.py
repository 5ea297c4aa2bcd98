"""A training step's components, measured: the ranges the model marks, as the profiler and the dispatcher see them.

The model marks its parts with `blockbench.blocks.ranges.scope` (embeddings; per block the norms, the Q/K(/V)
GEMM, the attention kernel, the shaped-attention extras, the projection, the MLP GEMMs and activation, the
residual and gain arithmetic; head and loss); the step harness (blockbench/step_probe.py) marks backward, optimiser
and the step's remaining bookkeeping. Here those ranges become COMPONENTS:

- `attribute_events` splits one profiled step's wall time (torch.profiler events) into components. Each
  component's time is its range's own time (its duration less the ranges nested in it), so the components add
  up to the step.
- `DispatchCounter` is a dispatch mode that counts what the dispatched ATen ops of a piece of work cost per
  component and phase: kernel launches, casts, bytes, bytes saved for backward, FLOPs (the step-cost model,
  measure/cost.py, and `count_component_flops`, the FLOP share next to the time share).

Nothing here knows the harness: the step that is measured comes from the caller.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from blockbench.blocks import ranges
from blockbench.blocks.shaped import declared_launches

# Component order in tables; every range name the model emits maps to one of these.
COMPONENTS = ("embed", "norm", "qkv", "qk_norm", "rope", "attn_kernel", "shaped", "attn_layout", "proj", "mlp_up",
              "act", "mlp_down", "residual", "final_norm", "head", "loss", "backward", "optimizer", "other")
DESCRIPTIONS = {
    "embed": "token + position embeddings", "norm": "block norms",
    "qkv": "Q/K(/V) GEMM (+ Q/K bias)", "qk_norm": "RMSNorm on queries and keys",
    "rope": "rotary position embedding of Q and K",
    "attn_kernel": "softmax attention kernel (SDPA)", "shaped": "shaped-attention extras (alpha V, gamma CV)",
    "attn_layout": "head split/merge, value map", "proj": "output projection W^P", "mlp_up": "MLP W_1 GEMM",
    "act": "activation", "mlp_down": "MLP W_2 GEMM", "residual": "residual adds and block gains",
    "final_norm": "final norm", "head": "tied LM head GEMM", "loss": "cross-entropy", "backward": "backward",
    "optimizer": "AdamW step", "other": "grad clip, zero_grad, scheduler",
}


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


def subtree(root: Any) -> list[Any]:
    """A profiler event and every event nested in it."""
    out, stack = [], [root]
    while stack:
        event = stack.pop()
        out.append(event)
        stack.extend(event.cpu_children)
    return out
