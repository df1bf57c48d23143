-- PagerDuty log entries (the account-wide feed), typed: one row per entry.
-- log_entry_id: PagerDuty log entry id
-- incident_id: the incident the entry belongs to
-- entry_type: trigger_log_entry, acknowledge_log_entry, assign_log_entry, resolve_log_entry, ... (unknown types are kept)
-- created_at: when the change happened (UTC)
-- agent_type: who made it: user_reference, service_reference or integration_reference
-- channel_type: how: api, website, timeout (an auto-resolve or ack timeout), auto, ...
-- n_assignees: how many assignees the entry names (assign, delegate, escalate)
select
    id as log_entry_id,
    payload -> 'incident' ->> 'id' as incident_id,
    payload ->> 'type' as entry_type,
    cast(payload ->> 'created_at' as timestamptz) as created_at,
    payload -> 'agent' ->> 'type' as agent_type,
    payload -> 'channel' ->> 'type' as channel_type,
    coalesce(json_array_length(payload -> 'assignees'), 0) as n_assignees
from raw.pagerduty_log_entries
