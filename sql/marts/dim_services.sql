-- One row per service (of every paging source): its name, current owner, repos, and whether the ownership file knows it.
-- service_id: the source's service id
-- service_name: name in the paging source (or in the ownership file when the source did not return it)
-- current_team_key: the team owning it today; null when the ownership file does not list the service
-- n_owner_changes: how many times the service changed owner
-- repos: the repos deploying it
-- in_ownership_file: listed in the ownership file
with owners as (
    select
        service_id,
        any_value(service_name) as service_name,
        arg_max(team_key, valid_from) as current_team_key,
        count(*) - 1 as n_owner_changes
    from staging.stg_ownership__service_owners
    group by service_id
),

repos as (
    select service_id, list(repo order by repo) as repos
    from staging.stg_ownership__service_repos
    group by service_id
),

all_services as (
    select service_id from intermediate.int_services
    union
    select service_id from owners
)

select
    a.service_id,
    coalesce(p.service_name, o.service_name) as service_name,
    o.current_team_key,
    coalesce(o.n_owner_changes, 0) as n_owner_changes,
    coalesce(r.repos, []) as repos,
    o.service_id is not null as in_ownership_file
from all_services as a
left join intermediate.int_services as p on p.service_id = a.service_id
left join owners as o on o.service_id = a.service_id
left join repos as r on r.service_id = a.service_id
order by a.service_id
