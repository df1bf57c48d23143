"""Tables of the statistics marts: per-team before/after comparisons and per-team, per-period descriptives.

Part of ``pipelines/stats`` (its ``__init__`` says what is where); conventions: ``descriptive.py``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from pipelines.stats.comparisons import (
    benjamini_hochberg,
    compare_arms,
    compare_counts,
    compare_proportions,
    compare_rates,
)
from pipelines.stats.descriptive import (
    DEFAULT_AFTER_DAYS,
    DEFAULT_BEFORE_DAYS,
    DEFAULT_EQUIVALENCE_MARGIN,
    DEFAULT_LOW_POWER_N,
    DEFAULT_METRICS,
    DEFAULT_MIN_N,
    DEFAULT_N_BOOT,
    DEFAULT_SEED,
    DEFAULT_TRANSITION_DAYS,
    DURATION_METRICS,
    METRIC_DIRECTION,
    SECONDS_PER_DAY,
    VARIANTS,
    _calendar_month,
    _log_seconds,
    _sorted_median,
    _summary,
    rate_ci,
    summarize_durations,
    team_seed,
    wilson_ci,
)

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
