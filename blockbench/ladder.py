"""Scaling ladders: a suite whose `[ladder]` table lists rungs, model shapes of growing training compute.

A ladder suite is an ordinary suite plus rungs. Its `[model]` table is the reference shape, the one at which the
variants' learning rates in `[variants]` were chosen (a recorded sweep: `blockbench sweep` on a ladder suite
sweeps at that shape). Each rung replaces the shape (layers, width, heads; optionally the batch), gets a token
budget (a number of tokens per non-embedding parameter of the suite's baseline, or explicit tokens) and, per
variant, a learning rate: an explicit list in `[ladder.lr]`, else the reference rate moved by the ladder's rule.

This module reads and checks the table (suite.py calls `read_ladder` while parsing, so it imports nothing of the
suite module). `blockbench run` on a ladder suite expands it into one suite per rung (rungs.py) and runs them all
through the runner (runner.run_ladder), each into OUT/RUNG/ with its own probe, records and failures, so executors,
resume and failure rules are those of any suite. Each record names its rung in config.ladder. `blockbench ladder
OUT` (views/ladder.py) fits them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from blockbench.blocks import get_variant
from blockbench.blocks.spec import SpecError
from blockbench.blocks.zoo import name_problem
from blockbench.model import build_model

# How a rung's learning rate follows from the reference one when [ladder.lr] does not list it.
LR_RULES = {
    "inverse-width": "lr x d_ref / d: Adam's update to a hidden matrix grows with width, so its rate shrinks as 1/d "
                     "(the muP rule for hidden layers; embeddings follow it too here)",
    "constant": "the reference lr at every rung",
}
RUNG_KEYS = ("name", "n_layers", "d_model", "n_heads", "tokens", "batch_size")
LADDER_KEYS = ("rungs", "tokens_per_param", "lr_rule", "lr", "references", "lr_source", "estimated_minutes")
MIN_RUNGS = 3
# The vocabulary a rung's compute is estimated with before any data is loaded (validation only; records carry the
# FLOPs that ran): the byte tokenizer's 256, else the configured BPE size.
BYTES_VOCAB = 256


@dataclass(frozen=True)
class Rung:
    name: str
    n_layers: int
    d_model: int
    n_heads: int
    tokens: int | None = None
    batch_size: int | None = None


@dataclass(frozen=True)
class Ladder:
    rungs: tuple[Rung, ...]
    tokens_per_param: float | None
    lr_rule: str
    lr: dict[str, tuple[float, ...]]
    references: tuple[str, ...]
    lr_source: str = ""
    estimated_minutes: float | None = None


def read_ladder(r: Any, data: dict[str, Any], suite: Any) -> Ladder:
    """The [ladder] table of a parsed suite (`r` is suite._Reader), every rule checked: exit 2 naming the rung."""
    table = r.table(data, "ladder")
    unknown = set(table) - set(LADDER_KEYS)
    if unknown:
        raise r.error(f"ladder.{sorted(unknown)[0]}", f"unknown key (valid: {', '.join(LADDER_KEYS)})")
    raw_rungs = table.get("rungs")
    if not isinstance(raw_rungs, list) or not all(isinstance(x, dict) for x in raw_rungs):
        raise r.error("ladder.rungs", "expected a list of tables, one per rung")
    if len(raw_rungs) < MIN_RUNGS:
        raise r.error("ladder.rungs", f"{len(raw_rungs)} rung(s); a ladder needs at least {MIN_RUNGS} to fit a law "
                                      "of three parameters")
    rungs = tuple(_read_rung(r, i, raw) for i, raw in enumerate(raw_rungs))
    names = [rung.name for rung in rungs]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise r.error(f"ladder.rungs[{i}].name", f"{name!r} names two rungs")
    per_param = table.get("tokens_per_param")
    if per_param is not None:
        per_param = r.typed(per_param, "float", "ladder.tokens_per_param")
        if not (math.isfinite(per_param) and per_param > 0):
            raise r.error("ladder.tokens_per_param", f"must be positive and finite, got {per_param!r}")
    for i, rung in enumerate(rungs):
        if rung.tokens is None and per_param is None:
            raise r.error(f"ladder.rungs[{i}] ({rung.name})", "no token budget: give tokens, or "
                                                              "ladder.tokens_per_param for every rung")
    lr_rule = table.get("lr_rule", "inverse-width")
    if lr_rule not in LR_RULES:
        raise r.error("ladder.lr_rule", f"{lr_rule!r} is not one of {', '.join(LR_RULES)}")
    lr = _read_lr(r, table.get("lr", {}), rungs, suite.variants)
    references = table.get("references", [])
    if not isinstance(references, list) or not all(isinstance(x, str) for x in references):
        raise r.error("ladder.references", "expected a list of variant names")
    for name in references:
        if name not in suite.variants:
            raise r.error("ladder.references", f"{name!r} is not one of the suite's variants")
    source = table.get("lr_source", "")
    if not isinstance(source, str):
        raise r.error("ladder.lr_source", "expected a string")
    minutes = table.get("estimated_minutes")
    if minutes is not None:
        minutes = r.typed(minutes, "float", "ladder.estimated_minutes")
    ladder = Ladder(rungs, per_param, lr_rule, lr, tuple(references), source, minutes)
    _check_rungs(r, ladder, suite)
    return ladder


def _read_rung(r: Any, index: int, raw: dict[str, Any]) -> Rung:
    where = f"ladder.rungs[{index}]"
    unknown = set(raw) - set(RUNG_KEYS)
    if unknown:
        raise r.error(f"{where}.{sorted(unknown)[0]}", f"unknown key (valid: {', '.join(RUNG_KEYS)})")
    name = raw.get("name", f"r{index}")
    if not isinstance(name, str) or name_problem(name):  # a rung's name becomes a directory of OUT
        raise r.error(f"{where}.name", f"rung name {name_problem(name) if isinstance(name, str) else 'not a string'}")
    values: dict[str, Any] = {"name": name}
    for key in ("n_layers", "d_model", "n_heads", "tokens", "batch_size"):
        if key not in raw:
            if key in ("n_layers", "d_model", "n_heads"):
                raise r.error(f"{where} ({name}).{key}", "missing")
            continue
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
            raise r.error(f"{where} ({name}).{key}", f"must be a positive integer, got {value!r}")
        values[key] = value
    if values["d_model"] % values["n_heads"]:
        raise r.error(f"{where} ({name}).n_heads",
                      f"d_model={values['d_model']} is not divisible by n_heads={values['n_heads']}")
    return Rung(**values)


def _read_lr(r: Any, table: Any, rungs: tuple[Rung, ...], variants: dict[str, Any]) -> dict[str, tuple[float, ...]]:
    """[ladder.lr]: per variant, one learning rate per rung."""
    if not isinstance(table, dict):
        raise r.error("ladder.lr", "expected a table of variant = [one lr per rung]")
    lr = {}
    for name, values in table.items():
        if name not in variants:
            raise r.error(f"ladder.lr.{name}", f"not a variant of the suite ({', '.join(variants)})")
        if not isinstance(values, list):
            raise r.error(f"ladder.lr.{name}", "expected a list, one lr per rung")
        if len(values) < len(rungs):
            missing = rungs[len(values)]
            raise r.error(f"ladder.lr.{name}", f"no learning rate for rung {missing.name!r} "
                                               f"({len(values)} given, {len(rungs)} rungs)")
        if len(values) > len(rungs):
            raise r.error(f"ladder.lr.{name}", f"{len(values)} learning rates for {len(rungs)} rungs")
        typed = []
        for rung, value in zip(rungs, values, strict=True):
            value = r.typed(value, "float", f"ladder.lr.{name} ({rung.name})")
            if not (math.isfinite(value) and value > 0):
                raise r.error(f"ladder.lr.{name} ({rung.name})", f"must be positive and finite, got {value!r}")
            typed.append(value)
        lr[name] = tuple(typed)
    return lr


def _check_rungs(r: Any, ladder: Ladder, suite: Any) -> None:
    """Every variant buildable at every rung, and training compute growing from rung to rung."""
    previous: tuple[str, float] | None = None
    for i, rung in enumerate(ladder.rungs):
        shaped = shaped_like(suite, rung)
        where = f"ladder.rungs[{i}] ({rung.name})"
        for name, entry in suite.variants.items():
            spec = get_variant(entry.preset).spec
            if spec is None:
                continue
            try:
                spec.replace(**entry.spec).check_shape(rung.d_model, rung.n_heads)
            except SpecError as exc:
                raise r.error(where, f"{name}: {exc}") from None
        tokens, _ = rung_tokens(ladder, rung, meta_model(shaped, suite.baseline), tokens_per_step(shaped))
        compute = estimated_compute(shaped, suite.baseline, tokens)
        if previous is not None and compute <= previous[1]:
            raise r.error(where, f"training compute {compute:.3g} FLOPs is not above rung {previous[0]!r}'s "
                                 f"{previous[1]:.3g}: rungs must grow in compute")
        previous = (rung.name, compute)


def shaped_like(suite: Any, rung: Rung) -> Any:
    """The suite at the rung's shape and batch (budget, cadence and learning rates still the suite's)."""
    model = dataclasses.replace(suite.model, n_layers=rung.n_layers, d_model=rung.d_model, n_heads=rung.n_heads)
    optim = dataclasses.replace(suite.optim, batch_size=rung.batch_size or suite.optim.batch_size)
    return dataclasses.replace(suite, model=model, optim=optim)


def tokens_per_step(suite: Any) -> int:
    return suite.optim.batch_size * suite.model.seq_len


def nominal_vocab(suite: Any) -> int:
    return BYTES_VOCAB if suite.data.tokenizer == "bytes" else suite.data.vocab_size


def meta_model(suite: Any, variant: str) -> Any:
    """The variant at the suite's shape, built without memory (meta tensors): what counting needs."""
    entry = suite.variants[variant]
    preset = get_variant(entry.preset)
    spec = preset.spec.replace(**entry.spec) if entry.spec and preset.spec else None
    config = dataclasses.replace(suite.model, vocab_size=suite.get_workload().model_vocab_size(nominal_vocab(suite)),
                                 workload=suite.workload)
    with torch.device("meta"):
        return build_model(preset, config, spec)


