-- GitHub deployments in the neutral columns of every git source: one row per deployment, with how it ended.
-- source: the git source, 'github'
-- deployment_id: the source's deployment id
-- repo: the repo deployed (owner/name), as the ownership file names it
-- environment: the target environment name
-- is_production: the environment is the production one (INCIDENT_METRICS_PRODUCTION_ENVIRONMENT, default production)
-- created_at: when the deployment was created (UTC)
-- final_state: the latest status: queued, pending, in_progress, success, failure, error or inactive; null without any
-- succeeded_at: the first success status (UTC); null when it never succeeded
with statuses as (
    select
        deployment_id,
        arg_max(state, created_at) as final_state,
        min(created_at) filter (where state = 'success') as succeeded_at
    from staging.stg_github__deployment_statuses
    group by deployment_id
)

select
    'github' as source,
    d.deployment_id,
    d.repo,
    d.environment,
    d.environment = coalesce(getvariable('production_environment'), 'production') as is_production,
    d.created_at,
    s.final_state,
    s.succeeded_at
from staging.stg_github__deployments as d
left join statuses as s on s.deployment_id = d.deployment_id
