-- raw.ownership_service_repos: the GitHub repos that deploy each PagerDuty service.
create table if not exists raw.ownership_service_repos (
    service_id varchar not null,
    repo varchar not null  -- owner/name
);
