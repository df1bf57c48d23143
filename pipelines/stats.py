"""Estimators and verdicts for incident metrics (pure functions; no I/O, no Dagster).

Conventions used everywhere in this module (docs/statistics.md explains them for analysts):

* Durations are in seconds. Before taking logs, durations below 1 s are set to 1 s
  (an incident resolved in the second it was created would otherwise have log(0) = -inf).
* Every comparison estimate is a ratio *after / before*. For durations the primary estimate is the
  ratio of geometric means (GM) with a Welch t confidence interval on log durations.
* Verdicts use one vocabulary: ``insufficient_data``, ``improved``, ``worsened``, ``equivalent``,
  ``inconclusive``. "Improved" means lower for durations, rates, shares and handoffs, and higher for
  deployment frequency (``direction="higher_is_better"``).
* Incidents still open at the as-of instant are *censored*: they enter duration statistics with
  their open age (a lower bound of the true duration) and are counted in ``n_censored``; the
  descriptive median switches to Kaplan-Meier when more than 1 % of a group is censored.
* Randomness (bootstrap) is always driven by an explicit, seeded ``numpy.random.Generator``.
"""

from __future__ import annotations

import functools
import math
import zlib
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import special
from scipy import stats as sps

SECONDS_PER_DAY = 86_400.0
DAYS_PER_MONTH = 365.25 / 12.0  # event-time months in org_effect
RATE_PER_DAYS = 30.0  # incident rates are reported per 30 days
MIN_SECONDS = 1.0  # floor before taking logs

DEFAULT_BEFORE_DAYS = 180
DEFAULT_AFTER_DAYS = 180
DEFAULT_TRANSITION_DAYS = 30
DEFAULT_MIN_N = 20
DEFAULT_LOW_POWER_N = 50
DEFAULT_EQUIVALENCE_MARGIN = 0.25
DEFAULT_MDE_LOW_POWER = 0.50
DEFAULT_N_BOOT = 2000
DEFAULT_SEED = 20_240_601
KM_CENSORED_SHARE = 0.01  # Kaplan-Meier median when more than this share is censored
MIN_N_P90 = 20  # no p90 under this many durations
POWER = 0.80

VERDICTS = ("insufficient_data", "improved", "worsened", "equivalent", "inconclusive")
DURATION_METRICS = ("time_to_resolve", "time_to_acknowledge")
DEFAULT_METRICS = ("time_to_resolve", "time_to_acknowledge", "after_hours", "handoffs", "incident_rate")
METRIC_DIRECTION = {
    "time_to_resolve": "lower_is_better",
    "time_to_acknowledge": "lower_is_better",
    "after_hours": "lower_is_better",
    "handoffs": "lower_is_better",
    "incident_rate": "lower_is_better",
    "deployment_frequency": "higher_is_better",
}
VARIANTS = ("transition_excluded", "all")


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------

def _z(confidence: float) -> float:
    return float(special.ndtri(0.5 + confidence / 2.0))


# Thin wrappers over scipy.special (the scipy.stats distribution objects cost ~100 us a call, which
# dominates when thousands of comparisons run in the validation harness).
def _t_ppf(q: float, df: float) -> float:
    return float(special.stdtrit(df, q))


def _t_sf(x: float, df: float) -> float:
    return float(special.stdtr(df, -x))


def _t_cdf(x: float, df: float) -> float:
    return float(special.stdtr(df, x))


def _norm_sf(x: float) -> float:
    return float(special.ndtr(-x))


def _norm_cdf(x: float) -> float:
    return float(special.ndtr(x))


def _mde_from_se(se_log: float, confidence: float = 0.95, power: float = POWER) -> float:
    """Smallest reduction (as a fraction) detectable with the given power, two-sided test.

    Closed form on the log scale: 1 - exp(-(z_{1-alpha/2} + z_{power}) * SE).
    """
    if not np.isfinite(se_log):
        return float("nan")
    return float(1.0 - math.exp(-(_z(confidence) + float(special.ndtri(power))) * se_log))


def mde_closed_form(n_before: int, n_after: int, sigma: float, confidence: float = 0.95,
                    power: float = POWER) -> float:
    """MDE of the GM ratio for a Welch test on logs: 1 - exp(-(z_a + z_b) * sigma * sqrt(1/n1 + 1/n2))."""
    if n_before < 1 or n_after < 1 or not np.isfinite(sigma):
        return float("nan")
    return _mde_from_se(sigma * math.sqrt(1.0 / n_before + 1.0 / n_after), confidence, power)


def _log_seconds(x: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(np.asarray(x, dtype=float), MIN_SECONDS))


def team_seed(seed: int, *parts: str) -> np.random.Generator:
    """A generator seeded from ``seed`` and stable strings (team, metric, variant).

    Results for one team do not depend on which other teams are in the table.
    """
    words = [int(seed) & 0xFFFFFFFF] + [zlib.crc32(p.encode("utf-8")) for p in parts]
    return np.random.default_rng(words)


def _with_verdict(out: dict, nb: int, na: int, *, min_n: int, low_power_n: int, mde_low_power: float,
                  alpha: float, direction: str) -> dict:
    """Add the verdict and the low-power flag of a two-arm comparison (``nb``, ``na`` per arm)."""
    out["verdict"] = decide_verdict(nb, na, out["ci_low"], out["ci_high"], out["tost_p"], min_n=min_n,
                                    alpha=alpha, direction=direction)
    out["low_power"] = bool(nb < low_power_n or na < low_power_n or not (out["mde"] <= mde_low_power))
    return out


def decide_verdict(n_before: float, n_after: float, ci_low: float, ci_high: float, tost_p: float, *,
                   min_n: int = DEFAULT_MIN_N, alpha: float = 0.05,
                   direction: str = "lower_is_better", sufficient: bool | None = None) -> str:
    """The verdict rules shared by every comparison.

    1. ``insufficient_data`` when an arm has fewer than ``min_n`` observations (or ``sufficient``
       is given as False by the caller, e.g. for rates).
    2. ``improved`` / ``worsened`` when the (1 - alpha) CI of the ratio excludes 1; the direction
       decides which side is better.
    3. ``equivalent`` when the TOST p value is below alpha (the 90 % CI lies inside the margin).
    4. ``inconclusive`` otherwise. Never "no change".
    """
    if sufficient is None:
        sufficient = n_before >= min_n and n_after >= min_n
    if not sufficient:
        return "insufficient_data"
    lower_better = direction == "lower_is_better"
    if np.isfinite(ci_high) and ci_high < 1.0:
        return "improved" if lower_better else "worsened"
    if np.isfinite(ci_low) and ci_low > 1.0:
        return "worsened" if lower_better else "improved"
    if np.isfinite(tost_p) and tost_p < alpha:
        return "equivalent"
    return "inconclusive"


# ---------------------------------------------------------------------------------------------
# descriptive statistics
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4096)
def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int, float] | None:
    """1-based ranks (r, s) of the exact distribution-free CI for the median, and its coverage.

    [X_(r), X_(s)] with s = n - r + 1 and r the largest rank with P(Binomial(n, 1/2) <= r - 1) <= alpha/2.
    Coverage = 1 - 2 P(B <= r - 1) >= confidence. None when n is too small (n <= 5 at 95 %).
    """
    if n < 1:
        return None
    alpha = 1.0 - confidence
    cdf = sps.binom.cdf(np.arange(n + 1), n, 0.5)
    r = int(np.sum(cdf <= alpha / 2.0 + 1e-12))
    if r == 0:
        return None
    return r, n - r + 1, float(1.0 - 2.0 * cdf[r - 1])


