-- PagerDuty incidents, typed: one row per incident, the latest version the API sent.
-- Values that do not parse become null (try_cast) and are named in invalid_fields, so one bad record
-- cannot break the build; the blocking quality check on this table then stops the marts.
-- incident_id: PagerDuty incident id
-- incident_number: the account-wide incident number
-- incident_key: de-duplication key; incidents sharing it on one service may be re-triggers of one problem
-- service_id: the PagerDuty service the incident was raised on
-- status: triggered, acknowledged or resolved (as of the last sync)
-- urgency: high or low
-- priority: priority name (P1..P5) or null when unset
-- created_at: when the incident was triggered (UTC)
-- resolved_at: when it was resolved (UTC); null while open
-- resolve_reason_type: merge_resolve_reason for incidents merged into another; null otherwise
-- updated_at: PagerDuty's last-change time of the record
-- invalid_fields: the fields whose value did not parse (or a time without UTC offset), comma-separated; null when all parsed
--! incremental: incident_id = id
with extracted as (
    -- One parse of each payload: every field in one call (each ->> would parse the document again).
    select
        id,
        json_extract_string(payload, [
            '$.incident_number', '$.incident_key', '$.service.id', '$.status', '$.urgency', '$.priority.summary',
            '$.created_at', '$.resolved_at', '$.resolve_reason.type', '$.updated_at'
        ]) as f
    from raw.pagerduty_incidents
),

typed as (
    select
        id as incident_id,
        try_cast(f[1] as bigint) as incident_number,
        f[2] as incident_key,
        f[3] as service_id,
        f[4] as status,
        f[5] as urgency,
        f[6] as priority,
        try_cast(f[7] as timestamptz) as created_at,
        try_cast(f[8] as timestamptz) as resolved_at,
        f[9] as resolve_reason_type,
        try_cast(f[10] as timestamptz) as updated_at,
        f[1] as raw_incident_number,
        f[7] as raw_created_at,
        f[8] as raw_resolved_at,
        f[10] as raw_updated_at
    from extracted
)

select
    incident_id,
    incident_number,
    incident_key,
    service_id,
    status,
    urgency,
    priority,
    created_at,
    resolved_at,
    resolve_reason_type,
    updated_at,
    nullif(concat_ws(', ',
        case when raw_incident_number is not null and incident_number is null then 'incident_number' end,
        case when created_at is null
            or not regexp_matches(raw_created_at, '[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|z|[+-]\d\d(:?\d\d)?)$') then 'created_at' end,
        case when raw_resolved_at is not null and (resolved_at is null
            or not regexp_matches(raw_resolved_at, '[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|z|[+-]\d\d(:?\d\d)?)$')) then 'resolved_at' end,
        case when raw_updated_at is not null and (updated_at is null
            or not regexp_matches(raw_updated_at, '[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|z|[+-]\d\d(:?\d\d)?)$')) then 'updated_at' end
    ), '') as invalid_fields
from typed
