"""Statistics marts: the pipeline's bridge from ``marts.fct_*`` to ``pipelines.stats``.

Reads the incident and deployment facts from the warehouse, runs the same functions the
``incident-metrics compare`` command runs, and writes four tables:

* ``marts.team_period_metrics``: per team and period (each month, the baseline window before
  adoption, the window after) n, rate, median / p90 / geometric mean with CIs, MTTA, ...
* ``marts.team_comparisons``: per team, metric and variant (transition window excluded or not)
  the before/after ratio, its CI, p values, MDE, verdict, low-power flag, BH q value.
* ``marts.org_effects``: the organisation-wide staggered difference-in-differences per metric.
* ``marts.org_event_study``: the event-study points (months relative to adoption) with CIs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb
import pandas as pd

from pipelines import stats
from pipelines import warehouse as wh


@dataclass(frozen=True)
class ComparisonSettings:
    before_days: int = stats.DEFAULT_BEFORE_DAYS
    after_days: int = stats.DEFAULT_AFTER_DAYS
    transition_days: int = stats.DEFAULT_TRANSITION_DAYS


def load_inputs(con: duckdb.DuckDBPyConnection) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.Timestamp | None]:
    """Incidents (merged excluded, owned by a team), adoptions, production deployments, as-of."""
    incidents = con.execute(
        """
        select team_key as team, incident_id, created_at, resolved_at, acknowledged_at, urgency,
               is_after_hours as after_hours, handoffs
        from marts.fct_incidents
        where not is_merged and team_key is not null
        order by created_at, incident_id
        """
    ).df()
    adoptions = con.execute(
        "select team_key as team, adopted_on from marts.dim_teams where adopted_on is not null order by 1"
    ).df()
    deployments = con.execute(
        """
        select team_key as team, succeeded_at as deployed_at
        from marts.fct_deployments
        where is_production and is_successful and team_key is not null
        order by succeeded_at
        """
    ).df()
    row = con.execute("select max(data_as_of) from marts.fct_incidents").fetchall()
    as_of = pd.Timestamp(row[0][0]) if row and row[0][0] is not None else None
    return incidents, adoptions, deployments, as_of


def _clean(frame: pd.DataFrame) -> pd.DataFrame:
    """Plain column types DuckDB stores well (no object columns of mixed types)."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            sample = out[column].dropna()
            if len(sample) and isinstance(sample.iloc[0], (dict, list)):
                out[column] = out[column].map(lambda v: None if v is None else json.dumps(v, default=str))
    return out


def compute(incidents: pd.DataFrame, adoptions: pd.DataFrame, deployments: pd.DataFrame, as_of,
            settings: ComparisonSettings = ComparisonSettings()) -> dict[str, pd.DataFrame]:
    """All four statistics tables from the fact tables (pure: no warehouse access)."""
    if incidents.empty or as_of is None:
        return {name: pd.DataFrame() for name in ("team_period_metrics", "team_comparisons", "org_effects",
                                                  "org_event_study")}
    prepared = stats.prepare_incidents(incidents, as_of)  # once, for every estimator below
    kwargs = dict(before_days=settings.before_days, after_days=settings.after_days,
                  transition_days=settings.transition_days, as_of=as_of, prepared=prepared)
    periods = stats.period_summaries(incidents, adoptions, **kwargs)
    comparisons = stats.team_comparisons(incidents, adoptions, deployments=deployments, **kwargs)
    org_rows, event_rows = [], []
    for metric in ("time_to_resolve", "time_to_acknowledge"):
        result = stats.org_effect(incidents, adoptions, transition_days=settings.transition_days, as_of=as_of,
                                  metric=metric, prepared=prepared)
        for point in result.pop("event_study", []):
            event_rows.append({"metric": metric, **point})
        org_rows.append({"metric": metric, **result})
    rate = stats.org_rate_effect(incidents, adoptions, transition_days=settings.transition_days, as_of=as_of,
                                 prepared=prepared)
    org_rows.append(rate)
    return {
        "team_period_metrics": _clean(periods),
        "team_comparisons": _clean(comparisons),
        "org_effects": _clean(pd.DataFrame(org_rows)),
        "org_event_study": _clean(pd.DataFrame(event_rows)),
    }


