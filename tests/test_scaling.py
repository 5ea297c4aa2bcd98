"""scaling.py on synthetic ladders drawn from a known law: the law and a known compute multiplier are recovered, the
90% interval the verdict uses covers the true multiplier at its nominal rate over hundreds of seeded ladders, an
A/A pair is "not resolvable" (exactly 1 for an identical copy, at most ~10% false positives with independent noise),
broken ladders give "fit failed (<test>)" or a reason, the rollout and rank checks, and the verdict's words."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import numpy as np
import pytest

from blockbench import scaling
from blockbench.scaling import Point, analyse, fit_law, law_curve, rank_agreement, rollout_check, verdict

E_TRUE, A_TRUE, ALPHA_TRUE = 1.5, 2.0, 0.3
C_MIN = 1e15


def true_loss(c: np.ndarray | float) -> np.ndarray | float:
    return E_TRUE + A_TRUE * (np.asarray(c) / C_MIN) ** -ALPHA_TRUE


def ladder(rng: np.random.Generator, variants: dict[str, float], *, rungs: int = 5, seeds: int = 3,
           sd: float = 0.015, step: float = 2.0, seed_offset: dict[str, int] | None = None) -> list[Point]:
    """Points from the true law; a variant with true multiplier m is the law at m times its compute (so m > 1 is
    better), each run with its own Gaussian noise. 5 rungs at step 2 span 16x in C; tokens are 20 per 1e12 FLOPs."""
    points = []
    for name, m in variants.items():
        for r in range(rungs):
            c = C_MIN * step ** r
            for s in range(seeds):
                loss = float(true_loss(m * c)) + rng.normal(0.0, sd)
                points.append(Point(name, r, s + (seed_offset or {}).get(name, 0), c, 20 * c / 1e12, loss))
    return points


# ---------------------------------------------------------------------------------------------------------------
# The law and the multipliers


def test_noise_free_ladder_recovers_the_law_exactly():
    pts = ladder(np.random.default_rng(0), {"base": 1.0}, sd=0.0)
    law = fit_law([p.flops for p in pts], [p.loss for p in pts])
    assert law["E"] == pytest.approx(E_TRUE, abs=1e-5)
    assert law["alpha"] == pytest.approx(ALPHA_TRUE, abs=1e-5)
    # A is the amplitude at C0, the geometric mean of C (4x the smallest here): A_TRUE * 4**-alpha.
    assert law["C0"] == pytest.approx(4 * C_MIN)
    assert law["A"] == pytest.approx(A_TRUE * 4 ** -ALPHA_TRUE, rel=1e-5)
    assert law["E_bound"] is None and law["alpha_bound"] is None
    c = np.geomspace(C_MIN, 16 * C_MIN, 7)
    np.testing.assert_allclose(law_curve(law, c), true_loss(c), atol=1e-6)


def test_noisy_ladder_recovers_the_law_and_known_multipliers():
    pts = ladder(np.random.default_rng(1), {"base": 1.0, "better": 1.25, "worse": 0.8}, sd=0.01)
    out = analyse(pts, "base", n_boot=200, seed=1)
    law = out["law"]
    assert law["failed"] is None, law["checks"]
    assert law["E"] == pytest.approx(E_TRUE, abs=0.1)
    assert law["alpha"] == pytest.approx(ALPHA_TRUE, abs=0.03)
    lo, hi = law["bootstrap"]["alpha"]
    assert lo < law["alpha"] < hi
    for name, m in (("better", 1.25), ("worse", 0.8)):
        v = out["variants"][name]
        assert v["flops_multiplier"] == pytest.approx(m, rel=0.03)
        assert v["top_rung"]["multiplier"] == pytest.approx(m, rel=0.06)
        lo, hi = v["flops_multiplier_ci"]
        assert lo <= m <= hi
        # the ci used for the verdict is the union of the bootstrap and lack-of-fit t intervals
        assert lo == min(v["flops_multiplier_ci_bootstrap"][0], v["flops_multiplier_ci_t"][0])
        assert hi == max(v["flops_multiplier_ci_bootstrap"][1], v["flops_multiplier_ci_t"][1])
        # tokens proportional to compute along the ladder: the tokens multiplier is the compute multiplier
        assert v["tokens_multiplier"] == pytest.approx(v["flops_multiplier"], rel=1e-6)
        assert v["tokens_multiplier_top"] == pytest.approx(v["top_rung"]["multiplier"], rel=1e-6)
        assert v["free_fit"]["alpha"] == pytest.approx(ALPHA_TRUE, abs=0.05)
        assert v["pinned_fit"]["A"] > 0 and v["failed"] is None
    assert re.fullmatch(r"better reaches base's loss with 0\.[78]\dx its compute \[.*\] \(worth 1\.2\dx .*\)",
                        out["variants"]["better"]["verdict"])
    assert re.fullmatch(r"worse reaches base's loss with 1\.2\dx its compute \[.*\] \(worth 0\.[78]\dx .*\)",
                        out["variants"]["worse"]["verdict"])


def test_true_win_is_resolved_with_enough_seeds():
    # 0.8x compute to reach the baseline's loss: multiplier 1.25, six seeds a rung.
    pts = ladder(np.random.default_rng(2), {"base": 1.0, "sas_p": 1.25}, seeds=6, sd=0.02)
    v = analyse(pts, "base", n_boot=200, seed=2)["variants"]["sas_p"]
    lo, hi = v["flops_multiplier_ci"]
    assert lo > 1 and lo <= 1.25 <= hi
    assert re.fullmatch(r"sas_p reaches base's loss with 0\.[78]\dx its compute \[.*\] \(worth 1\.2\dx .*\)",
                        v["verdict"]), v["verdict"]


def test_unpaired_seeds_resample_independently():
    # The variant ran other seeds: no pairing, and the win is still found.
    pts = ladder(np.random.default_rng(3), {"base": 1.0, "v": 1.25}, seed_offset={"v": 100})
    v = analyse(pts, "base", n_boot=200, seed=3)["variants"]["v"]
    assert v["flops_multiplier_ci"][0] > 1 and "reaches" in v["verdict"]


def test_analysis_is_deterministic_and_json_serialisable_with_bands():
    pts = ladder(np.random.default_rng(4), {"base": 1.0, "v": 1.25})
    a, b = analyse(pts, "base", n_boot=100, seed=7), analyse(list(reversed(pts)), "base", n_boot=100, seed=7)
    text = json.dumps(a, allow_nan=False)
    assert text == json.dumps(b, allow_nan=False)
    assert a["bands"] == {"base": a["law"]["band"], "v": a["variants"]["v"]["band"]}
    for band in (a["law"]["band"], a["variants"]["v"]["band"]):
        assert len(band["c"]) == len(band["lo"]) == len(band["hi"]) == scaling.BAND_POINTS
        assert all(lo <= hi for lo, hi in zip(band["lo"], band["hi"]))
    # the fitted curve lies inside its band (the band is the bootstrap's 5-95% of the refitted curves)
    fit = law_curve(a["law"], a["law"]["band"]["c"])
    assert np.all(fit >= np.array(a["law"]["band"]["lo"]) - 1e-3)
    assert np.all(fit <= np.array(a["law"]["band"]["hi"]) + 1e-3)
    assert law_curve(a["variants"]["v"]["law"], [1e15]) < law_curve(a["law"], [1e15])


# ---------------------------------------------------------------------------------------------------------------
# A/A


def test_identical_copy_is_exactly_one_and_not_resolvable():
    pts = ladder(np.random.default_rng(5), {"base": 1.0})
    copy = [dataclasses.replace(p, variant="copy") for p in pts]
    v = analyse(pts + copy, "base", n_boot=200, seed=5)["variants"]["copy"]
    assert v["flops_multiplier"] == 1.0
    assert v["flops_multiplier_ci_bootstrap"] == [1.0, 1.0]  # paired: every resample is the same for both
    lo, hi = v["flops_multiplier_ci"]
    assert lo <= 1.0 <= hi
    assert v["verdict"].startswith("not resolvable: the interval [")
    top_lo, top_hi = v["top_rung"]["ci"]
    assert top_lo <= 1.0 <= top_hi


N_LADDERS = 300
CALIBRATION_BOOT = 100


@pytest.fixture(scope="module")
def calibration_runs():
    """N_LADDERS seeded ladders, each with a variant of true multiplier 0.8 or 1.25 (alternating) and an A/A copy
    drawn from the baseline's own law with independent noise; one analysis per ladder serves both tests."""
    rng = np.random.default_rng(2024)
    runs = []
    for i in range(N_LADDERS):
        m = (0.8, 1.25)[i % 2]
        out = analyse(ladder(rng, {"base": 1.0, "v": m, "aa": 1.0}), "base", n_boot=CALIBRATION_BOOT, seed=i)
        runs.append((m, out["variants"]["v"], out["variants"]["aa"]))
    return runs


