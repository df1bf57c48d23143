"""The second line of data quality for PagerDuty's staging tables: their Great Expectations rules
(pipelines/quality.py runs them as asset checks; docs/data-quality.md)."""

from __future__ import annotations

from pipelines.connectors.pagerduty.records import INCIDENT_STATUSES, SOURCE
from pipelines.quality import (
    BLOCKING,
    WARNING,
    TableQuality,
    at_or_after,
    in_set,
    is_true,
    known_service,
    not_null,
    parsed,
    plausible,
    unique,
)

# PagerDuty's documented log-entry types. Others are kept in staging (the metrics ignore them) and
# reported by a warning.
KNOWN_LOG_ENTRY_TYPES = (
    "acknowledge_log_entry", "annotate_log_entry", "assign_log_entry", "delegate_log_entry",
    "escalate_log_entry", "exhaust_escalation_path_log_entry", "notify_log_entry", "reach_ack_limit_log_entry",
    "reach_trigger_limit_log_entry", "repeat_escalation_path_log_entry", "resolve_log_entry", "snooze_log_entry",
    "trigger_log_entry", "unacknowledge_log_entry", "urgency_change_log_entry",
)
URGENCIES = ("high", "low")

TABLES: tuple[TableQuality, ...] = (
    TableQuality(
        "stg_pagerduty__incidents", "incident_id",
        f"""
        select i.incident_id, i.service_id, i.status, i.urgency, i.created_at, i.resolved_at, i.invalid_fields,
               {known_service(SOURCE, 'i')} as service_in_ownership_file
        from staging.stg_pagerduty__incidents as i
        order by i.incident_id
        """,
        (
            not_null("incident_id"), unique("incident_id"), parsed(),
            not_null("created_at"), plausible("created_at"), plausible("resolved_at"),
            at_or_after("resolved_at", "created_at"),
            not_null("service_id"),
            in_set("status", sorted(INCIDENT_STATUSES), BLOCKING),
            in_set("urgency", URGENCIES, WARNING),
            is_true("service_in_ownership_file",
                     "the service is in the ownership file (else its incidents have no team)", WARNING),
        ),
    ),
    TableQuality(
        "stg_pagerduty__log_entries", "log_entry_id",
        """
        with resolves as (
            select incident_id, max(created_at) as resolve_logged_at
            from staging.stg_pagerduty__log_entries
            where entry_type = 'resolve_log_entry'
            group by incident_id
        )

        select l.log_entry_id, l.incident_id, l.entry_type, l.created_at, l.invalid_fields,
               case when l.entry_type = 'acknowledge_log_entry' then l.created_at end as acknowledged_at,
               i.created_at as incident_created_at,
               -- resolved as the marts take it: the incident's resolved_at, else its latest resolve entry
               coalesce(case when i.status = 'resolved' then i.resolved_at end, r.resolve_logged_at)
                   as incident_resolved_at
        from staging.stg_pagerduty__log_entries as l
        left join staging.stg_pagerduty__incidents as i on i.incident_id = l.incident_id
        left join resolves as r on r.incident_id = l.incident_id
        order by l.log_entry_id
        """,
        (
            not_null("log_entry_id"), unique("log_entry_id"), parsed(),
            not_null("incident_id"), not_null("entry_type"),
            not_null("created_at"), plausible("created_at"),
            at_or_after("acknowledged_at", "incident_created_at"),
            at_or_after("incident_resolved_at", "acknowledged_at"),
            in_set("entry_type", KNOWN_LOG_ENTRY_TYPES, WARNING,
                    "entry_type is a documented PagerDuty type (others are kept but not counted)"),
        ),
    ),
    TableQuality(
        "stg_pagerduty__services", "service_id",
        f"""
        select s.service_id, s.service_name, {known_service(SOURCE, 's')} as service_in_ownership_file
        from staging.stg_pagerduty__services as s
        order by s.service_id
        """,
        (
            not_null("service_id"), unique("service_id"),
            not_null("service_name", WARNING),
            is_true("service_in_ownership_file",
                     "every PagerDuty service is in the ownership file (else its incidents have no team)", WARNING),
        ),
    ),
    TableQuality(
        "stg_pagerduty__teams", "team_id",
        "select team_id, team_name from staging.stg_pagerduty__teams order by team_id",
        (not_null("team_id"), unique("team_id"), not_null("team_name", WARNING)),
    ),
)
