-- GitHub pull requests as neutral changes (what a deployment ships): one row per closed pull request.
-- source: the git source, 'github'
-- change_id: the source's id of the change (the pull request id)
-- repo: the repo (owner/name), as the ownership file names it
-- number: the change's number in its repo
-- created_at: when it was opened (UTC)
-- merged_at: when it was merged (UTC); null when closed without merging
select
    'github' as source,
    pull_request_id as change_id,
    repo,
    number,
    created_at,
    merged_at
from staging.stg_github__pull_requests
