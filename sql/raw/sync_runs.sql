-- raw.sync_runs: what each ingestion step of each run cost and brought (one row per run and stream).
create table if not exists raw.sync_runs (
    run_id varchar not null,
    source varchar not null,
    stream varchar not null,
    window_start timestamptz,   -- the time range read (null for directory streams)
    window_end timestamptz,
    requests integer not null,
    retries integer not null,
    throttled integer not null,
    bytes bigint not null,
    records integer not null,
    finished_at timestamptz not null,
    primary key (run_id, source, stream)
);
