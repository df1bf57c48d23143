-- raw.ownership_service_repos: the repos (on any git host) that deploy each service.
-- Rewritten from the ownership file every run (dropped and re-created from this file first).
create table if not exists raw.ownership_service_repos (
    source varchar not null,       -- the paging source of service_id
    service_id varchar not null,   -- the service's id in that source
    repo_source varchar not null,  -- the git host of repo (a connector's name)
    repo varchar not null          -- the repo's path on that host (owner/name, group/sub/project)
);
