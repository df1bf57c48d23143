-- GitHub deployment statuses, typed: one row per status change.
-- status_id: GitHub status id
-- deployment_id: the deployment it belongs to
-- repo: owner/name
-- state: queued, pending, in_progress, success, failure, error or inactive
-- created_at: when the status was set (UTC)
select
    cast(id as bigint) as status_id,
    cast(regexp_extract(payload ->> 'deployment_url', '/deployments/([0-9]+)$', 1) as bigint) as deployment_id,
    repo,
    payload ->> 'state' as state,
    cast(payload ->> 'created_at' as timestamptz) as created_at
from raw.github_deployment_statuses