def _covers(ci: list[float | None] | None, m: float) -> bool:
    return ci is not None and ci[0] is not None and ci[0] <= m and (ci[1] is None or m <= ci[1])


def test_interval_coverage_is_nominal(calibration_runs):
    n = len(calibration_runs)
    cover = sum(_covers(v["flops_multiplier_ci"], m) for m, v, _ in calibration_runs) / n
    cover_aa = sum(_covers(aa["flops_multiplier_ci"], 1.0) for _, _, aa in calibration_runs) / n
    boot = sum(_covers(v["flops_multiplier_ci_bootstrap"], m) for m, v, _ in calibration_runs) / n
    t = sum(_covers(v["flops_multiplier_ci_t"], m) for m, v, _ in calibration_runs) / n
    top = sum(_covers(v["top_rung"]["ci"], m) for m, v, _ in calibration_runs) / n
    report = (f"90% ci coverage over {n} ladders: {cover:.3f} (A/A variants {cover_aa:.3f}; bootstrap alone "
              f"{boot:.3f}, lack-of-fit t alone {t:.3f}; top rung {top:.3f})")
    print(report)
    assert 0.85 <= cover <= 0.95, report
    assert 0.85 <= cover_aa <= 0.95, report


def test_aa_false_positive_rate(calibration_runs):
    n = len(calibration_runs)
    verdicts = [aa["verdict"] for _, _, aa in calibration_runs]
    positive = sum(not w.startswith("not resolvable") for w in verdicts) / n
    claims = sum(" reaches " in w for w in verdicts) / n
    failed = sum(w.startswith("fit failed") for w in verdicts) / n
    # A claimed win or loss: nominal 10% for a 90% interval. Any verdict but "not resolvable": that plus the two
    # lack-of-fit F tests' own nominal 1% each (the baseline's law, the variant's joint fit), which fire on a true
    # law too. Each with two binomial standard errors of sampling margin. (1000 ladders measured 8.7% and 10.5%.)
    nominal_claims, nominal_positive = 0.10, 0.10 + 2 * scaling.LOF_P_MIN
    margin = 2 * math.sqrt(nominal_positive * (1 - nominal_positive) / n)
    report = (f"A/A false positives over {n} ladders: {positive:.3f} (claimed wins or losses {claims:.3f}, "
              f"fit failed {failed:.3f}); allowed {nominal_positive + margin:.3f} and {nominal_claims + margin:.3f}")
    print(report)
    assert claims <= nominal_claims + margin, report
    assert positive <= nominal_positive + margin, report