DESCRIPTIONS = {
    "team_period_metrics": (
        "Per team and period (each calendar month; the baseline window before adoption; the window after) the "
        "descriptive statistics: n, incident rate per 30 days with an exact Poisson CI, median time to resolve with "
        "an order-statistic CI (Kaplan-Meier when more than 1 % are still open), p90 (null under 20), geometric mean "
        "with a t CI on logs, share over 4 hours with a Wilson CI, median time to acknowledge, after-hours share, "
        "handoffs per incident. The arithmetic mean is an appendix column, not for comparison."
    ),
    "team_comparisons": (
        "Per adopted team, metric and variant (transition window excluded, or all) the before/after comparison: "
        "estimate = after/before ratio (geometric means for durations, rates for counts), Welch-on-logs CI, p value, "
        "Mann-Whitney p, median ratio with a bootstrap CI, minimum detectable effect at 80 % power, TOST equivalence "
        "at +/-25 %, verdict (insufficient_data under 20 per arm, improved, worsened, equivalent, inconclusive), "
        "low_power (under 50 per arm or MDE above 50 %), Benjamini-Hochberg q value across teams."
    ),
    "org_effects": (
        "Organisation-wide effect of adoption per metric: staggered difference-in-differences by imputation "
        "(team + calendar-month effects fitted on never- and not-yet-adopted incidents), team-jackknife CI, placebo "
        "pre-trend test. estimate is a ratio (treated / imputed untreated)."
    ),
    "org_event_study": (
        "Event study: the organisation-wide effect by month relative to adoption (negative months: pre-trend "
        "placebo points), with team-jackknife CIs."
    ),
}


_COMMON = {
    "team": "the team key from the ownership file (__org__ never appears here)",
    "metric": "time_to_resolve, time_to_acknowledge, after_hours, handoffs, incident_rate or deployment_frequency",
    "ci_low": "lower end of the 95 % confidence interval of estimate",
    "ci_high": "upper end of the 95 % confidence interval of estimate",
    "p_value": "two-sided p value of 'no change' (Welch on logs for durations, exact tests for counts)",
    "mde": "minimum detectable change at 80 % power and these sample sizes, as a fraction (0.5 = a 50 % change)",
    "verdict": "insufficient_data, improved, worsened, equivalent or inconclusive (docs/statistics.md)",
    "low_power": "true when an arm has under 50 incidents or the MDE is above 50 %: only large changes can show",
    "se_log": "standard error of the log of estimate",
    "tost_p": "p value of the equivalence test (TOST) at +/-25 %; equivalent when below 0.05",
    "df": "degrees of freedom of the t distribution behind the CI",
    "transition_days": "days either side of adoption left out (the transition window)",
}

