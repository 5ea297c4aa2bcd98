"""blockbench profile: the ranges the model emits, and components that add up to the profiled step."""

import tomllib

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from blockbench.blocks import get_variant, ranges
from blockbench.data import load_data
from blockbench.measure.components import COMPONENTS, _innermost_range, attribute_events, subtree
from blockbench.model import ModelConfig, build_model
from blockbench.step_probe import harness_step, marked_step, profile_variants
from blockbench.suite import parse_suite
from tests.tiny_suite import TINY_SUITE

PER_BLOCK = {"bb.norm", "bb.attn", "bb.qkv", "bb.attn_kernel", "bb.mlp_up", "bb.act", "bb.mlp_down"}


@pytest.fixture(scope="module")
def tiny():
    # One block, but steps of ~10 ms: at the tiny suite's 4 ms a step's fixed Python glue outside every range
    # (~0.2 ms) is itself 4-7% of it, which says nothing about the attribution.
    text = (TINY_SUITE.replace("d_model = 32", "d_model = 64").replace("seq_len = 32", "seq_len = 64")
            .replace("batch_size = 4", "batch_size = 8"))
    suite = parse_suite(tomllib.loads(text), "tiny")
    return suite, load_data(suite.data)


def _range_names(variant: str) -> set[str]:
    model = build_model(get_variant(variant), ModelConfig(vocab_size=64, seq_len=8, n_layers=2, d_model=16,
                                                          n_heads=2))
    idx = torch.zeros(2, 8, dtype=torch.long)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model(idx, idx).backward()
    return {e.name for e in prof.events() if e.name.startswith(ranges.PREFIX)}


def test_ranges_exist():
    names = _range_names("pre_ln")
    assert {"bb.embed", "bb.block0", "bb.block1", "bb.final_norm", "bb.head", "bb.loss", "bb.proj"} <= names
    assert PER_BLOCK <= names
    shaped = _range_names("sas_p")
    assert "bb.shaped" in shaped and "bb.proj" not in shaped  # SAS-P has no W^P


def test_ranges_are_free_when_nothing_records():
    assert not torch.autograd._profiler_enabled()
    assert ranges.scope("qkv") is ranges.scope("head")  # one shared no-op context, no record_function made


def test_components_sum_to_the_step(tiny):
    suite, data = tiny
    profiles = profile_variants(suite, ["pre_ln", "sas_p"], data, steps=2, warmup=1)
    for p in profiles:
        names = [r["component"] for r in p["components"]]
        assert set(names) <= set(COMPONENTS)
        assert {"embed", "norm", "qkv", "attn_kernel", "backward", "optimizer", "head", "loss"} <= set(names)
        # Components are nested ranges' own times inside the step, so they can never exceed it. How much of the
        # step they leave to Python glue is a timing, noisy on a shared machine; what ops run outside every
        # component is not (test_every_op_of_the_step_lies_in_a_component).
        assert 0.0 <= p["unattributed_share"] < 1.0, p["unattributed_share"]
        assert p["components_seconds"] <= p["step_seconds_profiled"]
        assert sum(r["flop_share"] for r in p["components"]) == pytest.approx(1.0)
        assert p["per_block"].keys() == {0}
    by = {p["variant"]: {r["component"]: r for r in p["components"]} for p in profiles}
    assert "shaped" in by["sas_p"] and "proj" not in by["sas_p"] and "proj" in by["pre_ln"]
    # FLOPs by component: one block, so SAS-P keeps its V matrix (block 1) and its Q/K/V GEMMs match pre_ln
    assert by["pre_ln"]["qkv"]["flops"] == by["sas_p"]["qkv"]["flops"]


@pytest.mark.parametrize("variant", ["pre_ln", "sas_p"])
def test_every_op_of_the_step_lies_in_a_component(tiny, variant):
    """The attribution is complete: each torch op of a marked training step runs inside a range that names a
    component (the step's own range holds only Python glue between its phases)."""
    suite, data = tiny
    step = harness_step(suite, variant, data)
    x, y = next(step.trainer.batches())
    scheduler = torch.optim.lr_scheduler.LambdaLR(step.optimizer, lambda s: 1.0)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        marked_step(step.trainer, step.optimizer, scheduler, x, y)
    events = list(prof.events())
    (root,) = [e for e in events if e.name == ranges.PREFIX + "step"]
    ops = [e for e in subtree(root) if e.name.startswith("aten::")]
    assert len(ops) > 50
    loose = [e.name for e in ops if (r := _innermost_range(e)) is None or r.name == ranges.PREFIX + "step"]
    assert not loose, sorted(set(loose))
    attributed = attribute_events(events)
    assert attributed["steps"] == 1
    # the step range's own time is kept apart as "unmarked", the glue no component covers
    assert {c for phase in ("forward", "backward") for c in attributed[phase]} <= set(COMPONENTS) | {"unmarked"}


def test_a_cached_cpu_peak_the_run_comes_near_is_probed_again(tmp_path, monkeypatch):
    """A peak cached while the machine was busy is too low; a run reaching 80% of it sends the probe again, and
    the cache keeps the higher figure."""
    import json

    from blockbench.measure import mfu

    probes = []

    def fake_probe():
        probes.append(1)
        return {"peak_flops": 300e9, "by_size": {}, "threads": 2, "seconds": 0.0, "probe_version": "1"}

    monkeypatch.setattr(mfu, "probe_cpu_peak", fake_probe)
    path = mfu._cpu_cache_path(__import__("torch").get_num_threads(), tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"peak_flops": 100e9}))
    assert mfu.cpu_peak_flops(tmp_path, achieved=50e9)["peak_flops"] == 100e9 and not probes
    assert mfu.cpu_peak_flops(tmp_path, achieved=95e9)["peak_flops"] == 300e9 and len(probes) == 1
    assert json.loads(path.read_text())["peak_flops"] == 300e9
    monkeypatch.setattr(mfu, "probe_cpu_peak", lambda: {"peak_flops": 10e9})  # a busier machine: keep the best
    assert mfu.cpu_peak_flops(tmp_path, achieved=290e9)["peak_flops"] == 300e9
