-- GitHub deployments, typed: one row per deployment.
-- deployment_id: GitHub deployment id
-- repo: owner/name
-- sha: the deployed commit
-- ref: the deployed branch or tag
-- environment: the target environment name (production is configurable)
-- created_at: when the deployment was created (UTC)
select
    cast(id as bigint) as deployment_id,
    repo,
    payload ->> 'sha' as sha,
    payload ->> 'ref' as ref,
    payload ->> 'environment' as environment,
    cast(payload ->> 'created_at' as timestamptz) as created_at
from raw.github_deployments
