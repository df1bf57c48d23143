-- GitLab merge requests (merged ones), typed: one row per merge request.
-- Values that do not parse become null (try_cast) and are named in invalid_fields, so one bad record
-- cannot break the build; the quality check on this table reports them.
-- merge_request_id: GitLab merge request id (unique on the instance)
-- repo: the project's path (group/sub/project)
-- iid: the merge request's number in its project
-- created_at: when it was opened (UTC)
-- merged_at: when it was merged (UTC)
-- merge_commit_sha: the commit the merge produced
-- invalid_fields: the fields whose value did not parse (or a time without UTC offset), comma-separated; null when all parsed
--! incremental: merge_request_id = try_cast(id as bigint)
with extracted as (
    -- One parse of each payload: every field in one call (each ->> would parse the document again).
    select id, repo, json_extract_string(payload, ['$.iid', '$.created_at', '$.merged_at', '$.merge_commit_sha']) as f
    from raw.gitlab_merge_requests
),

typed as (
    select
        try_cast(id as bigint) as merge_request_id,
        repo,
        try_cast(f[1] as integer) as iid,
        try_cast(f[2] as timestamptz) as created_at,
        try_cast(f[3] as timestamptz) as merged_at,
        f[4] as merge_commit_sha,
        f[1] as raw_iid,
        f[2] as raw_created_at,
        f[3] as raw_merged_at
    from extracted
)

select
    merge_request_id,
    repo,
    iid,
    created_at,
    merged_at,
    merge_commit_sha,
    nullif(concat_ws(', ',
        case when merge_request_id is null then 'id' end,
        case when raw_iid is not null and iid is null then 'iid' end,
        case when created_at is null
            or not regexp_matches(raw_created_at, '[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|z|[+-]\d\d(:?\d\d)?)$') then 'created_at' end,
        case when raw_merged_at is not null and (merged_at is null
            or not regexp_matches(raw_merged_at, '[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|z|[+-]\d\d(:?\d\d)?)$')) then 'merged_at' end
    ), '') as invalid_fields
from typed
