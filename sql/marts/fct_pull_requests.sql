-- One row per merged pull request: the next successful production deployment of its repo, and the lead time.
-- Lead time for changes: pull request merged to the first successful production deployment of the same repo at or after the merge.
-- pull_request_id: GitHub pull request id
-- repo: owner/name
-- number: the pull request number in its repo
-- merged_at: when it was merged (UTC)
-- deployment_id: the first successful production deployment of the repo at or after the merge; null when none yet
-- deployed_at: when that deployment succeeded (UTC)
-- team_key: the team owning the repo's service on the day of that deployment
-- seconds_lead_time: merged_at to deployed_at, in seconds; null while not deployed
with merged as (
    select * from staging.stg_github__pull_requests
    where merged_at is not null
),

deployments as (
    select deployment_id, repo, succeeded_at, team_key
    from marts.fct_deployments
    where is_production and is_successful
),

matched as (
    select
        m.pull_request_id,
        arg_min(d.deployment_id, d.succeeded_at) as deployment_id,
        min(d.succeeded_at) as deployed_at,
        arg_min(d.team_key, d.succeeded_at) as team_key
    from merged as m
    inner join deployments as d
        on d.repo = m.repo
        and d.succeeded_at >= m.merged_at
    group by m.pull_request_id
)

select
    m.pull_request_id,
    m.repo,
    m.number,
    m.merged_at,
    x.deployment_id,
    x.deployed_at,
    x.team_key,
    epoch(x.deployed_at) - epoch(m.merged_at) as seconds_lead_time
from merged as m
left join matched as x on x.pull_request_id = m.pull_request_id
order by m.merged_at, m.pull_request_id
