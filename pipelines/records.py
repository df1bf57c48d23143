"""Record-level validation of API records before they enter ``raw.*`` (the first line of defence).

Every record is judged on its own before it is written: a record that cannot be placed (no id, no
usable timestamp), that carries a value of the wrong type, or that breaks a rule the marts depend on
(resolved before it was created, a time before 2009 or in the future) is quarantined in
``quarantine.rejected_records`` with the rule it broke and the reason, never dropped silently.

This module holds what every source shares (timestamps, ids, the split into good and rejected);
each connector declares the rules of its kinds of record (``pipelines/connectors/*/records.py``),
and each raw table names its rules, so a record is judged by the stream it came from, never by
guessing from its shape. Rules that need two records (an acknowledgement must fall within its
incident) run on raw after the merge (``Stream.after_merge``).

The staging tables and their Great Expectations suites (``pipelines/quality.py``) check the same
things again as a second line, so a record that slips past here still cannot reach the marts
(docs/data-quality.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

UTC = timezone.utc
# Nothing in the sources predates 2009 (the oldest paging service was founded that year).
EARLIEST_PLAUSIBLE = datetime(2009, 1, 1, tzinfo=UTC)
# A record may be a few minutes "ahead" of this machine's clock (clock skew), not more.
FUTURE_TOLERANCE = timedelta(minutes=5)

Rejection = tuple[str, str]  # (rule, reason)


@dataclass(frozen=True)
class RecordRules:
    """How one kind of record is judged: an id (an integer where ``integer_id``), then ``check``
    (the kind's own rules, its required times among them; None: the id alone)."""

    kind: str  # "<source>_<kind of record>", as quarantine.rejected_records names it
    check: Callable[[dict, datetime], Rejection | None] | None = None
    integer_id: bool = False
    check_id: bool = True  # False: ``check`` judges the id itself


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


def check_time(record: dict, field: str, *, required: bool, now: datetime) -> Rejection | None:
    """The rule a timestamp field breaks, or None: present (when required), a string, ISO 8601 with
    a UTC offset, and plausible (not before 2009, not in the future)."""
    value = record.get(field)
    if value is None or value == "":
        return ("missing_field", f"{field} is missing") if required else None
    if not isinstance(value, str):
        return "wrong_type", f"{field} must be an ISO 8601 string, got {type(value).__name__} {short(value)}"
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return "bad_timestamp", f"{field} is not an ISO 8601 timestamp: {short(value)}"
    if parsed.tzinfo is None:
        return "naive_timestamp", f"{field} has no UTC offset, so it cannot be placed in time: {short(value)}"
    parsed = parsed.astimezone(UTC)
    if parsed < EARLIEST_PLAUSIBLE:
        return "implausible_timestamp", f"{field} {value} is before {EARLIEST_PLAUSIBLE:%Y-%m-%d}"
    if parsed > now + FUTURE_TOLERANCE:
        return "implausible_timestamp", f"{field} {value} is in the future (now {now:%Y-%m-%dT%H:%M:%SZ})"
    return None


def check_times(record: dict, fields: Iterable[tuple[str, bool]], now: datetime) -> Rejection | None:
    """:func:`check_time` on each ``(field, required)`` in turn: the first rule broken, or None."""
    for name, required in fields:
        problem = check_time(record, name, required=required, now=now)
        if problem:
            return problem
    return None


def short(value: Any, limit: int = 80) -> str:
    """A value as quoted in a reason, cut at ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_id(record: dict, rules: RecordRules) -> Rejection | None:
    rid = record.get("id")
    if rid is None or rid == "":
        return "missing_id", "the record has no id"
    if rules.integer_id:
        if not is_int(rid):
            return "wrong_type", f"id must be an integer, got {type(rid).__name__} {short(rid)}"
    elif not isinstance(rid, (str, int)) or isinstance(rid, bool):
        return "wrong_type", f"id must be a string, got {type(rid).__name__}"
    return None


def validate_record(record: Any, rules: RecordRules, *, now: datetime | None = None) -> Rejection | None:
    """The (rule, reason) a record breaks under ``rules``, or None when it may enter ``raw``."""
    if not isinstance(record, dict):
        return "not_an_object", "the record is not a JSON object"
    now = now or datetime.now(UTC)
    if rules.check_id:
        problem = _check_id(record, rules)
        if problem:
            return problem
    return rules.check(record, now) if rules.check else None


def split_valid(records: Iterable[Any], rules: RecordRules, *,
                now: datetime | None = None) -> tuple[list[dict], list[tuple[Any, str, str]]]:
    """Records that may enter ``raw``, and the rejects as ``(record, rule, reason)``
    (docs/data-quality.md lists every rule)."""
    good, bad = [], []
    now = now or datetime.now(UTC)
    for r in records:
        problem = validate_record(r, rules, now=now)
        if problem is None:
            good.append(r)
        else:
            bad.append((r if isinstance(r, dict) else {"value": r}, *problem))
    return good, bad
