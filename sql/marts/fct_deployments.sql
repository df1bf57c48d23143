-- One row per deployment (of every git source): environment, outcome, and whether an incident followed it.
-- Change failure: any incident (not merged) on a service of the same repo created within 24 hours after the deployment succeeded.
-- A repo may deploy several services: the deployment is still one row, attributed to the owner of the repo's first service (by id).
-- source: the git source of the deployment
-- deployment_id: the source's deployment id (a deployment is (source, deployment_id))
-- repo: the repo's path on its git host (owner/name, or group/sub/project on hosts with nested groups)
-- environment: target environment
-- is_production: the environment is production, as its source tells (int_<source>__deployments)
-- created_at: when the deployment was created (UTC)
-- final_state: the latest status (success, failure, error, inactive, in_progress, queued, pending); null when it has none yet
-- succeeded_at: first success status (UTC); null when it never succeeded
-- is_successful: reached success
-- team_key: team owning the repo's first service (by service id) on the day of the deployment
-- caused_incident: a successful production deployment followed within 24 hours by an incident on a service of the repo
-- seconds_to_recover: for a failed change, deployment success to the resolve of the first incident that followed, in seconds
with deployments as (
    select * from intermediate.int_deployments
),

repo_services as (
    -- every service the repo deploys, with its owner on each day (a repo may deploy several services)
    select r.repo_source, r.repo, r.source, r.service_id, o.team_key, o.valid_from, o.valid_to
    from staging.stg_ownership__service_repos as r
    inner join staging.stg_ownership__service_owners as o on o.source = r.source and o.service_id = r.service_id
),

deployment_team as (
    -- one team per deployment: the owner, on the deployment day, of the repo's first service (by id)
    select
        d.source,
        d.deployment_id,
        arg_min(rs.team_key, (rs.service_id, rs.source)) as team_key
    from deployments as d
    inner join repo_services as rs
        on rs.repo_source = d.source
        and rs.repo = d.repo
        and cast(d.created_at as date) >= rs.valid_from
        and cast(d.created_at as date) < rs.valid_to
    group by d.source, d.deployment_id
),

deployed_services as (
    -- each successful production deployment with every service of its repo
    select d.source as repo_source, d.deployment_id, r.source, r.service_id, d.succeeded_at
    from deployments as d
    inner join staging.stg_ownership__service_repos as r on r.repo_source = d.source and r.repo = d.repo
    where d.is_production
        and d.succeeded_at is not null
),

deployed_days as (
    -- each of them under the UTC day it succeeded and the next: an incident in the 24 hours after
    -- it was created on one of the two (an equality join, not every incident of the service)
    select ds.repo_source, ds.deployment_id, ds.source, ds.service_id, ds.succeeded_at, cast(ds.succeeded_at as date) + t.offset_days as day
    from deployed_services as ds
    cross join (values (0), (1)) as t(offset_days)
),

caused as (
    -- any incident (not merged) on any service of the repo in the 24 hours after a production deployment
    -- succeeded; the first of them (of several in the same second, the first by id)
    select
        dd.repo_source,
        dd.deployment_id,
        first(i.incident_id order by i.created_at, i.incident_id) as first_incident_id,
        first(i.resolved_at order by i.created_at, i.incident_id) as first_incident_resolved_at
    from deployed_days as dd
    inner join marts.fct_incidents as i
        on i.source = dd.source
        and i.service_id = dd.service_id
        and cast(i.created_at as date) = dd.day
        and not i.is_merged
        and i.created_at >= dd.succeeded_at
        and i.created_at < dd.succeeded_at + interval 24 hour
    group by dd.repo_source, dd.deployment_id
),

final as (
    select
        d.source,
        d.deployment_id,
        d.repo,
        d.environment,
        d.is_production,
        d.created_at,
        d.final_state,
        d.succeeded_at,
        d.succeeded_at is not null as is_successful,
        o.team_key,
        c.deployment_id is not null as caused_incident,
        epoch(c.first_incident_resolved_at) - epoch(d.succeeded_at) as seconds_to_recover
    from deployments as d
    left join deployment_team as o on o.source = d.source and o.deployment_id = d.deployment_id
    left join caused as c on c.repo_source = d.source and c.deployment_id = d.deployment_id
)

select * from final
order by created_at, source, deployment_id
