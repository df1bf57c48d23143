-- One row per service (of every paging source): its name, current owner, repos, and whether the ownership file knows it.
-- A service is (source, service_id): the same id in two sources is two services.
-- source: the paging source of the service
-- service_id: the source's service id
-- service_key: the service in the ownership file (<source>:<id> of its first id): one service paged from two sources has two rows with one key; null when the file does not list it
-- service_name: name in the paging source (or in the ownership file when the source did not return it)
-- current_team_key: the team owning it today; null when the ownership file does not list the service
-- n_owner_changes: how many times the service changed owner
-- repos: the repos deploying it (their paths; the git host of each is in repo_sources, in the same order)
-- repo_sources: the git host of each of those repos
-- in_ownership_file: listed in the ownership file
with owners as (
    select
        source,
        service_id,
        any_value(service_key) as service_key,
        any_value(service_name) as service_name,
        arg_max(team_key, valid_from) as current_team_key,
        count(*) - 1 as n_owner_changes
    from staging.stg_ownership__service_owners
    group by source, service_id
),

repos as (
    select
        source,
        service_id,
        list(repo order by repo, repo_source) as repos,
        list(repo_source order by repo, repo_source) as repo_sources
    from staging.stg_ownership__service_repos
    group by source, service_id
),

all_services as (
    select source, service_id from intermediate.int_services
    union
    select source, service_id from owners
)

select
    a.source,
    a.service_id,
    o.service_key,
    coalesce(p.service_name, o.service_name) as service_name,
    o.current_team_key,
    coalesce(o.n_owner_changes, 0) as n_owner_changes,
    coalesce(r.repos, []) as repos,
    coalesce(r.repo_sources, []) as repo_sources,
    o.service_id is not null as in_ownership_file
from all_services as a
left join intermediate.int_services as p on p.source = a.source and p.service_id = a.service_id
left join owners as o on o.source = a.source and o.service_id = a.service_id
left join repos as r on r.source = a.source and r.service_id = a.service_id
order by a.service_id, a.source
