-- quarantine.rejected_records: every record that failed parsing or validation, with the reason.
-- Nothing is dropped silently: a clean run leaves this table empty.
create table if not exists quarantine.rejected_records (
    source varchar not null,     -- a connector's name (pipelines/connectors) or ownership
    stream varchar not null,
    record_id varchar,           -- the id when one could be read
    rule varchar not null,       -- short rule name, e.g. missing_field
    reason varchar not null,     -- human-readable explanation
    payload varchar,             -- the raw record (or body excerpt)
    run_id varchar not null,
    rejected_at timestamptz not null
);
