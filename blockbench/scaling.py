"""The statistics of a scaling ladder: does a block's win survive scale?

Each variant is trained at several sizes ("rungs", 0 = smallest, compute grows with the index) and several seeds;
each finished run is a Point (variant, rung, seed, training FLOPs C, tokens, final eval loss L). The baseline's
points give a law L(C) = E + A * (C / C0)**-alpha; every other variant is read against it as a compute multiplier
m: the baseline compute needed to reach the variant's loss over the compute the variant used (> 1: the variant is
better, it "reaches the baseline's loss with 1/m its compute").

Why the pieces are the way they are:
- The fit is variable projection: for a fixed alpha, E and the amplitudes are linear least squares in closed form
  (with E clamped to [0, min loss) exactly, since the profile over E is a convex quadratic), so only alpha is
  searched, on a log grid then with scipy's bounded Brent (minimize_scalar) between the grid neighbours of the
  best point. It cannot diverge, respects the bounds by construction, and is cheap enough to refit inside a
  bootstrap of hundreds of resamples, vectorised over the resamples on the grid.
- C is scaled by C0, the geometric mean of the baseline's C, so A is O(1) whatever the FLOP counts are.
- The pooled multiplier pins E and alpha to the baseline's and refits only the variant's amplitude A_v: with a
  shared law, a variant that is the baseline at m times the compute has A_v = A_b * m**-alpha, so
  m = (A_b / A_v) ** (1 / alpha), one number from every rung. The top-rung multiplier uses only the largest rung
  (where a win that fades with scale shows first) and inverts the baseline's law at the variant's mean loss there.
- Two intervals, and the verdict uses their union: a bootstrap over seeds (paired within a rung when baseline and
  variant ran the same seeds, since a seed fixes the data order for both) that refits everything, and a Student-t
  interval from a joint fit of baseline and variant whose covariance comes from the residual variance, so lack of
  fit widens it. With three seeds a rung the bootstrap alone is too narrow (a resampled mean has (n-1)/n of the
  variance), and the t interval alone ignores the seed structure; the union covers at the nominal level
  (tests/test_scaling.py measures it).
- The pooled multiplier assumes the variant shares the baseline's exponent. When the largest rung, read alone, lies
  on the other side of 1, that assumption is what carries the verdict: such a ladder is "not resolvable".
- Checks name their test: a lack-of-fit F test against the seeds as replicates, the fit at a bound, losses that do
  not fall with compute, too few rungs. A failed check turns the verdict into "fit failed (<which>)"; the numbers
  are still reported.

Everything is deterministic (the bootstrap draws from numpy's generator seeded by `seed`) and pure numpy/scipy;
`analyse` returns JSON-serialisable data (NaN and infinities become None).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as scipy_stats
from scipy.optimize import minimize_scalar

from blockbench.stats import kendall_tau

LEVEL = 0.90
N_BOOT = 400
MIN_RUNGS = 3  # a three-parameter law through fewer rungs is an interpolation, not a fit
ALPHA_BOUNDS = (1e-3, 5.0)
LOF_P_MIN = 0.01  # lack-of-fit F test: p below this fails the fit
BAND_POINTS = 40

# The alpha search: a log grid (vectorised over bootstrap resamples), then bounded Brent between the neighbours of
# the best grid point. 64 points put neighbours 13% apart in alpha, fine enough that the profile has one minimum
# between them on every ladder tried; the bound test allows a little slack for Brent never evaluating the ends.
_LOG_ALPHA_GRID = np.linspace(math.log(ALPHA_BOUNDS[0]), math.log(ALPHA_BOUNDS[1]), 64)
_ALPHA_BOUND_SLACK = 1e-3  # in log alpha
_E_GAP = 1e-9  # E's upper bound is min loss - this (relative): strictly below every observed loss


@dataclass(frozen=True)
class Point:
    """One finished run of the ladder."""

    variant: str
    rung: int
    seed: int
    flops: float
    tokens: float
    loss: float


# ---------------------------------------------------------------------------------------------------------------
# Fitting: E + A_g * x**-alpha with E and alpha shared by the groups g, by variable projection


@dataclass
class _Fit:
    """Fits for a stack of weightings (B resamples; B = 1 for a plain fit)."""

    E: np.ndarray  # (B,)
    alpha: np.ndarray  # (B,)
    A: np.ndarray  # (B, G)
    rss: np.ndarray  # (B,) weighted residual sum of squares
    e_clamp: np.ndarray  # (B,) -1: E at 0, +1: E at its upper bound (just below the minimum loss), 0: inside


def _solve(sw, sy, syy, sz, szz, szy, e_lo, e_hi):
    """E, A_g, RSS for fixed alpha from the weighted sums (last axis: group; other axes broadcast). The RSS as a
    function of E (A_g profiled out) is a convex quadratic, so clamping the unconstrained E to [e_lo, e_hi] is
    the exact constrained optimum."""
    q = sz / szz
    den = np.sum(sw - q * sz, axis=-1)
    num = np.sum(sy - q * szy, axis=-1)
    e_free = num / np.where(den > 0, den, np.inf)
    e = np.clip(e_free, e_lo, e_hi)
    clamp = np.where(e_free < e_lo, -1, np.where(e_free > e_hi, 1, 0))
    cov = szy - e[..., None] * sz
    a = cov / szz
    rss = np.sum(syy - 2 * e[..., None] * sy + e[..., None] ** 2 * sw - cov * cov / szz, axis=-1)
    return e, a, np.maximum(rss, 0.0), clamp


def _solve1(sw, sy, syy, sz, szz, szy, e_lo, e_hi):
    """_solve for one alpha and one weighting, on Python floats (lists over groups): the bounded Brent search calls
    it ~10 times per fit, thousands of times per bootstrap, where numpy's per-call overhead on arrays of one or two
    elements would dominate."""
    groups = range(len(sw))
    q = [sz[g] / szz[g] for g in groups]
    den = sum(sw[g] - q[g] * sz[g] for g in groups)
    num = sum(sy[g] - q[g] * szy[g] for g in groups)
    e_free = num / den if den > 0 else 0.0
    e = min(max(e_free, e_lo), e_hi)
    clamp = -1 if e_free < e_lo else (1 if e_free > e_hi else 0)
    cov = [szy[g] - e * sz[g] for g in groups]
    a = [cov[g] / szz[g] for g in groups]
    rss = sum(syy[g] - 2 * e * sy[g] + e * e * sw[g] - cov[g] * cov[g] / szz[g] for g in groups)
    return e, a, max(rss, 0.0), clamp


def _fit_shared(x: np.ndarray, y: np.ndarray, groups: np.ndarray, n_groups: int, weights: np.ndarray,
                e_hi: np.ndarray, *, xatol: float = 1e-6) -> _Fit:
    """Least squares of y = E + A_g x**-alpha for each row of `weights` (B, N), E in [0, e_hi[b]], alpha in
    ALPHA_BOUNDS. The losses are centred first so the sums of squares do not lose the residual to cancellation."""
    weights = np.atleast_2d(np.asarray(weights, dtype=float))
    shift = float(np.mean(y))
    yc = y - shift
    lo, hi = -shift, np.asarray(e_hi, dtype=float) - shift
    onehot = (groups[None, :] == np.arange(n_groups)[:, None]).astype(float)  # (G, N)
    wh = weights[:, None, :] * onehot[None]  # (B, G, N)
    whc = wh * yc
    sw, sy, syy = wh.sum(-1), whc.sum(-1), (whc * yc).sum(-1)  # (B, G)

    # Grid stage, vectorised over resamples and alphas: sums (B, A, G).
    z = x[None, :] ** -np.exp(_LOG_ALPHA_GRID)[:, None]  # (A, N)
    sz = np.einsum("bgn,an->bag", wh, z)
    szz = np.einsum("bgn,an->bag", wh, z * z)
    szy = np.einsum("bgn,an->bag", whc, z)
    _, _, rss_grid, _ = _solve(sw[:, None], sy[:, None], syy[:, None], sz, szz, szy, lo, hi[:, None])
    best = np.argmin(rss_grid, axis=1)

    n = len(weights)
    out = _Fit(np.empty(n), np.empty(n), np.empty((n, n_groups)), np.empty(n), np.empty(n, dtype=int))
    top = len(_LOG_ALPHA_GRID) - 1
    for b in range(n):
        # Both weighted designs stacked: one matrix product gives sz, szz and szy for a trial alpha.
        stack = np.concatenate([wh[b], whc[b]])  # (2G, N)
        swb, syb, syyb, hib = sw[b].tolist(), sy[b].tolist(), syy[b].tolist(), float(hi[b])

        def profile(log_alpha, stack=stack, swb=swb, syb=syb, syyb=syyb, hib=hib):
            zz = x ** -math.exp(log_alpha)
            s1 = (stack @ zz).tolist()
            szz = (stack[:n_groups] @ (zz * zz)).tolist()
            return _solve1(swb, syb, syyb, s1[:n_groups], szz, s1[n_groups:], lo, hib)

        i = int(best[b])
        bracket = (_LOG_ALPHA_GRID[max(i - 1, 0)], _LOG_ALPHA_GRID[min(i + 1, top)])
        res = minimize_scalar(lambda la, f=profile: float(f(la)[2]), bounds=bracket, method="bounded",
                              options={"xatol": xatol})
        # Brent never evaluates the bracket's ends: a grid point (a bound, say) that beats it wins.
        log_alpha = float(res.x) if res.fun <= rss_grid[b, i] else float(_LOG_ALPHA_GRID[i])
        e, a, rss, clamp = profile(log_alpha)
        out.E[b], out.alpha[b], out.A[b], out.rss[b], out.e_clamp[b] = e + shift, math.exp(log_alpha), a, rss, clamp
    return out


def _pinned_amplitude(x: np.ndarray, y: np.ndarray, weights: np.ndarray, E: np.ndarray,
                      alpha: np.ndarray) -> np.ndarray:
    """A per row with E and alpha given: the closed-form least squares of y - E on x**-alpha. The baseline's own A
    comes through this too, so a variant identical to the baseline gets bit-for-bit the same A (multiplier 1)."""
    weights = np.atleast_2d(weights)
    z = x[None, :] ** -np.atleast_1d(alpha)[:, None]
    wz = weights * z
    return np.sum(wz * (y[None, :] - np.atleast_1d(E)[:, None]), axis=1) / np.sum(wz * z, axis=1)


def law_curve(law: Mapping[str, float], c_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """The law's losses E + A * (C / C0)**-alpha at the given compute values (a law dict from `analyse`)."""
    c = np.asarray(c_values, dtype=float)
    return law["E"] + law["A"] * (c / law["C0"]) ** -law["alpha"]


