"""What the report shows, read from the warehouse: plain functions on a DuckDB connection.

``summary_numbers`` is the executive summary as numbers; the browser test compares the numbers on the
rendered page with its own SQL on the marts. ``load`` gathers every table the report draws from.
Nothing here formats or escapes: render.py does that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime

import duckdb
import pandas as pd

from pipelines import stats

PRIMARY_VARIANT = "transition_excluded"
SENSITIVITY_VARIANT = "all"
VERDICTS = ("improved", "worsened", "equivalent", "inconclusive", "insufficient_data")
# the order of metrics in a team's before/after table
TEAM_METRICS = ("time_to_resolve", "time_to_acknowledge", "incident_rate", "after_hours", "handoffs",
                "deployment_frequency", "change_failure_rate")


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> set[str]:
    rows = con.execute(
        "select column_name from duckdb_columns() where schema_name = ? and table_name = ?", [schema, table]
    ).fetchall()
    return {r[0] for r in rows}


def has_table(con: duckdb.DuckDBPyConnection, schema: str, table: str, *columns: str) -> bool:
    cols = _columns(con, schema, table)
    return bool(cols) and all(c in cols for c in columns)


def _frame(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pd.DataFrame:
    return con.execute(sql, params or []).df()


def _num(v) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _int(v) -> int:
    return 0 if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)


def data_as_of(con: duckdb.DuckDBPyConnection) -> datetime | None:
    if not has_table(con, "marts", "fct_incidents", "data_as_of"):
        return None
    v = con.execute("select max(data_as_of) from marts.fct_incidents").fetchone()[0]
    return pd.Timestamp(v).to_pydatetime() if v is not None else None


def summary_numbers(con: duckdb.DuckDBPyConnection) -> dict:
    """The executive summary's numbers, straight from the marts.

    Keys (None when unknown):
      as_of                     newest record time in the paging data (ISO 8601, UTC)
      incidents_analysed        incidents counted by the metrics (merged-away and unowned excluded)
      teams_total, teams_adopted, teams_not_adopted        from marts.dim_teams
      teams_compared            adopted teams with a time-to-resolve comparison (transition excluded)
      teams_<verdict>           per verdict: improved, worsened, equivalent, inconclusive, insufficient_data
      teams_cannot_tell         inconclusive + insufficient_data
      teams_inconclusive_low_power   inconclusive teams whose comparison had low power
      teams_improved_fdr, teams_worsened_fdr   of those, still significant after Benjamini-Hochberg (q < 0.05)
      org_<m>_ratio, _ci_low, _ci_high, _verdict, _low_power, _mde, _p_value, _placebo_p, _n_treated_teams,
      _n_teams, _n_treated_incidents     for m in ttr (time to resolve), tta (time to acknowledge),
                                         rate (incident rate), from marts.org_effects
    """
    out: dict = {"as_of": None}
    as_of = data_as_of(con)
    out["as_of"] = as_of.isoformat() if as_of is not None else None
    out["incidents_analysed"] = (
        _int(con.execute("select count(*) from marts.fct_incidents where not is_merged and team_key is not null"
                         ).fetchone()[0]) if has_table(con, "marts", "fct_incidents", "is_merged") else 0
    )
    if has_table(con, "marts", "dim_teams", "adopted_on"):
        total, adopted = con.execute(
            "select count(*), count(adopted_on) from marts.dim_teams").fetchone()
    else:
        total, adopted = 0, 0
    out.update(teams_total=_int(total), teams_adopted=_int(adopted), teams_not_adopted=_int(total) - _int(adopted))

    counts = {v: 0 for v in VERDICTS}
    compared = low_power_inc = improved_fdr = worsened_fdr = 0
    if has_table(con, "marts", "team_comparisons", "verdict", "metric", "variant", "low_power", "q_value"):
        rows = con.execute(
            "select verdict, count(*), count(*) filter (where low_power), count(*) filter (where q_value < 0.05) "
            "from marts.team_comparisons where metric = 'time_to_resolve' and variant = ? group by verdict",
            [PRIMARY_VARIANT],
        ).fetchall()
        for verdict, n, n_low, n_fdr in rows:
            counts[verdict] = counts.get(verdict, 0) + _int(n)
            compared += _int(n)
            if verdict == "inconclusive":
                low_power_inc = _int(n_low)
            elif verdict == "improved":
                improved_fdr = _int(n_fdr)
            elif verdict == "worsened":
                worsened_fdr = _int(n_fdr)
    out["teams_compared"] = compared
    for v in VERDICTS:
        out[f"teams_{v}"] = counts.get(v, 0)
    out["teams_cannot_tell"] = counts["inconclusive"] + counts["insufficient_data"]
    out["teams_inconclusive_low_power"] = low_power_inc
    out["teams_improved_fdr"] = improved_fdr
    out["teams_worsened_fdr"] = worsened_fdr

    org = {}
    if has_table(con, "marts", "org_effects", "metric", "estimate", "ci_low", "ci_high", "verdict"):
        cols = _columns(con, "marts", "org_effects")
        wanted = [c for c in ("estimate", "ci_low", "ci_high", "verdict", "low_power", "mde", "p_value", "placebo_p",
                              "n_treated_teams", "n_teams", "n_treated_incidents") if c in cols]
        for row in con.execute(f"select metric, {', '.join(wanted)} from marts.org_effects").fetchall():
            org[row[0]] = dict(zip(wanted, row[1:]))
    for short, metric in (("ttr", "time_to_resolve"), ("tta", "time_to_acknowledge"), ("rate", "incident_rate")):
        r = org.get(metric, {})
        out[f"org_{short}_ratio"] = _num(r.get("estimate"))
        out[f"org_{short}_ci_low"] = _num(r.get("ci_low"))
        out[f"org_{short}_ci_high"] = _num(r.get("ci_high"))
        out[f"org_{short}_verdict"] = r.get("verdict")
        out[f"org_{short}_low_power"] = None if r.get("low_power") is None else bool(r.get("low_power"))
        out[f"org_{short}_mde"] = _num(r.get("mde"))
        out[f"org_{short}_p_value"] = _num(r.get("p_value"))
        out[f"org_{short}_placebo_p"] = _num(r.get("placebo_p"))
        for k in ("n_treated_teams", "n_teams", "n_treated_incidents"):
            out[f"org_{short}_{k}"] = None if _num(r.get(k)) is None else int(r.get(k))
    return out


@dataclass
class ReportData:
    generated_at: datetime
    as_of: datetime | None
    summary: dict
    teams: pd.DataFrame                    # dim_teams (+ services)
    services: pd.DataFrame                 # dim_services: current owner and name
    baselines: pd.DataFrame                # team_baselines + median CI + team name
    comparisons: pd.DataFrame              # team_comparisons (+ change failure rate rows)
    periods: pd.DataFrame                  # team_period_metrics
    org: pd.DataFrame                      # org_effects
    events: pd.DataFrame                   # org_event_study
    deploys_monthly: pd.DataFrame          # team, month, deployments, failed_changes
    freshness: pd.DataFrame                # per source: last sync, newest bookmark, oldest bookmark
    last_runs: pd.DataFrame                # per source and stream of the latest run
    quarantine: pd.DataFrame               # per source, stream, rule: count, example reason
    population: dict                       # counts of what was excluded or flagged
    sources: pd.DataFrame = field(default_factory=lambda: _empty(["source", "label", "what", "records"]))  # the mix
    transition_days: int = stats.DEFAULT_TRANSITION_DAYS
    before_days: int = stats.DEFAULT_BEFORE_DAYS
    after_days: int = stats.DEFAULT_AFTER_DAYS
    exports: dict[str, pd.DataFrame] = field(default_factory=dict)


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype="object") for c in columns})


def baselines_with_ci(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """marts.team_baselines with the exact order-statistic 95 % CI of each median (resolved incidents,
    as the mart's median) and incidents per 30 days."""
    if not has_table(con, "marts", "team_baselines", "median_seconds_to_resolve"):
        return _empty(["team_key"])
    base = _frame(con, """
        select b.*, t.team_name, t.adopted_on
        from marts.team_baselines as b left join marts.dim_teams as t using (team_key)
        order by b.team_key""")
    durations = _frame(con, """
        select b.team_key, list(i.seconds_to_resolve order by i.seconds_to_resolve) as ttr
        from marts.team_baselines as b
        join marts.fct_incidents as i
          on i.team_key = b.team_key and i.created_at >= b.period_start and i.created_at < b.period_end
         and not i.is_merged and i.seconds_to_resolve is not null
        group by b.team_key""")
    by_team = {r.team_key: list(r.ttr) for r in durations.itertuples()}
    lo, hi = [], []
    for key in base["team_key"]:
        xs = by_team.get(key, [])
        ranks = stats.median_ci_ranks(len(xs)) if xs else None
        lo.append(float(xs[ranks[0] - 1]) if ranks else math.nan)
        hi.append(float(xs[ranks[1] - 1]) if ranks else math.nan)
    base["median_ci_low_seconds"] = lo
    base["median_ci_high_seconds"] = hi
    days = (pd.to_datetime(base["period_end"]) - pd.to_datetime(base["period_start"])).dt.days.astype(float)
    base["incidents_per_30_days"] = base["n_incidents"].astype(float) * 30.0 / days.where(days > 0)
    return base


def change_failure_comparisons(con: duckdb.DuckDBPyConnection, comparisons: pd.DataFrame) -> pd.DataFrame:
    """Change failure rate before/after per team, in the windows of the time-to-resolve comparison:
    failed changes / successful production deployments, compared with ``stats.compare_proportions``."""
    if comparisons.empty or not has_table(con, "marts", "fct_deployments", "caused_incident"):
        return pd.DataFrame()
    windows = comparisons[comparisons["metric"] == "time_to_resolve"][
        ["team", "variant", "adopted_on", "before_start", "before_end", "after_start", "after_end", "transition_days"]]
    deps = _frame(con, """
        select team_key as team, succeeded_at, caused_incident
        from marts.fct_deployments
        where is_production and is_successful and team_key is not null""")
    rows = []
    for w in windows.itertuples(index=False):
        d = deps[deps["team"] == w.team]
        when = pd.to_datetime(d["succeeded_at"], utc=True)
        b = d[(when >= w.before_start) & (when < w.before_end)]
        a = d[(when >= w.after_start) & (when < w.after_end)]
        res = stats.compare_proportions(int(b["caused_incident"].sum()), len(b), int(a["caused_incident"].sum()),
                                        len(a), direction="lower_is_better")
        rows.append({"team": w.team, "metric": "change_failure_rate", "variant": w.variant,
                     "adopted_on": w.adopted_on, "transition_days": w.transition_days,
                     "before_start": w.before_start, "before_end": w.before_end,
                     "after_start": w.after_start, "after_end": w.after_end, **res})
    return pd.DataFrame(rows)


def load(con: duckdb.DuckDBPyConnection, generated_at: datetime) -> ReportData:
    summary = summary_numbers(con)
    teams = (_frame(con, "select * from marts.dim_teams order by team_key")
             if has_table(con, "marts", "dim_teams", "team_key") else _empty(["team_key", "team_name", "adopted_on"]))
    services = (_frame(con, """
        select service_id, service_name, current_team_key from marts.dim_services
        where current_team_key is not null
        qualify row_number() over (partition by coalesce(service_key, source || ':' || service_id)
                                   order by source, service_id) = 1  -- a service paged from two sources: once
        order by current_team_key, service_name""")
                if has_table(con, "marts", "dim_services", "current_team_key", "service_key") else _empty(
        ["service_id", "service_name", "current_team_key"]))
    comparisons = (_frame(con, "select * from marts.team_comparisons order by team, metric, variant")
                   if has_table(con, "marts", "team_comparisons", "verdict", "metric") else pd.DataFrame())
    cfr = change_failure_comparisons(con, comparisons)
    if not cfr.empty:
        comparisons = pd.concat([comparisons, cfr], ignore_index=True)
    periods = (_frame(con, "select * from marts.team_period_metrics order by team, period_kind, period_start")
               if has_table(con, "marts", "team_period_metrics", "period_kind") else pd.DataFrame())
    org = (_frame(con, "select * from marts.org_effects") if has_table(con, "marts", "org_effects", "metric")
           else pd.DataFrame())
    events = (_frame(con, "select * from marts.org_event_study order by metric, event_month")
              if has_table(con, "marts", "org_event_study", "event_month") else pd.DataFrame())
    deploys_monthly = (_frame(con, """
        select team_key as team, cast(date_trunc('month', succeeded_at) as date) as month,
               count(*) as deployments, count(*) filter (where caused_incident) as failed_changes
        from marts.fct_deployments
        where is_production and is_successful and team_key is not null
        group by all order by all""") if has_table(con, "marts", "fct_deployments", "succeeded_at")
                       else _empty(["team", "month", "deployments", "failed_changes"]))
    freshness = (_frame(con, """
        select source, count(*) as streams, max(updated_at) as last_sync,
               max(high_water_mark) as newest_record, min(high_water_mark) as oldest_stream_bookmark
        from raw.sync_state group by source order by source""") if has_table(con, "raw", "sync_state", "source")
                 else _empty(["source", "streams", "last_sync", "newest_record", "oldest_stream_bookmark"]))
    last_runs = (_frame(con, """
        with last as (select source, arg_max(run_id, finished_at) as run_id from raw.sync_runs group by source)
        select r.source, r.stream, r.requests, r.retries, r.throttled, r.records, r.bytes, r.finished_at
        from raw.sync_runs as r join last using (source, run_id)
        order by r.source, r.stream""") if has_table(con, "raw", "sync_runs", "run_id")
                 else _empty(["source", "stream", "requests", "retries", "throttled", "records", "bytes",
                              "finished_at"]))
    quarantine = (_frame(con, """
        select source, stream, rule, count(*) as records, any_value(reason) as example_reason,
               max(rejected_at) as last_rejected_at
        from quarantine.rejected_records group by all order by records desc, source, stream, rule""")
                  if has_table(con, "quarantine", "rejected_records", "rule")
                  else _empty(["source", "stream", "rule", "records", "example_reason", "last_rejected_at"]))
    population: dict = {}
    if has_table(con, "marts", "fct_incidents", "is_merged", "is_open", "is_auto_resolved", "urgency"):
        row = con.execute("""
            select count(*),
                   count(*) filter (where is_merged),
                   count(*) filter (where not is_merged and team_key is null),
                   count(*) filter (where not is_merged and team_key is not null and is_open),
                   count(*) filter (where not is_merged and team_key is not null and is_auto_resolved),
                   count(*) filter (where not is_merged and team_key is not null and urgency = 'high'),
                   count(*) filter (where not is_merged and team_key is not null and urgency = 'low'),
                   coalesce(sum(n_retriggers) filter (where not is_merged), 0),
                   min(created_at)
            from marts.fct_incidents""").fetchone()
        keys = ("records", "merged", "unowned", "open", "auto_resolved", "high_urgency", "low_urgency",
                "retriggers_folded", "first_created_at")
        population = dict(zip(keys, row))
    transition = stats.DEFAULT_TRANSITION_DAYS
    if not comparisons.empty and "transition_days" in comparisons:
        prim = comparisons[comparisons["variant"] == PRIMARY_VARIANT]["transition_days"].dropna()
        if len(prim):
            transition = int(prim.iloc[0])
    as_of = data_as_of(con)
    return ReportData(sources=source_mix(con), generated_at=generated_at, as_of=as_of, summary=summary, teams=teams, services=services,
                      baselines=baselines_with_ci(con), comparisons=comparisons, periods=periods, org=org,
                      events=events, deploys_monthly=deploys_monthly, freshness=freshness, last_runs=last_runs,
                      quarantine=quarantine, population=population, transition_days=transition)


def source_mix(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """What each source brought to the metrics: incidents counted (paging sources), successful
    production deployments and merged changes (git sources), labelled as the registry names them."""
    from pipelines.connectors import CONNECTORS

    parts = []
    if has_table(con, "marts", "fct_incidents", "source"):
        parts.append("select source, 'incidents' as what, count(*) as records from marts.fct_incidents "
                     "where not is_merged and team_key is not null group by source")
    if has_table(con, "marts", "fct_deployments", "source"):
        parts.append("select source, 'production deployments' as what, count(*) as records from marts.fct_deployments "
                     "where is_production and is_successful group by source")
    if has_table(con, "marts", "fct_pull_requests", "source"):
        parts.append("select source, 'merged changes' as what, count(*) as records from marts.fct_pull_requests "
                     "group by source")
    if not parts:
        return _empty(["source", "label", "what", "records"])
    frame = _frame(con, " union all ".join(parts) + " order by what, source")
    labels = {c.name: c.label for c in CONNECTORS}
    frame.insert(1, "label", [labels.get(s, s) for s in frame["source"]])
    return frame


def to_date(v) -> date | None:
    if v is None:
        return None
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    return pd.Timestamp(v).date()
