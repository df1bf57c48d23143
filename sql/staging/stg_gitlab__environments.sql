-- GitLab environments, typed: one row per environment.
-- environment_id: GitLab environment id
-- repo: the project's path (group/sub/project)
-- environment: the environment name
-- tier: production, staging, testing, development or other; null on a GitLab without tiers (before 13.10)
select
    try_cast(id as bigint) as environment_id,
    repo,
    payload ->> 'name' as environment,
    payload ->> 'tier' as tier
from raw.gitlab_environments