def non_embedding_params(model: Any) -> int:
    """Parameters outside the token/position embeddings and the output head: Kaplan's N, which a vocabulary does not
    change (a byte model's embedding is a third of a tiny rung, none of what scales)."""
    outside = {id(p) for p in model.tok_emb.parameters()}
    for name in ("pos_emb", "head"):
        module = getattr(model, name, None)
        if module is not None:
            outside |= {id(p) for p in module.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in outside)


def rung_tokens(ladder: Ladder, rung: Rung, baseline_model: Any, tokens_per_step: int) -> tuple[int, str]:
    """A rung's token budget in whole steps, and the rule that gave it, in words."""
    if rung.tokens is not None:
        tokens, rule = rung.tokens, f"{rung.tokens:,} tokens (explicit)"
    else:
        n = non_embedding_params(baseline_model)
        tokens = ladder.tokens_per_param * n
        rule = f"{ladder.tokens_per_param:g} tokens per non-embedding parameter of the baseline ({n:,})"
    steps = max(1, math.ceil(tokens / tokens_per_step))
    return steps * tokens_per_step, rule


def estimated_compute(suite: Any, variant: str, tokens: int) -> float:
    """Training FLOPs of `variant` over `tokens`, estimated as 6 x its matrix parameters outside the embeddings x
    tokens (attention scores left out): enough to check that rungs grow; records carry the FLOPs counted."""
    model = meta_model(suite, variant)
    embeddings = {id(p) for p in model.tok_emb.parameters()}
    matrices = sum(p.numel() for p in model.parameters() if p.ndim >= 2 and id(p) not in embeddings)
    return 6.0 * matrices * tokens


def rung_lr(ladder: Ladder, rung_index: int, variant: str, reference_lr: float, reference_width: int) -> float:
    if variant in ladder.lr:
        return ladder.lr[variant][rung_index]
    if ladder.lr_rule == "inverse-width":
        return reference_lr * reference_width / ladder.rungs[rung_index].d_model
    return reference_lr
