"""Two-arm comparisons (after vs before): durations, counts, rates and shares, with verdicts.

Part of ``pipelines/stats`` (its ``__init__`` says what is where); conventions: ``descriptive.py``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from pipelines.stats.descriptive import (
    DEFAULT_EQUIVALENCE_MARGIN,
    DEFAULT_LOW_POWER_N,
    DEFAULT_MDE_LOW_POWER,
    DEFAULT_MIN_N,
    DEFAULT_N_BOOT,
    DEFAULT_SEED,
    METRIC_DIRECTION,
    MIN_SECONDS,
    RATE_PER_DAYS,
    _log_seconds,
    _mde_from_se,
    _norm_cdf,
    _norm_sf,
    _sorted_median,
    _sorted_quantile,
    _t_cdf,
    _t_ppf,
    _t_sf,
    _with_verdict,
    _z,
    decide_verdict,
    mde_closed_form,
)

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
