"""Wall-clock of one training step and one forward pass, per variant (seconds; asv's own timer and statistics).

Absolute seconds only compare on one machine; across commits on that machine they are what `asv continuous`
gates on (Mann-Whitney over >= 6 samples per side, so each commit gets 2 rounds x >= 6 repeats).
"""

from __future__ import annotations

from typing import Any

from .common import VARIANTS, step_state


class StepTime:
    params = VARIANTS
    param_names = ["variant"]
    # Bump when what is timed changes; left to asv, any edit (even a comment) would restart the history.
    version = "1"
    rounds = 2
    repeat = (6, 12, 4.0)   # (min samples, max samples, seconds) per round
    number = 1              # one call per sample: ~40 ms per train step at this size, well above timer noise
    warmup_time = 0.3
    timeout = 120

    def setup(self, variant: str) -> None:
        # Cheap after the first call (asv re-runs setup before every timed call): step_state is cached.
        self.state: dict[str, Any] = step_state(variant)

    def time_train_step(self, variant: str) -> None:
        s = self.state
        s["trainer"].train_step(s["optimizer"], s["scheduler"], s["x"], s["y"])

    def time_forward(self, variant: str) -> None:
        # The harness's evaluation forward (no grad, mean loss) on one batch.
        s = self.state
        s["evaluate"](s["trainer"].model, (s["x"], s["y"]), s["batch_size"], None)
