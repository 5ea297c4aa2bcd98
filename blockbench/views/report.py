"""`blockbench report DIR`: the seed paper's claims (spec section 8) checked against a results directory.

For each claim, REPORT.md (and REPORT.html, the same text as a web page) puts the paper's figure beside
blockbench's measured figure with its uncertainty and a verdict (reproduced / not reproduced / not resolvable at
this scale / not converged / diverged / no verdict) reached by a rule stated in the report, and the page opens
with one headline sentence that counts them:

- loss claims compare final eval losses per seed. With the same seeds on both sides (same data order and init
  seed), the interval is the paired Student-t 95% interval of the per-seed differences; otherwise Welch's;
- "no worse than" claims (parity) are non-inferiority tests against a margin in nats; "worse" claims need the
  whole interval above their threshold; an interval that straddles the line is "not resolvable"; so is a "worse"
  claim whose pair's order is not settled at this budget (stats.py's pair rule), whichever way the interval
  points (a parity claim is not judged by order: equal variants have no settled order);
- a pair either side of which ended on the unigram plateau (stats.plateau_steps) is "not converged", never "not
  resolvable": its difference says where each run was stuck, not what the blocks learn;
- a variant that diverged on some seeds is judged on the seeds that survived on both sides (paired), with the
  divergence reported beside the verdict: a divergence never counts as "worse" by itself. With no seed left on
  both sides the verdict is "diverged";
- the throughput claim reads the interleaved speed probe's per-round ratios, only from a trusted probe
  (stats.probe_disturbed_note) on one device type in one execution mode: the 95% interval of their median against
  the probe's A/A floor (stats.speed_verdict), or, in records made before the probe had an A/A control, their
  median ± half their interquartile range. From an untrusted probe, or ratios of several device types or modes,
  nothing was measured: "no verdict" with its cause (`no verdict: probe untrusted (IQR 1.80)`), never "not
  resolvable", which is a measurement that could not decide;
- the parameter claim is exact arithmetic on the recorded counts.

Like a leaderboard, the report is a pure view of the records: the same records give the same bytes.
"""

from __future__ import annotations

import math
import os
import statistics
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from blockbench import stats
from blockbench.errors import BlockbenchError
from blockbench.untrusted import md, md_code, mpl
from blockbench.views import page
from blockbench.views.diagnosis import load_diagnosis
from blockbench.views.gpu_page import gpu_summary, published_checks
from blockbench.views.leaderboard import (
    generate,
    seconds_caveat,
    seconds_meaningful,
    setup_facts,
    superseded_notice,
    target_text,
    write_outputs,
)
from blockbench.views.plots import png_bytes
from blockbench.views.selection import ranked_records, resolve_target, speed_mix, speed_not_comparable
from blockbench.workloads import workload_class, workload_of

DEFAULT_MARGIN = 0.05  # nats/token: the parity margin; the spec expects effects of a few 0.01 nats to be unresolvable
REPRODUCED, NOT_REPRODUCED, UNRESOLVED = "reproduced", "not reproduced", "not resolvable at this scale"
NOT_CONVERGED, DIVERGED = "not converged", "diverged"
NO_VERDICT = "no verdict"  # nothing was measured that a verdict could read (an untrusted probe): said with its cause
VERDICTS = (REPRODUCED, NOT_REPRODUCED, UNRESOLVED, NOT_CONVERGED, DIVERGED, NO_VERDICT)
NOT_APPLICABLE = "n/a"
PAPER_SPEEDUP = 1.16  # SAS-P / Pre-LN per-iteration speed, BERT (Table 1)


class ReportError(BlockbenchError):
    pass


@dataclass
class Claim:
    title: str
    paper: str
    measured: str
    verdict: str  # the direction (or, for exact claims, the count)
    rule: str
    magnitude: str = NOT_APPLICABLE  # whether the paper's number itself is met, where the paper gives one
    pair: Difference | None = None  # a loss claim: the difference its verdict reads
    threshold: float = 0.0  # ... and the line that difference must clear
    note: str = ""  # said beside the verdict (a divergence the verdict was reached despite)
    cause: str = ""  # why the verdict is what it is, where its word alone would not say (`probe untrusted (IQR x)`)

    @property
    def words(self) -> str:
        """The verdict with its cause: `no verdict: probe untrusted (IQR 1.80)`."""
        return f"{self.verdict}: {self.cause}" if self.cause else self.verdict


@dataclass
class Difference:
    """Final eval loss of `candidate` minus `reference`, over the seeds that ended well on both sides: mean and 95%
    interval; how many seeds diverged on each side, and why the pair has not converged (None if it has)."""

    reference: str
    candidate: str
    mean: float
    low: float
    high: float
    method: str
    diverged: int  # candidate seeds that diverged
    reference_diverged: int
    seeds: int = 0  # seeds the candidate ran
    reference_seeds: int = 0
    not_converged: str | None = None

    @property
    def survivors(self) -> bool:
        return not math.isnan(self.mean)

    def divergence(self) -> str:
        """'X diverged on k/n seeds' for each side that did; '' when neither did."""
        parts = [f"{v} diverged on {k}/{n} seeds" if n > 1 else f"{v} diverged"
                 for v, k, n in ((self.reference, self.reference_diverged, self.reference_seeds),
                                 (self.candidate, self.diverged, self.seeds)) if k]
        return "; ".join(parts)

    def text(self) -> str:
        if not self.survivors:
            return f"{self.divergence()}: no seed ended well on both sides"
        if math.isnan(self.low):
            body = f"{self.mean:+.3f} nats (one seed: no interval)"
        else:
            body = f"{self.mean:+.3f} nats, 95% CI [{self.low:+.3f}, {self.high:+.3f}] ({self.method})"
        if self.divergence():
            body += f", on the seeds that survived ({self.divergence()})"
        return body


def loss_difference(losses: dict[str, dict[int, float | None]], reference: str, candidate: str,
                    records: list[dict[str, Any]] | None = None, stuck_is_the_claim: bool = False) -> Difference:
    """candidate - reference. Without divergences: every seed (paired when both ran the same seeds, else Welch).
    With some: the seeds that ended well on both sides, paired, so a divergence only shrinks the sample.
    With `records`, a plateau on either side makes the pair not converged; on the reference's side only when
    `stuck_is_the_claim` (naive skipless: failing to leave the plateau is what the paper says it does)."""
    ref, cand = losses[reference], losses[candidate]
    ref_div = sum(v is None for v in ref.values())
    cand_div = sum(v is None for v in cand.values())
    sides = (reference,) if stuck_is_the_claim else (reference, candidate)
    stuck = stats.not_converged_note(records, sides) if records is not None else None
    counts = {"diverged": cand_div, "reference_diverged": ref_div, "seeds": len(cand), "reference_seeds": len(ref),
              "not_converged": stuck}
    if ref_div or cand_div:
        common = sorted(s for s in set(ref) & set(cand) if ref[s] is not None and cand[s] is not None)
        ref = {s: ref[s] for s in common}
        cand = {s: cand[s] for s in common}
    if not ref or not cand:
        return Difference(reference, candidate, math.nan, math.nan, math.nan, "", **counts)
    mean, low, high, method = stats.difference_interval(ref, cand)  # type: ignore[arg-type] - None excluded above
    return Difference(reference, candidate, mean, low, high, method, **counts)