def wilson_ci(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """Proportion with its Wilson score interval: (p, low, high)."""
    if n <= 0:
        return float("nan"), float("nan"), float("nan")
    z = _z(confidence)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(p), float(max(0.0, centre - half)), float(min(1.0, centre + half))


@functools.lru_cache(maxsize=4096)
def poisson_ci(count: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) CI for a Poisson count: chi-square quantiles."""
    # chi2.ppf(q, 2 k) / 2 is gammaincinv(k, q): the same numbers, without the ~100 us of the
    # scipy.stats wrapper (thousands of team-months call this).
    alpha = 1.0 - confidence
    low = 0.0 if count == 0 else float(special.gammaincinv(float(count), alpha / 2.0))
    high = float(special.gammaincinv(float(count + 1), 1.0 - alpha / 2.0))
    return low, high


def rate_ci(count: int, exposure_days: float, confidence: float = 0.95) -> tuple[float, float, float]:
    """Incidents per 30 days with the exact Poisson CI: (rate, low, high). NaN when exposure is 0."""
    if not exposure_days or exposure_days <= 0:
        return float("nan"), float("nan"), float("nan")
    scale = RATE_PER_DAYS / float(exposure_days)
    low, high = poisson_ci(int(count), confidence)
    return float(count * scale), low * scale, high * scale


def kaplan_meier(times, events) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kaplan-Meier survival at each distinct event time: (t, S(t), Greenwood SE of S(t))."""
    t = np.asarray(times, dtype=float)
    e = np.asarray(events, dtype=bool)
    order = np.argsort(t, kind="mergesort")
    t, e = t[order], e[order]
    uniq, first = np.unique(t, return_index=True)
    n_at_risk = len(t) - first
    d = np.add.reduceat(e.astype(int), first) if len(t) else np.array([], dtype=int)
    keep = d > 0
    uniq, n_at_risk, d = uniq[keep], n_at_risk[keep], d[keep]
    surv = np.cumprod(1.0 - d / n_at_risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        gw = np.cumsum(np.where(n_at_risk > d, d / (n_at_risk * (n_at_risk - d)), np.inf))
    with np.errstate(invalid="ignore"):
        se = np.where(surv > 0, surv * np.sqrt(gw), 0.0)
    return uniq, surv, se


def _km_quantile(t: np.ndarray, surv: np.ndarray, q: float) -> float:
    """Smallest event time with S(t) <= 1 - q (NaN when the curve never gets there)."""
    idx = np.nonzero(surv <= 1.0 - q + 1e-12)[0]
    return float(t[idx[0]]) if len(idx) else float("nan")


def _sorted_median(xs: np.ndarray) -> float:
    """``np.median`` of an ascending, NaN-free array, by the same arithmetic (the middle value, or
    the two middle values added and halved), without numpy's per-call overhead."""
    n = len(xs)
    if n % 2:
        return float(xs[n // 2])
    return (float(xs[n // 2 - 1]) + float(xs[n // 2])) / 2.0


def _sorted_quantile(xs: np.ndarray, q: float) -> float:
    """``np.quantile(xs, q)`` (method "linear") of an ascending, NaN-free array, by numpy's own
    arithmetic: virtual index (n - 1) q, and its lerp that interpolates from the upper neighbour
    when the weight is 1/2 or more."""
    n = len(xs)
    virtual = (n - 1) * q
    if virtual >= n - 1:
        lo = hi = n - 1
        gamma = virtual + 1.0  # numpy's index -1 for both neighbours; the weight then does not matter
    else:
        lo = math.floor(virtual)
        hi = lo + 1
        gamma = virtual - lo
    a, b = float(xs[lo]), float(xs[hi])
    diff = b - a
    return b - diff * (1.0 - gamma) if gamma >= 0.5 else a + diff * gamma


def summarize_durations(seconds, *, censored=None, threshold_seconds: float = 4 * 3600,
                        min_n_p90: int = MIN_N_P90, confidence: float = 0.95) -> dict:
    """Descriptive statistics of one group of durations (one team and period).

    ``censored`` marks incidents still open at the as-of instant; their ``seconds`` is the open age.
    Handling of censored incidents (never dropped):

    * median, quartiles, p90: Kaplan-Meier estimates when more than 1 % are censored (median CI by
      the Brookmeyer-Crowley method with Greenwood SE); otherwise order statistics with each open
      incident counted at its open age (``median_method`` says which);
    * geometric and arithmetic mean: open incidents counted at their open age, so both are lower
      bounds when ``n_censored`` > 0;
    * share over the threshold: an open incident older than the threshold counts as over; one
      younger than the threshold has an unknown outcome and is left out of that share's denominator.
    """
    x = np.asarray(seconds, dtype=float)
    cens = np.zeros(len(x), dtype=bool) if censored is None else np.asarray(censored, dtype=bool)
    ok = np.isfinite(x)
    x, cens = x[ok], cens[ok]
    over = x > threshold_seconds
    known = ~cens | over
    return _summary(x, cens, n_cens=int(cens.sum()), logs=_log_seconds(x), n_over=int(over[known].sum()),
                    n_known=int(known.sum()), min_n_p90=min_n_p90, confidence=confidence)


def _summary(x: np.ndarray, cens: np.ndarray, *, n_cens: int, logs: np.ndarray, n_over: int, n_known: int,
             min_n_p90: int = MIN_N_P90, confidence: float = 0.95) -> dict:
    """``summarize_durations`` of finite durations ``x`` (censored where ``cens``) from the pieces
    it derives: ``logs`` = ``_log_seconds(x)``; ``n_known``, the incidents whose outcome against
    the threshold is known; ``n_over``, those of them over it. ``period_summaries`` derives the
    pieces for thousands of groups at once."""
    n = int(len(x))
    nan = float("nan")
    out = {
        "n": n, "n_censored": n_cens, "median_method": None,
        "median_s": nan, "median_ci_low_s": nan, "median_ci_high_s": nan,
        "p25_s": nan, "p75_s": nan, "p90_s": None,
        "gmean_s": nan, "gmean_ci_low_s": nan, "gmean_ci_high_s": nan, "gmean_is_lower_bound": n_cens > 0,
        "share_over_4h": nan, "share_over_4h_ci_low": nan, "share_over_4h_ci_high": nan,
        "share_over_4h_n": 0,
        "mean_s_not_for_comparison": nan,
    }
    if n == 0:
        return out
    z = _z(confidence)
    if n_cens > KM_CENSORED_SHARE * n:
        t, s, se = kaplan_meier(x, ~cens)
        out["median_method"] = "kaplan_meier"
        out["median_s"] = _km_quantile(t, s, 0.5)
        out["p25_s"] = _km_quantile(t, s, 0.25)
        out["p75_s"] = _km_quantile(t, s, 0.75)
        if n >= min_n_p90:
            out["p90_s"] = _km_quantile(t, s, 0.90)
        # S(t) falls with t: the lower band S - z*se reaches 1/2 first (the lower limit), the
        # upper band S + z*se last (the upper limit).
        lo_idx = np.nonzero(s - z * se <= 0.5)[0]
        hi_idx = np.nonzero(s + z * se <= 0.5)[0]
        out["median_ci_low_s"] = float(t[lo_idx[0]]) if len(lo_idx) else nan
        out["median_ci_high_s"] = float(t[hi_idx[0]]) if len(hi_idx) else nan
    else:
        xs = np.sort(x)
        out["median_method"] = "order_statistic"
        out["median_s"] = _sorted_median(xs)
        out["p25_s"], out["p75_s"] = _sorted_quantile(xs, 0.25), _sorted_quantile(xs, 0.75)
        if n >= min_n_p90:
            out["p90_s"] = _sorted_quantile(xs, 0.90)
        ranks = median_ci_ranks(n, confidence)
        if ranks is not None:
            out["median_ci_low_s"] = float(xs[ranks[0] - 1])
            out["median_ci_high_s"] = float(xs[ranks[1] - 1])
    m = _mean(logs)
    out["gmean_s"] = math.exp(m)
    if n >= 2:
        half = _t_ppf(0.5 + confidence / 2, n - 1) * _std_ddof1(logs, m) / math.sqrt(n)
        out["gmean_ci_low_s"], out["gmean_ci_high_s"] = math.exp(m - half), math.exp(m + half)
    p, lo, hi = wilson_ci(n_over, n_known, confidence)
    out.update(share_over_4h=p, share_over_4h_ci_low=lo, share_over_4h_ci_high=hi, share_over_4h_n=n_known)
    out["mean_s_not_for_comparison"] = _mean(x)
    return out


def _mean(x: np.ndarray) -> float:
    """``x.mean()`` of a non-empty float array by numpy's own arithmetic (its sum, divided by n),
    without the per-call overhead of ``ndarray.mean``."""
    return float(np.add.reduce(x)) / len(x)


def _std_ddof1(x: np.ndarray, mean: float) -> float:
    """``x.std(ddof=1)`` given ``mean`` = ``_mean(x)``, by numpy's own arithmetic (the sum of the
    squared deviations, divided by n - 1, square-rooted)."""
    d = x - mean
    return math.sqrt(float(np.add.reduce(d * d)) / (len(x) - 1))


# ---------------------------------------------------------------------------------------------
# two-arm comparisons
# ---------------------------------------------------------------------------------------------

def bootstrap_medians(sorted_values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of ``n_boot`` with-replacement resamples of ``sorted_values``, drawn exactly and in O(n_boot).

    Resampling n values with replacement picks index floor(n U) for uniform U. The k-th smallest of n
    uniforms is Beta(k, n - k + 1); given it, the next one is U_(k) + (1 - U_(k)) Beta(1, n - k).
    So the two middle order statistics of a resample, and hence its median (``np.median``
    convention), have exactly the distribution of the naive bootstrap, without materialising
    n_boot x n resamples.
    """
    v = np.asarray(sorted_values, dtype=float)
    n = len(v)
    if n == 0:
        return np.full(n_boot, np.nan)
    if n == 1:
        return np.full(n_boot, v[0])
    k = (n + 1) // 2  # 1-based rank of the (lower) middle order statistic
    u_k = rng.beta(k, n - k + 1, size=n_boot)
    i_k = np.minimum((u_k * n).astype(np.int64), n - 1)
    if n % 2 == 1:
        return v[i_k]
    u_k1 = u_k + (1.0 - u_k) * rng.beta(1, n - k, size=n_boot)
    i_k1 = np.minimum((u_k1 * n).astype(np.int64), n - 1)
    return 0.5 * (v[i_k] + v[i_k1])


def mann_whitney(x, y) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test of x against y: (U of x, p value).

    U counts pairs with x > y (ties count 1/2). p: scipy's exact distribution when a sample has at
    most 8 values and there are no ties; otherwise the normal approximation with tie correction
    and continuity correction (the same as ``scipy.stats.mannwhitneyu(method="asymptotic")``,
    written out here because the scipy wrapper costs ~1 ms a call).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        return float("nan"), float("nan")
    allv = np.concatenate([x, y])
    uniq, inv, counts = np.unique(allv, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    avg_rank = upper - (counts - 1) / 2.0
    r1 = float(avg_rank[inv[:n1]].sum())
    u1 = r1 - n1 * (n1 + 1) / 2.0
    ties = bool((counts > 1).any())
    if min(n1, n2) <= 8 and not ties:
        res = sps.mannwhitneyu(x, y, alternative="two-sided", method="exact")
        return u1, float(res.pvalue)
    n = n1 + n2
    tie_term = float(((counts.astype(float) ** 3) - counts).sum()) / (n * (n - 1))
    sd = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie_term))
    if sd == 0:
        return u1, 1.0
    u = max(u1, n1 * n2 - u1)
    z = (u - n1 * n2 / 2.0 - 0.5) / sd
    return u1, float(min(1.0, 2.0 * _norm_sf(z)))


def _welch(la: np.ndarray, lb: np.ndarray) -> tuple[float, float, float]:
    """(difference of means a - b, SE, Welch-Satterthwaite df)."""
    na, nb = len(la), len(lb)
    va, vb = la.var(ddof=1), lb.var(ddof=1)
    sa, sb = va / na, vb / nb
    se = math.sqrt(sa + sb)
    denom = (sa * sa / (na - 1) if na > 1 else 0.0) + (sb * sb / (nb - 1) if nb > 1 else 0.0)
    df = (sa + sb) ** 2 / denom if denom > 0 else float(na + nb - 2)
    return float(la.mean() - lb.mean()), se, float(df)


def _empty_comparison(n_before: int, n_after: int) -> dict:
    nan = float("nan")
    return {
        "n_before": int(n_before), "n_after": int(n_after),
        "estimate": nan, "ci_low": nan, "ci_high": nan, "p_value": nan, "se_log": nan, "df": nan,
        "mannwhitney_p": nan, "prob_after_shorter": nan,
        "median_ratio": nan, "median_ratio_ci_low": nan, "median_ratio_ci_high": nan,
        "mde": nan, "tost_p": nan, "mean_ratio_not_for_comparison": nan,
        "verdict": "insufficient_data", "low_power": True,
    }


def compare_arms(before, after, *, metric: str = "time_to_resolve", min_n: int = DEFAULT_MIN_N,
                 low_power_n: int = DEFAULT_LOW_POWER_N,
                 equivalence_margin: float = DEFAULT_EQUIVALENCE_MARGIN, n_boot: int = DEFAULT_N_BOOT,
                 rng: np.random.Generator | None = None, confidence: float = 0.95,
                 mde_low_power: float = DEFAULT_MDE_LOW_POWER, direction: str | None = None) -> dict:
    """Before/after comparison of two samples of durations (seconds).

    Primary: ratio of geometric means after/before, exp(mean log after - mean log before), with a
    Welch t CI and p value on log durations. Also: Mann-Whitney p (asymptotic or exact as scipy
    chooses), P(after < before), the median ratio with a percentile bootstrap CI (seeded), the MDE
    (80 % power, pooled SD of logs), TOST on logs against [1 - margin, 1 + margin], the verdict and
    the low-power flag (an arm under ``low_power_n`` or an MDE above 50 %).
    """
    if direction is None:
        direction = METRIC_DIRECTION.get(metric, "lower_is_better")
    a = np.asarray(after, dtype=float)
    b = np.asarray(before, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    na, nb = len(a), len(b)
    out = _empty_comparison(nb, na)
    if na == 0 or nb == 0:
        return out
    la, lb = _log_seconds(a), _log_seconds(b)
    out["estimate"] = math.exp(la.mean() - lb.mean())
    out["mean_ratio_not_for_comparison"] = float(a.mean() / b.mean()) if b.mean() > 0 else float("nan")
    # medians on the (1 s floored) raw scale, so the median ratio is median(after) / median(before)
    a_sorted = np.sort(np.maximum(a, MIN_SECONDS))
    b_sorted = np.sort(np.maximum(b, MIN_SECONDS))
    out["median_ratio"] = _sorted_median(a_sorted) / _sorted_median(b_sorted)
    alpha = 1.0 - confidence
    if na >= 2 and nb >= 2:
        diff, se, df = _welch(la, lb)
        out["se_log"], out["df"] = se, df
        if se > 0:
            tcrit = _t_ppf(1 - alpha / 2, df)
            out["ci_low"], out["ci_high"] = math.exp(diff - tcrit * se), math.exp(diff + tcrit * se)
            out["p_value"] = 2 * _t_sf(abs(diff) / se, df)
            lo, hi = math.log(1 - equivalence_margin), math.log(1 + equivalence_margin)
            p_lo = _t_sf((diff - lo) / se, df)
            p_hi = _t_cdf((diff - hi) / se, df)
            out["tost_p"] = max(p_lo, p_hi)
        else:  # all values identical within each arm
            out["ci_low"] = out["ci_high"] = out["estimate"]
            out["p_value"] = 1.0 if diff == 0 else 0.0
            out["tost_p"] = 0.0 if math.log(1 - equivalence_margin) < diff < math.log(1 + equivalence_margin) else 1.0
        sp = math.sqrt(((na - 1) * la.var(ddof=1) + (nb - 1) * lb.var(ddof=1)) / (na + nb - 2))
        out["mde"] = mde_closed_form(nb, na, sp, confidence)
        u_after, out["mannwhitney_p"] = mann_whitney(la, lb)
        out["prob_after_shorter"] = float(1.0 - u_after / (na * nb))
        if n_boot and n_boot > 0:
            rng = rng if rng is not None else np.random.default_rng(DEFAULT_SEED)
            ratios = bootstrap_medians(a_sorted, n_boot, rng) / bootstrap_medians(b_sorted, n_boot, rng)
            if np.isfinite(ratios).all():
                ratios.sort()
                q = (_sorted_quantile(ratios, alpha / 2), _sorted_quantile(ratios, 1 - alpha / 2))
            else:  # pragma: no cover - medians of durations floored at 1 s are finite
                q = np.quantile(ratios, [alpha / 2, 1 - alpha / 2])
            out["median_ratio_ci_low"], out["median_ratio_ci_high"] = float(q[0]), float(q[1])
    return _with_verdict(out, nb, na, min_n=min_n, low_power_n=low_power_n, mde_low_power=mde_low_power,
                         alpha=alpha, direction=direction)


# The binomial and beta functions compare_rates needs, called through the distributions' own
# implementation hooks (``_pmf``, ``_cdf``, ``_sf``, ``_ppf``: what ``scipy.stats.binom.pmf`` and
# friends call after checking their arguments) with the same support rules, and the two-sided
# ``scipy.stats.binomtest`` p value by scipy's own algorithm on them: the same numbers, without
# the ~0.1-1 ms of argument handling per call (two-sided binomtest makes a dozen such calls).
def _binom_pmf(k, n: int, p: float) -> float:
    """``scipy.stats.binom.pmf(k, n, p)`` for 0 <= p <= 1."""
    if k < 0 or k > n or math.floor(k) != k:
        return 0.0
    return float(np.clip(sps.binom._pmf(k, n, p), 0, 1))


def _binom_cdf(k, n: int, p: float) -> float:
    """``scipy.stats.binom.cdf(k, n, p)`` for 0 <= p <= 1."""
    if k >= n:
        return 1.0
    if k < 0:
        return 0.0
    return float(np.clip(sps.binom._cdf(k, n, p), 0, 1))


def _binom_sf(k, n: int, p: float) -> float:
    """``scipy.stats.binom.sf(k, n, p)`` for 0 <= p <= 1."""
    if k < 0:
        return 1.0
    if k >= n:
        return 0.0
    return float(np.clip(sps.binom._sf(k, n, p), 0, 1))


def _beta_ppf(q: float, a: float, b: float) -> float:
    """``scipy.stats.beta.ppf(q, a, b)`` for 0 < q < 1 and a, b > 0."""
    return float(sps.beta._ppf(q, a, b))


def _binomtest_two_sided(k: int, n: int, p: float) -> float:
    """``scipy.stats.binomtest(k, n, p).pvalue`` (two-sided) for 0 <= k <= n, n >= 1, 0 <= p <= 1."""

    def search(a, d, lo, hi):  # scipy.stats._binomtest._binary_search_for_binom_tst
        while lo < hi:
            mid = lo + (hi - lo) // 2
            midval = a(mid)
            if midval < d:
                lo = mid + 1
            elif midval > d:
                hi = mid - 1
            else:
                return mid
        return lo if a(lo) <= d else lo - 1

    d = _binom_pmf(k, n, p)
    rerr = 1 + 1e-7
    if k == p * n:
        return 1.0
    if k < p * n:
        ix = search(lambda x1: -_binom_pmf(x1, n, p), -d * rerr, np.ceil(p * n), n)
        y = n - ix + int(d * rerr == _binom_pmf(ix, n, p))
        pval = _binom_cdf(k, n, p) + _binom_sf(n - y, n, p)
    else:
        ix = search(lambda x1: _binom_pmf(x1, n, p), d * rerr, 0, np.floor(p * n))
        y = ix + 1
        pval = _binom_cdf(y - 1, n, p) + _binom_sf(k - 1, n, p)
    return float(min(1.0, pval))


def compare_rates(count_before: int, exposure_before_days: float, count_after: int,
                  exposure_after_days: float, *, min_n: int = DEFAULT_MIN_N,
                  low_power_n: int = DEFAULT_LOW_POWER_N,
                  equivalence_margin: float = DEFAULT_EQUIVALENCE_MARGIN, confidence: float = 0.95,
                  mde_low_power: float = DEFAULT_MDE_LOW_POWER, min_exposure_days: float = 30.0,
                  direction: str = "lower_is_better") -> dict:
    """Rate ratio after/before with the exact conditional (binomial) CI and p value.

    Given the total N = k_before + k_after, k_after ~ Binomial(N, pi) with
    pi = RR e_after / (RR e_after + e_before). The Clopper-Pearson CI of pi maps to a CI of RR; the
    p value is the exact binomial test of pi = e_after / (e_after + e_before). TOST: two exact
    one-sided binomial tests at RR = 1 - margin and 1 + margin.

    Sufficiency for counts: at least ``2 * min_n`` events in total and ``min_exposure_days`` of
    exposure in each arm (a rate that falls from 30 to 5 events is informative, so the per-arm
    event rule of durations is not used). Low power: fewer than ``2 * low_power_n`` events in
    total or an MDE above 50 %.
    """
    kb, ka = int(count_before), int(count_after)
    eb, ea = float(exposure_before_days or 0.0), float(exposure_after_days or 0.0)
    nan = float("nan")
    rb = kb * RATE_PER_DAYS / eb if eb > 0 else nan
    rr_a = ka * RATE_PER_DAYS / ea if ea > 0 else nan
    out = {"n_before": kb, "n_after": ka, "exposure_before_days": eb, "exposure_after_days": ea,
           "rate_before": rb, "rate_after": rr_a, "estimate": nan, "ci_low": nan, "ci_high": nan,
           "p_value": nan, "se_log": nan, "mde": nan, "tost_p": nan,
           "verdict": "insufficient_data", "low_power": True}
    total = kb + ka
    if eb <= 0 or ea <= 0 or total == 0:
        return out
    alpha = 1.0 - confidence
    odds_scale = eb / ea
    out["estimate"] = (ka / ea) / (kb / eb) if kb > 0 else float("inf")
    pi_lo = 0.0 if ka == 0 else _beta_ppf(alpha / 2, ka, kb + 1)
    pi_hi = 1.0 if kb == 0 else _beta_ppf(1 - alpha / 2, ka + 1, kb)
    out["ci_low"] = pi_lo / (1 - pi_lo) * odds_scale
    out["ci_high"] = pi_hi / (1 - pi_hi) * odds_scale if pi_hi < 1 else float("inf")
    p0 = ea / (ea + eb)
    out["p_value"] = _binomtest_two_sided(ka, total, p0)

    def pi_of(rr: float) -> float:
        return rr * ea / (rr * ea + eb)

    p_lo = _binom_sf(ka - 1, total, pi_of(1 - equivalence_margin))
    p_hi = _binom_cdf(ka, total, pi_of(1 + equivalence_margin))
    out["tost_p"] = max(p_lo, p_hi)
    se = math.sqrt(1.0 / max(kb, 0.5) + 1.0 / max(ka, 0.5))
    out["se_log"] = se
    out["mde"] = _mde_from_se(se, confidence)
    sufficient = total >= 2 * min_n and eb >= min_exposure_days and ea >= min_exposure_days
    out["verdict"] = decide_verdict(kb, ka, out["ci_low"], out["ci_high"], out["tost_p"], alpha=alpha,
                                    direction=direction, sufficient=sufficient)
    out["low_power"] = bool(total < 2 * low_power_n or not (out["mde"] <= mde_low_power))
    return out


def compare_proportions(successes_before: int, n_before: int, successes_after: int, n_after: int, *,
                        min_n: int = DEFAULT_MIN_N, low_power_n: int = DEFAULT_LOW_POWER_N,
                        equivalence_margin: float = DEFAULT_EQUIVALENCE_MARGIN, confidence: float = 0.95,
                        mde_low_power: float = DEFAULT_MDE_LOW_POWER,
                        direction: str = "lower_is_better") -> dict:
    """Ratio of two proportions after/before (e.g. the after-hours share), Katz log CI.

    log RR +- z sqrt(1/x_a - 1/n_a + 1/x_b - 1/n_b); 0.5 is added to every cell when a count is 0
    or equals its n (Haldane). The p value and TOST use the same normal approximation.
    """
    xb, nb, xa, na = int(successes_before), int(n_before), int(successes_after), int(n_after)
    nan = float("nan")
    out = {"n_before": nb, "n_after": na, "share_before": xb / nb if nb else nan,
           "share_after": xa / na if na else nan, "estimate": nan, "ci_low": nan, "ci_high": nan,
           "p_value": nan, "se_log": nan, "mde": nan, "tost_p": nan,
           "verdict": "insufficient_data", "low_power": True}
    if nb == 0 or na == 0:
        return out
    alpha = 1.0 - confidence
    if xb == 0 and xa == 0:
        out["verdict"] = decide_verdict(nb, na, nan, nan, nan, min_n=min_n, alpha=alpha, direction=direction)
        return out
    out["estimate"] = (xa / na) / (xb / nb) if xb > 0 else float("inf")
    if min(xa, xb) == 0 or xa == na or xb == nb:
        cxa, cna, cxb, cnb = xa + 0.5, na + 1.0, xb + 0.5, nb + 1.0
    else:
        cxa, cna, cxb, cnb = float(xa), float(na), float(xb), float(nb)
    lrr = math.log((cxa / cna) / (cxb / cnb))
    se = math.sqrt(max(1 / cxa - 1 / cna + 1 / cxb - 1 / cnb, 0.0))
    z = _z(confidence)
    out["se_log"] = se
    if se > 0:
        out["ci_low"], out["ci_high"] = math.exp(lrr - z * se), math.exp(lrr + z * se)
        out["p_value"] = 2 * _norm_sf(abs(lrr) / se)
        p_lo = _norm_sf((lrr - math.log(1 - equivalence_margin)) / se)
        p_hi = _norm_cdf((lrr - math.log(1 + equivalence_margin)) / se)
        out["tost_p"] = max(p_lo, p_hi)
        out["mde"] = _mde_from_se(se, confidence)
    return _with_verdict(out, nb, na, min_n=min_n, low_power_n=low_power_n, mde_low_power=mde_low_power,
                         alpha=alpha, direction=direction)


def compare_counts(before, after, *, min_n: int = DEFAULT_MIN_N, low_power_n: int = DEFAULT_LOW_POWER_N,
                   equivalence_margin: float = DEFAULT_EQUIVALENCE_MARGIN, confidence: float = 0.95,
                   mde_low_power: float = DEFAULT_MDE_LOW_POWER,
                   direction: str = "lower_is_better") -> dict:
    """Ratio of mean per-incident counts (e.g. handoffs per incident) after/before.

    log(mean_a / mean_b) with a delta-method SE that uses each arm's own variance (so it is robust
    to over-dispersion): SE^2 = s_a^2 / (n_a m_a^2) + s_b^2 / (n_b m_b^2); t with Welch-Satterthwaite df.
    """
    a = np.asarray(after, dtype=float)
    b = np.asarray(before, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    na, nb = len(a), len(b)
    nan = float("nan")
    out = {"n_before": nb, "n_after": na, "mean_before": float(b.mean()) if nb else nan,
           "mean_after": float(a.mean()) if na else nan, "estimate": nan, "ci_low": nan, "ci_high": nan,
           "p_value": nan, "se_log": nan, "mde": nan, "tost_p": nan,
           "verdict": "insufficient_data", "low_power": True}
    if na == 0 or nb == 0:
        return out
    alpha = 1.0 - confidence
    ma, mb = a.mean(), b.mean()
    if mb > 0:
        out["estimate"] = float(ma / mb)
    if ma > 0 and mb > 0 and na >= 2 and nb >= 2:
        sa = a.var(ddof=1) / (na * ma * ma)
        sb = b.var(ddof=1) / (nb * mb * mb)
        se = math.sqrt(sa + sb)
        out["se_log"] = se
        if se > 0:
            df = (sa + sb) ** 2 / (sa * sa / (na - 1) + sb * sb / (nb - 1))
            d = math.log(ma / mb)
            tcrit = _t_ppf(1 - alpha / 2, df)
            out["ci_low"], out["ci_high"] = math.exp(d - tcrit * se), math.exp(d + tcrit * se)
            out["p_value"] = 2 * _t_sf(abs(d) / se, df)
            p_lo = _t_sf((d - math.log(1 - equivalence_margin)) / se, df)
            p_hi = _t_cdf((d - math.log(1 + equivalence_margin)) / se, df)
            out["tost_p"] = max(p_lo, p_hi)
            out["mde"] = _mde_from_se(se, confidence)
    return _with_verdict(out, nb, na, min_n=min_n, low_power_n=low_power_n, mde_low_power=mde_low_power,
                         alpha=alpha, direction=direction)


def benjamini_hochberg(p_values) -> np.ndarray:
    """Benjamini-Hochberg adjusted q values (step-up), NaN in -> NaN out; m counts finite p only."""
    p = np.asarray(p_values, dtype=float)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return q
    pv = p[ok]
    order = np.argsort(pv, kind="mergesort")
    ranked = pv[order] * m / np.arange(1, m + 1)
    adj = np.minimum.accumulate(ranked[::-1])[::-1]
    res = np.empty(m)
    res[order] = np.minimum(adj, 1.0)
    q[ok] = res
    return q


# ---------------------------------------------------------------------------------------------
# tables: per-team before/after
# ---------------------------------------------------------------------------------------------

def _to_utc(series: pd.Series) -> pd.Series:
    s = pd.to_datetime(series, utc=True)
    return s


def _ns(ts) -> int:
    return int(pd.Timestamp(ts).as_unit("ns").value)


def default_as_of(incidents: pd.DataFrame) -> pd.Timestamp:
    """Latest timestamp in the table (created, acknowledged or resolved)."""
    cols = [c for c in ("created_at", "acknowledged_at", "resolved_at") if c in incidents.columns]
    vals = [_to_utc(incidents[c]).max() for c in cols]
    vals = [v for v in vals if pd.notna(v)]
    if not vals:
        raise ValueError("cannot infer as_of from an empty incident table; pass as_of")
    return max(vals)


def _as_of(incidents: pd.DataFrame, as_of) -> pd.Timestamp:
    if as_of is None:
        return default_as_of(incidents)
    ts = pd.Timestamp(as_of)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def prepare_incidents(incidents: pd.DataFrame, as_of=None) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Derive the per-incident quantities the comparisons use, as of one instant.

    Incidents created after ``as_of`` are ignored; an incident resolved (acknowledged) after
    ``as_of`` counts as open (unacknowledged) at ``as_of``. Columns of the result: team, created_ns,
    ttr_s, ttr_censored, and when available tta_s (NaN when never acknowledged), after_hours, handoffs.
    """
    as_of_ts = _as_of(incidents, as_of)
    created = _to_utc(incidents["created_at"])
    keep = (created <= as_of_ts).to_numpy()
    df = incidents.loc[keep]
    created = created[keep]
    out = pd.DataFrame({"team": df["team"].astype(str).to_numpy(),
                        "created_ns": created.dt.as_unit("ns").astype("int64").to_numpy()})
    as_of_ns = _ns(as_of_ts)
    if "resolved_at" in df.columns:
        res = _to_utc(df["resolved_at"])
        res_ns = res.dt.as_unit("ns").astype("int64").to_numpy()
        open_ = res.isna().to_numpy() | (res_ns > as_of_ns)
    else:
        res_ns = np.zeros(len(df), dtype=np.int64)
        open_ = np.ones(len(df), dtype=bool)
    end_ns = np.where(open_, as_of_ns, res_ns)
    out["ttr_s"] = (end_ns - out["created_ns"].to_numpy()) / 1e9
    out["ttr_censored"] = open_
    if "acknowledged_at" in df.columns:
        ack = _to_utc(df["acknowledged_at"])
        ack_ns = ack.dt.as_unit("ns").astype("int64").to_numpy()
        ack_ok = ack.notna().to_numpy() & (ack_ns <= as_of_ns)
        out["tta_s"] = np.where(ack_ok, (ack_ns - out["created_ns"].to_numpy()) / 1e9, np.nan)
    if "after_hours" in df.columns:
        ah = df["after_hours"]
        out["after_hours"] = pd.array(ah, dtype="boolean").to_numpy(dtype=float, na_value=np.nan)
    if "handoffs" in df.columns:
        out["handoffs"] = pd.to_numeric(df["handoffs"], errors="coerce").to_numpy(dtype=float)
    return out, as_of_ts


_DAY_NS = 86_400 * 10**9


def _window_ns(adopted_ns: int, variant: str, before_days: float, after_days: float,
               transition_days: float) -> tuple[int, int, int, int]:
    """Window bounds in ns since the epoch (see ``team_comparisons``)."""
    T = int(round(transition_days * _DAY_NS))
    b_start = adopted_ns - T - int(round(before_days * _DAY_NS))
    a_end = adopted_ns + T + int(round(after_days * _DAY_NS))
    if variant == "transition_excluded":
        return b_start, adopted_ns - T, adopted_ns + T, a_end
    return b_start, adopted_ns, adopted_ns, a_end


def _adoption_map(adoptions: pd.DataFrame) -> dict[str, pd.Timestamp]:
    out = {}
    for team, d in zip(adoptions["team"].astype(str), adoptions["adopted_on"]):
        if pd.isna(d):
            continue
        ts = pd.Timestamp(d)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        out[team] = ts
    return out


def team_comparisons(incidents: pd.DataFrame, adoptions: pd.DataFrame, *,
                     before_days: float = DEFAULT_BEFORE_DAYS, after_days: float = DEFAULT_AFTER_DAYS,
                     transition_days: float = DEFAULT_TRANSITION_DAYS, as_of=None,
                     metrics: Sequence[str] = DEFAULT_METRICS, deployments: pd.DataFrame | None = None,
                     variants: Sequence[str] = VARIANTS, data_start=None,
                     min_n: int = DEFAULT_MIN_N, low_power_n: int = DEFAULT_LOW_POWER_N,
                     equivalence_margin: float = DEFAULT_EQUIVALENCE_MARGIN,
                     n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED,
                     confidence: float = 0.95,
                     prepared: tuple[pd.DataFrame, pd.Timestamp] | None = None) -> pd.DataFrame:
    """One row per adopted team x metric x variant: the before/after comparison.

    Windows (A = adoption date, 00:00 UTC; T = transition_days):
      * ``transition_excluded``: before = [A - T - before_days, A - T), after = [A + T, A + T + after_days)
      * ``all``: the same outer bounds with the transition window included:
        before = [A - T - before_days, A), after = [A, A + T + after_days).
    Incidents are assigned by ``created_at``; windows are clipped to [data_start, as_of]
    (``data_start`` defaults to the earliest ``created_at`` in the table and only matters for rate
    exposure). Metrics whose source column is missing are skipped (no rows). ``deployments``
    (columns team, deployed_at) adds ``deployment_frequency``. q_value: Benjamini-Hochberg across
    teams within each metric and variant. ``prepared``: ``prepare_incidents(incidents, as_of)``
    when the caller already has it.
    """
    prep, as_of_ts = prepared if prepared is not None else prepare_incidents(incidents, as_of)
    as_of_ns = _ns(as_of_ts)
    if data_start is None:
        ds_ns = int(prep["created_ns"].min()) if len(prep) else as_of_ns
    else:
        ds = pd.Timestamp(data_start)
        ds_ns = _ns(ds.tz_localize("UTC") if ds.tzinfo is None else ds.tz_convert("UTC"))
    available = {"time_to_resolve": True, "incident_rate": True,
                 "time_to_acknowledge": "tta_s" in prep.columns,
                 "after_hours": "after_hours" in prep.columns,
                 "handoffs": "handoffs" in prep.columns,
                 "deployment_frequency": deployments is not None}
    metrics = [m for m in metrics if available.get(m, False)]
    if deployments is not None and "deployment_frequency" not in metrics:
        metrics.append("deployment_frequency")
    dep_by_team: dict[str, np.ndarray] = {}
    if deployments is not None and len(deployments):
        col = "deployed_at" if "deployed_at" in deployments.columns else "created_at"
        dts = _to_utc(deployments[col])
        dns = dts.dt.as_unit("ns").astype("int64").to_numpy()
        dteam = deployments["team"].astype(str).to_numpy()
        keep = dns <= as_of_ns
        codes, names = pd.factorize(dteam[keep], sort=True)
        kept = dns[keep]
        order = np.lexsort((kept, codes))
        bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
        for i, t in enumerate(names):
            dep_by_team[t] = kept[order[bounds[i]:bounds[i + 1]]]

    codes, uteams = pd.factorize(prep["team"])
    order = np.lexsort((prep["created_ns"].to_numpy(), codes))
    codes = codes[order]
    cols = {c: prep[c].to_numpy()[order] for c in prep.columns if c != "team"}
    created = cols["created_ns"]
    starts = np.searchsorted(codes, np.arange(len(uteams)), side="left")
    stops = np.searchsorted(codes, np.arange(len(uteams)), side="right")
    bounds = {str(t): (int(a), int(b)) for t, a, b in zip(uteams, starts, stops)}

    rows = []
    for team, adopted in sorted(_adoption_map(adoptions).items()):
        lo_i, hi_i = bounds.get(team, (0, 0))
        c_team = created[lo_i:hi_i]
        adopted_ns = _ns(adopted)
        for variant in variants:
            b0n, b1n, a0n, a1n = _window_ns(adopted_ns, variant, before_days, after_days, transition_days)
            b0n, a1n = max(b0n, ds_ns), min(a1n, as_of_ns)
            b1n, a0n = min(b1n, as_of_ns), min(a0n, as_of_ns)
            ib = slice(lo_i + np.searchsorted(c_team, b0n, "left"), lo_i + np.searchsorted(c_team, b1n, "left"))
            ia = slice(lo_i + np.searchsorted(c_team, a0n, "left"), lo_i + np.searchsorted(c_team, a1n, "left"))
            exp_b = max(0.0, (b1n - b0n) / 1e9 / SECONDS_PER_DAY)
            exp_a = max(0.0, (a1n - a0n) / 1e9 / SECONDS_PER_DAY)
            base = {"team": team, "variant": variant, "adopted_on": adopted.date(),
                    "before_start": pd.Timestamp(b0n, tz="UTC"), "before_end": pd.Timestamp(b1n, tz="UTC"),
                    "after_start": pd.Timestamp(a0n, tz="UTC"), "after_end": pd.Timestamp(max(a1n, a0n), tz="UTC"),
                    "transition_days": transition_days if variant == "transition_excluded" else 0}
            for metric in metrics:
                # the bootstrap's generator (only the duration metrics draw)
                rng = team_seed(seed, team, metric, variant) if metric in DURATION_METRICS else None
                kw = dict(min_n=min_n, low_power_n=low_power_n, equivalence_margin=equivalence_margin,
                          confidence=confidence, direction=METRIC_DIRECTION[metric])
                extra = {}
                if metric == "time_to_resolve":
                    res = compare_arms(cols["ttr_s"][ib], cols["ttr_s"][ia], metric=metric, n_boot=n_boot,
                                       rng=rng, **kw)
                    extra = {"n_censored_before": int(cols["ttr_censored"][ib].sum()),
                             "n_censored_after": int(cols["ttr_censored"][ia].sum())}
                elif metric == "time_to_acknowledge":
                    res = compare_arms(cols["tta_s"][ib], cols["tta_s"][ia], metric=metric, n_boot=n_boot,
                                       rng=rng, **kw)
                elif metric == "after_hours":
                    hb, ha = cols["after_hours"][ib], cols["after_hours"][ia]
                    hb, ha = hb[np.isfinite(hb)], ha[np.isfinite(ha)]
                    res = compare_proportions(int(hb.sum()), len(hb), int(ha.sum()), len(ha), **kw)
                elif metric == "handoffs":
                    res = compare_counts(cols["handoffs"][ib], cols["handoffs"][ia], **kw)
                elif metric == "incident_rate":
                    res = compare_rates(ib.stop - ib.start, exp_b, ia.stop - ia.start, exp_a, **kw)
                elif metric == "deployment_frequency":
                    d = dep_by_team.get(team, np.array([], dtype=np.int64))
                    kb = int(np.searchsorted(d, b1n) - np.searchsorted(d, b0n))
                    ka = int(np.searchsorted(d, a1n) - np.searchsorted(d, a0n))
                    res = compare_rates(kb, exp_b, ka, exp_a, **kw)
                else:  # pragma: no cover - filtered above
                    continue
                row = dict(base)
                row["metric"] = metric
                row.update(res)
                row.update(extra)
                row["exposure_before_days"] = exp_b
                row["exposure_after_days"] = exp_a
                rows.append(row)
    out = pd.DataFrame(rows, columns=_TEAM_COLUMNS if not rows else None)
    if not len(out):
        return pd.DataFrame(columns=_TEAM_COLUMNS)
    for c in _TEAM_COLUMNS:
        if c not in out.columns:
            out[c] = np.nan
    q = np.full(len(out), np.nan)
    pv = out["p_value"].to_numpy(dtype=float)
    key = out["metric"].astype(str).to_numpy() + "|" + out["variant"].astype(str).to_numpy()
    for k in np.unique(key):
        m = key == k
        q[m] = benjamini_hochberg(pv[m])
    out["q_value"] = q
    out["significant_fdr"] = out["q_value"] < (1.0 - confidence)
    out["low_power"] = out["low_power"].astype(bool)
    extra_cols = [c for c in out.columns if c not in _TEAM_COLUMNS]
    return out[_TEAM_COLUMNS + extra_cols]


_TEAM_COLUMNS = [
    "team", "metric", "variant", "estimate", "ci_low", "ci_high", "p_value", "q_value", "mde",
    "n_before", "n_after", "verdict", "low_power", "se_log", "tost_p", "median_ratio",
    "median_ratio_ci_low", "median_ratio_ci_high", "mannwhitney_p", "prob_after_shorter",
    "mean_ratio_not_for_comparison", "n_censored_before", "n_censored_after", "adopted_on",
    "transition_days", "before_start", "before_end", "after_start", "after_end",
    "exposure_before_days", "exposure_after_days",
]


# ---------------------------------------------------------------------------------------------
# per team and period: descriptive table
# ---------------------------------------------------------------------------------------------

def period_summaries(incidents: pd.DataFrame, adoptions: pd.DataFrame | None = None, *,
                     as_of=None, before_days: float = DEFAULT_BEFORE_DAYS,
                     after_days: float = DEFAULT_AFTER_DAYS,
                     transition_days: float = DEFAULT_TRANSITION_DAYS, data_start=None,
                     threshold_seconds: float = 4 * 3600, confidence: float = 0.95,
                     prepared: tuple[pd.DataFrame, pd.Timestamp] | None = None) -> pd.DataFrame:
    """Descriptive statistics per team and period: each calendar month (``period_kind`` "month")
    and, for adopted teams, the baseline and after windows (transition excluded).

    Columns: team, period_kind, period_start, period_end, n, exposure_days, incident_rate_per_30d
    (+ CI), the ``summarize_durations`` keys for time to resolve, median time to acknowledge,
    after-hours share and handoffs per incident when those columns exist. ``prepared``:
    ``prepare_incidents(incidents, as_of)`` when the caller already has it.
    """
    prep, as_of_ts = prepared if prepared is not None else prepare_incidents(incidents, as_of)
    as_of_ns = _ns(as_of_ts)
    ds_ns = int(prep["created_ns"].min()) if data_start is None else _ns(_as_of(prep, data_start))
    adopted = _adoption_map(adoptions) if adoptions is not None else {}
    prep = prep.sort_values(["team", "created_ns"], kind="mergesort").reset_index(drop=True)
    month_code = _calendar_month(prep["created_ns"].to_numpy())
    arrays = {c: prep[c].to_numpy() for c in prep.columns if c != "team"}
    team_arr = prep["team"].to_numpy()

    # The periods as (team, kind, start_ns, end_ns, first row, end row) of the sorted rows: each
    # team-month with incidents, then each adopted team's baseline and after windows.
    periods = []
    key_change = np.r_[True, (team_arr[1:] != team_arr[:-1]) | (month_code[1:] != month_code[:-1])]
    starts = np.flatnonzero(key_change)
    ends = np.r_[starts[1:], len(prep)]
    for i0, i1 in zip(starts, ends):
        mc = int(month_code[i0])
        y, m = divmod(mc, 12)
        start = _ns(pd.Timestamp(year=y, month=m + 1, day=1, tz="UTC"))
        y2, m2 = divmod(mc + 1, 12)
        end = _ns(pd.Timestamp(year=y2, month=m2 + 1, day=1, tz="UTC"))
        periods.append((team_arr[i0], "month", start, end, int(i0), int(i1)))
    # prep is sorted by team: each team's rows start where the team changes (np.unique's first indices)
    tstart = np.flatnonzero(np.r_[True, team_arr[1:] != team_arr[:-1]]) if len(team_arr) else np.array([], dtype=int)
    uteams = team_arr[tstart]
    tbounds = dict(zip(uteams, zip(tstart, list(tstart[1:]) + [len(prep)])))
    c_all = arrays["created_ns"]
    for team, a in sorted(adopted.items()):
        lo_i, hi_i = tbounds.get(team, (0, 0))
        c = c_all[lo_i:hi_i]
        b0, b1, a0, a1 = _window_ns(_ns(a), "transition_excluded", before_days, after_days, transition_days)
        for kind, start, end in (("before", max(b0, ds_ns), b1), ("after", a0, min(a1, as_of_ns))):
            # A window can end before it starts (adopted less than the transition before as_of, or
            # before data_start): it holds no rows, i1 = i0.
            i0 = int(lo_i + np.searchsorted(c, start))
            periods.append((team, kind, start, end, i0, max(i0, int(lo_i + np.searchsorted(c, end)))))
    rows = _describe_periods(arrays, periods, as_of_ns=as_of_ns, ds_ns=ds_ns, threshold_seconds=threshold_seconds,
                             confidence=confidence)
    out = pd.DataFrame(rows)
    for column in ("period_start", "period_end"):
        if column in out:
            out[column] = pd.to_datetime(out[column].to_numpy(dtype=np.int64), unit="ns", utc=True)
    return out


def _running_totals(values: np.ndarray) -> np.ndarray:
    """Running totals with a leading 0: the sum over rows [i0, i1) is ``p[i1] - p[i0]``."""
    return np.concatenate([[0], np.cumsum(values)])


def _describe_periods(arrays: dict[str, np.ndarray], periods: list[tuple], *, as_of_ns: int, ds_ns: int,
                      threshold_seconds: float, confidence: float) -> list[dict]:
    """The ``period_summaries`` row of each period (team, kind, start_ns, end_ns, i0, i1): the
    statistics of rows [i0, i1) of ``arrays``, the same numbers ``summarize_durations`` and the
    per-column statistics give each slice alone (tests/test_stats.py holds them to it, bit for bit).

    What does not depend on the period comes first, for all rows at once: the logs and the counts
    (as running totals). What is left per period is a sort and three means on views of the arrays,
    instead of the ~15 numpy calls of ``summarize_durations`` (which took most of the time of the
    statistics step on 5,000 team-months)."""
    if not periods:
        return []
    ttr = arrays["ttr_s"].astype(float)
    cens = arrays["ttr_censored"].astype(bool)
    finite = np.isfinite(ttr)
    over = ttr > threshold_seconds
    known = ~cens | over
    # (a period with a duration that is not finite takes the general path: the "& finite" only
    # keeps these totals meaningful for the others)
    n_finite = _running_totals(finite)
    n_cens = _running_totals(cens & finite)
    n_known = _running_totals(known & finite)
    n_over = _running_totals(over & known & finite)
    logs = _log_seconds(ttr)
    if "tta_s" in arrays:
        tta = np.where(np.isfinite(arrays["tta_s"]), arrays["tta_s"], np.nan)
        n_tta = _running_totals(np.isfinite(tta))
    if "after_hours" in arrays:
        ah = arrays["after_hours"].astype(float)
        ah_ok = np.isfinite(ah)
        n_ah, n_ah_true = _running_totals(ah_ok), _running_totals(np.where(ah_ok, ah, 0.0))
    if "handoffs" in arrays:
        handoffs = arrays["handoffs"].astype(float)
        h_ok = np.isfinite(handoffs)
        # whole numbers (totals below 2**53) add up exactly in any order: the running totals give
        # np.mean's result
        h_whole = bool(np.all(handoffs[h_ok] == np.round(handoffs[h_ok]))
                       and np.abs(handoffs[h_ok]).sum() < 2.0**53)
        n_h, sum_h = _running_totals(h_ok), _running_totals(np.where(h_ok, handoffs, 0.0))

    rows = []
    for team, kind, start_ns, end_ns, i0, i1 in periods:
        n = i1 - i0
        exposure = max(0.0, (min(end_ns, as_of_ns) - max(start_ns, ds_ns)) / 1e9 / SECONDS_PER_DAY)
        rate, rlo, rhi = rate_ci(n, exposure, confidence)
        r = {"team": team, "period_kind": kind, "period_start": start_ns, "period_end": end_ns,
             "exposure_days": exposure, "incident_rate_per_30d": rate, "incident_rate_ci_low": rlo,
             "incident_rate_ci_high": rhi}
        if n_finite[i1] - n_finite[i0] == n:
            r.update(_summary(ttr[i0:i1], cens[i0:i1], n_cens=int(n_cens[i1] - n_cens[i0]), logs=logs[i0:i1],
                              n_over=int(n_over[i1] - n_over[i0]), n_known=int(n_known[i1] - n_known[i0]),
                              confidence=confidence))
        else:  # a duration that is not a number: the general path leaves it out
            r.update(summarize_durations(ttr[i0:i1], censored=cens[i0:i1], threshold_seconds=threshold_seconds,
                                         confidence=confidence))
        if "tta_s" in arrays:
            k = int(n_tta[i1] - n_tta[i0])
            r["median_tta_s"] = _sorted_median(np.sort(tta[i0:i1])[:k]) if k else np.nan  # NaN sorts last
            r["n_acknowledged"] = k
        if "after_hours" in arrays:
            p, lo, hi = wilson_ci(int(n_ah_true[i1] - n_ah_true[i0]), int(n_ah[i1] - n_ah[i0]), confidence)
            r.update(after_hours_share=p, after_hours_share_ci_low=lo, after_hours_share_ci_high=hi)
        if "handoffs" in arrays:
            k = int(n_h[i1] - n_h[i0])
            if not k:
                r["handoffs_per_incident"] = np.nan
            elif h_whole:
                r["handoffs_per_incident"] = float(sum_h[i1] - sum_h[i0]) / k
            else:
                h = handoffs[i0:i1]
                r["handoffs_per_incident"] = float(h[h_ok[i0:i1]].mean())
        rows.append(r)
    return rows



# ---------------------------------------------------------------------------------------------
# organisation-wide: staggered difference-in-differences (imputation estimator)
# ---------------------------------------------------------------------------------------------

_UNTREATED, _TREATED, _TRANSITION = 0, 1, 2


def _fe_solve(t_idx, m_idx, w, s, n_t, n_m, team_keep):
    """Weighted two-way fixed effects on cells: minimise sum w (s/w - a_t - b_m)^2.

    Returns (a, b, team_has, month_has): effects and which teams/months have untreated weight.

    The normal equations [[diag(tw), W], [W', diag(mw)]] [a; b] = [rt; rm] (W: cell weights, team x
    month) are singular (one free constant per connected component, and zero rows for teams/months
    without untreated weight); a tiny ridge on the diagonal picks a solution whose fitted values
    a_t + b_m on identified cells are the least-squares ones. The team block is diagonal, so it is
    eliminated first (Schur complement): a months x months solve instead of a (teams + months)
    square one. Same solution, a few microseconds instead of milliseconds per fit, and no
    multithreaded LAPACK call (whose rounding depends on the machine's core count).
    """
    keep = team_keep[t_idx]
    t_i, m_i, ww, ss = t_idx[keep], m_idx[keep], w[keep], s[keep]
    tw = np.bincount(t_i, weights=ww, minlength=n_t)
    mw = np.bincount(m_i, weights=ww, minlength=n_m)
    rt = np.bincount(t_i, weights=ss, minlength=n_t)
    rm = np.bincount(m_i, weights=ss, minlength=n_m)
    ridge = 1e-11 * max(float(max(tw.max(initial=0.0), mw.max(initial=0.0))), 1.0)
    cell_w = np.zeros((n_t, n_m))
    cell_w[t_i, m_i] = ww  # one entry per (team, month) cell
    dt = tw + ridge
    scaled = cell_w / dt[:, None]
    schur = np.diag(mw + ridge) - scaled.T @ cell_w
    try:
        b = np.linalg.solve(schur, rm - scaled.T @ rt)
    except np.linalg.LinAlgError:  # pragma: no cover - the ridge makes the system positive definite
        b = np.linalg.lstsq(schur, rm - scaled.T @ rt, rcond=None)[0]
    a = (rt - cell_w @ b) / dt
    return a, b, tw > 0, mw > 0


def _imputed_residuals(fit, t_idx, m_idx, w, s, group, n_groups, team_keep):
    """Sum of (observed - imputed) and count per group, over imputable cells of kept teams."""
    a, b, th, mh = fit
    ok = team_keep[t_idx] & th[t_idx] & mh[m_idx]
    resid = s[ok] - w[ok] * (a[t_idx[ok]] + b[m_idx[ok]])
    num = np.bincount(group[ok], weights=resid, minlength=n_groups)
    den = np.bincount(group[ok], weights=w[ok], minlength=n_groups)
    return num, den


def _factorize_sorted(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, sorted uniques): what ``np.unique(values, return_inverse=True)`` returns, reversed,
    by hashing instead of sorting every value (seconds on hundreds of thousands of team names)."""
    codes, uniques = pd.factorize(values, sort=True)
    return codes.astype(np.intp, copy=False), np.asarray(uniques)


def _calendar_month(ns: np.ndarray) -> np.ndarray:
    """year * 12 + month - 1 (UTC calendar month) of nanosecond timestamps."""
    months = np.asarray(ns, dtype=np.int64).astype("datetime64[ns]").astype("datetime64[M]").astype(np.int64)
    return months + 1970 * 12


def _jackknife(estimates_full: np.ndarray, estimates_loo: np.ndarray) -> np.ndarray:
    """Delete-one-group jackknife SE per column (rows of estimates_loo = left-out groups)."""
    valid = np.isfinite(estimates_loo)
    g = valid.sum(axis=0)  # groups whose leave-one-out estimate exists, per column
    filled = np.where(valid, estimates_loo, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=0) / g
        se = np.sqrt((g - 1) / g * (np.where(valid, estimates_loo - mean, 0.0) ** 2).sum(axis=0))
    # Fewer than two leave-one-out estimates: no standard error (not a zero-width CI).
    return np.where(g >= 2, se, np.nan)


def org_effect(incidents: pd.DataFrame, adoptions: pd.DataFrame, *,
               transition_days: float = DEFAULT_TRANSITION_DAYS, as_of=None,
               event_window: tuple[int, int] | None = (-6, 12), n_jackknife: int | None = None,
               metric: str = "time_to_resolve", placebo_months: int = 3, confidence: float = 0.95,
               equivalence_margin: float = DEFAULT_EQUIVALENCE_MARGIN, min_n: int = DEFAULT_MIN_N,
               low_power_n: int = DEFAULT_LOW_POWER_N, mde_low_power: float = DEFAULT_MDE_LOW_POWER,
               seed: int = DEFAULT_SEED, prepared: tuple[pd.DataFrame, pd.Timestamp] | None = None) -> dict:
    """Organisation-wide effect of adoption on log durations: staggered DiD by imputation.

    1. Untreated incidents: all incidents of never-adopted teams, and those of adopted teams created
       before A - T (not yet adopted). Treated: created at or after A + T. The transition window
       [A - T, A + T) is left out of the fit and of the estimate.
    2. Fit log duration = team effect + calendar-month effect on untreated incidents only (OLS).
    3. Impute each treated incident's untreated outcome; the estimate is the mean of observed minus
       imputed over treated incidents (incident-weighted ATT on the log scale), reported as a ratio.
    4. Inference: delete-one-team jackknife over all teams in the fit (or ``n_jackknife`` groups of
       teams), t with G - 1 degrees of freedom.
    5. Event study by month relative to adoption: post months from the main fit; pre months from a
       second fit that holds out adopted teams' incidents from ``event_window[0]`` months before
       adoption on (so the pre-period points are genuine out-of-sample residuals).
    6. Placebo pre-trend test: hold out the ``placebo_months`` before the transition window, fit on
       the rest, test the mean residual of the held-out incidents (jackknife t).
    Treated incidents in a month or team with no untreated incidents cannot be imputed; they are
    counted in ``n_unimputable`` and left out.
    """
    nan = float("nan")
    if prepared is None:
        prep, as_of_ts = prepare_incidents(incidents, as_of)
    else:
        prep, as_of_ts = prepared
    col = {"time_to_resolve": "ttr_s", "time_to_acknowledge": "tta_s"}[metric]
    result = {"metric": metric, "method": "imputation (team + calendar-month FE on untreated), team jackknife",
              "estimate": nan, "log_estimate": nan, "se_log": nan, "ci_low": nan, "ci_high": nan,
              "p_value": nan, "df": nan, "mde": nan, "tost_p": nan, "n_teams": 0, "n_treated_teams": 0,
              "n_never_adopted_teams": 0, "n_treated_incidents": 0, "n_untreated_incidents": 0,
              "n_unimputable": 0, "event_study": [], "placebo_estimate": nan, "placebo_p": nan,
              "placebo_months": placebo_months, "transition_days": transition_days,
              "verdict": "insufficient_data", "low_power": True}
    if col not in prep.columns or not len(prep):
        return result
    y_raw = prep[col].to_numpy(dtype=float)
    ok = np.isfinite(y_raw)
    prep = prep.loc[ok]
    y = _log_seconds(y_raw[ok])
    teams = prep["team"].to_numpy()
    t_idx_all, uteams = _factorize_sorted(teams)
    n_t = len(uteams)
    created = prep["created_ns"].to_numpy()
    month_abs = _calendar_month(created)
    umonths, m_idx_all = np.unique(month_abs, return_inverse=True)
    n_m = len(umonths)
    amap = _adoption_map(adoptions)
    adopt_ns = np.array([_ns(amap[t]) if t in amap else np.iinfo(np.int64).max for t in uteams], dtype=np.int64)
    adopted_team = np.array([t in amap for t in uteams])
    T_ns = int(transition_days * SECONDS_PER_DAY * 1e9)
    month_ns = DAYS_PER_MONTH * SECONDS_PER_DAY * 1e9
    a_inc = adopt_ns[t_idx_all]
    is_adopted = adopted_team[t_idx_all]
    rel = np.where(is_adopted, created - np.where(is_adopted, a_inc, created), np.iinfo(np.int64).min // 4)
    status = np.full(len(y), _UNTREATED)
    status[is_adopted & (rel >= T_ns)] = _TREATED
    status[is_adopted & (rel >= -T_ns) & (rel < T_ns)] = _TRANSITION
    ev = np.where(is_adopted, np.floor(rel / month_ns), -10_000).astype(np.int64)

    # jackknife groups
    if n_jackknife is not None and 1 < n_jackknife < n_t:
        perm = np.random.default_rng(seed).permutation(n_t)
        group_of_team = np.empty(n_t, dtype=int)
        group_of_team[perm] = np.arange(n_t) % n_jackknife
        n_g = n_jackknife
    else:
        group_of_team = np.arange(n_t)
        n_g = n_t

    def cells(mask):
        key = t_idx_all[mask] * n_m + m_idx_all[mask]
        uk, inv = np.unique(key, return_inverse=True)
        w = np.bincount(inv).astype(float)
        s = np.bincount(inv, weights=y[mask])
        return uk // n_m, uk % n_m, w, s

    def cells_by(mask, group):
        gmin = group[mask].min() if mask.any() else 0
        g = group[mask] - gmin
        n_gr = int(g.max()) + 1 if mask.any() else 0
        key = (t_idx_all[mask] * n_m + m_idx_all[mask]) * max(n_gr, 1) + g
        uk, inv = np.unique(key, return_inverse=True)
        w = np.bincount(inv).astype(float)
        s = np.bincount(inv, weights=y[mask])
        gg = uk % max(n_gr, 1)
        tm = uk // max(n_gr, 1)
        return tm // n_m, tm % n_m, w, s, gg, n_gr, gmin

    fits: dict[str, list] = {}

    def fitted(fit_mask, fit_key):
        """The fit on all teams, then leaving out each jackknife group (computed once per fit sample)."""
        if fit_key is None or fit_key not in fits:
            ut, um, uw, us = cells(fit_mask)
            out = [_fe_solve(ut, um, uw, us, n_t, n_m, np.ones(n_t, dtype=bool))]
            out += [_fe_solve(ut, um, uw, us, n_t, n_m, group_of_team != g) for g in range(n_g)]
            if fit_key is None:
                return out
            fits[fit_key] = out
        return fits[fit_key]

    def estimate(fit_mask, target_mask, group=None, fit_key=None):
        """Estimates (per group) with the full sample and leaving out each jackknife group."""
        if group is None:
            tt, tm, tw_, ts_ = cells(target_mask)
            tg, n_gr, gmin = np.zeros(len(tt), dtype=int), 1, 0
        else:
            tt, tm, tw_, ts_, tg, n_gr, gmin = cells_by(target_mask, group)
        all_keep = np.ones(n_t, dtype=bool)
        fit, *fits_loo = fitted(fit_mask, fit_key)
        num, den = _imputed_residuals(fit, tt, tm, tw_, ts_, tg, n_gr, all_keep)
        with np.errstate(invalid="ignore", divide="ignore"):
            full = num / den
        loo = np.full((n_g, n_gr), np.nan)
        for g in range(n_g):
            keep = group_of_team != g
            num_g, den_g = _imputed_residuals(fits_loo[g], tt, tm, tw_, ts_, tg, n_gr, keep)
            with np.errstate(invalid="ignore", divide="ignore"):
                loo[g] = num_g / den_g
        se = _jackknife(full, loo)
        return full, se, den, gmin, int(tw_.sum())

    untreated = status == _UNTREATED
    treated = status == _TREATED
    teams_in_fit = np.unique(t_idx_all[untreated | treated])
    n_treated_teams = int(len(np.unique(t_idx_all[treated])))
    result.update(n_teams=int(len(teams_in_fit)), n_treated_teams=n_treated_teams,
                  n_never_adopted_teams=int((~adopted_team).sum()),
                  n_untreated_incidents=int(untreated.sum()))
    alpha = 1.0 - confidence
    df = max(n_g - 1, 1)
    if untreated.sum() == 0 or treated.sum() == 0 or n_g < 3:
        result["n_treated_incidents"] = int(treated.sum())
        return result
    full, se, den, _, n_target = estimate(untreated, treated, fit_key="untreated")
    att, se_att, n_used = float(full[0]), float(se[0]), int(den[0])
    tcrit = _t_ppf(1 - alpha / 2, df)
    result.update(log_estimate=att, estimate=math.exp(att), se_log=se_att, df=float(df),
                  n_treated_incidents=n_used, n_unimputable=int(n_target - n_used))
    if se_att > 0 and np.isfinite(se_att):
        result["ci_low"], result["ci_high"] = math.exp(att - tcrit * se_att), math.exp(att + tcrit * se_att)
        result["p_value"] = 2 * _t_sf(abs(att) / se_att, df)
        p_lo = _t_sf((att - math.log(1 - equivalence_margin)) / se_att, df)
        p_hi = _t_cdf((att - math.log(1 + equivalence_margin)) / se_att, df)
        result["tost_p"] = max(p_lo, p_hi)
        result["mde"] = 1.0 - math.exp(-(_t_ppf(1 - alpha / 2, df) + _t_ppf(POWER, df)) * se_att)
    sufficient = (n_treated_teams >= 2 and n_used >= min_n and int(untreated.sum()) >= min_n)
    result["verdict"] = decide_verdict(int(untreated.sum()), n_used, result["ci_low"], result["ci_high"],
                                       result["tost_p"], alpha=alpha,
                                       direction=METRIC_DIRECTION[metric], sufficient=sufficient)
    result["low_power"] = bool(n_used < low_power_n or int(untreated.sum()) < low_power_n
                               or not (result["mde"] <= mde_low_power))

    # placebo pre-trend test
    if placebo_months and placebo_months > 0:
        hold = untreated & is_adopted & (rel >= -T_ns - placebo_months * month_ns)
        if hold.any() and (untreated & ~hold).any():
            pf, pse, pden, _, _ = estimate(untreated & ~hold, hold)
            if pden[0] > 0 and np.isfinite(pse[0]) and pse[0] > 0:
                result["placebo_estimate"] = math.exp(float(pf[0]))
                result["placebo_p"] = 2 * _t_sf(abs(pf[0]) / pse[0], df)

    # event study
    if event_window is not None:
        e_lo, e_hi = event_window
        es = []
        post = is_adopted & (rel >= 0) & (ev <= e_hi)
        if post.any():
            f, s_, d, gmin, _ = estimate(untreated, post, group=ev, fit_key="untreated")
            for i in range(len(f)):
                e = i + gmin
                if d[i] > 0:
                    es.append(_es_row(e, f[i], s_[i], int(d[i]), tcrit, "imputed_post"))
        if e_lo < 0:
            pre = is_adopted & (ev >= e_lo) & (rel < 0)
            fit_mask = untreated & ~pre
            if pre.any() and fit_mask.any():
                f, s_, d, gmin, _ = estimate(fit_mask, pre, group=ev)
                for i in range(len(f)):
                    e = i + gmin
                    if d[i] > 0:
                        es.append(_es_row(e, f[i], s_[i], int(d[i]), tcrit, "held_out_pre"))
        result["event_study"] = sorted(es, key=lambda r: r["event_month"])
    return result


def _es_row(e, est, se, n, tcrit, kind):
    ok = np.isfinite(se) and se > 0
    return {"event_month": int(e), "estimate": math.exp(est), "log_estimate": float(est),
            "se_log": float(se) if ok else float("nan"),
            "ci_low": math.exp(est - tcrit * se) if ok else float("nan"),
            "ci_high": math.exp(est + tcrit * se) if ok else float("nan"),
            "n_incidents": n, "kind": kind}


def org_rate_effect(incidents: pd.DataFrame, adoptions: pd.DataFrame, *,
                    transition_days: float = DEFAULT_TRANSITION_DAYS, as_of=None, data_start=None,
                    n_jackknife: int | None = None, confidence: float = 0.95,
                    equivalence_margin: float = DEFAULT_EQUIVALENCE_MARGIN, min_n: int = DEFAULT_MIN_N,
                    low_power_n: int = DEFAULT_LOW_POWER_N, mde_low_power: float = DEFAULT_MDE_LOW_POWER,
                    seed: int = DEFAULT_SEED, max_iter: int = 500,
                    prepared: tuple[pd.DataFrame, pd.Timestamp] | None = None) -> dict:
    """Organisation-wide effect of adoption on the incident rate (imputation, Poisson).

    Team x calendar-month cells split into untreated / transition / treated exposure (days). A
    multiplicative Poisson model count = exposure x exp(team + month) is fitted to untreated cells
    by maximum likelihood (iterative proportional fitting); expected counts are imputed for treated
    cells and the estimate is sum(observed) / sum(expected). Team jackknife CI, t with G - 1 df.
    """
    nan = float("nan")
    prep, as_of_ts = prepared if prepared is not None else prepare_incidents(incidents, as_of)
    out = {"metric": "incident_rate", "method": "imputation (Poisson team + month), team jackknife",
           "estimate": nan, "log_estimate": nan, "se_log": nan, "ci_low": nan, "ci_high": nan, "p_value": nan,
           "df": nan, "mde": nan, "tost_p": nan, "n_teams": 0, "n_treated_teams": 0,
           "n_treated_incidents": 0, "n_untreated_incidents": 0, "verdict": "insufficient_data",
           "low_power": True}
    if not len(prep):
        return out
    as_of_ns = _ns(as_of_ts)
    ds_ns = int(prep["created_ns"].min()) if data_start is None else _ns(_as_of(prep, data_start))
    amap = _adoption_map(adoptions)
    team_codes, uteams = _factorize_sorted(np.concatenate([prep["team"].to_numpy(), np.array(list(amap), dtype=object)]))
    uteams = uteams.astype(str)
    n_t = len(uteams)
    first = pd.Timestamp(ds_ns, tz="UTC").tz_localize(None).to_period("M")
    last = pd.Timestamp(as_of_ns, tz="UTC").tz_localize(None).to_period("M")
    months = pd.period_range(first, last, freq="M")
    m_start = np.array([_ns(p.start_time.tz_localize("UTC")) for p in months], dtype=np.int64)
    m_end = np.array([_ns((p + 1).start_time.tz_localize("UTC")) for p in months], dtype=np.int64)
    m_start = np.maximum(m_start, ds_ns)
    m_end = np.minimum(m_end, as_of_ns)
    n_m = len(months)
    T_ns = int(transition_days * SECONDS_PER_DAY * 1e9)
    big = np.iinfo(np.int64).max // 4
    a_ns = np.array([_ns(amap[t]) if t in amap else big for t in uteams], dtype=np.int64)

    def overlap(lo, hi):  # (n_t, n_m) days of [lo_t, hi_t) within each month
        l_ = np.maximum(m_start[None, :], lo[:, None])
        h_ = np.minimum(m_end[None, :], hi[:, None])
        return np.maximum(h_ - l_, 0) / 1e9 / SECONDS_PER_DAY

    neg = np.full(n_t, -big, dtype=np.int64)
    pos = np.full(n_t, big, dtype=np.int64)
    e_untr = overlap(neg, np.minimum(a_ns - T_ns, big))
    e_trt = overlap(np.where(a_ns < big, a_ns + T_ns, big), pos)
    ti = team_codes[:len(prep)].astype(int)
    cr = prep["created_ns"].to_numpy()
    mi = np.searchsorted(m_start, cr, side="right") - 1
    ok = (mi >= 0) & (cr >= ds_ns)
    rel = cr - a_ns[ti]
    st = np.where(rel >= T_ns, _TREATED, np.where(rel >= -T_ns, _TRANSITION, _UNTREATED))
    st = np.where(a_ns[ti] >= big, _UNTREATED, st)
    y_untr = np.zeros((n_t, n_m))
    y_trt = np.zeros((n_t, n_m))
    np.add.at(y_untr, (ti[ok & (st == _UNTREATED)], mi[ok & (st == _UNTREATED)]), 1)
    np.add.at(y_trt, (ti[ok & (st == _TREATED)], mi[ok & (st == _TREATED)]), 1)

    def fit_and_ratio(keep):
        Y, E = y_untr[keep], e_untr[keep]
        a = np.zeros(Y.shape[0])
        b = np.zeros(n_m)
        a_seen, b_seen = a, b  # nan_to_num(a, neginf=-50) and of b: the values compared for convergence
        with np.errstate(divide="ignore", invalid="ignore"):
            log_rows, log_cols = np.log(Y.sum(1)), np.log(Y.sum(0))  # the same every iteration
        for _ in range(max_iter):
            with np.errstate(divide="ignore", invalid="ignore"):
                a_new = log_rows - np.log((E * np.exp(b)[None, :]).sum(1))
                b_new = log_cols - np.log((E * np.exp(a_new)[:, None]).sum(0))
            a_new_seen, b_new_seen = np.nan_to_num(a_new, neginf=-50), np.nan_to_num(b_new, neginf=-50)
            done = np.allclose(a_new_seen, a_seen, atol=1e-10) and np.allclose(b_new_seen, b_seen, atol=1e-10)
            a, b, a_seen, b_seen = a_new, b_new, a_new_seen, b_new_seen
            if done:
                break
        th = np.isfinite(a) & (Y.sum(1) > 0)
        mh = np.isfinite(b) & (E.sum(0) > 0)
        mu = E * 0
        Et, Yt = e_trt[keep], y_trt[keep]
        with np.errstate(invalid="ignore", over="ignore"):
            mu = Et * np.exp(np.where(th, a, 0))[:, None] * np.exp(np.where(mh, b, 0))[None, :]
        cell_ok = th[:, None] & mh[None, :] & (Et > 0)
        obs, exp_ = Yt[cell_ok].sum(), mu[cell_ok].sum()
        return (math.log(obs / exp_) if obs > 0 and exp_ > 0 else nan), int(obs), float(exp_)

    full = np.ones(n_t, dtype=bool)
    est, n_obs, _ = fit_and_ratio(full)
    if n_jackknife is not None and 1 < n_jackknife < n_t:
        perm = np.random.default_rng(seed).permutation(n_t)
        grp = np.empty(n_t, dtype=int)
        grp[perm] = np.arange(n_t) % n_jackknife
        n_g = n_jackknife
    else:
        grp, n_g = np.arange(n_t), n_t
    n_treated_teams = int(((y_trt.sum(1) > 0) | (e_trt.sum(1) > 0)).sum())
    out.update(n_teams=n_t, n_treated_teams=n_treated_teams, n_treated_incidents=n_obs,
               n_untreated_incidents=int(y_untr.sum()))
    if not np.isfinite(est) or n_g < 3:
        return out
    loo = np.array([fit_and_ratio(grp != g)[0] for g in range(n_g)])
    se = float(_jackknife(np.array([est]), loo[:, None])[0])
    df = n_g - 1
    alpha = 1 - confidence
    tcrit = _t_ppf(1 - alpha / 2, df)
    out.update(estimate=math.exp(est), log_estimate=est, se_log=se, df=float(df))
    if se > 0:
        out["ci_low"], out["ci_high"] = math.exp(est - tcrit * se), math.exp(est + tcrit * se)
        out["p_value"] = 2 * _t_sf(abs(est) / se, df)
        out["tost_p"] = max(_t_sf((est - math.log(1 - equivalence_margin)) / se, df),
                            _t_cdf((est - math.log(1 + equivalence_margin)) / se, df))
        out["mde"] = 1.0 - math.exp(-(tcrit + _t_ppf(POWER, df)) * se)
    sufficient = n_treated_teams >= 2 and (n_obs + int(y_untr.sum())) >= 2 * min_n
    out["verdict"] = decide_verdict(int(y_untr.sum()), n_obs, out["ci_low"], out["ci_high"], out["tost_p"],
                                    alpha=alpha, sufficient=sufficient)
    out["low_power"] = bool(n_obs + int(y_untr.sum()) < 2 * low_power_n or not (out["mde"] <= mde_low_power))
    return out
