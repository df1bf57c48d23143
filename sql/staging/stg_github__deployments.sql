-- GitHub deployments, typed: one row per deployment.
-- Values that do not parse become null (try_cast) and are named in invalid_fields, so one bad record
-- cannot break the build; the blocking quality check on this table then stops the marts.
-- deployment_id: GitHub deployment id
-- repo: owner/name
-- sha: the deployed commit
-- ref: the deployed branch or tag
-- environment: the target environment name (production is configurable)
-- created_at: when the deployment was created (UTC)
-- invalid_fields: the fields whose value did not parse (or a time without UTC offset), comma-separated; null when all parsed
--! incremental: deployment_id = try_cast(id as bigint)
with extracted as (
    -- One parse of each payload: every field in one call (each ->> would parse the document again).
    select id, repo, json_extract_string(payload, ['$.sha', '$.ref', '$.environment', '$.created_at']) as f
    from raw.github_deployments
),

typed as (
    select
        try_cast(id as bigint) as deployment_id,
        repo,
        f[1] as sha,
        f[2] as ref,
        f[3] as environment,
        try_cast(f[4] as timestamptz) as created_at,
        f[4] as raw_created_at
    from extracted
)

select
    deployment_id,
    repo,
    sha,
    ref,
    environment,
    created_at,
    nullif(concat_ws(', ',
        case when deployment_id is null then 'id' end,
        case when created_at is null
            or not regexp_matches(raw_created_at, '[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|z|[+-]\d\d(:?\d\d)?)$') then 'created_at' end
    ), '') as invalid_fields
from typed
