-- raw.ownership_service_owners: which team owned each service over which dates, by the service's id
-- in each paging source (a service paged from two sources has rows for both ids).
-- Rewritten from the ownership file every run (dropped and re-created from this file first).
create table if not exists raw.ownership_service_owners (
    service_key varchar not null, -- the service in the file, whichever id: <source>:<id> of its first id
    source varchar not null,      -- the paging source of service_id (a connector's name)
    service_id varchar not null,  -- the service's id in that source
    service_name varchar not null,
    team_key varchar,  -- null: the service is listed as unowned on purpose
    valid_from date,  -- null: since the beginning of history
    valid_to date     -- exclusive; null: still the owner
);
