-- Per team and calendar month (UTC): incident count and typical times to resolve and acknowledge.
-- Merged-away incidents are excluded; open incidents are counted in n_open. p90 is null under 20 resolved incidents.
-- team_key: the owning team (as of each incident's creation)
-- month: first day of the calendar month (UTC)
-- n_incidents: incidents created that month (not merged)
-- n_resolved: of those, resolved
-- n_open: of those, still open (censored)
-- median_seconds_to_resolve: median time to resolve, in seconds
-- p90_seconds_to_resolve: 90th percentile time to resolve in seconds; null when fewer than 20 resolved
-- median_seconds_to_acknowledge: median time to the first acknowledgement, in seconds
-- after_hours_share: share of incidents created outside business hours
-- handoffs_per_incident: mean handoffs per incident
select
    team_key,
    cast(date_trunc('month', created_at) as date) as month,
    count(*) as n_incidents,
    count(resolved_at) as n_resolved,
    count(*) filter (where is_open) as n_open,
    quantile_cont(seconds_to_resolve, 0.5) as median_seconds_to_resolve,
    case when count(resolved_at) >= 20 then quantile_cont(seconds_to_resolve, 0.9) end as p90_seconds_to_resolve,
    quantile_cont(seconds_to_acknowledge, 0.5) as median_seconds_to_acknowledge,
    avg(cast(is_after_hours as double)) as after_hours_share,
    avg(handoffs) as handoffs_per_incident
from marts.fct_incidents
where not is_merged and team_key is not null
group by team_key, month
order by team_key, month