def law_compute(law: Mapping[str, float], loss: float) -> float:
    """The compute at which the law reaches `loss`: C0 * ((L - E) / A)**(-1/alpha); inf at or below E (never)."""
    if loss <= law["E"] or law["A"] <= 0:
        return math.inf
    return law["C0"] * _safe_exp(-math.log((loss - law["E"]) / law["A"]) / law["alpha"])


def _safe_exp(v: float) -> float:
    """exp that gives inf instead of raising: a fit at alpha's lower bound turns modest ratios into huge powers."""
    return math.exp(v) if v < 709.0 else math.inf


def fit_law(flops: Sequence[float], losses: Sequence[float], *, c0: float | None = None) -> dict[str, Any]:
    """Least-squares fit of L = E + A * (C / C0)**-alpha over every point, alpha in ALPHA_BOUNDS, 0 <= E < min L.
    C0 defaults to the geometric mean of `flops`. Returns E, A, alpha, C0, rss and which bound (if any) E or alpha
    sits at."""
    c, y = np.asarray(flops, dtype=float), np.asarray(losses, dtype=float)
    c0 = float(np.exp(np.mean(np.log(c)))) if c0 is None else float(c0)
    x = c / c0
    e_hi = float(np.min(y)) * (1 - _E_GAP)
    fit = _fit_shared(x, y, np.zeros(len(y), dtype=int), 1, np.ones((1, len(y))), np.array([e_hi]))
    E, alpha = float(fit.E[0]), float(fit.alpha[0])
    A = float(_pinned_amplitude(x, y, np.ones((1, len(y))), fit.E, fit.alpha)[0])
    resid = y - E - A * x ** -alpha
    return {"E": E, "A": A, "alpha": alpha, "C0": c0, "rss": float(resid @ resid),
            "alpha_bound": _alpha_bound(alpha), "E_bound": _e_bound(int(fit.e_clamp[0]), y)}


