-- GitLab merge requests as neutral changes (what a deployment ships): one row per merged merge request.
-- source: the git source, 'gitlab'
-- change_id: the source's id of the change (the merge request id)
-- repo: the project (group/sub/project), as the ownership file names it
-- number: the change's number in its project (the merge request's iid)
-- created_at: when it was opened (UTC)
-- merged_at: when it was merged (UTC)
select
    'gitlab' as source,
    merge_request_id as change_id,
    repo,
    iid as number,
    created_at,
    merged_at
from staging.stg_gitlab__merge_requests
