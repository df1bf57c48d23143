"""PagerDuty's record rules: what an incident, a log entry, a team, a service and an Analytics row
must hold to enter ``raw.pagerduty_*`` (docs/data-quality.md), and the one rule that needs two
records: an acknowledgement must fall within its incident (:func:`quarantine_inconsistent`)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from pipelines.ingest.raw import quarantine
from pipelines.records import RecordRules, Rejection, check_time, check_times, is_int, parse_time, short

SOURCE = "pagerduty"
UTC = timezone.utc
INCIDENT_STATUSES = frozenset({"triggered", "acknowledged", "resolved"})


def _check_incident(r: dict, now: datetime) -> Rejection | None:
    problem = check_times(r, (("created_at", True), ("resolved_at", False), ("updated_at", False)), now)
    if problem:
        return problem
    number = r.get("incident_number")
    if number is not None and not is_int(number):
        return "wrong_type", f"incident_number must be an integer, got {type(number).__name__} {short(number)}"
    service = r.get("service")
    if not isinstance(service, dict) or not isinstance(service.get("id"), str) or not service.get("id"):
        return "missing_field", "service.id is missing: the incident cannot be attributed to a team"
    status = r.get("status")
    if status not in INCIDENT_STATUSES:
        return "unknown_value", f"status must be one of {sorted(INCIDENT_STATUSES)}, got {short(status)}"
    key = r.get("incident_key")
    if key is not None and not isinstance(key, str):
        return "wrong_type", f"incident_key must be a string, got {type(key).__name__}"
    created, resolved = parse_time(r.get("created_at")), parse_time(r.get("resolved_at"))
    if created is not None and resolved is not None and resolved < created:
        return ("resolved_before_created",
                f"resolved_at {r['resolved_at']} is before created_at {r['created_at']}")
    return None


def _check_log_entry(r: dict, now: datetime) -> Rejection | None:
    problem = check_time(r, "created_at", required=True, now=now)
    if problem:
        return problem
    rtype = r.get("type")
    if not isinstance(rtype, str) or not rtype:
        return "missing_field", "type is missing: the change the entry records is unknown"
    # An unknown type is kept (raw as sent); the metrics ignore types they do not use, and a
    # warning check lists them.
    if not (isinstance(r.get("incident"), dict) and r["incident"].get("id")):
        return "missing_incident", "the log entry does not name its incident"
    return None


def analytics_time(value) -> datetime | None:
    """Analytics timestamps carry no offset; they are UTC because the request sends time_zone Etc/UTC."""
    if isinstance(value, str) and value and not value.endswith("Z") and "+" not in value[10:] and "-" not in value[10:]:
        value += "Z"
    return parse_time(value)


def _check_analytics_row(r: dict, now: datetime) -> Rejection | None:
    if not r.get("id") or analytics_time(r.get("created_at")) is None:
        return "missing_field", "the analytics row has no id or no parsable created_at"
    return None


INCIDENT = RecordRules("pagerduty_incident", _check_incident)
LOG_ENTRY = RecordRules("pagerduty_log_entry", _check_log_entry)
TEAM = RecordRules("pagerduty_team")
SERVICE = RecordRules("pagerduty_service")
ANALYTICS_ROW = RecordRules("pagerduty_analytics_incident", _check_analytics_row, check_id=False)


# ------------------------------------------------------------------------------ the cross-record rule

# Acknowledgements that fall outside their incident, among the rows this run wrote (its entries, and
# the entries of its incidents). Payloads are stored as json.dumps writes them, so an entry's type
# appears verbatim in its text: a substring test (a cheap scan) picks the candidates before the JSON
# is parsed (once per row, all fields at a time), which on a two-year history (a million entries)
# is most of the cost of this check. When the caller staged this run's entries with their type,
# incident and time ({staged}), those are taken from there and only older entries are parsed.
_ENTRY_FIELDS = "json_extract_string(payload, ['$.type', '$.incident.id', '$.created_at'])"


def _ack_outside_incident(staged: str | None) -> str:
    def raw_entries(kind: str, where: str) -> str:
        return f"""
            select id, f[2] as incident_id, try_cast(f[3] as timestamptz) as created_at
            from (select id, run_id, {_ENTRY_FIELDS} as f from raw.pagerduty_log_entries
                  where {where} contains(payload::varchar, '{kind}'))
            where f[1] = '{kind}'"""

    if staged is None:
        acks = raw_entries("acknowledge_log_entry", "") + \
            " and (run_id = $run_id or f[2] in (select id from run_incidents))"
        resolves = "select incident_id, created_at from (" + raw_entries("resolve_log_entry", "") + \
            " and f[2] in (select incident_id from acks))"
    else:
        older_acks = raw_entries("acknowledge_log_entry", "run_id <> $run_id and") + \
            " and f[2] in (select id from run_incidents)"
        acks = f"""
            select id, incident_id, created_at from {staged}
            where kind = 'acknowledge_log_entry' and id in (select id from raw.pagerduty_log_entries)
            union all ({older_acks} and id not in (select id from {staged}))"""
        resolves = f"""
            select incident_id, created_at from {staged}
            where kind = 'resolve_log_entry' and incident_id in (select incident_id from acks)
            union all (select incident_id, created_at from ({raw_entries("resolve_log_entry", "run_id <> $run_id and")}
                       and f[2] in (select incident_id from acks) and id not in (select id from {staged})))"""
    return f"""
    with run_incidents as (
        select id from raw.pagerduty_incidents where run_id = $run_id
    ),

    acks as materialized ({acks}
    ),

    resolves as (
        select incident_id, max(created_at) as resolve_logged_at
        from ({resolves}
        )
        group by 1
    ),

    incidents as (
        -- resolved as the marts take it: the incident's resolved_at, else its latest resolve entry
        select
            i.id,
            try_cast(i.payload ->> 'created_at' as timestamptz) as created_at,
            coalesce(case when i.payload ->> 'status' = 'resolved'
                          then try_cast(i.payload ->> 'resolved_at' as timestamptz) end,
                     r.resolve_logged_at) as resolved_at
        from raw.pagerduty_incidents as i
        left join resolves as r on r.incident_id = i.id
        where i.id in (select incident_id from acks)
    )

    select a.id, l.payload::varchar as payload, a.created_at as acknowledged_at, i.id as incident_id,
           i.created_at, i.resolved_at
    from acks as a
    inner join incidents as i on i.id = a.incident_id
    inner join raw.pagerduty_log_entries as l on l.id = a.id
    where a.created_at < i.created_at or a.created_at > i.resolved_at
    order by a.id
