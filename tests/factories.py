"""Small builders of API-shaped records for SQL and ingestion tests (shapes as PagerDuty sends them)."""

from __future__ import annotations

from typing import Any


def pd_incident(id: str, service: str, created: str, *, resolved: str | None = None, status: str | None = None,
                key: str | None = None, merged: bool = False, urgency: str = "high", priority: str | None = None,
                number: int = 1) -> dict[str, Any]:
    status = status or ("resolved" if resolved else "triggered")
    return {
        "id": id,
        "type": "incident",
        "incident_number": number,
        "title": f"incident {id}",
        "created_at": created,
        "updated_at": resolved or created,
        "status": status,
        "urgency": urgency,
        "incident_key": key,
        "service": {"id": service, "type": "service_reference", "summary": service},
        "priority": {"id": "PPRIO", "type": "priority_reference", "summary": priority} if priority else None,
        "resolved_at": resolved,
        "resolve_reason": {"type": "merge_resolve_reason", "incident": {"id": "PTARGET"}} if merged else None,
        "assignments": [],
        "acknowledgements": [],
    }


def pd_log_entry(id: str, incident: str, type_: str, created: str, *, channel: str = "api",
                 agent: str = "user_reference", assignees: int = 0) -> dict[str, Any]:
    entry = {
        "id": id,
        "type": f"{type_}_log_entry",
        "created_at": created,
        "incident": {"id": incident, "type": "incident_reference"},
        "agent": {"id": "PAGENT", "type": agent},
        "channel": {"type": channel},
    }
    if assignees:
        entry["assignees"] = [{"id": f"PUSER{i}", "type": "user_reference"} for i in range(assignees)]
    return entry
