-- Per team and calendar month (UTC): the delivery metrics (DORA-style) of the team's repos.
-- Deployments count when successful and to production; a failed change is one followed within 24 hours by an incident on a service of the same repo.
-- team_key: the team owning the repo's service on the day of the deployment
-- month: first day of the calendar month (UTC)
-- n_deployments: successful production deployments
-- n_failed_changes: of those, followed by an incident within 24 hours
-- change_failure_rate: n_failed_changes / n_deployments (null without deployments)
-- median_seconds_to_recover: failed deployment recovery time: deployment success to the resolve of the incident it caused, median in seconds
-- n_merged_pull_requests: pull requests deployed this month (by the deployment that shipped them)
-- median_seconds_lead_time: pull request merge to its production deployment, median in seconds
with deployments as (
    select
        team_key,
        cast(date_trunc('month', succeeded_at) as date) as month,
        count(*) as n_deployments,
        count(*) filter (where caused_incident) as n_failed_changes,
        quantile_cont(seconds_to_recover, 0.5) as median_seconds_to_recover
    from marts.fct_deployments
    where is_production and is_successful and team_key is not null
    group by all
),

lead_times as (
    select
        team_key,
        cast(date_trunc('month', deployed_at) as date) as month,
        count(*) as n_merged_pull_requests,
        quantile_cont(seconds_lead_time, 0.5) as median_seconds_lead_time
    from marts.fct_pull_requests
    where deployed_at is not null and team_key is not null
    group by all
)

select
    coalesce(d.team_key, l.team_key) as team_key,
    coalesce(d.month, l.month) as month,
    coalesce(d.n_deployments, 0) as n_deployments,
    coalesce(d.n_failed_changes, 0) as n_failed_changes,
    d.n_failed_changes / nullif(d.n_deployments, 0) as change_failure_rate,
    d.median_seconds_to_recover,
    coalesce(l.n_merged_pull_requests, 0) as n_merged_pull_requests,
    l.median_seconds_lead_time
from deployments as d
full outer join lead_times as l on l.team_key = d.team_key and l.month = d.month
order by team_key, month
