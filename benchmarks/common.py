"""What every asv benchmark shares: one tiny suite, run through blockbench's own harness.

No metric is computed here or in the benchmark modules: models, optimisers, training steps, runs and measures
all come from blockbench (suite.parse_suite, train.Trainer / run_trial / prepare_variants, measure.*), the
functions the CLI uses, so an asv number and a run record's number are the same measurement.

torch and blockbench are imported inside functions only. asv imports every module of this package for
discovery (`asv check`, `asv run` before it spawns anything) and again in every benchmark process; a
module-level import would make discovery cost a torch import and fail outright on commits whose blockbench
lacks an API used here (those commits are skipped instead: see `harness`).
"""

from __future__ import annotations

import functools
import importlib
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from blockbench.data import TokenData
    from blockbench.suite import Suite

# The variants tracked over commits: the paper's baseline, the parallel layout, and the two simplified blocks.
VARIANTS = ["pre_ln", "parallel", "sas", "sas_p"]
BASELINE = "pre_ln"
# For the pre_ln row of the speed ratio, pre_ln is timed against a second copy of itself: an A/A ratio that
# shows the noise floor of that benchmark on the machine, next to the real ratios.
AA_COPY = "pre_ln_aa"
SEED = 0
# One thread: on a shared 2-core machine a second thread makes step times depend on whatever else is running,
# and a fixed thread count is what makes CPU training bit-for-bit reproducible (docs/architecture.md, "Conventions").
THREADS = 1
# Token stream: raw bytes of the embedded corpus (sympy 1.14.0 sources, pinned in asv.conf.json's matrix).
# The fingerprint pin makes load_data fail loudly if the corpus ever changes, instead of moving eval losses.
CORPUS_FINGERPRINT = "33724875dc4043e96838048b2c1c258c7d73e235592f49113a54b94cdc49d9b5"
EVAL_STEPS = 40      # training steps before track_eval_loss_after_steps evaluates
MEMORY_STEPS = 3     # training steps (after one warm-up step) over which peak memory is measured
SPEED_ROUNDS = 16    # interleaved rounds of the speed probe; the ratio is the median over rounds
SPEED_STEPS_PER_ROUND = 2

_SUITE_TOML = """
[suite]
name = "asv-tiny"
version = "1"
description = "asv benchmarks: tiny decoder on raw bytes of the embedded corpus"
baseline = "{baseline}"
seeds = [{seed}]

[model]
n_layers = 2
d_model = 64
n_heads = 2
seq_len = 64

[data]
corpus = "sympy"
tokenizer = "bytes"
fingerprint = "{fingerprint}"

[optim]
lr = 3e-3
batch_size = 8

[budget]
steps = {steps}

[eval]
evaluations = 3   # start, middle, end: the fewest a suite may have (blockbench.suite.MIN_EVALUATIONS)
windows = 16

[runtime]
device = "cpu"
dtype = "fp32"
threads = {threads}
warmup_steps = 1

[speed]
rounds = {rounds}
steps_per_round = {steps_per_round}
"""


def harness() -> SimpleNamespace:
    """blockbench's harness entry points; NotImplementedError (asv: skipped) on commits that predate them."""
    try:
        import torch

        from blockbench.data import BYTES_VOCAB, load_data
        from blockbench.measure.flops import count_flops
        from blockbench.measure.params import count_params
        from blockbench.suite import parse_suite
        from blockbench.train import Trainer, build_for_suite, prepare_variants, run_trial

        try:  # the decoder's evaluation is its workload's; commits before workloads kept it in train.py
            from blockbench.workloads.causal_lm import evaluate
        except ImportError:
            from blockbench.train import evaluate
    except ImportError as exc:
        raise NotImplementedError(f"this commit's blockbench lacks the harness API: {exc}") from None
    # Idempotent and cheap, so set on every call: whatever a fresh asv process runs first fixes the threads.
    torch.set_num_threads(THREADS)
    return SimpleNamespace(BYTES_VOCAB=BYTES_VOCAB, load_data=load_data, count_flops=count_flops,
                           count_params=count_params, parse_suite=parse_suite, Trainer=Trainer,
                           build_for_suite=build_for_suite, evaluate=evaluate, prepare_variants=prepare_variants,
                           run_trial=run_trial)


def probe_api() -> SimpleNamespace:
    """blockbench's speed-probe entry points (harness_step, speed_ratio, suite_at_shape), wherever this commit
    keeps them; NotImplementedError (asv: skipped) on commits that have none."""
    harness()
    # asv measures old commits too: the harness's newest home first, then where earlier commits kept it.
    for module in ("blockbench.step_probe", "blockbench.profile", "blockbench.measure.profile"):
        try:
            api = importlib.import_module(module)
            break
        except ImportError as exc:
            missing = exc
    else:
        raise NotImplementedError(f"this commit lacks blockbench.step_probe: {missing}") from None
    harness_step, speed_ratio, suite_at_shape = api.harness_step, api.speed_ratio, api.suite_at_shape
    return SimpleNamespace(harness_step=harness_step, speed_ratio=speed_ratio, suite_at_shape=suite_at_shape)


def with_baseline(variant: str) -> tuple[str, ...]:
    """The suite's variants for measuring `variant` (a suite must contain its baseline)."""
    return (BASELINE, variant) if variant != BASELINE else (BASELINE,)


@functools.cache
def bench_suite(variants: tuple[str, ...], steps: int = EVAL_STEPS) -> Suite:
    """The tiny suite with the given variants (each a zoo preset, or AA_COPY: a second pre_ln)."""
    import tomllib

    text = _SUITE_TOML.format(baseline=BASELINE, seed=SEED, fingerprint=CORPUS_FINGERPRINT, steps=steps,
                              threads=THREADS, rounds=SPEED_ROUNDS, steps_per_round=SPEED_STEPS_PER_ROUND)
    for name in variants:
        text += f'\n[variants.{name}]\npreset = "{BASELINE if name == AA_COPY else name}"\n'
    return harness().parse_suite(tomllib.loads(text), "benchmarks/common.py")


@functools.cache
def bench_data() -> TokenData:
    """Token ids of the suite's corpus, once per process (blockbench caches the tokenised arrays on disk)."""
    return harness().load_data(bench_suite((BASELINE,)).data)


@functools.cache
def step_state(variant: str) -> dict[str, Any]:
    """A warmed-up training step of `variant`, built once per process.

    asv re-runs a time benchmark's setup before every timed call, so setup fetches this instead of rebuilding:
    the timed calls then see a model whose optimiser state and allocator are already warm, as in training.
    The step is the harness's own (prepare_variants' speed probe times exactly this call): forward, backward,
    grad clip, AdamW, scheduler, zero_grad, on one fixed batch.
    """
    h = harness()
    suite = bench_suite(with_baseline(variant))
    trainer = h.Trainer(suite, variant, SEED, bench_data(), None, measure_static=False)
    optimizer, scheduler = trainer.new_optimizer()
    x, y = next(trainer.batches())
    for _ in range(2):
        trainer.train_step(optimizer, scheduler, x, y)
    return {"trainer": trainer, "optimizer": optimizer, "scheduler": scheduler, "x": x, "y": y,
            "evaluate": h.evaluate, "batch_size": suite.optim.batch_size}
