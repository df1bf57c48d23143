-- GitLab deployments in the neutral columns of every git source: one row per deployment.
-- GitLab keeps one status a deployment; it maps to the neutral states as: created -> queued, running ->
-- in_progress, blocked -> pending, success -> success, failed -> failure, canceled and skipped -> error.
-- Production: the environment's name matches INCIDENT_METRICS_GITLAB_PRODUCTION_PATTERN when that is set;
-- else its tier is production; else (a GitLab without tiers) its name is the production environment's.
-- source: the git source, 'gitlab'
-- deployment_id: the source's deployment id
-- repo: the project deployed (group/sub/project), as the ownership file names it
-- environment: the target environment name
-- is_production: whether the environment is production (see above)
-- created_at: when the deployment was created (UTC)
-- final_state: the deployment's state, in the neutral vocabulary (see above)
-- succeeded_at: when it finished successfully (UTC): finished_at, else (a deployment created through the API, without a job) the last change of its status; null when it has not
select
    'gitlab' as source,
    d.deployment_id,
    d.repo,
    d.environment,
    case
        when getvariable('gitlab_production_pattern') is not null
            then regexp_matches(d.environment, getvariable('gitlab_production_pattern'))
        when e.tier is not null then e.tier = 'production'
        else d.environment = coalesce(getvariable('production_environment'), 'production')
    end as is_production,
    d.created_at,
    case d.status
        when 'created' then 'queued'
        when 'running' then 'in_progress'
        when 'blocked' then 'pending'
        when 'success' then 'success'
        when 'failed' then 'failure'
        when 'canceled' then 'error'
        when 'skipped' then 'error'
    end as final_state,
    case when d.status = 'success' then coalesce(d.finished_at, d.updated_at) end as succeeded_at
from staging.stg_gitlab__deployments as d
left join staging.stg_gitlab__environments as e on e.environment_id = d.environment_id