"""


def quarantine_inconsistent(con, *, run_id: str, staged_entries: str | None = None) -> int:
    """Move acknowledgements that fall outside their incident's [created, resolved] from
    ``raw.pagerduty_log_entries`` to the quarantine; return how many.

    The rule needs the incident and the entry, which arrive in two streams, so it runs on ``raw``
    after either stream is written (the caller owns the transaction). The incident stays: only the
    acknowledgement that cannot be placed is set aside, and its time to acknowledge is then taken
    from the next valid acknowledgement, if any.

    ``staged_entries``: a table of the log entries this run has just written (``id, kind,
    incident_id, created_at``; a superset does no harm), read instead of parsing their JSON again.
    """
    rows = con.execute(_ack_outside_incident(staged_entries), {"run_id": run_id}).fetchall()
    for entry_id, payload, acked, incident_id, created, resolved in rows:
        where = "before the incident was created" if acked < created else "after the incident was resolved"
        quarantine(con, source=SOURCE, stream="log_entries", record=json.loads(payload),
                   rule="ack_outside_incident",
                   reason=f"acknowledged at {_iso(acked)}, {where} (incident {incident_id}: created {_iso(created)}, "
                          f"resolved {_iso(resolved)})",
                   run_id=run_id)
        con.execute("delete from raw.pagerduty_log_entries where id = ?", [entry_id])
    return len(rows)


def _iso(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