def _unjudgeable(d: Difference) -> str | None:
    """The verdict a pair gets before its interval is read: stuck on the plateau, or nothing left to compare."""
    if d.not_converged:
        return NOT_CONVERGED
    if not d.survivors:
        return DIVERGED
    if math.isnan(d.low):
        return UNRESOLVED
    return None


def no_worse(d: Difference, margin: float) -> str:
    """Non-inferiority: the candidate is not worse than the reference by more than `margin`."""
    early = _unjudgeable(d)
    if early is not None:
        return early
    return REPRODUCED if d.high < margin else NOT_REPRODUCED if d.low > margin else UNRESOLVED


def worse(d: Difference, threshold: float) -> str:
    """The candidate is worse than the reference by more than `threshold`. A divergence is reported beside the
    verdict and never makes a claim reproduced: it is instability, not the claim (paper-bert-cpu/1's "SAS-P
    without norm is worse" once rested on one diverged seed out of three)."""
    early = _unjudgeable(d)
    if early is not None:
        return early
    return REPRODUCED if d.low > threshold else NOT_REPRODUCED if d.high < threshold else UNRESOLVED


def _losses(records: list[dict[str, Any]]) -> dict[str, dict[int, float | None]]:
    out: dict[str, dict[int, float | None]] = {}
    for r in records:
        loss = r["summary"]["final_eval_loss"]
        out.setdefault(r["variant"], {})[r["seed"]] = loss if r["status"] == "ok" and loss is not None else None
    return out