# ---------------------------------------------------------------------------------------------------------------
# Failures and reasons


def test_loss_rising_with_compute_fails_the_fit():
    pts = ladder(np.random.default_rng(6), {"base": 1.0, "v": 1.25})
    rising = [dataclasses.replace(p, loss=5.0 - p.loss) for p in pts]
    out = analyse(rising, "base", n_boot=50)
    assert "losses not decreasing with compute" in out["law"]["failed"]
    assert out["variants"]["v"]["verdict"].startswith("fit failed (losses not decreasing with compute")


def test_kinked_ladder_fails_the_lack_of_fit_test():
    rng = np.random.default_rng(7)
    pts = ladder(rng, {"base": 1.0, "v": 1.25}, sd=0.01)
    # the loss stops improving after rung 2: not a power law in C
    kink = [dataclasses.replace(p, loss=float(true_loss(min(p.flops, 4 * C_MIN))) + rng.normal(0, 0.01)) for p in pts]
    out = analyse(kink, "base", n_boot=50)
    lof = next(c for c in out["law"]["checks"] if c["name"] == "lack_of_fit")
    assert not lof["ok"] and lof["p"] < 0.01
    assert out["variants"]["v"]["verdict"].startswith("fit failed (lack-of-fit F test: F=")


def test_variant_that_does_not_share_the_law_fails_its_own_test():
    # The baseline is a clean power law; the variant's loss is flat over its top three rungs.
    rng = np.random.default_rng(8)
    pts = ladder(rng, {"base": 1.0, "v": 1.0}, sd=0.01)
    pts = [dataclasses.replace(p, loss=float(true_loss(min(p.flops, 4 * C_MIN))) + rng.normal(0, 0.01))
           if p.variant == "v" else p for p in pts]
    out = analyse(pts, "base", n_boot=50)
    assert out["law"]["failed"] is None
    v = out["variants"]["v"]
    assert v["verdict"].startswith("fit failed (lack-of-fit F test of the law shared with the baseline: F="), \
        v["verdict"]


