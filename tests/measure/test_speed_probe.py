"""Speed numbers that know their own noise (issue 36): the probe's A/A control, the interval of a median ratio, the
rule that stops the probe, the words every view prints, and their calibration.

The calibration tests feed synthetic per-round times (a known true ratio, drift common to a round, per-step noise;
seeded) through the probe's own stop rule and summary: the interval must cover the truth at about its nominal
95%, and a block timed against itself must read "no measurable difference" at least 95% of the time. One CPU test
runs the real probe on Pre-LN against its copy.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from blockbench import stats
from blockbench.cli import main
from blockbench.measure.throughput import (
    control_name,
    interleaved_step_times,
    median_interval,
    speed_summary,
    stop_rule,
)
from blockbench.records import RecordError, load_record, seal, validate_record
from tests.tiny_suite import TINY_SUITE, write_suite

REPO = Path(__file__).resolve().parents[2]
BASE = "pre_ln"
CONTROL = control_name(BASE)


def synthetic_probe(rng, truth: float, noise: float, min_rounds: int = 4, target: float = 0.02,
                    cap: float = 3.0, heavy: bool = False) -> tuple[dict, str]:
    """One probe over synthetic step times: the baseline, its A/A control and a variant `truth` times as fast,
    each round's times sharing a drift factor, each step its own noise (log-normal, or Student-t with 3 degrees
    of freedom when `heavy`); rounds go on as interleaved_step_times runs them, until the stop rule says stop.
    Returns the variant's speed entry and why the probe stopped."""
    times: dict[str, list[float]] = {BASE: [], CONTROL: [], "v": []}
    until = stop_rule(BASE, target, lambda t: cap)
    elapsed, rounds = 0.0, 0
    while True:
        if rounds >= min_rounds and (why := until(times, elapsed)):
            break
        drift = math.exp(rng.normal(0, 0.3))
        for name, mult in ((BASE, 1.0), (CONTROL, 1.0), ("v", 1 / truth)):
            jitter = noise * (rng.standard_t(3) / math.sqrt(3) if heavy else rng.normal())
            step = 0.1 * mult * drift * math.exp(jitter)
            times[name].append(step)
            elapsed += step
        rounds += 1
    return speed_summary(times, BASE, CONTROL, {"stop_reason": why})["v"], why


# ---------------------------------------------------------------------------------------------------------------
# Calibration

@pytest.mark.parametrize("noise,heavy", [(0.02, False), (0.06, False), (0.06, True)])
@pytest.mark.parametrize("truth", [0.9, 1.0, 1.15])
def test_the_interval_covers_the_true_ratio_at_its_nominal_rate(truth, noise, heavy):
    """Through the probe's stopping rule (which stops on the interval's width), the 95% interval of the median
    per-round ratio still covers the true ratio about 95% of the time."""
    rng = np.random.default_rng(36)
    n = 400
    covered = sum(entry["ci_low"] <= truth <= entry["ci_high"]
                  for entry, _ in (synthetic_probe(rng, truth, noise, heavy=heavy) for _ in range(n)))
    assert 0.91 <= covered / n <= 0.995, covered / n


def test_fixed_rounds_intervals_reach_their_stated_confidence():
    rng = np.random.default_rng(7)
    for n in (6, 9, 15, 40):
        hits = 0
        for _ in range(2000):
            low, high, achieved = median_interval(list(rng.lognormal(0, 0.1, n)))
            hits += low <= 1.0 <= high
        assert achieved >= 0.95 and hits / 2000 >= achieved - 0.015, (n, hits / 2000, achieved)
    assert median_interval([1.0, 2.0, 3.0])[2] == pytest.approx(0.75)  # below 6 rounds: (min, max), said so


