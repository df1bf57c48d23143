-- raw.ownership_service_owners: which team owned each PagerDuty service over which dates.
create table if not exists raw.ownership_service_owners (
    service_id varchar not null,
    service_name varchar not null,
    team_key varchar,  -- null: the service is listed as unowned on purpose
    valid_from date,  -- null: since the beginning of history
    valid_to date     -- exclusive; null: still the owner
);
-- Warehouses created before 'unowned: true' existed had team_key not null.
alter table raw.ownership_service_owners alter column team_key drop not null;
