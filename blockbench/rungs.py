"""A ladder suite's rungs as suites: one per rung, each what `blockbench run` plans, probes and trains as any suite.

The [ladder] table itself is read and checked in ladder.py (below suite.py); this module, above both, turns each
rung into the suite that runs it: the rung's shape and batch, its token budget in whole steps, the evaluation
cadence for that budget, each variant's learning rate at that rung, and config.ladder naming the rung.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from blockbench.ladder import (
    LR_RULES,
    meta_model,
    non_embedding_params,
    rung_lr,
    rung_tokens,
    shaped_like,
    tokens_per_step,
)
from blockbench.measure.flops import analytic_flops_fwd_per_token
from blockbench.suite import MIN_EVALUATIONS, Budget, Suite, SuiteError, evaluations_per_run, resolve_eval


def rung_suite(suite: Suite, index: int) -> Suite:
    """The suite rung `index` runs. The hash stays the ladder suite's (one file, one identity)."""
    ladder = suite.ladder
    rung = ladder.rungs[index]
    shaped = shaped_like(suite, rung)
    per_step = tokens_per_step(shaped)
    tokens, rule = rung_tokens(ladder, rung, meta_model(shaped, suite.baseline), per_step)
    budget = Budget(steps=tokens // per_step)
    evaluation = suite.eval
    if evaluation.evaluations is not None:
        evaluation = resolve_eval(evaluation, budget, shaped.optim.batch_size, shaped.model.seq_len,
                                  f"{suite.source}: rung {rung.name}")
    elif evaluations_per_run(budget.steps, per_step, evaluation.every_tokens) < MIN_EVALUATIONS:
        raise SuiteError(f"{suite.source}: ladder rung {rung.name!r}: eval.every_tokens gives fewer than "
                         f"{MIN_EVALUATIONS} evaluations in its {budget.steps} steps (set eval.evaluations)")
    variants = {}
    for name, entry in suite.variants.items():
        lr = rung_lr(ladder, index, name, suite.variant_optim(name).lr, suite.model.d_model)
        batch = {"batch_size": rung.batch_size} if rung.batch_size else {}
        variants[name] = dataclasses.replace(entry, optim={**entry.optim, "lr": lr, **batch})
    info = {"rung": rung.name, "index": index, "rungs": [x.name for x in ladder.rungs],
            "shape": {"n_layers": rung.n_layers, "d_model": rung.d_model, "n_heads": rung.n_heads},
            "tokens": tokens, "tokens_rule": rule, "lr_rule": f"{ladder.lr_rule}: {LR_RULES[ladder.lr_rule]}",
            "lr_reference_width": suite.model.d_model, "lr_source": ladder.lr_source,
            "references": list(ladder.references)}
    return dataclasses.replace(shaped, budget=budget, eval=evaluation, variants=variants, rung=info)


def rung_suites(suite: Suite) -> list[Suite]:
    """One suite per rung of a ladder suite, smallest first."""
    if suite.ladder is None:
        raise SuiteError(f"{suite.name} has no [ladder] table")
    return [rung_suite(suite, i) for i in range(len(suite.ladder.rungs))]


def describe(suite: Suite) -> list[dict[str, Any]]:
    """Per rung: its shape, steps, tokens, the baseline's non-embedding parameters and training FLOPs, and each
    variant's learning rate (what a ladder suite's file states about itself)."""
    rows = []
    for shaped in rung_suites(suite):
        tokens = shaped.rung["tokens"]
        rows.append({"rung": shaped.rung["rung"], **shaped.rung["shape"], "steps": shaped.budget.steps,
                     "tokens": tokens,
                     "non_embedding_params": non_embedding_params(meta_model(shaped, suite.baseline)),
                     "baseline_flops": training_flops(shaped, suite.baseline, tokens),
                     "lr": {name: shaped.variant_optim(name).lr for name in shaped.variants}})
    return rows


def training_flops(suite: Suite, variant: str, tokens: int) -> float:
    """Training FLOPs of `variant` over `tokens` at the suite's shape: 3x the analytic forward FLOPs per token,
    what records count (measure/flops.py)."""
    per_token = analytic_flops_fwd_per_token(meta_model(suite, variant))
    if per_token is None:
        raise SuiteError(f"{variant}: a user factory block has no analytic FLOP count")
    return 3.0 * per_token * tokens
