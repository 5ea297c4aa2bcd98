"""stats.py against hand-computed small cases: Kendall tau-b, the exact bootstrap over seeds, tied ranks, the
stability rule over the interval test's groups on synthetic curves, the probability of a rank range, the
unigram-plateau detector, and the views that use them."""

import math

import pytest

from blockbench import stats, sweep
from blockbench.views import columns
from blockbench.views.compare import Thresholds, compare_paths
from tests.views.test_leaderboard import copy_records, make_tiny_run


def test_kendall_tau_b_with_ties_and_a_missing_run():
    # x untied, y ties its first two: 5 concordant pairs, 0 discordant, tau-b = 5 / sqrt(6 * 5).
    assert stats.kendall_tau([1, 2, 3, 4], [1, 1, 2, 3]) == pytest.approx(5 / math.sqrt(30))
    assert stats.kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # one swapped pair of three: (C - D) / 3 = 1/3
    assert stats.tau_between({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 3, "c": 2}) == pytest.approx(1 / 3)
    # c has no run on one side: it drops out, and the rest agree
    assert stats.tau_between({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 2}) == pytest.approx(1.0)
    assert math.isnan(stats.kendall_tau([1], [1]))


def test_exact_bootstrap_weights():
    counts, probs = stats.bootstrap_weights(2, "k")
    assert sorted(map(tuple, counts.tolist())) == [(0, 2), (1, 1), (2, 0)]
    assert sorted(probs.tolist()) == pytest.approx([0.25, 0.25, 0.5])
    counts, probs = stats.bootstrap_weights(3, "k")
    assert len(counts) == 10 and probs.sum() == pytest.approx(1.0)
    assert probs[(counts == [1, 1, 1]).all(axis=1)][0] == pytest.approx(6 / 27)


def test_bootstrap_order_probabilities_by_hand():
    # Resamples of seeds {0,1}: {0,0} p=1/4: A 1.0 < B 2.0; {0,1} p=1/2: A 2.0 < B 2.25; {1,1} p=1/4: A 3.0 > B 2.5.
    ranks, pairs = stats.bootstrap_orders({"A": {0: 1.0, 1: 3.0}, "B": {0: 2.0, 1: 2.5}}, "k")
    assert pairs == {("A", "B"): pytest.approx(0.75)} and ranks == {"A": pytest.approx(0.75),
                                                                     "B": pytest.approx(0.75)}
    # A tie in a resample counts half: {0,0} A wins (1/4), {0,1} 2.0 = 2.0 (1/2 x 1/2), {1,1} B wins.
    _, pairs = stats.bootstrap_orders({"A": {0: 1.0, 1: 3.0}, "B": {0: 2.0, 1: 2.0}}, "k")
    assert pairs[("A", "B")] == pytest.approx(0.5)
    # A missing run: A has only seed 0. {1,1} (p=1/4) drew none of A's seeds and does not count; in the rest A wins.
    ranks, pairs = stats.bootstrap_orders({"A": {0: 1.0}, "B": {0: 2.0, 1: 0.5}}, "k")
    assert pairs[("A", "B")] == pytest.approx(1.0) and ranks["A"] == pytest.approx(1.0)


def test_tied_ranks_join_unresolved_neighbours():
    resolved = {("a", "b"): True, ("b", "c"): False, ("c", "d"): False, ("d", "e"): True}
    assert stats.tied_ranks(list("abcde"), resolved) == {"a": (1, 1), "b": (2, 4), "c": (2, 4), "d": (2, 4),
                                                         "e": (5, 5)}


def record(variant: str, seed: int, losses: list[float], step: int = 10, vocab: int = 257) -> dict:
    curve = [{"step": i * step, "eval_loss": v} for i, v in enumerate(losses)]
    return {"variant": variant, "seed": seed, "status": "ok", "curve": curve,
            "summary": {"final_eval_loss": losses[-1]}, "config": {"eval": {}}, "data": {"vocab_size": vocab}}