def _alpha_bound(alpha: float) -> float | None:
    la = math.log(alpha)
    for bound in ALPHA_BOUNDS:
        if abs(la - math.log(bound)) < _ALPHA_BOUND_SLACK:
            return bound
    return None


def _e_bound(clamp: int, y: np.ndarray) -> str | None:
    if clamp < 0:
        return "0"
    if clamp > 0:
        return f"(just below the minimum loss {float(np.min(y)):.4g})"
    return None


# ---------------------------------------------------------------------------------------------------------------
# Checks


def lack_of_fit_test(losses: Sequence[float], cells: Sequence[Any], rss: float, n_params: int, *,
                     label: str = "lack-of-fit F test") -> dict[str, Any]:
    """Lack-of-fit F test with the seeds as replicates: pure error from the spread within each cell (a rung, or a
    (variant, rung) pair), lack of fit = rss - pure error, F = (SS_lof/(k-p)) / (SS_pe/(N-k)). ok is False when
    p < LOF_P_MIN; with k <= p or no replicates the test is not possible (ok, and the reason says so). The reason
    starts with `label`."""
    y = np.asarray(losses, dtype=float)
    keys = list(cells)
    uniq = sorted(set(keys), key=repr)
    n, k = len(y), len(uniq)
    index = np.array([uniq.index(c) for c in keys])
    means = np.array([y[index == j].mean() for j in range(k)])
    ss_pe = float(np.sum((y - means[index]) ** 2))
    df_lof, df_pe = k - n_params, n - k
    base = {"name": "lack_of_fit", "ok": True, "F": None, "p": None, "df": [df_lof, df_pe]}
    if df_lof <= 0:
        return {**base, "reason": f"{label} not possible: {k} rungs for {n_params} parameters"}
    if df_pe <= 0:
        return {**base, "reason": f"{label} not possible: no replicate seeds"}
    ss_lof = max(rss - ss_pe, 0.0)
    if ss_pe <= 0:
        f, p = (math.inf, 0.0) if ss_lof > 0 else (0.0, 1.0)
    else:
        f = (ss_lof / df_lof) / (ss_pe / df_pe)
        p = float(scipy_stats.f.sf(f, df_lof, df_pe))
    return {**base, "ok": p >= LOF_P_MIN, "F": f, "p": p, "reason": f"{label}: F={f:.3g}, p={p:.2g}"}


def _decreasing_check(series: _Series, amplitude: float) -> dict[str, Any]:
    """Losses must fall with compute: the fitted amplitude positive, and no rung's mean loss above the previous
    rung's by more than three standard errors of the difference (seed noise may reorder two close rungs)."""
    if not amplitude > 0:
        return {"name": "decreasing", "ok": False, "reason": "losses not decreasing with compute"}
    means = series.rung_stats()
    sd = series.pure_error_sd()
    for (r0, s0), (r1, s1) in zip(means[:-1], means[1:]):
        tol = 3 * sd * math.sqrt(1 / s0["n"] + 1 / s1["n"]) if sd is not None else 0.0
        if s1["loss"] - s0["loss"] > tol:
            return {"name": "decreasing", "ok": False,
                    "reason": f"losses not decreasing with compute (rung {r1}'s mean loss {s1['loss']:.4f} is above "
                              f"rung {r0}'s {s0['loss']:.4f})"}
    return {"name": "decreasing", "ok": True, "reason": "losses decrease with compute"}


def _bound_checks(alpha_bound: float | None, e_bound: str | None) -> list[dict[str, Any]]:
    return [
        {"name": "alpha_bound", "ok": alpha_bound is None,
         "reason": f"alpha at its bound {alpha_bound:g}" if alpha_bound is not None else "alpha inside its bounds"},
        {"name": "E_bound", "ok": e_bound is None,
         "reason": f"E at its bound {e_bound}" if e_bound is not None else "E inside its bounds"},
    ]


def _failed(checks: Sequence[Mapping[str, Any]]) -> str | None:
    bad = [c["reason"] for c in checks if not c["ok"]]
    return "; ".join(bad) if bad else None


# ---------------------------------------------------------------------------------------------------------------
# One variant's points


