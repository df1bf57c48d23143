-- PagerDuty log entries as neutral incident events: one row per log entry.
-- PagerDuty's entry types map to: trigger -> triggered, acknowledge -> acknowledged, assign ->
-- assigned, delegate -> reassigned, escalate -> escalated, notify -> notified, resolve -> resolved;
-- every other type (annotations, priority changes, ...) is 'other' (kept: it still tells how fresh the data is).
-- source: the paging source, 'pagerduty'
-- event_id: the source's id of the event (the log entry id)
-- incident_id: the incident it belongs to
-- event_type: triggered, acknowledged, assigned, reassigned, escalated, notified, resolved or other
-- occurred_at: when it happened (UTC)
-- is_automatic: made by the system, not a person (a resolve by timeout or auto-resolution); null when the source does not say
select
    'pagerduty' as source,
    log_entry_id as event_id,
    incident_id,
    case entry_type
        when 'trigger_log_entry' then 'triggered'
        when 'acknowledge_log_entry' then 'acknowledged'
        when 'assign_log_entry' then 'assigned'
        when 'delegate_log_entry' then 'reassigned'
        when 'escalate_log_entry' then 'escalated'
        when 'notify_log_entry' then 'notified'
        when 'resolve_log_entry' then 'resolved'
        else 'other'
    end as event_type,
    created_at as occurred_at,
    channel_type in ('timeout', 'auto') as is_automatic
from staging.stg_pagerduty__log_entries
