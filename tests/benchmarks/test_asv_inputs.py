"""The asv benchmarks' own inputs, checked in CI (which runs `asv check`, discovery only, never a benchmark): a
suite rule added later (three evaluations per run at least) once left every asv benchmark failing at setup,
unnoticed until a benchmark was run by hand."""

import pytest

from benchmarks import common
from benchmarks.host import SHAPE, HostBound


@pytest.mark.parametrize("variant", [*common.VARIANTS, common.AA_COPY])
@pytest.mark.parametrize("steps", [common.EVAL_STEPS, common.MEMORY_STEPS])
def test_the_tiny_suite_parses_for_every_tracked_variant(variant, steps):
    suite = common.bench_suite(common.with_baseline(variant), steps=steps)
    assert suite.budget.steps == steps and variant in suite.variants


def test_host_bound_runs_at_its_shape():
    bench = HostBound()
    bench.setup("sas_p", "eager")
    assert bench.suite.model.n_layers == SHAPE["n_layers"] and bench.suite.optim.batch_size == SHAPE["batch_size"]
    assert bench.suite.runtime.compile is False
    assert bench.track_host_seconds_per_step_vs_pre_ln("sas_p", "eager") > 0
