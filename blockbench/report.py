"""`blockbench report DIR`: the seed paper's claims (spec section 8) checked against a results directory.

For each claim, REPORT.md puts the paper's figure beside blockbench's measured figure with its uncertainty and a
verdict (reproduced / not reproduced / not resolvable at this scale) reached by a rule stated in the report:

- loss claims compare final eval losses per seed. With the same seeds on both sides (same data order and init
  seed), the interval is the paired Student-t 95% interval of the per-seed differences; otherwise Welch's;
- "no worse than" claims (parity) are non-inferiority tests against a margin in nats; "worse" claims need the
  whole interval above their threshold; an interval that straddles the line is "not resolvable"; so is a "worse"
  claim whose pair's order is not settled at this budget (stats.py's pair rule), whichever way the interval
  points (a parity claim is not judged by order: equal variants have no settled order);
- the throughput claim reads the interleaved speed probe's per-round ratios (median and interquartile range);
- the parameter claim is exact arithmetic on the recorded counts.

Like a leaderboard, the report is a pure view of the records: the same records give the same bytes.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blockbench import stats
from blockbench.errors import BlockbenchError
from blockbench.leaderboard import (
    _png,
    check_one_version,
    current_suite_hash,
    load_entries,
    records_dir,
    resolve_target,
    select_group,
    write_outputs,
)

DEFAULT_MARGIN = 0.05  # nats/token: the parity margin; the spec expects effects of a few 0.01 nats to be unresolvable
REPRODUCED, NOT_REPRODUCED, UNRESOLVED = "reproduced", "not reproduced", "not resolvable at this scale"


class ReportError(BlockbenchError):
    pass


@dataclass
class Claim:
    title: str
    paper: str
    measured: str
    verdict: str
    rule: str


@dataclass
class Difference:
    """Final eval loss of `candidate` minus `reference`, over seeds: mean and 95% interval."""

    reference: str
    candidate: str
    mean: float
    low: float
    high: float
    method: str
    diverged: int  # candidate seeds that diverged
    reference_diverged: int

    def text(self) -> str:
        if self.reference_diverged:
            return f"{self.reference} diverged in {self.reference_diverged} seed(s)"
        if self.diverged:
            return f"{self.candidate} diverged in {self.diverged} seed(s)"
        if math.isnan(self.low):
            return f"{self.mean:+.3f} nats (one seed: no interval)"
        return f"{self.mean:+.3f} nats, 95% CI [{self.low:+.3f}, {self.high:+.3f}] ({self.method})"


def loss_difference(losses: dict[str, dict[int, float | None]], reference: str, candidate: str) -> Difference:
    ref, cand = losses[reference], losses[candidate]
    ref_div = sum(v is None for v in ref.values())
    cand_div = sum(v is None for v in cand.values())
    if ref_div or cand_div:
        return Difference(reference, candidate, math.nan, math.nan, math.nan, "", cand_div, ref_div)
    mean, low, high, method = stats.difference_interval(ref, cand)  # type: ignore[arg-type] - None excluded above
    return Difference(reference, candidate, mean, low, high, method, 0, 0)


def no_worse(d: Difference, margin: float) -> str:
    """Non-inferiority: the candidate is not worse than the reference by more than `margin`."""
    if d.reference_diverged:
        return UNRESOLVED
    if d.diverged:
        return NOT_REPRODUCED
    if math.isnan(d.low):
        return UNRESOLVED
    return REPRODUCED if d.high < margin else NOT_REPRODUCED if d.low > margin else UNRESOLVED


def worse(d: Difference, threshold: float) -> str:
    """The candidate is worse than the reference by more than `threshold` (a diverged candidate is worse)."""
    if d.reference_diverged:
        return UNRESOLVED
    if d.diverged:
        return REPRODUCED
    if math.isnan(d.low):
        return UNRESOLVED
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


def check_claims(records: list[dict[str, Any]], margin: float = DEFAULT_MARGIN) -> tuple[list[Claim], dict]:
    """Every claim the records can speak to, plus the numbers the figure needs."""
    by_variant = {}
    for r in records:
        by_variant.setdefault(r["variant"], r)
    losses = _losses(records)
    checkpoints = {f: stats.seed_losses(records, f) for f in (*stats.CHECKPOINTS, 1.0)}
    baseline = records[0]["config"].get("baseline") or "pre_ln"
    claims: list[Claim] = []
    figure: dict[str, Any] = {"differences": [], "speed": {}, "baseline": baseline, "margin": margin}
    if baseline != "pre_ln" or "pre_ln" not in by_variant:
        raise ReportError("the paper's claims are relative to Pre-LN: the records need variant pre_ln as baseline")
    pre = by_variant["pre_ln"]
    model = pre["config"]["model"]
    layers, width = model["n_layers"], model["d_model"]

    for v in sorted(by_variant):
        if v != "pre_ln":
            figure["differences"].append(loss_difference(losses, "pre_ln", v))

    # 1. Parameters: SAS and SAS-P remove exactly (2L-1)d^2 block-matrix parameters.
    simplified = [v for v in ("sas", "sas_p") if v in by_variant]
    if simplified:
        expected = (2 * layers - 1) * width * width
        removed = {v: pre["static"]["params_block_matrices"] - by_variant[v]["static"]["params_block_matrices"]
                   for v in simplified}
        total = {v: 1 - by_variant[v]["static"]["params_total"] / pre["static"]["params_total"] for v in simplified}
        measured = "; ".join(f"{v}: {removed[v]:,} removed ({total[v]:.1%} of all parameters)" for v in simplified)
        claims.append(Claim(
            "SAS / SAS-P remove (2L-1)d² parameters from the blocks",
            "(2L-1)d² fewer; 146M vs 167M (-13%) at L=18, d=768, V=50K",
            f"expected {expected:,} (L={layers}, d={width}); {measured}",
            REPRODUCED if all(n == expected for n in removed.values()) else NOT_REPRODUCED,
            "exact: the recorded block-matrix counts must differ by exactly (2L-1)d²"))

    def loss_claim(candidate: str, reference: str, title: str, paper: str, kind: str, threshold: float) -> None:
        if candidate not in losses or reference not in losses:
            return
        d = loss_difference(losses, reference, candidate)
        if kind == "parity":
            verdict = no_worse(d, threshold)
            rule = f"no worse: the interval's upper end below +{threshold} nats; above it entirely: not reproduced"
        else:
            verdict = worse(d, threshold)
            rule = (f"worse: the whole interval above {threshold:g} nats (or {candidate} diverged); "
                    f"the whole interval below it: not reproduced; either, when the pair's order is not settled "
                    f"at this budget: not resolvable")
        measured = f"{candidate} - {reference}: {d.text()}"
        if kind != "parity" and verdict != UNRESOLVED and not (d.diverged or d.reference_diverged):
            resolved, why = stats.pair_order_resolved(
                checkpoints[1.0][reference], checkpoints[1.0][candidate],
                {f: checkpoints[f].get(reference, {}) for f in stats.CHECKPOINTS},
                {f: checkpoints[f].get(candidate, {}) for f in stats.CHECKPOINTS}, f"report/{reference}/{candidate}")
            if not resolved:
                verdict = UNRESOLVED
                measured += f"; order not resolvable at this budget ({why})"
        claims.append(Claim(title, paper, measured, verdict, rule))

    # 2. Per-step parity with Pre-LN (final loss after the same number of steps and tokens).
    for v, name in (("sas", "SAS"), ("sas_p", "SAS-P")):
        loss_claim(v, "pre_ln", f"{name} matches Pre-LN per step", "\"essentially match\" Pre-LN per update "
                   "(Fig. 23); GLUE 78.4 (SAS), 78.3 (SAS-P) vs 78.9", "parity", margin)
    # 3. Naive skip removal fails.
    loss_claim("naive_skipless", "pre_ln", "naive skipless trains far worse than Pre-LN",
               "\"trains far slower\": rank collapse without shaped attention (section 4.1)", "worse", margin)
    # 4. V-SkipInit (trainable orthogonal V/P) is slower per step than SAS (identity V/P).
    loss_claim("vskipinit", "sas", "V-SkipInit is slower per step than SAS",
               "markedly slower per step (Fig. 2); ~1.50 vs ~1.15 for Pre-LN (figure reading, unreliable)",
               "worse", 0.0)
    # 5. SAS-P without normalisation is slightly worse per step.
    loss_claim("sas_p_nonorm", "sas_p", "SAS-P without norm is slightly worse per step than SAS-P",
               "slightly worse per step; ~1.245 vs Pre-LN ~1.155 at 40K steps (repo README)", "worse", 0.0)

    # 6. Throughput: SAS-P / Pre-LN, interleaved, against the analytic bounds.
    for v in by_variant:
        speed = _speed(records, v)
        if speed is not None:
            figure["speed"][v] = speed
    if "sas_p" in by_variant and "sas_p" in figure["speed"]:
        ratio, iqr = figure["speed"]["sas_p"]
        r = float(pre["block_spec"]["mlp_ratio"]) if pre["block_spec"] else 4.0
        bound = (4 + 2 * r) / (2 + 2 * r)
        flops_ratio = pre["static"]["flops_train_per_token"] / by_variant["sas_p"]["static"]["flops_train_per_token"]
        figure["bound"], figure["flops_ratio"] = bound, flops_ratio
        low, high = ratio - iqr / 2, ratio + iqr / 2
        rounds = by_variant["sas_p"]["speed"]["rounds"]
        verdict = (UNRESOLVED if math.isnan(iqr) else REPRODUCED if low > 1 else
                   NOT_REPRODUCED if high < 1 else UNRESOLVED)
        claims.append(Claim(
            "SAS-P trains faster than Pre-LN (throughput)",
            f"1.16x per iteration (BERT, Table 1); matmul bound (4+2r)/(2+2r) = {bound:.2f}",
            f"{ratio:.3f}x (median of {rounds} interleaved rounds, ± half their IQR: {low:.3f}-{high:.3f}); "
            f"whole-model FLOP ratio {flops_ratio:.3f}; {(ratio - 1) / (bound - 1):.0%} of the blocks' bound",
            verdict, "faster: median ± half the interquartile range of the probe's per-round ratios entirely "
                     "above 1.0; entirely below: not reproduced"))
    return claims, figure


def plot_claims(figure: dict[str, Any]) -> bytes:
    """Left: final-loss difference from Pre-LN per variant (95% CI); right: interleaved speed-up vs Pre-LN."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5), layout="constrained")
    left, right = fig.subplots(1, 2)
    diffs = [d for d in figure["differences"]]
    names = [d.candidate for d in diffs][::-1]
    for i, d in enumerate(diffs[::-1]):
        if d.diverged:
            left.annotate("diverged", (0, i), va="center", color="tab:red")
            continue
        if math.isnan(d.low):
            left.plot([d.mean], [i], "o", color="tab:blue")
        else:
            left.errorbar([d.mean], [i], xerr=[[d.mean - d.low], [d.high - d.mean]], fmt="o", color="tab:blue",
                          capsize=3)
    left.set_yticks(range(len(names)), names)
    left.axvline(0, color="black", linewidth=1)
    margin = figure["margin"]
    left.axvspan(-margin, margin, color="tab:green", alpha=0.12, label=f"parity margin ±{margin}")
    left.set_xlabel("final eval loss minus Pre-LN (nats/token), 95% CI")
    left.set_title("loss per step vs Pre-LN (lower is better)")
    left.grid(True, alpha=0.3)
    left.legend(fontsize="small", loc="lower right")

    speed = figure["speed"]
    names = sorted(speed)[::-1]
    for i, v in enumerate(names):
        ratio, iqr = speed[v]
        if math.isnan(iqr):
            right.plot([ratio], [i], "o", color="tab:orange")
        else:
            right.errorbar([ratio], [i], xerr=[[iqr / 2], [iqr / 2]], fmt="o", color="tab:orange", capsize=3)
    right.set_yticks(range(len(names)), names)
    right.axvline(1.0, color="black", linewidth=1)
    if "bound" in figure:
        right.axvline(figure["bound"], color="tab:green", linestyle="--", linewidth=1,
                      label=f"SAS-P blocks' matmul bound {figure['bound']:.2f}")
        right.axvline(figure["flops_ratio"], color="tab:purple", linestyle=":", linewidth=1,
                      label=f"SAS-P whole-model FLOP ratio {figure['flops_ratio']:.3f}")
        right.legend(fontsize="small", loc="lower right")
    right.set_xlabel("step speed-up vs Pre-LN (interleaved probe; median ± IQR/2)")
    right.set_title("throughput vs Pre-LN (higher is faster)")
    right.grid(True, alpha=0.3)
    return _png(fig)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]