def test_one_seed_is_not_judged_however_the_curves_went():
    """With one seed there is no interval test: ties cannot be judged, so the word is "not judged", never
    "settled", whether the order flipped late (tau -1) or held from 50% of the budget (tau 1)."""
    late = [record("a", 0, [5, 3.0, 2.9, 2.8, 2.7]), record("b", 0, [5, 3.1, 3.0, 2.7, 2.6]),
            record("c", 0, [5, 3.2, 3.1, 2.6, 2.5])]
    st = stats.stability(late, "k")
    assert st.order == ["c", "b", "a"] and st.taus[0.5] == pytest.approx(-1)
    assert st.word == stats.NOT_JUDGED and not st.settled and {st.range_text(v) for v in "abc"} == {"1-3"}
    early = [record("a", 0, [5, 3.0, 2.8, 2.6, 2.5]), record("b", 0, [5, 3.1, 2.9, 2.7, 2.6]),
             record("c", 0, [5, 3.2, 3.0, 2.8, 2.7])]
    st = stats.stability(early, "k")
    assert st.order == ["a", "b", "c"] and st.word == stats.NOT_JUDGED and not st.settled
    assert [st.range_text(v) for v in "abc"] == ["1", "2", "3"]
    assert st.line() == (
        "rank stability: not judged: one seed: ties cannot be judged (no interval test), so neither can the order "
        "between groups; tau(50%->final) = 1.00, tau(75%->final) = 1.00; one seed, no bootstrap: 2 of 2 adjacent "
        "pairs keep their order at 50%, 75% and 100% of the budget")


# Two tiers, three seeds (paper-cpu/2 in small): a, b, c end near 2.04 and their per-seed differences change sign,
# so no pair of them is resolved; d, e end near 2.21, 0.12-0.20 nats behind a on every seed (resolved). At 50% of the
# budget the top tier's inner order is the other way round (a ahead), which swaps 3 of its pairs: tau is low.
TIER_FINAL = {"a": (2.00, 2.10, 2.05), "b": (2.06, 2.01, 2.04), "c": (2.03, 2.08, 2.02),
              "d": (2.20, 2.22, 2.21), "e": (2.23, 2.21, 2.22)}
INNER_AT_HALF = {"a": 0.25, "b": 0.35, "c": 0.30, "d": 0.30, "e": 0.30}


def tiers(at_75: dict[str, float] | None = None) -> list[dict]:
    """Five-point curves (steps 0-40): 50% of the budget is the third point, 75% the fourth."""
    out = []
    for v, finals in TIER_FINAL.items():
        for seed, final in enumerate(finals):
            half = final + INNER_AT_HALF[v]
            three = final + (at_75 or {}).get(v, 0.1)
            out.append(record(v, seed, [5.0, 3.0, half, three, final]))
    return out


def test_swaps_inside_a_tied_group_do_not_unsettle_a_ranking():
    st = stats.stability(tiers(), "k")
    assert st.order == ["b", "c", "a", "d", "e"] and st.groups() == [["b", "c", "a"], ["d", "e"]]
    assert not stats.curve_settled(st.taus)  # the old tau rule called this UNSETTLED
    assert st.word == stats.SETTLED and st.settled and st.group_swaps() == []
    # At 50% the means are a 2.30, c 2.343, b 2.387, d 2.51, e 2.52: 3 of 10 pairs swapped, tau (7 - 3) / 10; at 75%
    # every curve is 0.1 above its end: tau 1.
    assert st.line() == (
        "rank stability: settled: 2 groups (b, c, a | d, e), kept their order at 50% and 75% of the budget; inside "
        "a group the order is not resolved; tau(50%->final) = 0.40, tau(75%->final) = 1.00; bootstrap over 3 "
        "seeds: 1 of 4 adjacent pairs resolved (order probability >= 0.9 and 95% CI of the difference excluding 0)")


def test_a_swap_between_groups_unsettles_and_is_named():
    # At 75% of the budget d (2.21 on average) is ahead of a (2.05 + 0.2), e (2.22 + 0.1) is not: a crossing of one
    # pair in the last quarter.
    st = stats.stability(tiers(at_75={"a": 0.2, "d": 0.0}), "k")
    assert st.groups() == [["b", "c", "a"], ["d", "e"]] and st.group_swaps() == [("a", "d", [0.75])]
    assert st.word == stats.UNSETTLED and not st.settled
    assert st.line().startswith(
        "rank stability: UNSETTLED: 2 groups (b, c, a | d, e), did not keep their order: d ahead of a at 75% of the "
        "budget (the order between groups was still changing when the budget ended: not a verdict); inside a group "
        "the order is not resolved; tau(50%->final) = ")