@pytest.mark.parametrize("noise,heavy", [(0.01, False), (0.05, False), (0.2, False), (0.05, True)])
def test_a_block_against_itself_reads_no_measurable_difference(noise, heavy):
    """The A/A target: a copy of the baseline gets "no measurable difference" in at least 95% of probes."""
    rng = np.random.default_rng(1936)
    n = 300
    kinds = [stats.speed_verdict(entry).kind for entry, _ in
             (synthetic_probe(rng, 1.0, noise, heavy=heavy) for _ in range(n))]
    assert kinds.count("no difference") / n >= 0.95, kinds.count("no difference") / n


def test_a_real_difference_is_found_and_the_probe_stops_when_tight():
    rng = np.random.default_rng(3)
    entry, why = synthetic_probe(rng, 1.12, 0.01, cap=1e9)
    verdict = stats.speed_verdict(entry)
    assert why == "interval tight" and entry["half_width"] <= 0.02 and entry["confidence"] >= 0.95
    assert verdict.kind == "faster" and verdict.text.startswith(f"{entry['speedup_vs_baseline']:.3f}x [")
    entry, why = synthetic_probe(rng, 1.0, 0.3, cap=2.0)  # a noisy machine: the cap ends it
    assert why == "time cap" and entry["rounds"] >= 4


# ---------------------------------------------------------------------------------------------------------------
# The words, one rule for every view

def speed(ratio: float, low: float, high: float, floor: tuple[float, float] | None = (0.99, 1.01),
          **extra) -> dict:
    section = {"speedup_vs_baseline": ratio, "speedup_iqr": 0.02, "ci_low": low, "ci_high": high,
               "confidence": 0.96, "rounds": 12, **extra}
    if floor is not None:
        section["control"] = {"name": CONTROL, "rounds": 12, "speedup_vs_baseline": sum(floor) / 2,
                              "ci_low": floor[0], "ci_high": floor[1], "confidence": 0.96, "half_width": 0.01}
    return section


def test_speed_verdict_words():
    assert stats.speed_verdict(speed(1.12, 1.09, 1.15)).text == "1.120x [1.090, 1.150]"
    assert stats.speed_verdict(speed(0.8, 0.78, 0.82)).kind == "slower"
    # Outside 1 but inside the floor: the probe cannot tell it from its own copy.
    words = stats.speed_verdict(speed(1.03, 1.02, 1.04, floor=(0.97, 1.05)))
    assert words.kind == "no difference" and words.text == "no measurable difference (within ±5.0%)"
    assert stats.speed_verdict(speed(1.0, 0.97, 1.02)).text == "no measurable difference (within ±3.0%)"
    # The baseline's own row is the floor, never a speed-up; an untrusted probe shows no ratio.
    assert stats.speed_verdict(speed(1.0, 1.0, 1.0), baseline=True).text == "1.000 (baseline; A/A floor ±1.0%)"
    assert stats.speed_verdict(speed(1.12, 1.09, 1.15), untrusted=True).text == "untrusted (IQR 0.02)"
    assert stats.floor_words(speed(1.0, 1.0, 1.0)).startswith(f"A/A floor ±1.0% ({CONTROL}: 1.000 [0.990, 1.010]")
    # Fewer rounds than a 95% interval needs: the interval says its own confidence.
    few = stats.speed_verdict(speed(1.5, 1.4, 1.6, confidence=0.875, rounds=4))
    assert few.kind == "faster" and "(a 88% interval: 4 rounds)" in few.text


def test_records_without_a_control_say_so():
    old = {"speedup_vs_baseline": 1.038, "speedup_iqr": 0.04, "rounds": 4}  # a record made before issue 36
    assert stats.speed_verdict(old).text == "1.038 (IQR 0.04; no A/A control in this probe)"
    assert stats.speed_verdict(old, baseline=True).text == "1.000 (baseline; no A/A control in this probe)"
    assert stats.floor_words(old) == "no A/A control in this probe"
    failed = speed(1.12, 1.09, 1.15, floor=None) | {"control": None}  # the control's steps failed
    assert stats.speed_verdict(failed).text == "1.120x [1.090, 1.150] (no A/A control in this probe)"
    assert "no A/A control in this probe" in stats.probe_facts([{"speed": old}])


