-- Per-team baseline before service-ownership adoption: the 90 days before the adoption date.
-- Teams that have not adopted get their trailing 90 days up to the data's as-of date instead (period_kind says which).
-- Merged-away incidents are excluded; open incidents are counted in n_open but have no time to resolve yet.
-- Medians and p90 are continuous quantiles (the mean of the two middle values for an even n); p90 is null under 20 resolved incidents.
-- team_key: the owning team (as of each incident's creation)
-- period_kind: pre_adoption_90d or trailing_90d (not adopted yet)
-- period_start: first UTC day of the window
-- period_end: day after the window (exclusive)
-- n_incidents: incidents created in the window (not merged)
-- n_resolved: of those, resolved
-- n_open: of those, still open (censored)
-- median_seconds_to_resolve: median time to resolve of the resolved incidents, in seconds
-- p90_seconds_to_resolve: 90th percentile time to resolve in seconds; null when fewer than 20 resolved
-- median_seconds_to_acknowledge: median time to the first acknowledgement, in seconds
with teams as (
    select
        team_key,
        adopted_on,
        case when adopted_on is null then 'trailing_90d' else 'pre_adoption_90d' end as period_kind,
        coalesce(
            adopted_on,
            cast((select max(data_as_of) from marts.fct_incidents) as date) + 1
        ) as period_end
    from marts.dim_teams
),

windows as (
    select team_key, period_kind, period_end - 90 as period_start, period_end
    from teams
),

incidents as (
    select i.*, w.period_kind, w.period_start, w.period_end
    from marts.fct_incidents as i
    inner join windows as w
        on w.team_key = i.team_key
        and i.created_at >= w.period_start
        and i.created_at < w.period_end
    where not i.is_merged
)

select
    w.team_key,
    w.period_kind,
    w.period_start,
    w.period_end,
    count(i.incident_id) as n_incidents,
    count(i.resolved_at) as n_resolved,
    count(i.incident_id) filter (where i.is_open) as n_open,
    quantile_cont(i.seconds_to_resolve, 0.5) as median_seconds_to_resolve,
    case
        when count(i.resolved_at) >= 20 then quantile_cont(i.seconds_to_resolve, 0.9)
    end as p90_seconds_to_resolve,
    quantile_cont(i.seconds_to_acknowledge, 0.5) as median_seconds_to_acknowledge
from windows as w
left join incidents as i on i.team_key = w.team_key
group by w.team_key, w.period_kind, w.period_start, w.period_end
order by w.team_key
