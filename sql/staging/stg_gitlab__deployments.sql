-- GitLab deployments, typed: one row per deployment, with its one status (GitLab keeps no status history).
-- Values that do not parse become null (try_cast) and are named in invalid_fields, so one bad record
-- cannot break the build; the blocking quality check on this table then stops the marts.
-- deployment_id: GitLab deployment id
-- repo: the project's path (group/sub/project)
-- iid: the deployment's number in its project
-- sha: the deployed commit
-- ref: the deployed branch or tag
-- environment_id: the environment's id (its tier is in stg_gitlab__environments)
-- environment: the target environment name
-- status: created, running, success, failed, canceled, blocked or skipped (as of the last sync)
-- created_at: when the deployment was created (UTC)
-- updated_at: the last change of its status (UTC)
-- finished_at: when it finished (success or failure, UTC): the deployment's finished_at, else its job's (deployable.finished_at); null while it has not or when neither says
-- invalid_fields: the fields whose value did not parse (or a time without UTC offset), comma-separated; null when all parsed
--! incremental: deployment_id = try_cast(id as bigint)
with extracted as (
    -- One parse of each payload: every field in one call (each ->> would parse the document again).
    select id, repo, json_extract_string(payload, ['$.iid', '$.sha', '$.ref', '$.environment.id', '$.environment.name',
                                                   '$.status', '$.created_at', '$.updated_at', '$.finished_at',
                                                   '$.deployable.finished_at']) as f
    from raw.gitlab_deployments
),

typed as (
    select
        try_cast(id as bigint) as deployment_id,
        repo,
        try_cast(f[1] as integer) as iid,
        f[2] as sha,
        f[3] as ref,
        try_cast(f[4] as bigint) as environment_id,
        f[5] as environment,
        f[6] as status,
        try_cast(f[7] as timestamptz) as created_at,
        try_cast(f[8] as timestamptz) as updated_at,
        try_cast(coalesce(f[9], f[10]) as timestamptz) as finished_at,
        f[7] as raw_created_at,
        f[8] as raw_updated_at,
        coalesce(f[9], f[10]) as raw_finished_at
    from extracted
)

select
    deployment_id,
    repo,
    iid,
    sha,
    ref,
    environment_id,
    environment,
    status,
    created_at,
    updated_at,
    finished_at,
    nullif(concat_ws(', ',
        case when deployment_id is null then 'id' end,
        case when created_at is null
            or not regexp_matches(raw_created_at, '[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|z|[+-]\d\d(:?\d\d)?)$') then 'created_at' end,
        case when raw_updated_at is not null and (updated_at is null
            or not regexp_matches(raw_updated_at, '[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|z|[+-]\d\d(:?\d\d)?)$')) then 'updated_at' end,
        case when raw_finished_at is not null and (finished_at is null
            or not regexp_matches(raw_finished_at, '[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|z|[+-]\d\d(:?\d\d)?)$')) then 'finished_at' end
    ), '') as invalid_fields
from typed
