"""Architecture measures per variant: parameters and training FLOPs per token (deterministic; any change is real).

Both call the measure functions the CLI records (blockbench.measure.params.count_params,
blockbench.measure.flops.count_flops, as train.static_measures does) on the model the harness builds.
"""

from __future__ import annotations

from typing import Any

from .common import SEED, VARIANTS, bench_suite, harness, with_baseline


class Static:
    params = VARIANTS
    param_names = ["variant"]
    version = "1"
    timeout = 120

    def setup(self, variant: str) -> None:
        h = harness()
        suite = bench_suite(with_baseline(variant))
        # The bytes tokenizer's vocabulary; no need to load the corpus to build the model.
        self.model: Any = h.build_for_suite(suite, variant, SEED, h.BYTES_VOCAB)
        self.h = h

    def track_params(self, variant: str) -> int:
        return self.h.count_params(self.model)["params_total"]

    track_params.unit = "params"

    def track_flops_train_per_token(self, variant: str) -> int:
        # Forward + backward, 2 FLOPs per multiply-accumulate (torch FlopCounterMode; fvcore cross-check runs too).
        return self.h.count_flops(self.model)["flops_train_per_token"]

    track_flops_train_per_token.unit = "FLOPs"
