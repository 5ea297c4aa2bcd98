"""Host time per step (issue 22): at L=18, d=64, H=4, T=16, batch 1 the arithmetic is negligible, so a step's time
is the host's (Python, dispatch, autograd, the optimizer's per-tensor work): what a GPU step pays when its kernels
are too small to hide it. Eager SAS-P was host-bound on an H200 (58.5 ms a step against 29.2 ms of kernels), and
under torch.compile the fused ops, while opaque, put SAS-P at 0.62-0.67x Pre-LN on this CPU proxy. Tracked per
variant and mode as seconds per step relative to Pre-LN in the same mode (interleaved in one process; asv: larger
is worse), pre_ln against a second copy of itself (the A/A noise floor). Two CPU costs make the eager ratios
overstate what a GPU pays: the optimizer's per-tensor loop (CUDA runs one fused AdamW over the variants' extra gain
tensors) and the fused ops' portable math (a dozen ops a layer where CUDA launches three Triton kernels).
"""

from __future__ import annotations

import dataclasses

from .common import AA_COPY, BASELINE, SEED, THREADS, VARIANTS, bench_data, bench_suite, probe_api

SHAPE = {"n_layers": 18, "d_model": 64, "n_heads": 4, "seq_len": 16, "batch_size": 1}
ROUNDS = 8
STEPS_PER_ROUND = 5


class HostBound:
    params = (VARIANTS, ["eager", "compiled"])
    param_names = ["variant", "mode"]
    version = "1"
    timeout = 600

    def setup(self, variant: str, mode: str) -> None:
        api = probe_api()
        candidate = variant if variant != BASELINE else AA_COPY
        suite = api.suite_at_shape(bench_suite((BASELINE, candidate)), [BASELINE, candidate], threads=THREADS,
                                   **SHAPE)
        self.suite = dataclasses.replace(suite, runtime=dataclasses.replace(suite.runtime, compile=mode == "compiled"))
        self.candidate, self.harness_step, self.speed_ratio = candidate, api.harness_step, api.speed_ratio
        bench_data()

    def track_host_seconds_per_step_vs_pre_ln(self, variant: str, mode: str) -> float:
        data = bench_data()
        steps = {name: self.harness_step(self.suite, name, data, SEED) for name in (BASELINE, self.candidate)}
        # The probe's warm-up steps (compilation, in mode compiled) come before its timed rounds.
        result = self.speed_ratio(steps, BASELINE, rounds=ROUNDS, steps_per_round=STEPS_PER_ROUND)
        return 1.0 / result[self.candidate]["speedup_vs_baseline"]

    track_host_seconds_per_step_vs_pre_ln.unit = "ratio"