def test_one_group_is_all_tied_and_names_are_escaped():
    # Two variants, two seeds, whose difference changes sign: nothing resolved, one group.
    recs = [record("x_", 0, [5, 3, 2.0]), record("x_", 1, [5, 3, 2.2]), record("y*", 0, [5, 3, 2.1]),
            record("y*", 1, [5, 3, 2.15])]
    st = stats.stability(recs, "k")
    assert st.word == stats.ALL_TIED and st.settled  # nothing between groups could move
    assert st.line().startswith(
        r"rank stability: all tied: no adjacent pair's order is resolved, so all 2 variants tie (x\_, y\*): nothing "
        "to order between groups; tau(50%->final) = ")
    assert "(x_, y*)" in st.line(escape=str)


def test_rank_range_probability_is_the_chance_of_landing_in_the_listed_range():
    # test_two_seeds' case: c and b share 1-2, a is 3rd. The point position of c (1st) has probability 3/4 (the
    # {1,1} resample puts b first), but c lands in 1-2 in every resample, and so does b.
    recs = [record("a", 0, [5, 3, 2.0]), record("a", 1, [5, 3, 2.125]), record("b", 0, [5, 3, 1.5]),
            record("b", 1, [5, 3, 1.625]), record("c", 0, [5, 3, 1.25]), record("c", 1, [5, 3, 1.75])]
    st = stats.stability(recs, "k")
    assert st.rank_prob == {"c": pytest.approx(0.75), "b": pytest.approx(0.75), "a": pytest.approx(1.0)}
    assert st.rank_range_prob == {"c": 1.0, "b": 1.0, "a": 1.0}
    # Five seeds (126 resamples, exact): p ahead of q by 0.5 on four seeds, behind by 0.1 on one. q ranks first
    # only when all five draws are that one seed: (1/5)^5; a draw of four of them is a tie, broken by the point
    # order (p first). So P(p at 1) = P(q at 2) = 1 - 1/3125.
    losses = {"p": {s: 2.0 for s in range(5)}, "q": {0: 2.5, 1: 2.5, 2: 2.5, 3: 2.5, 4: 1.9}}
    assert stats.bootstrap_rank_ranges(losses, "k", {"p": (1, 1), "q": (2, 2)}) == {
        "p": pytest.approx(1 - 1 / 3125), "q": pytest.approx(1 - 1 / 3125)}
    assert stats.bootstrap_rank_ranges(losses, "k", {"p": (1, 2), "q": (1, 2)}) == {"p": 1.0, "q": 1.0}


def test_two_seeds_use_the_bootstrap_and_the_interval():
    # b beats a on both seeds by a wide margin: resolved. c vs b (exact binary fractions, so no rounding decides):
    # {0,0} 1.25 < 1.5 (1/4), {0,1} 1.5 < 1.5625 (1/2), {1,1} 1.75 > 1.625 (1/4): probability 0.75, tied.
    recs = [record("a", 0, [5, 3, 2.0]), record("a", 1, [5, 3, 2.125]), record("b", 0, [5, 3, 1.5]),
            record("b", 1, [5, 3, 1.625]), record("c", 0, [5, 3, 1.25]), record("c", 1, [5, 3, 1.75])]
    st = stats.stability(recs, "k")
    assert st.order == ["c", "b", "a"] and st.pair_prob[("c", "b")] == pytest.approx(0.75)
    assert st.pair_prob[("b", "a")] == pytest.approx(1.0)
    assert [st.range_text(v) for v in ("c", "b", "a")] == ["1-2", "1-2", "3"]


