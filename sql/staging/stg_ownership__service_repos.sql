-- Which repos (on which git host) deploy which service, from the ownership file.
-- source: the paging source of service_id
-- service_id: the service's id in that source
-- repo_source: the git host of the repo
-- repo: the repo's path on that host (owner/name, or group/sub/project on hosts with nested groups)
select distinct
    source,
    service_id,
    repo_source,
    repo
from raw.ownership_service_repos
