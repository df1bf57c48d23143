-- PagerDuty incidents, typed: one row per incident, the latest version the API sent.
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
with source as (
    select id, payload from raw.pagerduty_incidents
)

select
    id as incident_id,
    cast(payload ->> 'incident_number' as bigint) as incident_number,
    payload ->> 'incident_key' as incident_key,
    payload -> 'service' ->> 'id' as service_id,
    payload ->> 'status' as status,
    payload ->> 'urgency' as urgency,
    payload -> 'priority' ->> 'summary' as priority,
    cast(payload ->> 'created_at' as timestamptz) as created_at,
    cast(payload ->> 'resolved_at' as timestamptz) as resolved_at,
    payload -> 'resolve_reason' ->> 'type' as resolve_reason_type,
    cast(payload ->> 'updated_at' as timestamptz) as updated_at
from source
