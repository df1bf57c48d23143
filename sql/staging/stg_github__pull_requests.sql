-- GitHub pull requests (closed ones), typed: one row per pull request.
-- pull_request_id: GitHub pull request id
-- repo: owner/name
-- number: the pull request number in its repo
-- created_at: when it was opened (UTC)
-- merged_at: when it was merged (UTC); null when closed without merging
-- merge_commit_sha: the commit the merge produced
select
    cast(id as bigint) as pull_request_id,
    repo,
    cast(payload ->> 'number' as integer) as number,
    cast(payload ->> 'created_at' as timestamptz) as created_at,
    cast(payload ->> 'merged_at' as timestamptz) as merged_at,
    payload ->> 'merge_commit_sha' as merge_commit_sha
from raw.github_pull_requests