def render(claims: list[Claim], records: list[dict[str, Any]], margin: float, left_out: int,
           has_leaderboard: bool, diagnosis: dict[str, Any] | None = None) -> str:
    first = records[0]
    cfg = first["config"]
    model, budget = cfg["model"], cfg["budget"]
    seeds = sorted({r["seed"] for r in records})
    variants = sorted({r["variant"] for r in records})
    commits = sorted({(r["git"]["commit"] or "unknown")[:12] + ("-dirty" if r["git"]["dirty"] else "")
                      for r in records})
    tokens = first["summary"]["tokens"]
    lines = [f"# Claims report: {first['suite']['name']} v{first['suite']['version']}", "",
             "He & Hofmann, *Simplifying Transformer Blocks* (ICLR 2024), checked claim by claim against the run "
             "records in `records/` (spec section 8). Written by `blockbench report`; regenerate it with "
             f"`blockbench report results/{first['suite']['name']}/{first['suite']['version']}`.", "",
             f"- **Scale:** L={model['n_layers']}, d={model['d_model']}, H={model['n_heads']}, T={model['seq_len']}, "
             f"{first['data']['tokenizer']} tokens (V={first['data']['vocab_size']}) of corpus "
             f"`{first['data']['corpus']}`; budget {budget}, {tokens:,} training tokens per run. The paper trains "
             "100-300M-parameter models on 0.7-2B tokens.",
             f"- **Runs:** {len(records)} records, variants {', '.join(variants)}; seeds {seeds}; suite hash "
             f"`{first['suite']['hash'][:12]}`; commit {', '.join(commits)}; device "
             f"{', '.join(sorted({r['env']['device_name'] for r in records}))}."
             + (f" {left_out} record(s) in the directory were left out (see the leaderboard)." if left_out else ""),
             "- **Learning rates** (per variant, as the paper tunes them): "
             + ", ".join(f"{v} {lr:g}" for v, lr in sorted({r['variant']: r['config']['optim']['lr']
                                                           for r in records}.items())) + ".", ""]
    counts = {k: sum(c.verdict == k for c in claims) for k in (REPRODUCED, NOT_REPRODUCED, UNRESOLVED)}
    lines += [f"**Summary:** {counts[REPRODUCED]} reproduced, {counts[NOT_REPRODUCED]} not reproduced, "
              f"{counts[UNRESOLVED]} not resolvable at this scale.", "",
              "## Claims", ""]
    lines += _table(["claim", "paper", "blockbench", "verdict"],
                    [[c.title, c.paper, c.measured, f"**{c.verdict}**"] for c in claims])
    lines += ["", "![claims](report_claims.png)", ""]
    if has_leaderboard:
        lines += ["Eval loss against steps and training seconds (means over seeds; from the leaderboard):", "",
                  "![loss vs steps](loss_vs_steps.png)", "", "![loss vs seconds](loss_vs_seconds.png)", "",
                  "The full ranking with every measure is in [leaderboard.md](leaderboard.md).", ""]
    if diagnosis is not None:
        last = {v: d["cosine"][-1] for v, d in diagnosis["variants"].items()}
        lines += ["## Why: signal propagation at initialisation", "",
                  f"`blockbench diagnose` on real batches, L={diagnosis['model']['n_layers']}, "
                  f"d={diagnosis['model']['d_model']} (`diagnose.json`): the mean cosine similarity between "
                  "different tokens' representations after the last block is "
                  + ", ".join(f"{v} {c:.3f}" for v, c in sorted(last.items()))
                  + ". Near 1 is rank collapse (every token looks alike), the paper's explanation of why naive "
                    "skip removal fails and shaped attention does not.", "", "![signal propagation](diagnose.png)",
                  ""]
    lines += ["## How the verdicts are reached", ""]
    lines += [f"- **{c.title}:** {c.rule}." for c in claims]
    lines += ["", f"Loss claims use final eval loss in nats/token after the same steps and tokens. The parity margin "
              f"is {margin} nats; intervals are 95% Student-t intervals over seeds, paired by seed when both sides "
              f"ran the same seeds (same data order and initialisation seed). With {len(seeds)} seed(s) an interval is "
              "wide: a claim the interval cannot decide is reported as not resolvable rather than guessed. Throughput "
              "comes from the interleaved speed probe (every variant in one process, round-robin), whose per-round "
              "ratio to Pre-LN is robust to the drift of a shared machine; separate runs' tokens/s are not "
              "compared.", "", "## Per-seed final eval loss", ""]
    losses = _losses(records)
    rows = [[v] + [("diverged" if losses[v].get(s, math.nan) is None else
                    "-" if s not in losses[v] else f"{losses[v][s]:.4f}") for s in seeds] for v in sorted(losses)]
    lines += _table(["variant"] + [f"seed {s}" for s in seeds], rows)
    return "\n".join(lines) + "\n"