def test_published_records_load_and_read_without_a_control():
    record = load_record(REPO / "results" / "default" / "1" / "records" / "sas_p-seed0.json")
    assert "no A/A control in this probe" in stats.speed_verdict(record["speed"]).text


@pytest.mark.parametrize("edit,message", [
    (lambda s: s.update(ci_low=1.2), "not a positive interval around the ratio"),
    (lambda s: s.pop("ci_high"), "given together"),
    (lambda s: s["control"].update(name="pre_ln"), "is not a baseline's name"),
    (lambda s: s["control"].update(rounds="6"), "'rounds' has type str"),
])
def test_a_forged_speed_interval_is_refused(edit, message):
    from blockbench.records import SECTIONS

    record = json.loads((REPO / "results" / "default" / "3" / "records" / "sas_p-seed0.json").read_text())
    record["speed"].update(speed(0.95, 0.93, 0.97))
    assert set(SECTIONS["speed"]) <= set(record["speed"])
    validate_record(seal(record))
    edit(record["speed"])
    with pytest.raises(RecordError, match=message):
        validate_record(seal(record))


# ---------------------------------------------------------------------------------------------------------------
# The probe: rounds past the minimum, the stop reason, the control

def test_interleaved_rounds_go_on_until_the_rule_stops_them():
    calls = {"a": 0, "b": 0}
    steps = {name: (lambda n=name: calls.__setitem__(n, calls[n] + 1)) for name in calls}
    stopped: dict = {}
    times = interleaved_step_times(steps, rounds=3, steps_per_round=1, warmup=0,
                                   until=lambda t, s: "enough" if len(t["a"]) >= 7 else None, stopped=stopped)
    assert len(times["a"]) == len(times["b"]) == 7 and stopped["reason"] == "enough" and stopped["seconds"] >= 0
    stopped.clear()
    times = interleaved_step_times(steps, rounds=3, steps_per_round=1, warmup=0, stopped=stopped)
    assert len(times["a"]) == 3 and stopped["reason"] == "fixed rounds"


