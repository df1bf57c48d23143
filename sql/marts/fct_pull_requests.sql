-- One row per merged pull request: the next successful production deployment of its repo, and the lead time.
-- Lead time for changes: pull request merged to the first successful production deployment of the same repo at or after the merge.
-- source: the git source of the pull (or merge) request and of its deployment
-- pull_request_id: the source's id of the pull (or merge) request (a change is (source, pull_request_id))
-- repo: the repo's path on its git host (owner/name, or group/sub/project on hosts with nested groups)
-- number: the pull request number in its repo
-- merged_at: when it was merged (UTC)
-- deployment_id: the first successful production deployment of the repo at or after the merge; null when none yet
-- deployed_at: when that deployment succeeded (UTC)
-- team_key: the team owning the repo's service on the day of that deployment; where that is unknown, of the next deployment whose team is known
-- seconds_lead_time: merged_at to deployed_at, in seconds; null while not deployed
with merged as (
    select source, change_id as pull_request_id, repo, number, merged_at
    from intermediate.int_changes
    where merged_at is not null
),

deployments as (
    select source, deployment_id, repo, succeeded_at, team_key
    from marts.fct_deployments
    where is_production and is_successful
),

repo_deployments as (
    -- of several deployments of a repo succeeding in the same second, the first by id (and the
    -- team of the first of them whose team is known)
    select
        source,
        repo,
        succeeded_at,
        min(deployment_id) as deployment_id,
        arg_min(team_key, deployment_id) as team_key
    from deployments
    group by source, repo, succeeded_at
),

first_deployments as (
    -- the first deployment of the repo at or after each merge: an as-of join (the nearest
    -- succeeded_at >= merged_at), not every later deployment of the repo
    select m.source, m.pull_request_id, m.repo, m.merged_at, d.deployment_id, d.succeeded_at, d.team_key
    from merged as m
    asof inner join repo_deployments as d
        on d.source = m.source
        and d.repo = m.repo
        and d.succeeded_at >= m.merged_at
),

team_deployments as (
    -- team_key is the team of the first deployment at or after the merge whose team is known:
    -- that deployment, or (where its team is unknown, rarely) the next one with a known team
    select source, pull_request_id, team_key, succeeded_at from first_deployments where team_key is not null
    union all
    select f.source, f.pull_request_id, d.team_key, d.succeeded_at
    from (select * from first_deployments where team_key is null) as f
    asof inner join (
        select * from repo_deployments
        where team_key is not null and (source, repo) in (select (source, repo) from first_deployments where team_key is null)
    ) as d
        on d.source = f.source
        and d.repo = f.repo
        and d.succeeded_at >= f.merged_at
),

matched as (
    select
        source,
        pull_request_id,
        first(deployment_id order by succeeded_at, deployment_id) as deployment_id,
        min(succeeded_at) as deployed_at
    from first_deployments
    group by source, pull_request_id
),

matched_team as (
    select source, pull_request_id, first(team_key order by succeeded_at, team_key) as team_key
    from team_deployments
    group by source, pull_request_id
)

select
    m.source,
    m.pull_request_id,
    m.repo,
    m.number,
    m.merged_at,
    x.deployment_id,
    x.deployed_at,
    t.team_key,
    epoch(x.deployed_at) - epoch(m.merged_at) as seconds_lead_time
from merged as m
left join matched as x on x.source = m.source and x.pull_request_id = m.pull_request_id
left join matched_team as t on t.source = m.source and t.pull_request_id = m.pull_request_id
order by m.merged_at, m.source, m.pull_request_id