def test_fewer_than_three_rungs_gives_a_reason():
    pts = ladder(np.random.default_rng(9), {"base": 1.0, "v": 1.25})
    short_base = [p for p in pts if p.variant == "v" or p.rung < 2]
    out = analyse(short_base, "base", n_boot=50)
    assert out["law"]["failed"] == "too few rungs: baseline base has finished runs at 2 rungs (0, 1), 3 needed"
    assert out["variants"]["v"]["verdict"] == out["law"]["failed"]
    short_var = [p for p in pts if p.variant == "base" or p.rung < 2]
    v = analyse(short_var, "base", n_boot=50)["variants"]["v"]
    assert v["verdict"] == "too few rungs: variant v has finished runs at 2 rungs (0, 1), 3 needed"
    assert v["free_fit"] == {"failed": v["verdict"]}
    # a run without a finite loss is not a finished run
    nan_top = [dataclasses.replace(p, loss=math.nan) if p.rung >= 2 and p.variant == "v" else p for p in pts]
    assert analyse(nan_top, "base", n_boot=50)["variants"]["v"]["verdict"].startswith("too few rungs")
    assert analyse([], "base")["law"]["failed"].startswith("too few rungs: baseline base has no finished runs")


def test_lack_of_fit_test_needs_more_rungs_than_parameters_and_replicates():
    three = ladder(np.random.default_rng(10), {"base": 1.0}, rungs=3)
    lof = next(c for c in analyse(three, "base", n_boot=20)["law"]["checks"] if c["name"] == "lack_of_fit")
    assert lof["ok"] and lof["reason"] == "lack-of-fit F test not possible: 3 rungs for 3 parameters"
    single = ladder(np.random.default_rng(10), {"base": 1.0}, seeds=1)
    lof = next(c for c in analyse(single, "base", n_boot=20)["law"]["checks"] if c["name"] == "lack_of_fit")
    assert lof["ok"] and lof["reason"] == "lack-of-fit F test not possible: no replicate seeds"


def test_top_rung_below_the_baseline_floor_has_no_multiplier():
    rng = np.random.default_rng(11)
    pts = ladder(rng, {"base": 1.0}, sd=0.01)
    # a variant with a much lower floor: its top rung ends below the baseline's E
    pts += [Point("v", r, s, C_MIN * 2 ** r, 20 * C_MIN * 2 ** r / 1e12,
                  0.5 + A_TRUE * 2.0 ** (-ALPHA_TRUE * r) * 0.4 + rng.normal(0, 0.01))
            for r in range(5) for s in range(3)]
    v = analyse(pts, "base", n_boot=50)["variants"]["v"]
    assert v["top_rung"]["multiplier"] is None and "never reaches it" in v["top_rung"]["note"]
    assert v["tokens_multiplier_top"] is None
    assert v["verdict"].startswith("fit failed (")


# ---------------------------------------------------------------------------------------------------------------
# Rollout and rank agreement


