"""Record-level validation of API records before they enter ``raw.*`` (the first line of defence).

Every record is judged on its own before it is written: a record that cannot be placed (no id, no
usable timestamp), that carries a value of the wrong type, or that breaks a rule the marts depend on
(resolved before it was created, a time before 2009 or in the future) is quarantined in
``quarantine.rejected_records`` with the rule it broke and the reason, never dropped silently. One
rule needs two records (an acknowledgement must fall between its incident's creation and resolution):
:func:`quarantine_inconsistent` applies it to ``raw`` after each PagerDuty sync.

The staging tables and their Great Expectations suites (``pipelines/quality.py``) check the same
things again as a second line, so a record that slips past here still cannot reach the marts
(docs/data-quality.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

UTC = timezone.utc
# Nothing in PagerDuty or GitHub predates 2009 (PagerDuty was founded that year).
EARLIEST_PLAUSIBLE = datetime(2009, 1, 1, tzinfo=UTC)
# A record may be a few minutes "ahead" of this machine's clock (clock skew), not more.
FUTURE_TOLERANCE = timedelta(minutes=5)

INCIDENT_STATUSES = frozenset({"triggered", "acknowledged", "resolved"})
# GitHub's documented deployment status states.
DEPLOYMENT_STATES = frozenset({"error", "failure", "inactive", "in_progress", "queued", "pending", "success"})

# Kinds of record, by stream.
PD_INCIDENT = "pagerduty_incident"
PD_LOG_ENTRY = "pagerduty_log_entry"
GH_DEPLOYMENT = "github_deployment"
GH_DEPLOYMENT_STATUS = "github_deployment_status"
GH_PULL_REQUEST = "github_pull_request"
UNKNOWN = "unknown"

Rejection = tuple[str, str]  # (rule, reason)


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 timestamp as an aware UTC datetime; None when missing or unparsable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None  # a naive time cannot be placed on the timeline; quarantined by the caller
    return parsed.astimezone(timezone.utc)


def record_kind(record: dict) -> str:
    """Which API record this is, from its shape (PagerDuty and GitHub records are self-describing)."""
    rtype = record.get("type")
    if rtype == "incident" or "incident_number" in record:
        return PD_INCIDENT
    if (isinstance(rtype, str) and rtype.endswith("_log_entry")) or ("incident" in record and "agent" in record):
        return PD_LOG_ENTRY
    if "deployment_url" in record:
        return GH_DEPLOYMENT_STATUS
    if "statuses_url" in record or ("sha" in record and "task" in record):
        return GH_DEPLOYMENT
    if "merge_commit_sha" in record or ("number" in record and "head" in record):
        return GH_PULL_REQUEST
    return UNKNOWN


def check_time(record: dict, field: str, *, required: bool, now: datetime) -> Rejection | None:
    """The rule a timestamp field breaks, or None: present (when required), a string, ISO 8601 with
    a UTC offset, and plausible (not before 2009, not in the future)."""
    value = record.get(field)
    if value is None or value == "":
        return ("missing_field", f"{field} is missing") if required else None
    if not isinstance(value, str):
        return "wrong_type", f"{field} must be an ISO 8601 string, got {type(value).__name__} {_short(value)}"
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return "bad_timestamp", f"{field} is not an ISO 8601 timestamp: {_short(value)}"
    if parsed.tzinfo is None:
        return "naive_timestamp", f"{field} has no UTC offset, so it cannot be placed in time: {_short(value)}"
    parsed = parsed.astimezone(UTC)
    if parsed < EARLIEST_PLAUSIBLE:
        return "implausible_timestamp", f"{field} {value} is before {EARLIEST_PLAUSIBLE:%Y-%m-%d}"
    if parsed > now + FUTURE_TOLERANCE:
        return "implausible_timestamp", f"{field} {value} is in the future (now {now:%Y-%m-%dT%H:%M:%SZ})"
    return None


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_id(record: dict, kind: str) -> Rejection | None:
    rid = record.get("id")
    if rid is None or rid == "":
        return "missing_id", "the record has no id"
    if kind in (GH_DEPLOYMENT, GH_DEPLOYMENT_STATUS, GH_PULL_REQUEST):
        if not _is_int(rid):
            return "wrong_type", f"id must be an integer, got {type(rid).__name__} {_short(rid)}"
    elif not isinstance(rid, (str, int)) or isinstance(rid, bool):
        return "wrong_type", f"id must be a string, got {type(rid).__name__}"
    return None


def _check_incident(r: dict, now: datetime) -> Rejection | None:
    for field, required in (("created_at", True), ("resolved_at", False), ("updated_at", False)):
        problem = check_time(r, field, required=required, now=now)
        if problem:
            return problem
    number = r.get("incident_number")
    if number is not None and not _is_int(number):
        return "wrong_type", f"incident_number must be an integer, got {type(number).__name__} {_short(number)}"
    service = r.get("service")
    if not isinstance(service, dict) or not isinstance(service.get("id"), str) or not service.get("id"):
        return "missing_field", "service.id is missing: the incident cannot be attributed to a team"
    status = r.get("status")
    if status not in INCIDENT_STATUSES:
        return "unknown_value", f"status must be one of {sorted(INCIDENT_STATUSES)}, got {_short(status)}"
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
    return None


def _check_deployment(r: dict, now: datetime) -> Rejection | None:
    problem = check_time(r, "created_at", required=True, now=now)
    if problem:
        return problem
    env = r.get("environment")
    if not isinstance(env, str) or not env:
        return "missing_field", "environment is missing: production deployments cannot be told apart"
    return None


def _check_deployment_status(r: dict, now: datetime) -> Rejection | None:
    problem = check_time(r, "created_at", required=True, now=now)
    if problem:
        return problem
    state = r.get("state")
    if state not in DEPLOYMENT_STATES:
        return "unknown_value", f"state must be one of {sorted(DEPLOYMENT_STATES)}, got {_short(state)}"
    url = r.get("deployment_url")
    if not isinstance(url, str) or "/deployments/" not in url:
        return "missing_field", "deployment_url is missing: the status cannot be attached to its deployment"
    return None


def _check_pull_request(r: dict, now: datetime) -> Rejection | None:
    for field, required in (("updated_at", True), ("created_at", True), ("merged_at", False)):
        problem = check_time(r, field, required=required, now=now)
        if problem:
            return problem
    number = r.get("number")
    if number is not None and not _is_int(number):
        return "wrong_type", f"number must be an integer, got {type(number).__name__} {_short(number)}"
    created, merged = parse_time(r.get("created_at")), parse_time(r.get("merged_at"))
    if created is not None and merged is not None and merged < created:
        return "merged_before_created", f"merged_at {r['merged_at']} is before created_at {r['created_at']}"
    return None


_CHECKS = {
    PD_INCIDENT: _check_incident,
    PD_LOG_ENTRY: _check_log_entry,
    GH_DEPLOYMENT: _check_deployment,
    GH_DEPLOYMENT_STATUS: _check_deployment_status,
    GH_PULL_REQUEST: _check_pull_request,
}


def validate_record(record: Any, *, kind: str | None = None, required_time: str = "created_at",
                    now: datetime | None = None) -> Rejection | None:
    """The (rule, reason) a record breaks, or None when it may enter ``raw``.

    ``kind`` is one of the ``PD_*`` / ``GH_*`` constants; by default it is read from the record's
    shape (:func:`record_kind`). Each kind has its own rules (which include its required times); a
    record of unknown kind gets the generic ones: an id and ``required_time`` as a plausible aware
    timestamp.
    """
    if not isinstance(record, dict):
        return "not_an_object", "the record is not a JSON object"
    now = now or datetime.now(UTC)
    kind = kind or record_kind(record)
    problem = _check_id(record, kind)
    if problem:
        return problem
    check = _CHECKS.get(kind)
    if check is None:  # a record of unknown shape: the generic rules only
        return check_time(record, required_time, required=True, now=now)
    return check(record, now)


def split_valid(records: Iterable[Any], required_time: str, *, kind: str | None = None,
                now: datetime | None = None) -> tuple[list[dict], list[tuple[Any, str, str]]]:
    """Records that may enter ``raw``, and the rejects as ``(record, rule, reason)``.

    The rules depend on the kind of record (read from its shape unless ``kind`` is given); see
    :func:`validate_record` and docs/data-quality.md.
    """
    good, bad = [], []
    now = now or datetime.now(UTC)
    for r in records:
        problem = validate_record(r, kind=kind, required_time=required_time, now=now)
        if problem is None:
            good.append(r)
        else:
            bad.append((r if isinstance(r, dict) else {"value": r}, *problem))
    return good, bad


# ----------------------------------------------------------------------------- cross-record rules

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
    import json

    from pipelines.ingest import PAGERDUTY, quarantine

    rows = con.execute(_ack_outside_incident(staged_entries), {"run_id": run_id}).fetchall()
    for entry_id, payload, acked, incident_id, created, resolved in rows:
        where = "before the incident was created" if acked < created else "after the incident was resolved"
        quarantine(con, source=PAGERDUTY, stream="log_entries", record=json.loads(payload),
                   rule="ack_outside_incident",
                   reason=f"acknowledged at {_iso(acked)}, {where} (incident {incident_id}: created {_iso(created)}, "
                          f"resolved {_iso(resolved)})",
                   run_id=run_id)
        con.execute("delete from raw.pagerduty_log_entries where id = ?", [entry_id])
    return len(rows)


def _iso(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
