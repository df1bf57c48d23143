"""Organisation-wide: the staggered difference-in-differences (imputation estimator) and its event study.

Part of ``pipelines/stats`` (its ``__init__`` says what is where); conventions: ``descriptive.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipelines.stats.descriptive import (
    DAYS_PER_MONTH,
    DEFAULT_EQUIVALENCE_MARGIN,
    DEFAULT_LOW_POWER_N,
    DEFAULT_MDE_LOW_POWER,
    DEFAULT_MIN_N,
    DEFAULT_SEED,
    DEFAULT_TRANSITION_DAYS,
    METRIC_DIRECTION,
    POWER,
    SECONDS_PER_DAY,
    _calendar_month,
    _log_seconds,
    _t_cdf,
    _t_ppf,
    _t_sf,
    decide_verdict,
)
from pipelines.stats.tables import (
    _adoption_map,
    _as_of,
    _ns,
    prepare_incidents,
)

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