def _speed(records: list[dict[str, Any]], variant: str) -> tuple[float, float] | None:
    """Median over records of the probe's speedup vs the baseline, and its interquartile range."""
    ratios = [(r["speed"]["speedup_vs_baseline"], r["speed"].get("speedup_iqr")) for r in records
              if r["variant"] == variant and r["speed"].get("speedup_vs_baseline") is not None]
    if not ratios:
        return None
    ratios.sort()
    median, iqr = ratios[len(ratios) // 2]
    return median, iqr if iqr is not None else math.nan


def speed_magnitude(low: float, high: float) -> str:
    """Whether the paper's speed-up lies in the measured range: a faster direction alone is not its 1.16x."""
    if math.isnan(low):
        return UNRESOLVED
    if high < PAPER_SPEEDUP:
        return f"{NOT_REPRODUCED}: smaller than the paper's {PAPER_SPEEDUP}x (range {low:.3f}-{high:.3f})"
    if low > PAPER_SPEEDUP:
        return f"{NOT_REPRODUCED}: larger than the paper's {PAPER_SPEEDUP}x (range {low:.3f}-{high:.3f})"
    return f"{REPRODUCED}: the paper's {PAPER_SPEEDUP}x is inside the range {low:.3f}-{high:.3f}"


@dataclass(frozen=True)
class LossClaim:
    """One per-step loss claim: candidate against reference, "parity" (no worse than, within the margin) or "worse"
    (the candidate's loss above the reference's by more than `threshold`)."""

    candidate: str
    reference: str
    title: str
    paper: str
    kind: str
    threshold: float | None = 0.0  # None: the report's parity margin
    stuck_is_the_claim: bool = False


@dataclass(frozen=True)
class ClaimSet:
    """The claims a report checks, chosen by the records' baseline: the paper's against Pre-LN, or today's
    baseline's against Transformer++."""

    baseline: str
    source: str  # what the claims are taken from, for the opening paragraph
    params: tuple[str, str, tuple[str, ...]]  # (title, reference, candidates): exactly (2L-1)d^2 fewer
    loss: tuple[LossClaim, ...]
    speed: tuple[str, str]  # (candidate, title): its probe speed-up against the baseline
    speed_paper: str
    paper_speedup: float | None  # a published figure the magnitude is judged against (None: none exists)
    pairs: tuple[tuple[str, str], ...]  # (reference, candidate): the power table's pairs
    names: tuple[str, str] = ("Pre-LN", "SAS-P")  # the baseline and the speed claim's candidate, in words


_PARITY_PAPER = "\"essentially match\" Pre-LN per update (Fig. 23); GLUE 78.4 (SAS), 78.3 (SAS-P) vs 78.9"
PAPER_CLAIMS = ClaimSet(
    "pre_ln",
    "He & Hofmann, *Simplifying Transformer Blocks* (ICLR 2024), checked claim by claim against the run records "
    "in `records/` (spec section 8).",
    ("SAS / SAS-P remove (2L-1)d² parameters from the blocks", "pre_ln", ("sas", "sas_p")),
    (LossClaim("sas", "pre_ln", "SAS matches Pre-LN per step", _PARITY_PAPER, "parity", None),
     LossClaim("sas_p", "pre_ln", "SAS-P matches Pre-LN per step", _PARITY_PAPER, "parity", None),
     LossClaim("naive_skipless", "pre_ln", "naive skipless trains far worse than Pre-LN",
               "\"trains far slower\": rank collapse without shaped attention (section 4.1)", "worse", None, True),
     LossClaim("vskipinit", "sas", "V-SkipInit is slower per step than SAS",
               "markedly slower per step (Fig. 2); ~1.50 vs ~1.15 for Pre-LN (figure reading, unreliable)", "worse"),
     LossClaim("sas_p_nonorm", "sas_p", "SAS-P without norm is slightly worse per step than SAS-P",
               "slightly worse per step; ~1.245 vs Pre-LN ~1.155 at 40K steps (repo README)", "worse")),
    ("sas_p", "SAS-P trains faster than Pre-LN (throughput)"),
    f"{PAPER_SPEEDUP}x per iteration (BERT, Table 1)", PAPER_SPEEDUP,
    (("pre_ln", "sas"), ("pre_ln", "sas_p"), ("sas", "vskipinit"), ("sas_p", "sas_p_nonorm")))
MODERN_CLAIMS = ClaimSet(
    "transformer_pp",
    "Today's baseline, the Transformer++ recipe (LLaMA: RMSNorm pre-norm, RoPE, SwiGLU, no biases), against the "
    "paper's GPT-2-style Pre-LN, with QK-norm, and with the paper's SAS-P block on the Transformer++ base, checked "
    "claim by claim against the run records in `records/`. The claims are the field's expectations (the Mamba "
    "paper calls Transformer++ the strongest recipe it knows; OLMo 2 and Qwen3 train with QK-norm) and the "
    "question whether He & Hofmann's simplification (ICLR 2024) survives on the modern base.",
    ("SAS-P on the Transformer++ base removes (2L-1)d² parameters from its blocks", "transformer_pp",
     ("sas_p_pp",)),
    (LossClaim("pre_ln", "transformer_pp", "Transformer++ beats the paper's Pre-LN",
               "the strongest recipe known (Mamba paper, Gu & Dao 2023: Transformer++); LLaMA, OLMo 2 train it",
               "worse"),
     LossClaim("transformer_pp", "transformer_pp_qknorm", "QK-norm helps Transformer++",
               "QK-norm in OLMo 2, Qwen3, Gemma 3 and the modded-nanogpt speedrun (stability and loss)", "worse"),
     LossClaim("sas_p_pp", "transformer_pp", "SAS-P on the Transformer++ base matches Transformer++ per step",
               "not published: He & Hofmann's SAS-P matches a GPT-2-style Pre-LN per step", "parity", None),
     LossClaim("sas_p", "pre_ln", "SAS-P matches Pre-LN per step (the paper's claim, on its own base)",
               _PARITY_PAPER, "parity", None)),
    ("sas_p_pp", "SAS-P on the Transformer++ base trains faster than Transformer++ (throughput)"),
    f"not published for this pair; the paper: SAS-P {PAPER_SPEEDUP}x Pre-LN per iteration (BERT)", None,
    (("transformer_pp", "pre_ln"), ("transformer_pp_qknorm", "transformer_pp"), ("transformer_pp", "sas_p_pp"),
     ("pre_ln", "sas_p")), ("Transformer++", "sas_p_pp"))
CLAIM_SETS = {c.baseline: c for c in (PAPER_CLAIMS, MODERN_CLAIMS)}


def claim_set(records: list[dict[str, Any]]) -> ClaimSet:
    """The claim set for the records' baseline; ReportError when blockbench has none for it."""
    baseline = records[0]["config"].get("baseline") or "pre_ln"
    if baseline not in CLAIM_SETS:
        raise ReportError(f"no claims are defined against baseline {baseline!r}: a report checks the paper's claims "
                          "(baseline pre_ln) or today's baseline's (baseline transformer_pp)")
    return CLAIM_SETS[baseline]


def check_claims(records: list[dict[str, Any]], margin: float = DEFAULT_MARGIN) -> tuple[list[Claim], dict]:
    """Every claim of the records' claim set they can speak to, plus the numbers the figure needs."""
    by_variant: dict[str, dict[str, Any]] = {}
    for r in records:
        by_variant.setdefault(r["variant"], r)
    claims_of = claim_set(records)
    baseline = claims_of.baseline
    figure: dict[str, Any] = {"speed": {}, "baseline": baseline, "margin": margin, "claims": claims_of}
    if baseline not in by_variant:
        raise ReportError(f"the claims are relative to {baseline}: the records need variant {baseline} as baseline")
    claims = [c for c in (params_claim(by_variant, claims_of.params),) if c is not None]
    pairs = LossPairs(records)
    for c in claims_of.loss:
        claims.append(pairs.claim(c.candidate, c.reference, c.title, c.paper, c.kind,
                                  margin if c.threshold is None else c.threshold, c.stuck_is_the_claim))
    claims.append(speed_claim(records, by_variant, figure))
    return [c for c in claims if c is not None], figure


def params_claim(by_variant: dict[str, dict[str, Any]], params: tuple[str, str, tuple[str, ...]]) -> Claim | None:
    """1. Parameters: the simplified blocks remove exactly (2L-1)d^2 block-matrix parameters (W^V and W^P in every
    block, W^V reparametrised in the first)."""
    title, reference, candidates = params
    pre = by_variant[reference]
    model = pre["config"]["model"]
    layers, width = model["n_layers"], model["d_model"]
    simplified = [v for v in candidates if v in by_variant]
    if not simplified:
        return None
    expected = (2 * layers - 1) * width * width
    removed = {v: pre["static"]["params_block_matrices"] - by_variant[v]["static"]["params_block_matrices"]
               for v in simplified}
    total = {v: 1 - by_variant[v]["static"]["params_total"] / pre["static"]["params_total"] for v in simplified}
    measured = "; ".join(f"{v}: {removed[v]:,} removed ({total[v]:.1%} of all parameters)" for v in simplified)
    exact = REPRODUCED if all(n == expected for n in removed.values()) else NOT_REPRODUCED
    return Claim(
        title,
        "(2L-1)d² fewer; 146M vs 167M (-13%) at L=18, d=768, V=50K",
        f"expected {expected:,} (L={layers}, d={width}); {measured}",
        exact, "exact: the recorded block-matrix counts must differ by exactly (2L-1)d²",
        magnitude=f"{exact} (an exact count; the -13% is the paper's shape, not this one's)")


class LossPairs:
    """The loss claims' source: per-seed final losses, and the losses at the checkpoints the order check reads."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self.losses = _losses(records)
        self.checkpoints = {f: stats.seed_losses(records, f) for f in (*stats.CHECKPOINTS, 1.0)}

    def claim(self, candidate: str, reference: str, title: str, paper: str, kind: str, threshold: float,
              stuck_is_the_claim: bool = False) -> Claim | None:
        """A loss claim on (reference, candidate), or None when the records lack either variant."""
        if candidate not in self.losses or reference not in self.losses:
            return None
        d = loss_difference(self.losses, reference, candidate, self.records, stuck_is_the_claim)
        if kind == "parity":
            verdict = no_worse(d, threshold)
            rule = f"no worse: the interval's upper end below +{threshold} nats; above it entirely: not reproduced"
        else:
            verdict = worse(d, threshold)
            rule = (f"worse: the whole interval above {threshold:g} nats; the whole interval below it: not "
                    f"reproduced; either, when the pair's order is not settled at this budget: not resolvable")
        stuck = (f"{reference} ended on the unigram plateau ({candidate} stuck there is the claim itself)"
                 if stuck_is_the_claim else "either side ended on the unigram plateau")
        rule += (f"; {NOT_CONVERGED} when {stuck}; with diverged seeds, judged on the seeds that survived on both "
                 f"sides ({DIVERGED} when none did)")
        measured = f"{candidate} - {reference}: {d.text()}"
        if d.not_converged:
            measured += f"; not converged: {d.not_converged}"
        if kind != "parity" and verdict in (REPRODUCED, NOT_REPRODUCED):
            why = self.order_unresolved(reference, candidate)
            if why is not None:
                verdict = UNRESOLVED
                measured += f"; order not resolvable at this budget ({why})"
        return Claim(title, paper, measured, verdict, rule, pair=d, threshold=threshold,
                     magnitude="n/a: the paper's losses are on another corpus and scale",
                     note=d.divergence() if d.survivors else "")

    def order_unresolved(self, reference: str, candidate: str) -> str | None:
        """Why the pair's order is not settled at this budget (stats.pair_order_resolved), else None. It reads the
        same seeds as the interval: those that ended well on both sides."""
        final = self.checkpoints[1.0]
        seeds = set(final.get(reference, {})) & set(final.get(candidate, {}))

        def side(variant: str, fraction: float) -> dict[int, float]:
            return {k: v for k, v in self.checkpoints[fraction].get(variant, {}).items() if k in seeds}

        resolved, why = stats.pair_order_resolved(
            side(reference, 1.0), side(candidate, 1.0),
            {f: side(reference, f) for f in stats.CHECKPOINTS},
            {f: side(candidate, f) for f in stats.CHECKPOINTS}, f"report/{reference}/{candidate}")
        return None if resolved else why


def speed_claim(records: list[dict[str, Any]], by_variant: dict[str, dict[str, Any]],
                figure: dict[str, Any]) -> Claim | None:
    """6. SAS-P / Pre-LN by the interleaved probe, against the analytic bounds; fills the figure's speed numbers.
    An untrusted probe, or ratios from several device types or execution modes, give no number at all: not in
    the table, not on the figure, not as a share of a bound; the verdict is "no verdict" with its cause (nothing
    was measured, so "not resolvable" would be a judgement the records cannot make)."""
    untrusted = _fill_speed_figure(records, by_variant, figure)
    claims_of: ClaimSet = figure.get("claims", PAPER_CLAIMS)
    candidate, title = claims_of.speed
    if candidate not in by_variant or candidate not in figure["speed"]:
        return None
    pre = by_variant[claims_of.baseline]
    ratio, iqr = figure["speed"][candidate]
    bound, bound_text = _matmul_bound(claims_of, pre, by_variant[candidate])
    flops_ratio = pre["static"]["flops_train_per_token"] / by_variant[candidate]["static"]["flops_train_per_token"]
    figure["bound"], figure["flops_ratio"] = bound, flops_ratio
    rounds = by_variant[candidate]["speed"]["rounds"]
    section = stats.variant_speed(records, candidate)
    reading = _speed_reading(section, ratio, iqr, rounds, bound, flops_ratio)
    verdict, cause, low, high, rule, measured = reading
    if untrusted:
        verdict, cause = NO_VERDICT, speed_untrusted_cause(records) or "probe untrusted"
        measured = (f"{stats.untrusted_cell(iqr) if not speed_not_comparable(records) else 'no ratio shown'} "
                    f"({rounds} interleaved rounds); whole-model FLOP ratio {flops_ratio:.3f}; not a verdict: "
                    f"{untrusted}")
    paper = claims_of.paper_speedup
    claim = Claim(
        title, f"{claims_of.speed_paper}; {bound_text}",
        measured,
        verdict, f"{rule}; from an untrusted probe, or ratios measured on several device types or in several "
                 f"execution modes: no ratio and {NO_VERDICT}. Magnitude: "
                 + (f"the paper's {paper}x inside that range; outside it: not reproduced (smaller or larger)"
                    if paper is not None else "none: no published figure for this pair"),
        magnitude=(f"{NOT_APPLICABLE}: {cause}" if untrusted
                   else speed_magnitude(low, high) if paper is not None else f"{NOT_APPLICABLE}: no published figure"),
        cause=cause)
    figure["speed_verdicts"] = (verdict, claim.magnitude.split(":")[0])
    return claim


def _speed_reading(section: dict[str, Any] | None, ratio: float, iqr: float, rounds: int, bound: float,
                   flops_ratio: float) -> tuple[str, str, float, float, str, str]:
    """What a trusted probe says of the speed claim: (verdict, its cause or '', the range the magnitude reads,
    the rule, the measured text)."""
    words = stats.speed_verdict(section)
    share = stats.share_of_bound(ratio, bound)
    if words.low is not None and words.high is not None:  # a probe with an interval (issue 36): its words decide
        low, high = words.low, words.high
        verdict = (REPRODUCED if words.kind == "faster" else NOT_REPRODUCED if words.kind == "slower" else
                   UNRESOLVED)
        rule = ("faster: the probe's 95% interval of the median per-round ratio lies above 1 and above its A/A "
                "floor (`1.120x [1.090, 1.150]`); below both: not reproduced; otherwise `no measurable difference`,"
                " not resolvable")
        measured = (f"{words.text} (median of {rounds} interleaved rounds and its 95% interval "
                    f"{low:.3f}-{high:.3f}; {stats.floor_words(section)}); whole-model FLOP ratio {flops_ratio:.3f}"
                    + (f"; {share}" if share and words.differs else ""))
        return verdict, "", low, high, rule, measured
    # a record without the A/A control: median ± half the IQR, as before
    low, high = ratio - iqr / 2, ratio + iqr / 2
    verdict = UNRESOLVED if math.isnan(iqr) else REPRODUCED if low > 1 else NOT_REPRODUCED if high < 1 else UNRESOLVED
    rule = (f"faster ({stats.NO_CONTROL}): median ± half the interquartile range of the probe's per-round "
            "ratios entirely above 1.0; entirely below: not reproduced")
    measured = (f"{ratio:.3f}x (median of {rounds} interleaved rounds, ± half their IQR: {low:.3f}-{high:.3f}"
                f"; {stats.NO_CONTROL}); whole-model FLOP ratio {flops_ratio:.3f}" + (f"; {share}" if share else ""))
    cause = "the probe recorded no spread of its rounds, so there is no range to judge" if math.isnan(iqr) else ""
    return verdict, cause, low, high, rule, measured


def _fill_speed_figure(records: list[dict[str, Any]], by_variant: dict[str, dict[str, Any]],
                       figure: dict[str, Any]) -> str | None:
    """The figure's speed ratios and intervals per variant; returns why the probe is not trusted, if it is not."""
    untrusted = speed_untrusted(records)
    for v in by_variant:
        speed = _speed(records, v)
        if speed is not None:
            figure["speed"][v] = speed
        section = stats.variant_speed(records, v)
        if section is not None and section.get("ci_low") is not None and section.get("ci_high") is not None:
            figure.setdefault("speed_ci", {})[v] = (section["ci_low"], section["ci_high"])
    if untrusted:
        figure["speed_disturbed"] = untrusted
    return untrusted


def _matmul_bound(claims_of: ClaimSet, pre: dict[str, Any], candidate: dict[str, Any]) -> tuple[float, str]:
    """The speed-up the blocks' matmuls allow, and how it was worked out."""
    if claims_of.paper_speedup is not None:  # the paper's ReLU MLP of width r d: (4+2r)/(2+2r), as it states it
        r = float(pre["block_spec"]["mlp_ratio"]) if pre["block_spec"] else 4.0
        bound = (4 + 2 * r) / (2 + 2 * r)
        return bound, f"matmul bound (4+2r)/(2+2r) = {bound:.2f}"
    # any MLP: the ratio of the blocks' matrix parameters, which the blocks' matmul FLOPs follow
    bound = pre["static"]["params_block_matrices"] / candidate["static"]["params_block_matrices"]
    return bound, f"matmul bound (ratio of the blocks' matrix parameters) = {bound:.2f}"


def speed_untrusted(records: list[dict[str, Any]]) -> str | None:
    """Why no speed ratio of these records may be shown (a disturbed probe, mixed device types or execution
    modes), else None."""
    return speed_not_comparable(records) or stats.probe_disturbed_note(records)


def speed_untrusted_cause(records: list[dict[str, Any]]) -> str | None:
    """The cause of a speed claim's "no verdict" in a few words: `ratios from several execution modes (compiled,
    eager)` or `probe untrusted (IQR 1.80)` (stats.probe_untrusted_words); None when the ratios may be shown."""
    mix = speed_mix(records)
    return f"ratios from {mix}" if mix else stats.probe_untrusted_words(records)


# Every claim on the figure is coloured by its verdict, never by its variant (sas_p's own colour is green, which
# here means reproduced); the figure's title and legend name these colours. Points that are no claim (the other
# variants' speed-ups, for context) are hollow and black.
VERDICT_COLOURS = {REPRODUCED: "tab:green", NOT_REPRODUCED: "tab:red", UNRESOLVED: "tab:grey",
                   NOT_CONVERGED: "tab:orange", DIVERGED: "tab:purple", NO_VERDICT: "tab:brown"}
CONTEXT = {"color": "black", "marker": "o", "markerfacecolor": "none"}


def plot_claims(claims: list[Claim], figure: dict[str, Any]) -> bytes:
    """Left: each loss claim on the pair of variants its verdict reads (candidate minus reference, 95% CI), with
    the line its interval must clear and the verdict. Right: the interleaved probe's speed-up of every variant
    against the baseline, the claim's variant in its verdict's colour and the others hollow (context), with the
    paper's figure and the bounds. Title and legend name the verdicts' colours."""
    fig = Figure(figsize=(13, 5.2), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1.15, 1])
    loss = [c for c in claims if c.pair is not None][::-1]  # the first claim at the top
    _plot_loss_claims(left, loss)
    _plot_speed(right, figure)
    shown = {c.verdict for c in loss} | ({figure["speed_verdicts"][0]} if "speed_verdicts" in figure else set())
    verdicts = [w for w in VERDICTS if w in shown]
    handles, labels = right.get_legend_handles_labels()
    for w in verdicts:
        handles.append(Line2D([], [], color=VERDICT_COLOURS[w], marker="o", linestyle="none"))
        labels.append(f"verdict: {w}")
    fig.legend(handles, labels, loc="outside lower right", fontsize="small", ncols=3)
    words = ", ".join(f"{VERDICT_COLOURS[w].removeprefix('tab:')} {w}" for w in verdicts)
    whose = "the paper's claims" if figure.get("claims", PAPER_CLAIMS) is PAPER_CLAIMS else "today's baseline's claims"
    fig.suptitle(f"{whose} at this scale; each claim coloured by its verdict: {words or 'none'}", fontsize="medium")
    return png_bytes(fig)


