"""Shaped attention's cost (issue 15): SAS-P's step against Pre-LN's at d=256, and the shaped attention alone.

The ratio is the harness's interleaved probe (blockbench.step_probe.speed_ratio over Trainer.train_step,
the timing path of a run's speed probe), at L=8, H=8, T=128, d=256 on raw bytes. Like training.SpeedRatio it is
reported as seconds per token relative to pre_ln (asv: larger is worse), so SAS-P at its FLOP bound reads ~0.85.
"""

from __future__ import annotations

from typing import Any

from .common import BASELINE, SEED, THREADS, bench_data, bench_suite, harness, probe_api

SHAPE = {"n_layers": 8, "d_model": 256, "n_heads": 8, "seq_len": 128, "batch_size": 16}
ROUNDS = 8


class SasPSpeed:
    version = "1"
    timeout = 600

    def setup(self) -> None:
        api = probe_api()
        self.suite = api.suite_at_shape(bench_suite((BASELINE, "sas_p")), [BASELINE, "sas_p"], threads=THREADS,
                                        **SHAPE)
        self.harness_step, self.speed_ratio = api.harness_step, api.speed_ratio
        bench_data()

    def track_sas_p_seconds_per_token_vs_pre_ln_d256(self) -> float:
        data = bench_data()
        steps = {name: self.harness_step(self.suite, name, data, SEED) for name in (BASELINE, "sas_p")}
        result = self.speed_ratio(steps, BASELINE, rounds=ROUNDS, steps_per_round=1)
        return 1.0 / result["sas_p"]["speedup_vs_baseline"]

    track_sas_p_seconds_per_token_vs_pre_ln_d256.unit = "ratio"


class ShapedAttention:
    """Forward + backward of one SAS-P attention sub-block (a block after the first: W^V = W^P = I), B=16."""

    params = [256, 512]
    param_names = ["d_model"]
    version = "1"
    rounds = 2
    repeat = (6, 20, 4.0)
    number = 1
    warmup_time = 0.3
    timeout = 120

    def setup(self, d_model: int) -> None:
        import torch

        harness()
        from blockbench.blocks import get_variant
        from blockbench.blocks.attention import Attention

        spec = get_variant("sas_p").spec.for_layer(1)
        torch.manual_seed(SEED)
        self.attn: Any = Attention(d_model, SHAPE["n_heads"], spec)
        with torch.no_grad():
            self.attn.qkv.weight.normal_(std=0.02)  # W^Q = 0 at init would make the softmax trivially uniform
        self.x = torch.randn(SHAPE["batch_size"], SHAPE["seq_len"], d_model, requires_grad=True)
        self.grad = torch.randn(SHAPE["batch_size"], SHAPE["seq_len"], d_model)

    def time_forward_backward(self, d_model: int) -> None:
        self.attn(self.x).backward(self.grad)
        self.x.grad = None
        self.attn.zero_grad(set_to_none=True)