@dataclass
class _Series:
    name: str
    c: np.ndarray
    tokens: np.ndarray
    y: np.ndarray
    rung: np.ndarray
    seed: np.ndarray

    @classmethod
    def of(cls, name: str, points: Sequence[Point]) -> _Series:
        # Sorted by (rung, seed): two variants with the same points give the same arrays in the same order, so
        # every sum over them is bit-for-bit the same.
        pts = sorted(points, key=lambda p: (p.rung, p.seed, p.flops, p.loss))
        return cls(name, np.array([p.flops for p in pts], dtype=float), np.array([p.tokens for p in pts], dtype=float),
                   np.array([p.loss for p in pts], dtype=float), np.array([p.rung for p in pts], dtype=int),
                   np.array([p.seed for p in pts], dtype=int))

    @property
    def rungs(self) -> list[int]:
        return sorted({int(r) for r in self.rung})

    def seeds(self, rung: int) -> list[int]:
        return sorted({int(s) for s in self.seed[self.rung == rung]})

    def rung_stats(self) -> list[tuple[int, dict[str, float]]]:
        out = []
        for r in self.rungs:
            m = self.rung == r
            out.append((r, {"flops": float(self.c[m].mean()), "tokens": float(self.tokens[m].mean()),
                            "loss": float(self.y[m].mean()), "n": int(m.sum())}))
        return out

    def pure_error_sd(self) -> float | None:
        df = len(self.y) - len(self.rungs)
        if df <= 0:
            return None
        ss = sum(float(np.sum((self.y[self.rung == r] - self.y[self.rung == r].mean()) ** 2)) for r in self.rungs)
        return math.sqrt(ss / df)

    def subset(self, mask: np.ndarray) -> _Series:
        return _Series(self.name, self.c[mask], self.tokens[mask], self.y[mask], self.rung[mask], self.seed[mask])


def _too_few_rungs(series: _Series | None, name: str, role: str) -> str | None:
    if series is None:
        return f"too few rungs: {role} {name} has no finished runs ({MIN_RUNGS} rungs needed)"
    if len(series.rungs) < MIN_RUNGS:
        rungs = ", ".join(map(str, series.rungs))
        return (f"too few rungs: {role} {name} has finished runs at {len(series.rungs)} rung"
                f"{'s' if len(series.rungs) != 1 else ''} ({rungs}), {MIN_RUNGS} needed")
    return None


# ---------------------------------------------------------------------------------------------------------------
# Bootstrap over seeds


def _seed_counts(rng: np.random.Generator, n_boot: int, n: int) -> np.ndarray:
    """(n_boot, n) multiplicities of n seeds drawn with replacement."""
    idx = rng.integers(0, n, size=(n_boot, n))
    return (idx[:, :, None] == np.arange(n)).sum(axis=1).astype(float)


def _point_weights(series: _Series, counts: Mapping[int, tuple[list[int], np.ndarray]], n_boot: int) -> np.ndarray:
    """Each point weighs as often as its seed was drawn at its rung (every point of a drawn seed goes with it)."""
    w = np.empty((n_boot, len(series.y)))
    for i, (r, s) in enumerate(zip(series.rung, series.seed)):
        seeds, cnt = counts[int(r)]
        w[:, i] = cnt[:, seeds.index(int(s))]
    return w


def _draw(rng: np.random.Generator, series: _Series, n_boot: int,
          paired_with: Mapping[int, tuple[list[int], np.ndarray]] | None = None):
    """Seed multiplicities per rung: reused from the baseline's draw where this series ran the same seeds at the
    rung (paired: a seed fixes the data order for both), drawn afresh otherwise."""
    counts = {}
    for r in series.rungs:
        seeds = series.seeds(r)
        if paired_with is not None and r in paired_with and paired_with[r][0] == seeds:
            counts[r] = paired_with[r]
        else:
            counts[r] = (seeds, _seed_counts(rng, n_boot, len(seeds)))
    return counts


