-- GitHub deployment statuses, typed: one row per status change.
-- Values that do not parse become null (try_cast) and are named in invalid_fields, so one bad record
-- cannot break the build; the blocking quality check on this table then stops the marts.
-- status_id: GitHub status id
-- deployment_id: the deployment it belongs to
-- repo: owner/name
-- state: queued, pending, in_progress, success, failure, error or inactive
-- created_at: when the status was set (UTC)
-- invalid_fields: the fields whose value did not parse (or a time without UTC offset), comma-separated; null when all parsed
--! incremental: status_id = try_cast(id as bigint)
with extracted as (
    -- One parse of each payload: every field in one call (each ->> would parse the document again).
    select id, repo, json_extract_string(payload, ['$.deployment_url', '$.state', '$.created_at']) as f
    from raw.github_deployment_statuses
),

typed as (
    select
        try_cast(id as bigint) as status_id,
        try_cast(regexp_extract(f[1], '/deployments/([0-9]+)$', 1) as bigint) as deployment_id,
        repo,
        f[2] as state,
        try_cast(f[3] as timestamptz) as created_at,
        f[3] as raw_created_at
    from extracted
)

select
    status_id,
    deployment_id,
    repo,
    state,
    created_at,
    nullif(concat_ws(', ',
        case when status_id is null then 'id' end,
        case when deployment_id is null then 'deployment_url' end,
        case when created_at is null
            or not regexp_matches(raw_created_at, '[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|z|[+-]\d\d(:?\d\d)?)$') then 'created_at' end
    ), '') as invalid_fields
from typed
