-- GitHub pull requests (closed ones), typed: one row per pull request.
-- Values that do not parse become null (try_cast) and are named in invalid_fields, so one bad record
-- cannot break the build; the quality check on this table reports them.
-- pull_request_id: GitHub pull request id
-- repo: owner/name
-- number: the pull request number in its repo
-- created_at: when it was opened (UTC)
-- merged_at: when it was merged (UTC); null when closed without merging
-- merge_commit_sha: the commit the merge produced
-- invalid_fields: the fields whose value did not parse (or a time without UTC offset), comma-separated; null when all parsed
--! incremental: pull_request_id = try_cast(id as bigint)
with extracted as (
    -- One parse of each payload: every field in one call (each ->> would parse the document again).
    select id, repo, json_extract_string(payload, ['$.number', '$.created_at', '$.merged_at', '$.merge_commit_sha']) as f
    from raw.github_pull_requests
),

typed as (
    select
        try_cast(id as bigint) as pull_request_id,
        repo,
        try_cast(f[1] as integer) as number,
        try_cast(f[2] as timestamptz) as created_at,
        try_cast(f[3] as timestamptz) as merged_at,
        f[4] as merge_commit_sha,
        f[1] as raw_number,
        f[2] as raw_created_at,
        f[3] as raw_merged_at
    from extracted
)

select
    pull_request_id,
    repo,
    number,
    created_at,
    merged_at,
    merge_commit_sha,
    nullif(concat_ws(', ',
        case when pull_request_id is null then 'id' end,
        case when raw_number is not null and number is null then 'number' end,
        case when created_at is null
            or not regexp_matches(raw_created_at, '[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|z|[+-]\d\d(:?\d\d)?)$') then 'created_at' end,
        case when raw_merged_at is not null and (merged_at is null
            or not regexp_matches(raw_merged_at, '[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|z|[+-]\d\d(:?\d\d)?)$')) then 'merged_at' end
    ), '') as invalid_fields
from typed