def test_plateau_detector_on_synthetic_curves():
    level = 3.0
    flat = [(0, 5.5), (25, 3.4), (50, 3.37), (75, 3.38), (100, 3.36)]
    assert stats.plateau_steps_of(flat, level) == 75        # flat (within 0.05) from step 25 to the end
    assert stats.plateau_steps_of(flat, 3.5) is None         # ends below the level: not the unigram plateau
    falling = [(0, 5.5), (25, 3.4), (50, 3.2), (75, 3.0), (100, 2.8)]
    assert stats.plateau_steps_of(falling, 2.0) is None
    late_flat = [(0, 5.5), (25, 3.4), (50, 3.2), (75, 3.1), (90, 3.09), (100, 3.08)]
    assert stats.plateau_steps_of(late_flat, 2.0) is None   # flat for 25 of 100 steps only: under a third
    old = record("n", 0, [5.5, 3.4, 3.37, 3.38, 3.36], step=25)
    assert stats.plateau_steps(old) == 75                   # no summary.plateau_steps: from the curve, 0.55 ln 257
    old["config"]["eval"]["plateau_loss"] = 3.5             # a suite's own level
    assert stats.plateau_steps(old) is None
    old["summary"]["plateau_steps"] = 60                    # a new record's own figure wins
    assert stats.plateau_steps(old) == 60


def test_sweep_counts_a_plateaued_run_as_not_converged():
    ok = record("n", 0, [5.5, 3.4, 3.2, 3.0, 2.8], step=25)
    stuck = record("n", 1, [5.5, 3.4, 3.37, 3.38, 3.36], step=25)
    assert sweep.score([ok]) == pytest.approx(2.8) and sweep.score([ok, stuck]) == math.inf


def test_time_to_target_misses_are_shown_as_miss_not_zero():
    assert columns._ci_cell(0.0, 0.0, 0.0) == "miss"
    assert columns._ci_cell(0.968, 0.0, 1.104) == "0.968 [miss, 1.104]"
    assert columns._ci_cell(1.1, 0.9, 1.3) == "1.100 [0.900, 1.300]"


def test_one_seed_pair_whose_order_flips_is_not_resolved():
    ok, why = stats.pair_order_resolved({0: 2.0}, {0: 2.1}, {0.5: {0: 3.0}, 0.75: {0: 2.5}},
                                        {0.5: {0: 2.9}, 0.75: {0: 2.6}}, "k")
    assert not ok and "50%" in why
    ok, _ = stats.pair_order_resolved({0: 2.0}, {0: 2.1}, {0.5: {0: 3.0}}, {0.5: {0: 3.1}}, "k")
    assert ok


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    return make_tiny_run(tmp_path_factory.getbasetemp())


def test_compare_calls_an_unsettled_difference_not_resolvable(tiny_run, tmp_path):
    # Seed 0 much worse, seed 1 slightly better: the mean rises 0.095 nats (past the 0.05 limit), but the bootstrap
    # puts the pair in that order with probability 0.75 only: not a regression, "not resolvable at this budget".
    def change(r):
        if r["variant"] == "sas":
            r["summary"]["final_eval_loss"] += 0.2 if r["seed"] == 0 else -0.01
            r["curve"][-1]["eval_loss"] = r["summary"]["final_eval_loss"]
        return r

    only = lambda r: r["seed"] in (0, 1)  # noqa: E731
    base = copy_records(tiny_run, tmp_path / "base", only=only)
    cand = copy_records(tiny_run, tmp_path / "cand", change=change, only=only)
    result = compare_paths(str(base), str(cand), Thresholds())
    row = next(r for r in result["rows"] if r["variant"] == "sas" and r["metric"] == "eval loss")
    assert row["verdict"] == "unresolved" and "not resolvable at this budget" in row["detail"]
    assert "0.75" in row["detail"] and result["exit_code"] == 0


def test_seeds_for_halfwidth_hand_computed():
    # sd 0.1, half-width 0.05: n=18 gives t(0.975,17)=2.10982*0.1/sqrt(18)=0.04973;
    # n=17 gives 2.11991*0.1/sqrt(17)=0.05142
    assert stats.seeds_for_halfwidth(0.1, 0.05) == 18
    assert stats.seeds_for_halfwidth(0.0, 0.05) == 2
    assert stats.seeds_for_halfwidth(float("nan"), 0.05) is None
    assert stats.seeds_for_halfwidth(10.0, 0.05, max_seeds=50) is None


def test_plateau_escape_step_interpolates_and_is_none_when_never():
    points = [(0, 5.5), (20, 3.4), (40, 3.0), (60, 2.6)]
    assert stats.plateau_escape_step(points, 3.1) == pytest.approx(35.0)  # 3.4 -> 3.0 over 20 steps: 0.3/0.4 of it
    assert stats.plateau_escape_step(points, 2.0) is None