def test_rollout_error_is_small_on_a_true_law_ladder():
    pts = ladder(np.random.default_rng(12), {"base": 1.0, "v": 1.25}, sd=0.01)
    out = rollout_check(pts, "base")
    assert out["available"] and out["rung"] == 4
    assert abs(out["error"]) < 0.03 and abs(out["variants"]["v"]["error"]) < 0.03
    full = analyse(pts, "base", n_boot=20)
    assert full["variants"]["v"]["rollout_error"] == pytest.approx(out["variants"]["v"]["error"])
    noiseless = rollout_check(ladder(np.random.default_rng(0), {"base": 1.0, "v": 0.8}, sd=0.0), "base")
    assert abs(noiseless["error"]) < 1e-6 and abs(noiseless["variants"]["v"]["error"]) < 1e-6
    three = rollout_check(ladder(np.random.default_rng(12), {"base": 1.0}, rungs=3), "base")
    assert not three["available"] and "needs 4 baseline rungs" in three["reason"]


def test_rank_agreement():
    consistent = {"a": {0: 3.0, 1: 2.5, 2: 2.0}, "b": {0: 3.1, 1: 2.6, 2: 2.1}, "c": {0: 3.2, 1: 2.7, 2: 2.2}}
    out = rank_agreement(consistent)
    assert out["mean_tau_vs_largest"] == 1.0 and out["mean_tau_consecutive"] == 1.0
    assert [t["tau"] for t in out["tau_vs_largest"]] == [1.0, 1.0]
    swapped = {**consistent, "c": {0: 3.0 - 0.1, 1: 2.7, 2: 2.2}}  # c best at rung 0, worst later
    out = rank_agreement(swapped)
    assert out["tau_vs_largest"][0]["tau"] == pytest.approx(-1 / 3) and out["tau_vs_largest"][1]["tau"] == 1.0
    pts = ladder(np.random.default_rng(13), {"base": 1.0, "v": 1.25, "w": 0.8}, sd=0.005)
    assert analyse(pts, "base", n_boot=20)["rank_agreement"]["mean_tau_vs_largest"] == 1.0


# ---------------------------------------------------------------------------------------------------------------
# The verdict's words


def test_verdict_words():
    assert verdict(1 / 0.86, [1.08, 1.25], "sas_p", "pre_ln") == (
        "sas_p reaches pre_ln's loss with 0.86x its compute [0.80, 0.93] (worth 1.16x pre_ln's compute [1.08, 1.25])")
    # a bound that would print as 1.00 without touching 1: three decimals
    assert verdict(1.003, [1.002, 1.006], "v", "b") == (
        "v reaches b's loss with 0.997x its compute [0.994, 0.998] (worth 1.003x b's compute [1.002, 1.006])")
    assert verdict(1.02, [0.97, 1.08], "v", "b") == "not resolvable: the interval [0.97, 1.08] holds 1"
    # the largest rung read alone on the other side of 1: the pooled win does not hold with scale
    assert verdict(0.88, [0.79, 0.99], "v", "b", top_multiplier=1.30) == (
        "not resolvable: pooled over rungs 0.88x [0.79, 0.99], but the largest rung alone gives 1.30x, the other "
        "side of 1")
    assert verdict(0.88, [0.79, 0.99], "v", "b", top_multiplier=0.95).startswith("v reaches b's loss with 1.14x")
    assert verdict(1.5, [1.2, 1.8], "v", "b", failed="lack-of-fit F test: F=9, p=0.001") == (
        "fit failed (lack-of-fit F test: F=9, p=0.001)")
    assert verdict(1.5, [1.2, 1.8], "v", "b", failed="x", plateau={3: "2 of 3 runs on the unigram plateau"}) == (
        "not converged (rung 3: 2 of 3 runs on the unigram plateau)")
    assert verdict(1.5, [1.2, 1.8], "v", "b", baseline_plateau={1: "1 of 3 runs on the unigram plateau"}) == (
        "not converged (b rung 1: 1 of 3 runs on the unigram plateau)")


def test_plateau_notes_reach_the_verdict():
    pts = ladder(np.random.default_rng(14), {"base": 1.0, "v": 1.25, "w": 1.25})
    out = analyse(pts, "base", n_boot=20, plateau={"v": {4: "2 of 3 runs on the unigram plateau"}})
    assert out["variants"]["v"]["verdict"] == "not converged (rung 4: 2 of 3 runs on the unigram plateau)"
    assert " reaches " in out["variants"]["w"]["verdict"]