def _plot_loss_claims(left, loss: list[Claim]) -> None:
    """The left panel: each loss claim's difference and interval, the line it must clear, its verdict."""
    for i, c in enumerate(loss):
        d, colour = c.pair, VERDICT_COLOURS.get(c.verdict, "tab:grey")
        if not d.survivors:
            left.annotate(mpl(d.divergence()), (0, i), va="center", color=colour)
        elif math.isnan(d.low):
            left.plot([d.mean], [i], "o", color=colour)
        else:
            left.errorbar([d.mean], [i], xerr=[[d.mean - d.low], [d.high - d.mean]], fmt="o", color=colour,
                          capsize=4, markersize=7)
        # The line this claim's interval must clear: its own, since parity and "worse" claims differ.
        left.plot([c.threshold] * 2, [i - 0.35, i + 0.35], color="black", linewidth=2.5, solid_capstyle="butt")
        left.annotate(mpl(c.verdict + (f" ({c.note})" if c.note else "")), (1.0, i), xycoords=("axes fraction", "data"),
                      xytext=(-4, -12),
                      textcoords="offset points", ha="right", va="center", fontsize="small", color=colour)
    left.set_yticks(range(len(loss)), [f"{mpl(c.pair.candidate)} − {mpl(c.pair.reference)}\n{c.title}" for c in loss],
                   fontsize="small")
    left.set_ylim(-0.6, len(loss) - 0.4)
    left.axvline(0, color="grey", linewidth=0.8)
    left.set_xlabel("final eval loss, candidate minus reference (nats/token), 95% CI")
    left.set_title("loss claims, each on its own pair (black bar: the line its verdict uses)", fontsize="medium")
    left.grid(True, axis="x", alpha=0.3)
    left.margins(x=0.25)


