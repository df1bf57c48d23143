-- PagerDuty log entries (the account-wide feed), typed: one row per entry.
-- Values that do not parse become null (try_cast) and are named in invalid_fields, so one bad record
-- cannot break the build; the blocking quality check on this table then stops the marts.
-- log_entry_id: PagerDuty log entry id
-- incident_id: the incident the entry belongs to
-- entry_type: trigger_log_entry, acknowledge_log_entry, assign_log_entry, resolve_log_entry, ... (unknown types are kept)
-- created_at: when the change happened (UTC)
-- agent_type: who made it: user_reference, service_reference or integration_reference
-- channel_type: how: api, website, timeout (an auto-resolve or ack timeout), auto, ...
-- n_assignees: how many assignees the entry names (assign, delegate, escalate)
-- invalid_fields: the fields whose value did not parse (or a time without UTC offset), comma-separated; null when all parsed
--! incremental: log_entry_id = id
with extracted as (
    -- One parse of each payload: every field in one call (each ->> would parse the document again).
    select
        id,
        json_extract_string(payload, ['$.incident.id', '$.type', '$.created_at', '$.agent.type', '$.channel.type'])
            as f,
        json_extract(payload, '$.assignees') as assignees
    from raw.pagerduty_log_entries
),

typed as (
    select
        id as log_entry_id,
        f[1] as incident_id,
        f[2] as entry_type,
        try_cast(f[3] as timestamptz) as created_at,
        f[4] as agent_type,
        f[5] as channel_type,
        case when json_type(assignees) = 'ARRAY' then json_array_length(assignees) end as n_assignees_listed,
        f[3] as raw_created_at,
        json_type(assignees) as assignees_type
    from extracted
)

select
    log_entry_id,
    incident_id,
    entry_type,
    created_at,
    agent_type,
    channel_type,
    coalesce(n_assignees_listed, 0) as n_assignees,
    nullif(concat_ws(', ',
        case when created_at is null
            or not regexp_matches(raw_created_at, '[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|z|[+-]\d\d(:?\d\d)?)$') then 'created_at' end,
        case when assignees_type is not null and assignees_type not in ('ARRAY', 'NULL') then 'assignees' end
    ), '') as invalid_fields
from typed
