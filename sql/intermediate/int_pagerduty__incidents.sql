-- PagerDuty incidents in the neutral columns of every paging source: one row per incident.
-- source: the paging source, 'pagerduty'
-- incident_id: the source's incident id
-- service_id: the source's id of the service the incident was raised on
-- incident_key: de-duplication key; incidents sharing it on one service may be re-triggers of one problem
-- urgency: high or low
-- priority: P1..P5, or null when unset
-- status: triggered, acknowledged or resolved (as of the last sync)
-- created_at: when the incident was triggered (UTC)
-- resolved_at: when it was resolved (UTC), as the incident record says (the marts take it when status is resolved, else the last resolved event)
-- is_merged: merged into another incident (PagerDuty's merge resolve reason); excluded from the metrics
select
    'pagerduty' as source,
    incident_id,
    service_id,
    incident_key,
    urgency,
    priority,
    status,
    created_at,
    resolved_at,
    coalesce(resolve_reason_type = 'merge_resolve_reason', false) as is_merged
from staging.stg_pagerduty__incidents