def test_power_rows_from_paired_differences():
    def rec(variant, seed, losses):
        curve = [{"step": 10 * i, "eval_loss": x} for i, x in enumerate(losses)]
        return {"variant": variant, "seed": seed, "status": "ok", "curve": curve,
                "summary": {"final_eval_loss": losses[-1]}}
    records = [rec("a", 0, [5, 3.0, 2.0]), rec("a", 1, [5, 3.0, 2.1]), rec("a", 2, [5, 3.0, 2.2]),
               rec("b", 0, [5, 3.2, 2.1]), rec("b", 1, [5, 3.0, 2.1]), rec("b", 2, [5, 3.4, 2.5])]
    final = stats.power_rows(records, "a", "b", 0.05, fractions=(1.0,))
    assert len(final) == 1 and final[0].step == 20 and final[0].n == 3
    # differences 0.1, 0.0, 0.3: mean 0.1333, sd 0.15275
    assert final[0].mean == pytest.approx(0.4 / 3) and final[0].sd == pytest.approx(0.152752523)
    assert final[0].halfwidth_now == pytest.approx(4.302652729911275 * 0.152752523 / math.sqrt(3))
    assert final[0].seeds_needed == stats.seeds_for_halfwidth(final[0].sd, 0.05)


def test_probe_disturbance_compares_probe_steps_with_training_steps():
    def rec(variant, probe, train):
        return {"variant": variant, "speed": {"step_time_median": probe}, "summary": {"step_time_median": train}}
    healthy = [rec("a", 0.50, 0.49), rec("a", 0.50, 0.52), rec("b", 0.55, 0.50)]
    assert stats.probe_disturbance(healthy) == pytest.approx(1.1)
    assert stats.probe_disturbed_note(healthy) is None
    busy = healthy + [rec("c", 6.4, 0.29)]
    assert stats.probe_disturbance(busy) == pytest.approx(6.4 / 0.29)
    assert "took 22x as long" in stats.probe_disturbed_note(busy)
    assert stats.probe_disturbance([rec("a", None, 0.3)]) is None


def test_published_paper_cpu_2_speed_is_not_a_verdict():
    """paper-cpu/2's probe ran while the machine was overloaded (44x its training steps): no view may turn its
    ratios into a verdict, and the report says no verdict with the cause, not "not resolvable" (nothing was
    measured). The report is read from the records (test_report checks the published one is what they give)."""
    from pathlib import Path

    from blockbench.records import load_records
    from blockbench.views import report

    published = Path(__file__).resolve().parents[1] / "results" / "paper-cpu" / "2"
    records = load_records(published / "records")
    assert stats.probe_disturbance(records) > stats.PROBE_DISTURBED_RATIO
    assert "speed ratios (interleaved probe) not shown: the interleaved probe's steps took" in (
        published / "leaderboard.md").read_text()
    claims, _ = report.check_claims(records)
    [throughput] = [c for c in claims if c.title == "SAS-P trains faster than Pre-LN (throughput)"]
    assert throughput.verdict == report.NO_VERDICT
    assert throughput.words == "no verdict: probe untrusted (its steps took 44x as long as in training; IQR 0.53)"
    assert "not a verdict" in throughput.measured and report.UNRESOLVED not in throughput.words
    # ... and the rank stability reads the two tiers, not the swaps inside the tied top tier (tau 0.40).
    st = stats.stability(records, "paper-cpu/2")
    assert st.word == stats.SETTLED and st.line().startswith(
        "rank stability: settled: 2 groups (pre_ln, sas, sas_p | sas_p_nonorm, vskipinit), kept their order at 50% "
        "and 75% of the budget; inside a group the order is not resolved; tau(50%->final) = 0.40")


def test_a_tau_exactly_at_the_threshold_is_settled():
    # one swap among five variants at 50%: tau-b = 8/10, which floating point gives as 0.7999999999999999
    tau = stats.kendall_tau([0, 1, 2, 3, 4], [1, 0, 2, 3, 4])
    assert tau < 0.8 and tau == pytest.approx(0.8)
    assert stats.curve_settled({0.5: tau, 0.75: 1.0})
    assert not stats.curve_settled({0.5: 0.6, 0.75: 1.0})
