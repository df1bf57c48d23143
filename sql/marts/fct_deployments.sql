-- One row per GitHub deployment: environment, outcome, and whether an incident followed it.
-- Change failure: an incident on a service of the same repo created within 24 hours after the deployment succeeded (the link is made in fct_incidents).
-- deployment_id: GitHub deployment id
-- repo: owner/name
-- environment: target environment
-- is_production: the environment is the production one (INCIDENT_METRICS_PRODUCTION_ENVIRONMENT, default production)
-- created_at: when the deployment was created (UTC)
-- final_state: the latest status (success, failure, error, inactive, in_progress, queued, pending); null when it has none yet
-- succeeded_at: first success status (UTC); null when it never succeeded
-- is_successful: reached success
-- team_key: team owning the repo's (first) service on the day of the deployment
-- caused_incident: a successful production deployment followed by an incident within 24 hours on a service of the repo
-- seconds_to_recover: for a failed change, deployment success to the resolve of the first incident it caused, in seconds
with deployments as (
    select * from staging.stg_github__deployments
),

statuses as (
    select
        deployment_id,
        arg_max(state, created_at) as final_state,
        min(created_at) filter (where state = 'success') as succeeded_at
    from staging.stg_github__deployment_statuses
    group by deployment_id
),

repo_owner as (
    select
        r.repo,
        o.team_key,
        o.valid_from,
        o.valid_to,
        row_number() over (partition by r.repo, o.valid_from order by r.service_id) as nth
    from staging.stg_ownership__service_repos as r
    inner join staging.stg_ownership__service_owners as o on o.service_id = r.service_id
),

caused as (
    select
        linked_deployment_id as deployment_id,
        arg_min(incident_id, created_at) as first_incident_id,
        arg_min_null(resolved_at, created_at) as first_incident_resolved_at
    from marts.fct_incidents
    where linked_deployment_id is not null and not is_merged
    group by linked_deployment_id
),

final as (
    select
        d.deployment_id,
        d.repo,
        d.environment,
        d.environment = coalesce(getvariable('production_environment'), 'production') as is_production,
        d.created_at,
        s.final_state,
        s.succeeded_at,
        s.succeeded_at is not null as is_successful,
        o.team_key,
        c.deployment_id is not null as caused_incident,
        epoch(c.first_incident_resolved_at) - epoch(s.succeeded_at) as seconds_to_recover
    from deployments as d
    left join statuses as s on s.deployment_id = d.deployment_id
    left join repo_owner as o
        on o.repo = d.repo
        and o.nth = 1
        and cast(d.created_at as date) >= o.valid_from
        and cast(d.created_at as date) < o.valid_to
    left join caused as c on c.deployment_id = d.deployment_id
)

select * from final
order by created_at, deployment_id
