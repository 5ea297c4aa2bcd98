"""pytest-benchmark micro-benchmarks: one forward+backward pass per zoo preset, on a tiny model.

CI runs them with --benchmark-disable: each step then runs once, and the assertions (finite loss near ln V at
init, finite gradients reaching the embeddings) are what is tested. Locally, docs/tracking.md ("pytest-benchmark")
shows how to time them, save runs and fail on a slower median. FLOPs per token come from the measure the
CLI records (blockbench.measure.flops.count_flops), so a saved benchmark says how much work one call does.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch

from blockbench.blocks import variants
from blockbench.blocks.zoo import PRESETS, get_variant
from blockbench.measure.flops import count_flops
from blockbench.model import Model, ModelConfig, build_model

# Byte-level vocabulary (the `bytes` tokenizer's 257), two blocks: each call takes milliseconds on one core.
CONFIG = ModelConfig(vocab_size=257, seq_len=64, n_layers=2, d_model=64, n_heads=2)
BATCH = 8
THREADS = 1
# Every preset the zoo knows (user blocks registered by other tests at run time are not presets).
PRESET_NAMES = [v.name for v in variants() if v.name in {p.name for p in PRESETS}]


@pytest.fixture
def one_thread() -> Iterator[None]:
    # One thread: 2 shared cores make multi-threaded timings depend on the neighbours. Restored afterwards,
    # since tests/conftest.py sets the thread count the rest of the suite runs with.
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    # Synthetic tokens: the data is not what is measured, and a seeded generator keeps every run identical.
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, CONFIG.vocab_size, (BATCH, CONFIG.seq_len + 1), generator=generator)
    return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()


def _forward_backward(model: Model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    loss = model(x, y)
    loss.backward()
    return loss.detach()


def test_presets_are_all_benchmarked() -> None:
    assert set(PRESET_NAMES) == {p.name for p in PRESETS}


@pytest.mark.benchmark(group="forward_backward")
@pytest.mark.parametrize("name", PRESET_NAMES)
def test_forward_backward(benchmark, one_thread: None, name: str) -> None:
    model = build_model(get_variant(name), CONFIG, seed=0)
    flops = count_flops(model, use_fvcore=False)
    x, y = _batch()
    benchmark.extra_info.update({
        "variant": name,
        "flops_train_per_token": flops["flops_train_per_token"],
        "flops_fwd_per_token": flops["flops_fwd_per_token"],
        "tokens_per_call": x.numel(),
        "model": CONFIG.to_dict(),
        "batch_size": BATCH,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    })
    loss = benchmark.pedantic(_forward_backward, args=(model, x, y), rounds=20, warmup_rounds=3, iterations=1)

    # A tiny-std init puts the logits near 0, so the first loss is close to the uniform guess ln V.
    assert math.isfinite(loss.item())
    assert abs(loss.item() - math.log(CONFIG.vocab_size)) < 0.5
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert "tok_emb.weight" in grads  # the backward pass reached the bottom of the model
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert flops["flops_train_per_token"] > flops["flops_fwd_per_token"] > 0