def _plot_speed(right, figure: dict[str, Any]) -> None:
    """The right panel: every variant's probe speed-up against the baseline, the paper's figure and the bounds."""
    # An untrusted probe's ratios are no points: the panel keeps its lines and says why it has none.
    speed = {} if figure.get("speed_disturbed") else figure["speed"]
    names = sorted(speed)[::-1]
    claims_of: ClaimSet = figure.get("claims", PAPER_CLAIMS)
    claimed, (reference, candidate_name) = claims_of.speed[0], claims_of.names
    verdict = figure.get("speed_verdicts", (NO_VERDICT if figure.get("speed_disturbed") else "",))[0]
    colour = VERDICT_COLOURS.get(verdict, "black")
    if figure.get("speed_disturbed"):

        right.text(0.5, 0.5, f"{NO_VERDICT}, no speed ratios shown:\n" + textwrap.fill(figure["speed_disturbed"], 48),
                   transform=right.transAxes, ha="center", va="center", fontsize="small", color=colour,
                   bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.9}, zorder=5)
        right.set_yticks([])
        right.set_xlim(0.5, 1.5)
    context = [v for v in names if v != claimed]
    for i, v in enumerate(names):
        ratio, iqr = speed[v]
        # The claim's point in its verdict's colour, larger; every other variant hollow and black: context.
        label = "other variants (context, no claim)" if v == context[0] else None
        style = ({"color": colour, "marker": "o", "markersize": 9} if v == claimed
                 else {**CONTEXT, "markersize": 6, "label": label})
        if v in figure.get("speed_ci", {}):  # the 95% interval of the median (issue 36)
            low, high = figure["speed_ci"][v]
            right.errorbar([ratio], [i], xerr=[[ratio - low], [high - ratio]], capsize=3, **style)
        elif math.isnan(iqr):
            right.plot([ratio], [i], linestyle="none", **style)
        else:
            right.errorbar([ratio], [i], xerr=[[iqr / 2], [iqr / 2]], capsize=3, **style)
    # Variant names come from the records: mathtext-escaped (untrusted.mpl), so `$...$` in one is text.
    right.set_yticks(range(len(names)), [f"{mpl(v)} (the claim)" if v == claimed else mpl(v) for v in names])
    _speed_lines(right, figure, claims_of, candidate_name)
    if "speed_verdicts" in figure and claimed in names and not figure.get("speed_disturbed"):
        _speed_note(right, figure, claims_of, names, speed[claimed][0], colour)
    right.set_xlabel(f"step speed-up vs {reference} " + ("(median, 95% interval)" if figure.get("speed_ci")
                                                          else "(median ± IQR/2)"))
    right.set_title(f"throughput vs {reference} (higher is faster)" + (
        f"\n{NO_VERDICT.upper()}: no ratio shown" if figure.get("speed_disturbed") else ""),
        fontsize="medium", **({"color": colour} if figure.get("speed_disturbed") else {}))
    right.grid(True, axis="x", alpha=0.3)


