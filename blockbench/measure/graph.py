"""What torch.compile makes of a model's forward pass, counted on any machine: how many graphs (1 = the whole
forward), the graph breaks and their reasons, and the opaque calls: ops in the graph the compiler cannot see into
(custom ops outside aten and prims), each of which a compiled step leaves its generated code for, once per use,
with no fusion across it. A break or an opaque call per layer is host time a compiled GPU step pays every step
(on an H200, SAS-P's compiled step spent 52 ms of host time per 28 ms of kernels while its shaped mix was opaque).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import torch

VISIBLE_NAMESPACES = ("aten", "prims")  # ops the compiler decomposes and fuses


def opaque(target: Any) -> bool:
    """Whether a graph node's target is an op the compiler calls as a black box."""
    if isinstance(target, torch._ops.OpOverload):
        name = target.name()
    elif isinstance(target, torch._ops.OpOverloadPacket):
        name = target._qualified_op_name
    else:
        return False
    return name.split("::")[0] not in VISIBLE_NAMESPACES


def compile_graph(model: torch.nn.Module, inputs: tuple[Any, ...], autocast: Any = None,
                  reasons: int = 3) -> dict[str, Any]:
    """torch._dynamo.explain over one call of model(*inputs) (under `autocast`, a context manager, if given):
    graphs, graph breaks, the first `reasons` break reasons, and opaque calls per forward. explain resets
    dynamo's caches, so call it before, not between, compiled steps of other models. A model dynamo cannot
    trace gives {"error": reason} instead."""
    from torch._dynamo.utils import counters  # deferred: dynamo is slow to import and only this check needs it

    dynamo_log = logging.getLogger("torch._dynamo")
    level = dynamo_log.level
    dynamo_log.setLevel(logging.ERROR)  # each break's traceback is dynamo's warning; the reasons are returned
    # A frame dynamo gives up on (skip_frame, an unsupported construct it cannot break at) runs eagerly and is no
    # graph and no break in explain's counts: a forward skipped whole around one traced submodule would read as
    # "1 graph, 0 breaks". dynamo's frame counters tell: every frame it was asked to convert, and those it did.
    frames_before = dict(counters["frames"])
    unimplemented_before = dict(counters["unimplemented"])
    try:
        with autocast or contextlib.nullcontext():
            explanation = torch._dynamo.explain(model)(*inputs)
    except Exception as exc:  # noqa: BLE001 - a block dynamo cannot trace: said, and the eager counts still stand
        torch._dynamo.reset()
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    finally:
        dynamo_log.setLevel(level)
    opaque_calls = [node.target for graph in explanation.graphs for node in graph.graph.nodes
                    if node.op == "call_function" and opaque(node.target)]
    given_up = ((counters["frames"].get("total", 0) - frames_before.get("total", 0))
                - (counters["frames"].get("ok", 0) - frames_before.get("ok", 0)))
    why = [str(k).strip().splitlines()[0] for k, n in counters["unimplemented"].items()
           if n > unimplemented_before.get(k, 0)]
    torch._dynamo.reset()
    result = {"graphs": explanation.graph_count, "graph_breaks": explanation.graph_break_count,
              "break_reasons": [str(r.reason).splitlines()[0] for r in explanation.break_reasons[:reasons]],
              "opaque_calls": len(opaque_calls), "opaque_ops": sorted({str(t) for t in opaque_calls})}
    if given_up > 0:  # only then: a forward dynamo took whole keeps its counts as they always read
        result.update(frames_given_up=given_up, given_up_reasons=why[:reasons])
    return result
