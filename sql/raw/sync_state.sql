-- raw.sync_state: the incremental-sync bookmark of each source and stream.
-- Written in the same transaction as the records it covers, so it never runs ahead of the data.
create table if not exists raw.sync_state (
    source varchar not null,              -- a connector's name (pipelines/connectors)
    stream varchar not null,              -- incidents | log_entries | deployments:<repo> | ...
    high_water_mark timestamptz not null, -- newest record time fully synced
    updated_at timestamptz not null,
    run_id varchar not null,
    primary key (source, stream)
);