def _speed_lines(right, figure: dict[str, Any], claims_of: ClaimSet, candidate_name: str) -> None:
    """Reference lines in black and grey, told apart by their dashes (colours are the verdicts')."""
    right.axvline(1.0, color="grey", linewidth=0.8)
    if claims_of.paper_speedup is not None:
        right.axvline(claims_of.paper_speedup, color="black", linestyle="-.", linewidth=1.2,
                      label=f"paper: SAS-P {claims_of.paper_speedup}x (BERT)")
    if "bound" in figure:
        right.axvline(figure["bound"], color="dimgrey", linestyle="--", linewidth=1,
                      label=f"{candidate_name} blocks' matmul bound {figure['bound']:.2f}")
        # Thick and grey: it often lies on the paper's line (1.159 vs 1.16), and both must show.
        right.axvline(figure["flops_ratio"], color="darkgrey", linestyle=":", linewidth=2.5,
                      label=f"{candidate_name} whole-model FLOP ratio {figure['flops_ratio']:.3f}")


def _speed_note(right, figure: dict[str, Any], claims_of: ClaimSet, names: list[str], ratio: float,
                colour: str) -> None:
    """The speed claim's verdict beside its point, in the verdict's colour."""
    direction, magnitude = figure["speed_verdicts"]
    row = names.index(claims_of.speed[0])
    # Beside the point, the text ran into the tick labels. It goes inside the axes, from the left edge, half a row
    # off the claim's row (between two rows, where no point lies), with a line to the point.
    gap = row + 0.5 if row + 1 < len(names) else row - 0.5
    paper = "" if claims_of.paper_speedup is None else f"\n{claims_of.paper_speedup}x: {magnitude}"
    right.annotate(f"faster: {direction}{paper}", (ratio, row),
                   xytext=(0.02, gap), textcoords=("axes fraction", "data"), ha="left", va="center",
                   fontsize="small", color=colour, zorder=6,
                   bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1},
                   arrowprops={"arrowstyle": "-", "color": colour, "linewidth": 0.8, "shrinkB": 6})
    right.set_ylim(min(-0.6, gap - 0.5), len(names) - 0.4)


def _table(header: list[str], rows: list[list[str]], text: int = 1) -> page.Table:
    """A report table: its first `text` columns are words (left-aligned), the others numbers, as on leaderboards."""
    return page.table(header, rows, frozenset(header[:text]))


def power_section(records: list[dict[str, Any]], margin: float) -> list[page.Block]:
    """How many seeds (and how many steps) the per-step claims need for a 95% interval of +-margin, from these
    records' own per-seed paired differences at 50%, 75% and 100% of the budget (none with one seed)."""
    seeds = sorted({r["seed"] for r in records})
    rows = []
    for reference, candidate in claim_set(records).pairs:  # the pairs the per-step claims rest on
        for row in stats.power_rows(records, reference, candidate, margin):
            rows.append([f"{candidate} - {reference}", f"{row.step:g} ({row.fraction:.0%})", str(row.n),
                         f"{row.mean:+.3f}", f"{row.sd:.3f}", f"±{row.halfwidth_now:.3f}",
                         "more than 1000" if row.seeds_needed is None else str(row.seeds_needed)])
    if not rows:
        return []
    return [page.Heading(f"Power: seeds and steps for a ±{margin} nat interval"), page.Para(
             f"For each pair a per-step claim rests on, the per-seed differences of eval loss (candidate minus "
             f"reference, paired by seed) at 50%, 75% and 100% of the budget, their standard deviation, the half-width "
             f"of the 95% interval they give with {len(seeds)} seed(s), and the seeds an interval of ±{margin} nats "
             f"would need at that spread (the smallest n with t(0.975, n-1) · sd / √n ≤ {margin}). Reading a pair's "
             "rows downwards shows how the spread shrinks as training goes on: the steps side of the calculation. "
             "The spread is estimated from these few seeds, so the seeds needed are a guide, not a guarantee."),
            _table(["pair", "step (of budget)", "seeds", "mean difference", "sd", "95% half-width now",
                    f"seeds for ±{margin}"], rows)]


def escape_section(records: list[dict[str, Any]]) -> list[page.Block]:
    """When each run left the unigram plateau: the usual reason one seed trails its siblings, and, for a run that
    never left it, why its claims are "not converged". Every report has it, whatever its seeds."""
    escapes: dict[str, list[float | None]] = {}
    for r in sorted(records, key=lambda r: (r["variant"], r["seed"])):
        if r["status"] != "ok":
            continue
        escapes.setdefault(r["variant"], []).append(stats.plateau_escape(r))
    level = stats.plateau_level(records[0])
    intro = page.Para(
             f"The step at which the eval loss first fell below {level:.2f} nats (the plateau level), interpolated "
             "between evaluations; `never` for a run that stayed above it; `stuck at the end`: runs the plateau "
             "detector flags (flat over at least the last third of the run while above that level), whose claims "
             "are not converged. A run that escapes late trails its siblings by about the delay, which is what "
             "widens a pair's interval.")
    rows = []
    for v, steps in sorted(escapes.items()):
        escaped = [s for s in steps if s is not None]
        spread = (statistics.median(escaped), min(escaped), max(escaped)) if escaped else ("-",) * 3
        stuck, _ = stats.plateaued(records, v)
        rows.append([md(v), *(x if x == "-" else f"{x:.0f}" for x in spread), str(len(steps) - len(escaped)),
                     str(stuck)])
    return [page.Heading("When each run left the unigram plateau"), intro,
            _table(["variant", "median", "earliest", "latest", "never", "stuck at the end"], rows)]


def workload_sections(records: list[dict[str, Any]]) -> list[page.Block]:
    """The sections the records' workload adds after the claims table (Workload.report_sections)."""
    untrusted = speed_untrusted(records)

    def speed_cell(variant: str) -> str:  # the words of every view (stats.speed_verdict)
        section = stats.variant_speed(records, variant)
        return stats.speed_verdict(section, baseline=variant == records[0]["config"].get("baseline"),
                                   untrusted=untrusted is not None).text

    blocks: list[page.Block] = []
    for section in workload_class(workload_of(records[0])).report_sections(records, speed_cell):
        # A section's text columns are words read from the records (the variant): escaped like every such text.
        rows = [[md(c) if i < section.text_columns else c for i, c in enumerate(r)] for r in section.rows]
        blocks += [page.Heading(section.heading), page.Para(section.text),
                   _table(list(section.header), rows, section.text_columns)]
    return blocks