COLUMN_DOCS: dict[str, dict[str, str]] = {
    "team_period_metrics": {
        "team": _COMMON["team"],
        "period_kind": "month (a calendar month, UTC), before (the baseline window before adoption) or after (the window after it)",
        "period_start": "first instant of the period (UTC)",
        "period_end": "end of the period (UTC, exclusive)",
        "exposure_days": "days of the period covered by the data (clipped to the data's start and as-of)",
        "incident_rate_per_30d": "incidents per 30 days",
        "incident_rate_ci_low": "lower end of the exact Poisson 95 % CI of the rate, per 30 days",
        "incident_rate_ci_high": "upper end of the exact Poisson 95 % CI of the rate, per 30 days",
        "n": "incidents created in the period (merged-away excluded, open ones included)",
        "n_censored": "of those, still open at the as-of time (censored durations)",
        "median_method": "how the median was computed: order statistics, or kaplan_meier when over 1 % are open",
        "median_s": "median time to resolve, in seconds",
        "median_ci_low_s": "lower end of the 95 % CI of the median, in seconds",
        "median_ci_high_s": "upper end of the 95 % CI of the median, in seconds",
        "p25_s": "25th percentile time to resolve, in seconds",
        "p75_s": "75th percentile time to resolve, in seconds",
        "p90_s": "90th percentile time to resolve in seconds; null under 20 incidents (too few)",
        "gmean_s": "geometric mean time to resolve, in seconds",
        "gmean_ci_low_s": "lower end of the t 95 % CI of the geometric mean, in seconds",
        "gmean_ci_high_s": "upper end of the t 95 % CI of the geometric mean, in seconds",
        "gmean_is_lower_bound": "true when open incidents entered with their age so far (the true value is higher)",
        "share_over_4h": "share of incidents that took over 4 hours to resolve",
        "share_over_4h_ci_low": "lower end of the Wilson 95 % CI of the share over 4 hours",
        "share_over_4h_ci_high": "upper end of the Wilson 95 % CI of the share over 4 hours",
        "share_over_4h_n": "incidents whose over-4-hours outcome is known (open ones younger than 4 h are not)",
        "mean_s_not_for_comparison": "arithmetic mean time to resolve in seconds: an appendix number, NOT for comparison",
        "median_tta_s": "median time to the first acknowledgement, in seconds",
        "n_acknowledged": "incidents acknowledged by the as-of time",
        "after_hours_share": "share of incidents created outside the team's business hours",
        "after_hours_share_ci_low": "lower end of the Wilson 95 % CI of the after-hours share",
        "after_hours_share_ci_high": "upper end of the Wilson 95 % CI of the after-hours share",
        "handoffs_per_incident": "mean handoffs (reassignments, delegations, escalations) per incident",
    },
    "team_comparisons": {
        **{k: _COMMON[k] for k in ("team", "metric", "ci_low", "ci_high", "p_value", "mde", "verdict", "low_power",
                                   "se_log", "tost_p", "df", "transition_days")},
        "variant": "transition_excluded (the primary result) or all (the transition window kept in)",
        "estimate": "after/before ratio: of geometric means for durations, of rates for counts, of shares for after-hours",
        "q_value": "Benjamini-Hochberg adjusted p value across teams, per metric and variant",
        "n_before": "incidents (or events) in the before window",
        "n_after": "incidents (or events) in the after window",
        "median_ratio": "after/before ratio of medians (a robustness check)",
        "median_ratio_ci_low": "lower end of the percentile-bootstrap 95 % CI of the median ratio",
        "median_ratio_ci_high": "upper end of the percentile-bootstrap 95 % CI of the median ratio",
        "mannwhitney_p": "Mann-Whitney U p value (a rank test; does not assume log-normal durations)",
        "prob_after_shorter": "probability that an after incident is shorter than a before incident",
        "mean_ratio_not_for_comparison": "ratio of arithmetic means: shown for contrast only, NOT for comparison",
        "n_censored_before": "open (censored) incidents in the before window",
        "n_censored_after": "open (censored) incidents in the after window",
        "adopted_on": "the team's adoption date",
        "before_start": "start of the before window (UTC)",
        "before_end": "end of the before window (UTC, exclusive)",
        "after_start": "start of the after window (UTC)",
        "after_end": "end of the after window (UTC, exclusive; clipped to the as-of time)",
        "exposure_before_days": "days of data in the before window",
        "exposure_after_days": "days of data in the after window",
        "share_before": "after-hours share before (after_hours metric)",
        "share_after": "after-hours share after (after_hours metric)",
        "mean_before": "mean handoffs per incident before (handoffs metric)",
        "mean_after": "mean handoffs per incident after (handoffs metric)",
        "rate_before": "events per 30 days before (incident_rate, deployment_frequency)",
        "rate_after": "events per 30 days after (incident_rate, deployment_frequency)",
        "significant_fdr": "true when q_value is below 0.05 (significant after Benjamini-Hochberg)",
    },
    "org_effects": {
        **{k: _COMMON[k] for k in ("metric", "ci_low", "ci_high", "p_value", "mde", "verdict", "low_power", "se_log",
                                   "tost_p", "df", "transition_days")},
        "method": "the estimator and how its CI was computed",
        "estimate": "organisation-wide ratio: adopted teams' durations (or rates) over their imputed values had they not adopted",
        "log_estimate": "natural log of estimate",
        "n_teams": "teams in the fit",
        "n_treated_teams": "teams with incidents after adoption",
        "n_never_adopted_teams": "teams that have not adopted (controls throughout)",
        "n_treated_incidents": "incidents after adoption (transition window excluded)",
        "n_untreated_incidents": "incidents of never- and not-yet-adopted teams used to fit the model",
        "n_unimputable": "treated incidents in a month or team without untreated data: left out",
        "placebo_estimate": "ratio in the months just before the transition window, where it should be 1",
        "placebo_p": "p value of the placebo pre-trend test; a small value warns of a pre-adoption trend or dip",
        "placebo_months": "months before the transition window used by the placebo test",
    },
    "org_event_study": {
        "metric": "time_to_resolve or time_to_acknowledge",
        "event_month": "months relative to the adoption date (0 = the first 30.4 days from adoption; negative: before it)",
        "estimate": "ratio of observed to imputed durations in that month",
        "log_estimate": "natural log of estimate",
        "se_log": _COMMON["se_log"],
        "ci_low": _COMMON["ci_low"],
        "ci_high": _COMMON["ci_high"],
        "n_incidents": "incidents in that month relative to adoption",
        "kind": "held_out_pre (before adoption, held out of the fit: should be near 1) or imputed_post (after adoption)",
    },
}


def write(con: duckdb.DuckDBPyConnection, tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    counts = {}
    for name, frame in tables.items():
        if frame.empty:
            frame = pd.DataFrame({"note": pd.Series([], dtype="string")})
        counts[name] = wh.write_frame_table(con, "marts", name, frame, DESCRIPTIONS[name], COLUMN_DOCS.get(name, {}))
    return counts


def build(con: duckdb.DuckDBPyConnection, settings: ComparisonSettings = ComparisonSettings()) -> dict[str, int]:
    incidents, adoptions, deployments, as_of = load_inputs(con)
    return write(con, compute(incidents, adoptions, deployments, as_of, settings))


def headline(tables: dict[str, pd.DataFrame]) -> dict[str, object]:
    """Counts of verdicts for time to resolve (transition excluded), for metadata and summaries."""
    comp = tables.get("team_comparisons")
    if comp is None or comp.empty:
        return {}
    primary = comp[(comp["metric"] == "time_to_resolve") & (comp["variant"] == "transition_excluded")]
    counts = primary["verdict"].value_counts().to_dict()
    return {f"teams_{k}": int(v) for k, v in counts.items()} | {"teams_compared": int(len(primary))}