def generate_report(target: str, out: str | None = None, margin: float = DEFAULT_MARGIN) -> Path:
    if not margin > 0:
        raise ReportError(f"--margin must be positive, got {margin}")
    results, current_hash = resolve_target(target)
    entries = load_entries(results)
    check_one_version(entries, str(records_dir(results)))
    if current_hash is None:
        first = entries[0][1]["suite"]
        current_hash = current_suite_hash(first["name"], first["version"])
    kept, left = select_group(entries, current_hash)
    records = [r for _, r in kept]
    claims, figure = check_claims(records, margin)
    out_dir = Path(out) if out is not None else results
    diagnosis = None
    if (results / "diagnose.json").exists() and (results / "diagnose.png").exists():
        import json

        try:
            diagnosis = json.loads((results / "diagnose.json").read_text())
            diagnosis["variants"], diagnosis["model"]["n_layers"]  # noqa: B018 - the keys the report reads
        except (ValueError, KeyError, TypeError) as exc:
            raise ReportError(f"{results / 'diagnose.json'}: malformed ({exc}); rerun blockbench diagnose") from None
    text = render(claims, records, margin, len(left), (results / "loss_vs_steps.png").exists(), diagnosis)
    write_outputs(out_dir, {"REPORT.md": text.encode(), "report_claims.png": plot_claims(figure)})
    return out_dir / "REPORT.md"


def cmd_report(args: argparse.Namespace) -> int:
    path = generate_report(args.target, args.out, args.margin)
    print(f"report written to {path}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("report", help="check the paper's claims against a results directory; write REPORT.md",
                       description="Write REPORT.md and report_claims.png next to a leaderboard: each claim of the "
                                   "seed paper (spec section 8) with the paper's figure, blockbench's figure with "
                                   "its uncertainty, and a verdict.")
    p.add_argument("target", metavar="SUITE_OR_DIR", help="results directory (or built-in suite name)")
    p.add_argument("--out", metavar="DIR", help="write here instead of into the results directory")
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                   help=f"parity margin in nats/token (default {DEFAULT_MARGIN})")
    p.set_defaults(func=cmd_report)