def _quantiles(values: np.ndarray, level: float) -> list[float] | None:
    """Percentile interval; infinities (a loss the baseline never reaches) sort last, NaN resamples drop out.
    inverted_cdf never interpolates, so an infinite tail gives an infinite bound rather than NaN."""
    v = values[~np.isnan(values)]
    if len(v) == 0:
        return None
    lo, hi = np.quantile(v, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")
    return [float(lo), float(hi)]


# ---------------------------------------------------------------------------------------------------------------
# The joint fit and the lack-of-fit Student-t intervals


def _joint_fit(base: _Series, var: _Series, c0: float) -> dict[str, Any]:
    """Baseline and variant together: L = E + exp(lnA_g) * x**-alpha, parameters (E, alpha, lnA_b, lnA_v), and
    the Gauss-Newton covariance s^2 (J^T J)^-1 with s^2 = RSS / (N - 4): the residual variance includes any lack of
    fit, so a law that fits badly gives wide intervals."""
    x = np.concatenate([base.c, var.c]) / c0
    y = np.concatenate([base.y, var.y])
    g = np.concatenate([np.zeros(len(base.y), dtype=int), np.ones(len(var.y), dtype=int)])
    e_hi = float(np.min(y)) * (1 - _E_GAP)
    fit = _fit_shared(x, y, g, 2, np.ones((1, len(y))), np.array([e_hi]))
    E, alpha, A = float(fit.E[0]), float(fit.alpha[0]), fit.A[0]
    n = len(y)
    cells = [(int(gi), int(r)) for gi, r in zip(g, np.concatenate([base.rung, var.rung]))]
    # Cells are (group, rung): this tests the baseline's law and the variant's sharing its E and alpha at once.
    lof = lack_of_fit_test(y, cells, float(fit.rss[0]), 4, label="lack-of-fit F test of the law shared with the "
                           "baseline")
    out: dict[str, Any] = {"E": E, "alpha": alpha, "A": [float(A[0]), float(A[1])], "n": n, "df": n - 4,
                           "lack_of_fit": lof, "cov": None, "s2": None}
    if n - 4 <= 0 or not (A[0] > 0 and A[1] > 0):
        return out
    z = x ** -alpha
    ag = A[g]
    jac = np.column_stack([np.ones(n), -ag * np.log(x) * z, np.where(g == 0, ag * z, 0.0),
                           np.where(g == 1, ag * z, 0.0)])
    s2 = float(fit.rss[0]) / (n - 4)
    try:
        cov = s2 * np.linalg.inv(jac.T @ jac)
    except np.linalg.LinAlgError:
        return out
    out["cov"], out["s2"] = cov, s2
    return out


def _t_interval(log_hat: float, grad: np.ndarray, cov: np.ndarray, extra_var: float, df: int,
                level: float) -> list[float] | None:
    var = float(grad @ cov @ grad) + extra_var
    if not (var >= 0 and math.isfinite(var) and math.isfinite(log_hat)):
        return None
    half = float(scipy_stats.t.ppf((1 + level) / 2, df)) * math.sqrt(var)
    return [_safe_exp(log_hat - half), _safe_exp(log_hat + half)]


def _union(*intervals: list[float] | None) -> list[float] | None:
    present = [i for i in intervals if i is not None]
    if not present:
        return None
    return [min(i[0] for i in present), max(i[1] for i in present)]


# ---------------------------------------------------------------------------------------------------------------
# Verdict, rollout, rank agreement


def _fmt_interval(lo: float, hi: float, d: int) -> str:
    return f"[{lo:.{d}f}, {hi:.{d}f}]"


def verdict(multiplier: float | None, ci: Sequence[float] | None, variant: str, baseline: str, *,
            failed: str | None = None, reason: str | None = None, plateau: Mapping[int, str] | None = None,
            baseline_plateau: Mapping[int, str] | None = None, top_multiplier: float | None = None) -> str:
    """The verdict in words, in order of precedence: not converged (the caller's plateau notes, rung -> text, for
    the variant and the baseline), a reason the ladder cannot be read (too few rungs), fit failed (<test>), not
    resolvable (the interval holds 1), else how much compute the variant needs to reach the baseline's loss."""
    notes = [f"rung {r}: {t}" for r, t in sorted((plateau or {}).items())]
    notes += [f"{baseline} rung {r}: {t}" for r, t in sorted((baseline_plateau or {}).items())]
    if notes:
        return f"not converged ({'; '.join(notes)})"
    if reason:
        return reason
    if failed:
        return f"fit failed ({failed})"
    if multiplier is None or not math.isfinite(multiplier) or multiplier <= 0:
        return "not resolvable: no multiplier"
    if ci is None or ci[0] is None or ci[1] is None:
        return "not resolvable: no interval"
    lo, hi = float(ci[0]), float(ci[1])
    if lo <= 1 <= hi:
        return f"not resolvable: the interval {_fmt_interval(lo, hi, 2)} holds 1"
    # The pooled multiplier rests on the variant sharing the baseline's exponent. When the largest rung, read on its
    # own, points the other way, the win (or loss) does not hold with scale on this ladder: no verdict.
    if top_multiplier is not None and math.isfinite(top_multiplier) and (top_multiplier - 1) * (multiplier - 1) < 0:
        return (f"not resolvable: pooled over rungs {multiplier:.2f}x {_fmt_interval(lo, hi, 2)}, but the largest "
                f"rung alone gives {top_multiplier:.2f}x, the other side of 1")
    inv_lo, inv_hi = 1 / hi, (1 / lo if lo > 0 else math.inf)
    # Two decimals, more when a bound would print as 1.00 although the interval does not touch 1.
    d = 2
    while d < 4 and any(f"{v:.{d}f}" == f"{1:.{d}f}" for v in (lo, hi, inv_lo, inv_hi)):
        d += 1
    return (f"{variant} reaches {baseline}'s loss with {1 / multiplier:.{d}f}x its compute "
            f"{_fmt_interval(inv_lo, inv_hi, d)} (worth {multiplier:.{d}f}x {baseline}'s compute "
            f"{_fmt_interval(lo, hi, d)})")


def _rollout(base: _Series, variants: Mapping[str, _Series], c0: float) -> dict[str, Any]:
    rungs = base.rungs
    if len(rungs) < MIN_RUNGS + 1:
        return {"available": False,
                "reason": f"rollout needs {MIN_RUNGS + 1} baseline rungs ({MIN_RUNGS} to fit, 1 to predict), "
                          f"has {len(rungs)}", "variants": {}}
    top = rungs[-1]
    small = base.subset(base.rung != top)
    law = fit_law(small.c, small.y, c0=c0)
    top_stats = dict(base.rung_stats())[top]
    pred = float(law_curve(law, [top_stats["flops"]])[0])
    out: dict[str, Any] = {"available": True, "reason": None, "rung": top, "flops": top_stats["flops"],
                           "predicted": pred, "measured": top_stats["loss"], "error": pred - top_stats["loss"],
                           "law": {k: law[k] for k in ("E", "A", "alpha", "C0")}, "variants": {}}
    for name, var in variants.items():
        vr = var.rungs
        if len(vr) < 2:
            out["variants"][name] = {"error": None, "reason": "needs a rung to fit and a larger one to predict"}
            continue
        vtop = vr[-1]
        vs = var.subset(var.rung != vtop)
        a_v = float(_pinned_amplitude(vs.c / c0, vs.y, np.ones((1, len(vs.y))), np.array([law["E"]]),
                                      np.array([law["alpha"]]))[0])
        st = dict(var.rung_stats())[vtop]
        vpred = law["E"] + a_v * (st["flops"] / c0) ** -law["alpha"]
        out["variants"][name] = {"rung": vtop, "predicted": vpred, "measured": st["loss"],
                                 "error": vpred - st["loss"], "reason": None}
    return out


def rollout_check(points: Sequence[Point], baseline: str) -> dict[str, Any]:
    """Fit the baseline's law on every rung but the largest and predict the largest (error = predicted - measured
    mean loss, nats); each variant: E and alpha from that fit, A_v from its smaller rungs, its largest predicted.
    Needs MIN_RUNGS + 1 baseline rungs; otherwise available is False with the reason."""
    series = _group(points)
    base = series.pop(baseline, None)
    if base is None:
        return {"available": False, "reason": f"no finished runs for baseline {baseline}", "variants": {}}
    return _clean(_rollout(base, series, float(np.exp(np.mean(np.log(base.c))))))


def rank_agreement(means: Mapping[str, Mapping[int, float]]) -> dict[str, Any]:
    """Kendall tau between each rung's ranking of the variants (by mean loss) and the largest rung's, and between
    consecutive rungs, over the variants both rungs have; the lists and their means (NaN taus left out)."""
    rungs = sorted({int(r) for m in means.values() for r in m})

    def tau(a: int, b: int) -> dict[str, Any]:
        common = sorted(v for v, m in means.items() if a in m and b in m
                        and math.isfinite(m[a]) and math.isfinite(m[b]))
        t = kendall_tau([means[v][a] for v in common], [means[v][b] for v in common])
        return {"rungs": [a, b], "tau": t, "n": len(common)}

    if not rungs:
        return {"rungs": [], "largest_rung": None, "tau_vs_largest": [], "tau_consecutive": [],
                "mean_tau_vs_largest": None, "mean_tau_consecutive": None}
    top = rungs[-1]
    to_top = [tau(r, top) for r in rungs[:-1]]
    consecutive = [tau(a, b) for a, b in zip(rungs[:-1], rungs[1:])]

    def mean(items: list[dict[str, Any]]) -> float | None:
        vals = [i["tau"] for i in items if math.isfinite(i["tau"])]
        return float(np.mean(vals)) if vals else None

    return _clean({"rungs": rungs, "largest_rung": top, "tau_vs_largest": to_top, "tau_consecutive": consecutive,
                   "mean_tau_vs_largest": mean(to_top), "mean_tau_consecutive": mean(consecutive)})


# ---------------------------------------------------------------------------------------------------------------
# The entry point


def _group(points: Sequence[Point]) -> dict[str, _Series]:
    """Series per variant; a point without a finite loss or positive compute is not a finished run."""
    by: dict[str, list[Point]] = {}
    for p in points:
        if math.isfinite(p.loss) and math.isfinite(p.flops) and p.flops > 0 and p.tokens > 0:
            by.setdefault(p.variant, []).append(p)
    return {name: _Series.of(name, pts) for name, pts in sorted(by.items())}


def _clean(obj: Any) -> Any:
    """JSON-serialisable: numpy scalars and arrays to Python, NaN and infinities to None."""
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.integer | bool | np.bool_):
        return bool(obj) if isinstance(obj, bool | np.bool_) else int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _band(c_grid: np.ndarray, c0: float, E: np.ndarray, A: np.ndarray, alpha: np.ndarray,
          level: float) -> dict[str, list[float]] | None:
    ok = np.isfinite(A) & (A > 0)
    if not ok.any():
        return None
    curves = E[ok, None] + A[ok, None] * (c_grid[None, :] / c0) ** -alpha[ok, None]
    lo, hi = np.quantile(curves, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return {"c": c_grid.tolist(), "lo": lo.tolist(), "hi": hi.tolist()}


@dataclass(frozen=True)
class _Reference:
    """The baseline's side of every comparison, fitted once per analysis: its law (a variant's pooled fit pins E and
    alpha to it), its bootstrap resamples (a variant's seeds pair with them) and its tokens-for-compute line."""
    name: str
    series: _Series
    c0: float
    E: float
    A: float
    alpha: float
    failed: str | None
    counts: Mapping[int, tuple[list[int], np.ndarray]]
    boot: tuple[np.ndarray, np.ndarray, np.ndarray]  # E, alpha and A per resample
    tokens_slope: float
    tokens_intercept: float
    c_grid: np.ndarray
    level: float
    n_boot: int

    def tokens_at(self, c: float) -> float:
        """The baseline's tokens at compute `c`: converts a compute multiplier into tokens at the matched compute."""
        if not (math.isfinite(c) and c > 0):
            return math.nan
        return float(np.exp(self.tokens_intercept + self.tokens_slope * math.log(c)))


def analyse(points: Sequence[Point], baseline: str, *, level: float = LEVEL, n_boot: int = N_BOOT, seed: int = 0,
            plateau: Mapping[str, Mapping[int, str]] | None = None) -> dict[str, Any]:
    """Everything the scaling view shows, as JSON-serialisable data: the baseline's law with its checks and band,
    the rollout check, rank agreement across rungs, and per variant the pooled and top-rung compute multipliers
    with their bootstrap, lack-of-fit t and union intervals (`level`, two-sided), the tokens multipliers, the
    pinned and free fits, the verdict and the rollout error. `plateau` maps variant -> rung -> a note such as
    "2 of 3 runs on the unigram plateau" (the caller's detector); those variants (all, for the baseline's) are
    "not converged"."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    plateau = plateau or {}
    series = _group(points)
    base = series.get(baseline)
    variants = {n: s for n, s in series.items() if n != baseline}
    means = {n: {r: st["loss"] for r, st in s.rung_stats()} for n, s in series.items()}
    result: dict[str, Any] = {"baseline": baseline, "level": level, "n_boot": n_boot,
                              "rank_agreement": rank_agreement(means)}

    base_reason = _too_few_rungs(base, baseline, "baseline")
    if base_reason:
        result.update(_without_law(base_reason, variants, baseline, plateau))
        return _clean(result)
    assert base is not None

    rng = np.random.default_rng(seed)
    ref, law = _reference(base, baseline, series, rng, level, n_boot)
    result["law"] = law
    rollout = _rollout(base, variants, ref.c0)
    result["rollout"] = rollout
    out_variants = {name: _analyse_variant(name, var, ref, rng, plateau=plateau.get(name),
                                           baseline_plateau=plateau.get(baseline),
                                           rollout=rollout["variants"].get(name))
                    for name, var in variants.items()}
    result["variants"] = out_variants
    # The same bands by name, for a plot that loops over the variants including the baseline.
    result["bands"] = {baseline: law["band"], **{n: v.get("band") for n, v in out_variants.items()}}
    return _clean(result)


def _without_law(reason: str, variants: Mapping[str, _Series], baseline: str,
                 plateau: Mapping[str, Mapping[int, str]]) -> dict[str, Any]:
    """The law, rollout and variants when the baseline has too few rungs for a law: every variant fails with the
    baseline's reason."""
    return {
        "law": {"failed": reason, "checks": [{"name": "rungs", "ok": False, "reason": reason}]},
        "rollout": {"available": False, "reason": reason, "variants": {}},
        "variants": {n: {"verdict": verdict(None, None, n, baseline, reason=reason, plateau=plateau.get(n),
                                            baseline_plateau=plateau.get(baseline)), "failed": reason}
                     for n in variants},
    }


def _reference(base: _Series, baseline: str, series: Mapping[str, _Series], rng: np.random.Generator, level: float,
               n_boot: int) -> tuple[_Reference, dict[str, Any]]:
    """The baseline's fit that the variants are read against, and the law as the analysis reports it. `rng` is
    the analysis' generator: the baseline draws its resamples first, then each variant in turn."""
    c0 = float(np.exp(np.mean(np.log(base.c))))
    law = fit_law(base.c, base.y, c0=c0)
    checks = [{"name": "rungs", "ok": True, "reason": f"{len(base.rungs)} rungs"},
              _decreasing_check(base, law["A"]), *_bound_checks(law["alpha_bound"], law["E_bound"]),
              lack_of_fit_test(base.y, base.rung.tolist(), law["rss"], 3)]
    # Tokens as a function of compute along the baseline's ladder (log-log line through the rung means).
    bstats = base.rung_stats()
    slope, intercept = np.polyfit(np.log([s["flops"] for _, s in bstats]), np.log([s["tokens"] for _, s in bstats]), 1)
    counts, boot = _bootstrap_baseline(base, base.c / c0, rng, n_boot)
    all_c = np.concatenate([s.c for s in series.values()])
    ref = _Reference(name=baseline, series=base, c0=c0, E=law["E"], A=law["A"], alpha=law["alpha"],
                     failed=_failed(checks), counts=counts, boot=boot, tokens_slope=slope, tokens_intercept=intercept,
                     c_grid=np.geomspace(float(all_c.min()), float(all_c.max()), BAND_POINTS), level=level,
                     n_boot=n_boot)
    bE, balpha, bA = boot
    law_out = {**law, "checks": checks, "failed": ref.failed, "n_points": len(base.y), "rungs": base.rungs,
               "tokens_law": {"slope": float(slope), "intercept": float(intercept)},
               "bootstrap": {"E": _quantiles(bE, level), "alpha": _quantiles(balpha, level)},
               "band": _band(ref.c_grid, c0, bE, bA, balpha, level)}
    return ref, law_out


def _bootstrap_baseline(base: _Series, xb: np.ndarray, rng: np.random.Generator, n_boot: int
                        ) -> tuple[dict[int, tuple[list[int], np.ndarray]], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The baseline refitted once per resample, shared by every variant: its seed draws and (E, alpha, A) each."""
    counts = _draw(rng, base, n_boot)
    wb = _point_weights(base, counts, n_boot)
    e_hi = np.array([float(np.min(base.y[w > 0])) for w in wb]) * (1 - _E_GAP)
    bfit = _fit_shared(xb, base.y, np.zeros(len(base.y), dtype=int), 1, wb, e_hi, xatol=1e-5)
    return counts, (bfit.E, bfit.alpha, _pinned_amplitude(xb, base.y, wb, bfit.E, bfit.alpha))


def _analyse_variant(name: str, var: _Series, ref: _Reference, rng: np.random.Generator, *,
                     plateau: Mapping[int, str] | None, baseline_plateau: Mapping[int, str] | None,
                     rollout: Mapping[str, Any] | None) -> dict[str, Any]:
    def words(m: float | None, ci: Sequence[float] | None, *, failed: str | None = None,
              reason: str | None = None, top_multiplier: float | None = None) -> str:
        return verdict(m, ci, name, ref.name, failed=failed, reason=reason, plateau=plateau,
                       baseline_plateau=baseline_plateau, top_multiplier=top_multiplier)

    reason = _too_few_rungs(var, name, "variant")
    rollout_error = rollout.get("error") if rollout else None
    if reason:
        return {"failed": reason, "verdict": words(None, None, reason=reason), "rollout_error": rollout_error,
                "free_fit": {"failed": reason}}

    c0, E, A_b, alpha = ref.c0, ref.E, ref.A, ref.alpha
    xv = var.c / c0
    # (a) pinned: E and alpha the baseline's, A_v refitted; (b) free: the variant's own law, reported only.
    A_v = float(_pinned_amplitude(xv, var.y, np.ones((1, len(var.y))), np.array([E]), np.array([alpha]))[0])
    free_fit = _free_fit(var, c0)
    joint = _joint_fit(ref.series, var, c0)
    checks = [{"name": "rungs", "ok": True, "reason": f"{len(var.rungs)} rungs"}, _decreasing_check(var, A_v),
              joint["lack_of_fit"]]
    failed = "; ".join(f for f in (ref.failed, _failed(checks)) if f) or None

    vtop = var.rungs[-1]
    top = dict(var.rung_stats())[vtop]
    l_top, c_top, t_top = top["loss"], top["flops"], top["tokens"]
    m = _safe_exp((math.log(A_b) - math.log(A_v)) / alpha) if A_v > 0 and A_b > 0 else math.nan
    m_top, top_note = _top_multiplier(ref, vtop, l_top, c_top)

    bAv, bm, bmt = _bootstrap_variant(var, xv, ref, rng)
    ci_boot, ci_boot_top = _quantiles(bm, ref.level), _quantiles(bmt, ref.level)
    ci_t, ci_t_top = _t_intervals(joint, ref, A_v, m, m_top, l_top, top["n"])
    ci, ci_top = _union(ci_boot, ci_t), _union(ci_boot_top, ci_t_top)

    if math.isfinite(m):
        words_out = words(m, ci, failed=failed, top_multiplier=m_top)
    else:
        words_out = words(None, None, failed=failed or ("losses not decreasing with compute" if not A_v > 0
                                                        else "the multiplier overflows: alpha near 0"))
    return {
        "flops_multiplier": m,
        "flops_multiplier_ci": ci,
        "flops_multiplier_ci_bootstrap": ci_boot,
        "flops_multiplier_ci_t": ci_t,
        "top_rung": {"rung": vtop, "loss": l_top, "flops": c_top, "multiplier": m_top, "ci": ci_top,
                     "ci_bootstrap": ci_boot_top, "ci_t": ci_t_top, "note": top_note},
        "tokens_multiplier": ref.tokens_at(m * c_top) / t_top if math.isfinite(m) else math.nan,
        "tokens_multiplier_top": ref.tokens_at(m_top * c_top) / t_top if math.isfinite(m_top) else math.nan,
        "pinned_fit": {"A": A_v},
        "law": {"E": E, "A": A_v, "alpha": alpha, "C0": c0},
        "free_fit": free_fit,
        "joint_fit": {"E": joint["E"], "alpha": joint["alpha"], "A": joint["A"], "df": joint["df"]},
        "checks": checks,
        "failed": failed,
        "verdict": words_out,
        "rollout_error": rollout_error,
        "band": _band(ref.c_grid, c0, ref.boot[0], bAv, ref.boot[1], ref.level),
    }


def _free_fit(var: _Series, c0: float) -> dict[str, Any]:
    """The variant's own law, reported only; whatever the fit meets, the analysis goes on."""
    try:
        free = fit_law(var.c, var.y, c0=c0)
        free_fit: dict[str, Any] = {k: free[k] for k in ("E", "A", "alpha", "C0")}
        if not free["A"] > 0:
            free_fit = {"failed": "losses not decreasing with compute"}
        elif free["alpha_bound"] is not None or free["E_bound"] is not None:
            free_fit["at_bound"] = "; ".join(c["reason"] for c in _bound_checks(free["alpha_bound"], free["E_bound"])
                                             if not c["ok"])
    except Exception as exc:  # the free fit is a report: whatever it meets, the analysis goes on
        free_fit = {"failed": f"{type(exc).__name__}: {exc}"}
    return free_fit


def _top_multiplier(ref: _Reference, vtop: int, l_top: float, c_top: float) -> tuple[float, str | None]:
    """The top rung's multiplier (the baseline's law inverted at the variant's mean loss there), or NaN and why."""
    law_b = {"E": ref.E, "A": ref.A, "alpha": ref.alpha, "C0": ref.c0}
    m_top = law_compute(law_b, l_top) / c_top if ref.A > 0 else math.nan
    if l_top <= ref.E:
        return math.nan, (f"the variant's mean loss at rung {vtop} ({l_top:.4f}) is at or below the baseline's "
                          f"fitted floor E = {ref.E:.4f}: the baseline never reaches it, so the multiplier is not "
                          "defined")
    return m_top, None


def _bootstrap_variant(var: _Series, xv: np.ndarray, ref: _Reference, rng: np.random.Generator
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per resample: the variant's pinned amplitude, its pooled multiplier and its top-rung multiplier. The same
    resamples of the baseline, the variant's seeds paired with them where they match."""
    bE, balpha, bA = ref.boot
    wv = _point_weights(var, _draw(rng, var, ref.n_boot, paired_with=ref.counts), ref.n_boot)
    bAv = _pinned_amplitude(xv, var.y, wv, bE, balpha)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        bm = np.where((bAv > 0) & (bA > 0), (bA / bAv) ** (1 / balpha), np.nan)
        topm = var.rung == var.rungs[-1]
        bl = (wv[:, topm] @ var.y[topm]) / wv[:, topm].sum(1)
        bc = (wv[:, topm] @ var.c[topm]) / wv[:, topm].sum(1)
        # A resampled mean at or below the resample's floor: the baseline never gets there, m_top is infinite.
        bmt = np.where(bl > bE, ref.c0 * ((bl - bE) / bA) ** (-1 / balpha) / bc, np.inf)
        bmt = np.where(bA > 0, bmt, np.nan)
    return bAv, bm, bmt


def _t_intervals(joint: Mapping[str, Any], ref: _Reference, A_v: float, m: float, m_top: float, l_top: float,
                 n_top: int) -> tuple[list[float] | None, list[float] | None]:
    """Lack-of-fit t intervals of the pooled and top-rung multipliers, centred on the pinned estimates, with the
    joint fit's covariance; None where there is no covariance or no estimate."""
    if joint["cov"] is None or not math.isfinite(m):
        return None, None
    E, alpha = ref.E, ref.alpha
    ln_ab, ln_av = math.log(ref.A), math.log(A_v)
    # log m = (lnA_b - lnA_v) / alpha; parameters (E, alpha, lnA_b, lnA_v)
    grad = np.array([0.0, -(ln_ab - ln_av) / alpha ** 2, 1 / alpha, -1 / alpha])
    ci_t = _t_interval(math.log(m), grad, joint["cov"], 0.0, joint["df"], ref.level)
    if not math.isfinite(m_top):
        return ci_t, None
    # log m_top = ln C0 - ln Cbar - (ln(Lbar - E) - lnA_b) / alpha, plus Var(Lbar) = s^2 / n with s^2 the joint
    # fit's residual variance (more degrees of freedom than one rung's seeds, lack of fit included).
    d = l_top - E
    grad_top = np.array([1 / (alpha * d), (math.log(d) - ln_ab) / alpha ** 2, 1 / alpha, 0.0])
    extra = (1 / (alpha * d)) ** 2 * joint["s2"] / n_top
    return ci_t, _t_interval(math.log(m_top), grad_top, joint["cov"], extra, joint["df"], ref.level)