def report_page(claims: list[Claim], records: list[dict[str, Any]], margin: float, left_out: int,
                has_leaderboard: bool, diagnosis: dict[str, Any] | None = None, notice: str = "",
                gpu_link: str = "") -> page.Page:
    """Everything the report says, once: REPORT.md and REPORT.html are two renderings of this."""
    first = records[0]
    doc = page.Page(f"Claims report: {md(first['suite']['name'])} v{md(first['suite']['version'])}")
    if notice:
        doc.add(page.Para(f"**Superseded:** {notice}", "caveat"))
    doc.add(page.Para(headline(claims, records), "headline"))
    _add_opening(doc, records, left_out, has_leaderboard)
    _add_claims(doc, claims, gpu_link if claim_set(records) is PAPER_CLAIMS else "")
    doc.add(*workload_sections(records))
    _add_figures(doc, records, has_leaderboard, diagnosis)
    doc.add(*power_section(records, margin))
    doc.add(*escape_section(records))
    _add_rules(doc, claims, records, margin)
    return doc


def headline(claims: list[Claim], records: list[dict[str, Any]]) -> str:
    """The report in one sentence, the page's first block: how many claims got each verdict, and the speed
    claim's verdict with its cause (`Of the paper's 6 claims at this scale: 5 reproduced, 0 not reproduced, 0 not
    resolvable at this scale, 1 no verdict; speed: no verdict, probe untrusted (IQR 0.53).`)."""
    whose = "the paper's" if claim_set(records) is PAPER_CLAIMS else "today's baseline's"
    counts = {k: sum(c.verdict == k for c in claims) for k in VERDICTS}
    shown = [k for k in VERDICTS if k in (REPRODUCED, NOT_REPRODUCED, UNRESOLVED) or counts[k]]
    text = f"Of {whose} {len(claims)} claims at this scale: " + ", ".join(f"{counts[k]} {k}" for k in shown)
    speed = [c for c in claims if c.title == claim_set(records).speed[1]]
    if speed:
        text += f"; speed: {speed[0].verdict}" + (f", {speed[0].cause}" if speed[0].cause else "")
    return text + "."


def _add_opening(doc: page.Page, records: list[dict[str, Any]], left_out: int, has_leaderboard: bool) -> None:
    """The way in (the verdict rules, the leaderboard's guide) and what was run: scale, runs, learning rates,
    target."""
    first = records[0]
    cfg = first["config"]
    model, budget = cfg["model"], cfg["budget"]
    seeds = sorted({r["seed"] for r in records})
    # What the records say is escaped (untrusted.md) before it joins the report's own Markdown.
    variants = [md(v) for v in sorted({r["variant"] for r in records})]
    commits = [md(c) for c in sorted({(r["git"]["commit"] or "unknown")[:12] + ("-dirty" if r["git"]["dirty"] else "")
                                      for r in records})]
    devices = [md(d) for d in sorted({r["env"]["device_name"] for r in records})]
    tokens = first["summary"]["tokens"]
    # The way in, at the top as on the leaderboard pages: the verdict rules, and the leaderboard's guide.
    guide = ("[How to read this](#how-the-verdicts-are-reached): how each verdict is reached, at the bottom of this "
             "report")
    if has_leaderboard:
        guide += ("; every measure of the leaderboard ([index.html](index.html), [leaderboard.md](leaderboard.md)) "
                  "is explained in [its guide](index.html#how-to-read-this)")
    doc.add(page.Para(guide + ". This report as a web page: [REPORT.html](REPORT.html); as Markdown: "
                      "[REPORT.md](REPORT.md)."))
    doc.add(page.Para(
        claim_set(records).source + " Written by `blockbench report`; regenerate it with "
        + md_code(f"blockbench report results/{first['suite']['name']}/{first['suite']['version']}") + "."))
    doc.add(page.Bullets((
        f"**Scale:** L={md(model['n_layers'])}, d={md(model['d_model'])}, H={md(model['n_heads'])}, "
        f"T={md(model['seq_len'])}, {md(first['data']['tokenizer'])} tokens (V={md(first['data']['vocab_size'])}) "
        f"of corpus {md_code(first['data']['corpus'])}; budget {md(budget)}, {tokens:,} training tokens per run. "
        "The paper trains "
        "100-300M-parameter models on 0.7-2B tokens.",
        f"**Runs:** {len(records)} records, variants {', '.join(variants)}; seeds {seeds}; suite hash "
        f"{md_code(first['suite']['hash'][:12])}; commit {', '.join(commits)}; device {', '.join(devices)}; "
        + "; ".join(f"{k} {md(v)}" for k, v in setup_facts(records) if k in ("execution mode", "dtype")) + "."
        + (f" {left_out} record(s) in the directory were left out (see the leaderboard)." if left_out else ""),
        "**Learning rates** (per variant, as the paper tunes them): "
        + ", ".join(f"{md(v)} {lr:g}" for v, lr in sorted({r['variant']: r['config']['optim']['lr']
                                                      for r in records}.items())) + ".",
        f"**Target:** {md(target_text(records))}")))


def _add_claims(doc: page.Page, claims: list[Claim], gpu_link: str = "") -> None:
    """The summary line and the claims table; the speed row points to the GPU check where one is published."""
    counts = {k: sum(c.verdict == k for c in claims) for k in VERDICTS}
    numeric = [c for c in claims if not c.magnitude.startswith(NOT_APPLICABLE)]
    met = sum(c.magnitude.startswith(REPRODUCED) for c in numeric)
    also = "".join(f", {counts[k]} {k}" for k in (NOT_CONVERGED, DIVERGED, NO_VERDICT) if counts[k])
    doc.add(page.Para(
        f"**Summary:** {counts[REPRODUCED]} reproduced, {counts[NOT_REPRODUCED]} not reproduced, "
        f"{counts[UNRESOLVED]} not resolvable at this scale{also} (the direction of each claim). Magnitude, "
        f"where the paper's figure can be compared at this scale: {met} of {len(numeric)} reproduced (see the "
        "magnitude column)."))
    doc.add(page.Heading("Claims"), page.Para(
        "The **verdict** judges the claim's direction (better, worse, no worse, faster); the **magnitude** "
        "judges the paper's number itself where it can be compared at this scale. A faster SAS-P, for "
        "instance, can reproduce the direction and still fall short of the paper's speed-up."))
    doc.add(_table(["claim", "paper", "blockbench", "verdict (direction)", "magnitude"],
                   [[c.title, c.paper, c.measured + (f"; {gpu_link}" if gpu_link and c.title == PAPER_CLAIMS.speed[1]
                                                     else ""), f"**{c.verdict}**" + (f": {c.cause}" if c.cause else "")
                     + (f" ({c.note})" if c.note else ""), c.magnitude] for c in claims], text=5))


