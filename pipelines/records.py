"""Record-level validation of API records before they enter ``raw.*``.

A record that cannot be placed (no id, no usable timestamp) is quarantined with the rule it broke
and the reason, never dropped silently; see ``quarantine.rejected_records``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from collections.abc import Iterable
from typing import Any


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


def split_valid(records: Iterable[dict], required_time: str) -> tuple[list[dict], list[tuple[dict, str, str]]]:
    """Records that carry an id and a parseable aware timestamp, and the rejects with rule and reason."""
    good, bad = [], []
    for r in records:
        if not isinstance(r, dict):
            bad.append(({"value": r}, "not_an_object", "the record is not a JSON object"))
        elif r.get("id") in (None, ""):
            bad.append((r, "missing_id", "the record has no id"))
        elif parse_time(r.get(required_time)) is None:
            bad.append((r, "bad_timestamp", f"{required_time} is missing, unparsable or has no UTC offset: {r.get(required_time)!r}"))
        else:
            good.append(r)
    return good, bad
