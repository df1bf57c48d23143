-- raw.pagerduty_teams: PagerDuty teams exactly as the API sent them (JSON), one row per id.
-- Upserted by id; a row changes only when the API sends a different version of the record.
create table if not exists raw.pagerduty_teams (
    id varchar primary key,          -- PagerDuty id
    payload json not null,           -- the record as sent
    fetched_at timestamptz not null, -- when this version was first fetched
    run_id varchar not null          -- the Dagster run that fetched this version
);
