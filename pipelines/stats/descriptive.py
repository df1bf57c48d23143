"""Constants, small helpers and descriptive statistics of the statistics package (``pipelines/stats``).

Estimators and verdicts for incident metrics (pure functions; no I/O, no Dagster).

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

import numpy as np
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


def _calendar_month(ns: np.ndarray) -> np.ndarray:
    """year * 12 + month - 1 (UTC calendar month) of nanosecond timestamps."""
    months = np.asarray(ns, dtype=np.int64).astype("datetime64[ns]").astype("datetime64[M]").astype(np.int64)
    return months + 1970 * 12
