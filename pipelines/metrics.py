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
import numpy as np
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
    kwargs = dict(before_days=settings.before_days, after_days=settings.after_days,
                  transition_days=settings.transition_days, as_of=as_of)
    periods = stats.period_summaries(incidents, adoptions, **kwargs)
    comparisons = stats.team_comparisons(incidents, adoptions, deployments=deployments, **kwargs)
    org_rows, event_rows = [], []
    for metric in ("time_to_resolve", "time_to_acknowledge"):
        result = stats.org_effect(incidents, adoptions, transition_days=settings.transition_days, as_of=as_of,
                                  metric=metric)
        for point in result.pop("event_study", []):
            event_rows.append({"metric": metric, **point})
        org_rows.append({"metric": metric, **result})
    rate = stats.org_rate_effect(incidents, adoptions, transition_days=settings.transition_days, as_of=as_of)
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


def write(con: duckdb.DuckDBPyConnection, tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    counts = {}
    for name, frame in tables.items():
        if frame.empty:
            frame = pd.DataFrame({"note": pd.Series([], dtype="string")})
        counts[name] = wh.write_frame_table(con, "marts", name, frame, DESCRIPTIONS[name])
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


__all__ = ["ComparisonSettings", "build", "compute", "load_inputs", "write", "headline", "np"]