def _add_figures(doc: page.Page, records: list[dict[str, Any]], has_leaderboard: bool,
                 diagnosis: dict[str, Any] | None) -> None:
    """The claims figure, the leaderboard's loss plots, and the diagnosis at initialisation."""
    variants = sorted({r["variant"] for r in records})
    claims_of = claim_set(records)
    doc.add(page.Figure(
        "report_claims.png", "left, each loss claim on the pair of variants its verdict reads (candidate "
        "minus reference, 95% interval), the black bar marking the line the interval must clear, points "
        f"coloured by verdict; right, every variant's speed-up against {claims_of.names[0]} by the interleaved "
        "probe, with " + (f"the paper's {claims_of.paper_speedup}x for SAS-P and " if claims_of.paper_speedup else "")
        + "the analytic bounds.", alt="claims"))
    if has_leaderboard and seconds_meaningful(records):
        doc.add(page.Para("Eval loss against steps and training seconds (means over seeds; from the leaderboard):"),
                page.Figure("loss_vs_steps.png", "", alt="loss vs steps"),
                page.Figure("loss_vs_seconds.png", "", alt="loss vs seconds"),
                page.Para(seconds_caveat(records), "caveat"))
    elif has_leaderboard:
        doc.add(page.Para("Eval loss against steps (means over seeds; from the leaderboard). No seconds plot: these "
                          "runs trained one after another on a shared CPU, whose drift between runs is as large as "
                          "the differences; the interleaved probe's ratio is the speed shown."),
                page.Figure("loss_vs_steps.png", "", alt="loss vs steps"))
    if has_leaderboard:
        doc.add(page.Para("The full ranking with every measure is in [leaderboard.md](leaderboard.md) "
                          "([index.html](index.html) in a browser)."))
    if diagnosis is not None:
        # Only the variants these records cover: a diagnosis of every preset says nothing of blocks not run here.
        last = {v: d["cosine"][-1] for v, d in diagnosis["variants"].items() if v in variants}
        doc.add(page.Heading("Why: signal propagation at initialisation"), page.Para(
            f"`blockbench diagnose` on real batches, L={md(diagnosis['model']['n_layers'])}, "
            f"d={md(diagnosis['model']['d_model'])} (`diagnose.json`): the mean cosine similarity between "
            "different tokens' representations after the last block is "
            + ", ".join(f"{md(v)} {c:.3f}" for v, c in sorted(last.items()))
            + ". Near 1 is rank collapse (every token looks alike), the paper's explanation of why naive "
              "skip removal fails and shaped attention does not."),
            page.Figure("diagnose.png", "", alt="signal propagation"))


def _add_rules(doc: page.Page, claims: list[Claim], records: list[dict[str, Any]], margin: float) -> None:
    """How each verdict is reached, and the per-seed losses they read."""
    seeds = sorted({r["seed"] for r in records})
    doc.add(page.Heading("How the verdicts are reached"), page.Bullets((
        *(f"**{c.title}:** {c.rule}." for c in claims),
        "**Magnitude:** loss claims have no magnitude verdict: the paper's losses are on another corpus, "
        "tokenizer and scale, so only their direction transfers.",
        f"**{NO_VERDICT}:** nothing was measured that a verdict could read, and the cause is said beside it: "
        "the speed probe was untrusted (its steps took far longer than the same steps in training, or its "
        "rounds disagreed: `probe untrusted (IQR x)`) or its ratios came from several device types, execution "
        "modes or dtypes. Not resolvable is a measurement that could not decide; no verdict is no measurement to "
        "decide with.",
        f"**{NOT_CONVERGED}:** either side of the pair ended on the unigram plateau (the table above): its "
        "difference says where each run was stuck, not what the blocks learn, so it is no evidence either way; "
        "a longer budget or warm-up is what decides it.",
        f"**Divergence:** a variant that diverged on some seeds is judged on the seeds that ended well on "
        f"both sides, with the divergence said beside the verdict; a divergence never makes a claim "
        f"reproduced (it is instability, not the claimed difference); with no seed left: {DIVERGED}.")))
    doc.add(page.Para(
        f"Loss claims use final eval loss in nats/token after the same steps and tokens. The parity margin "
        f"is {margin} nats; intervals are 95% Student-t intervals over seeds, paired by seed when both sides "
        f"ran the same seeds (same data order and initialisation seed). With {len(seeds)} seed(s) an interval is "
        "wide: a claim the interval cannot decide is reported as not resolvable rather than guessed. Throughput "
        "comes from the interleaved speed probe (every variant in one process, round-robin), whose per-round "
        f"ratio to {claim_set(records).names[0]} is robust to the drift of a shared machine; separate runs' "
        "tokens/s are not "
        "compared."))
    losses = _losses(records)
    rows = [[md(v)] + [("diverged" if losses[v].get(s, math.nan) is None else
                    "-" if s not in losses[v] else f"{losses[v][s]:.4f}") for s in seeds] for v in sorted(losses)]
    doc.add(page.Heading("Per-seed final eval loss"), _table(["variant"] + [f"seed {s}" for s in seeds], rows))


def render(claims: list[Claim], records: list[dict[str, Any]], margin: float, left_out: int,
           has_leaderboard: bool, diagnosis: dict[str, Any] | None = None) -> str:
    """REPORT.md's text."""
    return page.to_markdown(report_page(claims, records, margin, left_out, has_leaderboard, diagnosis))


def generate_report(target: str, out: str | None = None, margin: float = DEFAULT_MARGIN) -> Path:
    if not margin > 0:
        raise ReportError(f"--margin must be positive, got {margin}")
    results, current_hash = resolve_target(target)
    kept, left = ranked_records(results, current_hash)
    records = [r for _, r in kept]
    claims, figure = check_claims(records, margin)
    out_dir = Path(out) if out is not None else results
    diagnosis = None
    if os.path.lexists(results / "diagnose.json") and (results / "diagnose.png").exists():

        try:  # the guarded loader: a FIFO, a 1 GiB or a deeply nested file is refused in one line
            diagnosis = load_diagnosis(results / "diagnose.json")
        except BlockbenchError as exc:
            raise ReportError(f"{exc}; rerun blockbench diagnose") from None
    text = report_page(claims, records, margin, len(left), (results / "loss_vs_steps.png").exists(), diagnosis,
                       superseded_notice(results), gpu_check_link(results, out_dir))
    write_outputs(out_dir, {"REPORT.md": page.to_markdown(text).encode(), "REPORT.html": page.to_html(text).encode(),
                            "report_claims.png": plot_claims(claims, figure)})
    if (out_dir / "index.html").is_file():
        # The leaderboard pages link the files beside them: redraw them so that they link the report just written.
        generate(results, out_dir, warn=lambda message: None)
    return out_dir / "REPORT.md"


def gpu_check_link(results: Path, out_dir: Path) -> str:
    """A link from the report to the newest GPU check published beside it (results/gpu-check/<date>/), with its
    SAS-P speed against Pre-LN per execution mode; empty when there is none."""
    checks = [d for d in published_checks(results.parent.parent) if (d / "index.html").is_file()]
    if not checks:
        return ""
    check = checks[0]
    try:
        ratios = {m: r["sas_p"] for m, r in gpu_summary(check).get("speed", {}).items() if "sas_p" in r}
    except BlockbenchError:
        return ""
    # A directory name is a stranger's text: percent-encoded, so `a)b` or `javascript:x` stays a relative path.
    href = quote(Path(os.path.relpath(check / "index.html", out_dir)).as_posix())
    said = ", ".join(f"{ratio:.2f}x {md(mode)}" for mode, ratio in sorted(ratios.items()))
    return f"at the paper's shape on a GPU: SAS-P {said} ([GPU check {md(check.name)}]({href}))"
