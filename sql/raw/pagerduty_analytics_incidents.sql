-- raw.pagerduty_analytics_incidents: PagerDuty Analytics' per-incident metrics exactly as sent by
-- POST /analytics/raw/incidents (JSON), one row per incident id. Filled only where the account has
-- Analytics and PagerDutyResource.use_analytics is on (see pipelines/connectors/pagerduty/streams.py); the metrics
-- marts are computed from incidents and log entries either way. Timestamps in the payload are UTC
-- without an offset (the request sends time_zone Etc/UTC). Upserted by id.
create table if not exists raw.pagerduty_analytics_incidents (
    id varchar primary key,          -- PagerDuty incident id
    payload json not null,           -- the record as sent
    fetched_at timestamptz not null, -- when this version was first fetched
    run_id varchar not null          -- the Dagster run that fetched this version
);