@pytest.mark.parametrize("field,value", [
    ("target_half_width", "0"), ("target_half_width", "1"), ("target_half_width", "-0.1"), ("max_share", "0"),
    ("max_share", "1.5"), ("max_seconds", "0"), ("max_seconds", "-3"), ("rounds", "2"),
])
def test_bad_speed_settings_exit_2_naming_the_field(tmp_path, capsys, field, value):
    line = f"rounds = {value}\n" if field == "rounds" else f"rounds = 3\n{field} = {value}\n"
    text = TINY_SUITE.replace("rounds = 3\n", line)
    assert main(["run", "--suite", str(write_suite(tmp_path, text)), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"speed.{field}" in err, err


def test_the_probe_finds_no_difference_between_pre_ln_and_its_copy(tmp_path):
    """The real probe on CPU: Pre-LN against a second Pre-LN (another initialisation draw), beside the probe's own
    A/A control; the copy reads "no measurable difference" and the records' speed section says how it stopped."""
    from blockbench.data import load_data
    from blockbench.suite import load_suite
    from blockbench.train import prepare_variants

    text = TINY_SUITE.replace("rounds = 3\n", "rounds = 6\nmax_seconds = 3\n") + '[variants.copy]\npreset = "pre_ln"\n'
    suite = load_suite(str(write_suite(tmp_path, text)))
    suite = dataclasses.replace(suite, variants={k: v for k, v in suite.variants.items() if k != "sas_p"})
    prepared = prepare_variants(suite, load_data(suite.data))
    entry = prepared["copy"]["speed"]
    assert stats.speed_verdict(entry).kind == "no difference", stats.speed_verdict(entry).text
    assert entry["control"]["name"] == CONTROL and entry["rounds"] >= 6 and entry["min_rounds"] == 6
    assert entry["stop_reason"] in ("interval tight", "time cap") and entry["time_cap_seconds"] == 3
    assert prepared[BASE]["speed"]["control"] == entry["control"]  # one control, in every variant's section
    assert len(prepared[BASE]["control_round_seconds"]) == entry["rounds"] == len(prepared["copy"]["round_seconds"])
    assert CONTROL not in prepared  # the control is no variant


# ---------------------------------------------------------------------------------------------------------------
# Every view prints the same words

PROBE = {"pre_ln": (1.0, 1.0, 1.0), "sas": (1.12, 1.09, 1.15), "sas_p": (1.004, 0.99, 1.02),
         "transformer_pp": (0.8, 0.78, 0.82)}


def probed_records() -> list[dict]:
    """smoke/2's records as a quiet machine's probe with an A/A control would have left them."""
    records = [json.loads(p.read_text()) for p in sorted((REPO / "results" / "smoke" / "2" / "records").glob("*.json"))]
    for r in records:
        ratio, low, high = PROBE[r["variant"]]
        r["speed"].update(speed(ratio, low, high), step_time_median=r["summary"]["step_time_median"],
                          speedup_iqr=0.0 if r["variant"] == BASE else 0.03, min_rounds=6, stop_reason="interval tight",
                          target_half_width=0.02, time_cap_seconds=9.0, time_cap="max_share = 0.05", probe_seconds=4.2)
    return [validate_record(seal(r)) for r in records]


def test_every_view_prints_the_probes_words(capsys):
    from rich.console import Console

    from blockbench.display import RunDisplay
    from blockbench.suite import load_suite
    from blockbench.views.compare import Side, Thresholds, compare_sides
    from blockbench.views.report import check_claims, plot_claims
    from blockbench.views.selection import ranked_table

    records = probed_records()
    words = {v: stats.speed_verdict(stats.variant_speed(records, v), baseline=v == BASE).text for v in PROBE}
    assert words == {"pre_ln": "1.000 (baseline; A/A floor ±1.0%)", "sas": "1.120x [1.090, 1.150]",
                     "sas_p": "no measurable difference (within ±2.0%)", "transformer_pp": "0.800x [0.780, 0.820]"}
    # the leaderboard
    table, _ = ranked_table(records)
    assert dict(zip(table["variant"], table["speed_words"], strict=True)) == words
    assert set(table.columns) >= {"speedup_ci_low", "speedup_ci_high", "speed_floor_low", "speed_floor_high"}
    # run's closing table: the variants' words and the A/A control's own row, the floor
    display = RunDisplay(load_suite("smoke"), console=Console(record=True, width=250))
    display.records = records
    display.summary("out")
    shown = display.console.export_text()
    assert all(w in shown for w in words.values()) and f"{CONTROL} (A/A control)" in shown
    assert "stopped: interval tight" in shown and "A/A floor ±1.0%" in shown
    # compare (and so the gate): each side's words in the detail
    sides = [Side(label, "smoke/2", records) for label in ("baseline", "candidate")]
    for side in sides:
        for r in records:
            side.by_variant.setdefault(r["variant"], []).append(r)
    rows = compare_sides(*sides, Thresholds())["rows"]
    detail = next(r["detail"] for r in rows if r["variant"] == "sas" and r["metric"].startswith("speedup"))
    assert "candidate 1.120x [1.090, 1.150]" in detail and "A/A floors allow [0.980, 1.020]" in detail
    # report: the throughput claim reads the interval against the floor
    claims, figure = check_claims(records)
    claim = next(c for c in claims if "throughput" in c.title)
    assert claim.measured.startswith(words["sas_p"]) and claim.verdict == "not resolvable at this scale"
    assert "A/A floor ±1.0%" in claim.measured
    assert figure["speed_ci"]["sas"] == (1.09, 1.15) and plot_claims(claims, figure)[:4] == b"\x89PNG"
