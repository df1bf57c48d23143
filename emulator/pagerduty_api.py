"""PagerDuty REST API v2 lookalike over an :class:`Organisation` (read-only subset).

Everything is derived from the organisation and the emulator clock: records created after the
clock are invisible and an incident's status, assignments, acknowledgements and ``updated_at`` are
replayed from its log entries up to the clock.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any, Callable
from zoneinfo import ZoneInfo

from .http_common import (
    UTC,
    ApiError,
    Request,
    Response,
    Route,
    add_months,
    compile_route,
    fmt_naive,
    match_route,
    parse_time,
    seconds_between,
    zone,
)
from .http_common import fmt_time as _fmt_time
from .model import Incident, LogEntry, Organisation, Service, Team, User

_UTC_ZONES = frozenset({"UTC", "Etc/UTC", "Etc/GMT", "GMT", "Universal", "Zulu"})


def fmt_time(dt: datetime | None, tz: ZoneInfo | None = None) -> str | None:
    """``http_common.fmt_time``, with a fast path for the common case (a UTC time rendered in UTC),
    which every incident and log entry of a page needs several times."""
    if dt is not None and dt.tzinfo is UTC and (tz is None or tz.key in _UTC_ZONES):
        return dt.isoformat(timespec="seconds")[:19] + "Z"
    return _fmt_time(dt, tz)

MAX_OFFSET = 10_000
OFFSET_ERROR_INCIDENTS = {
    "error": {
        "message": "Arguments Caused Error",
        "code": 2002,
        "errors": [
            "Offset+limit exceeds maximum allowed value of 10000. Please try to refine your search to reduce "
            "the returned set of records below this number, like adding a date range."
        ],
    }
}
OFFSET_ERROR_LOG_ENTRIES = {
    "error": {"message": "Offset must be less than 10001.", "code": 2001, "errors": ["Offset must be less than 10001."]}
}
AUTH_ERROR = {"error": {"message": "Authentication failed", "code": 2006}}
NOT_FOUND = {"error": {"message": "Not Found", "code": 2100}}
RATE_LIMIT_ERROR = {"error": {"message": "Rate Limit Exceeded", "code": 2020}}
INTERNAL_ERROR = {"error": {"message": "An internal error has occurred. Please try again later.", "code": 2000}}
TIMEOUT_ERROR = {"error": {"message": "The request took too long", "code": 2016}}

PRIORITY_ORDER = {"P1": 1, "P2": 2, "P3": 3, "P4": 4, "P5": 5}
OVERVIEW_DROPS = {"notify_log_entry", "annotate_log_entry"}
STATUS_TYPES = {"trigger_log_entry", "acknowledge_log_entry", "unacknowledge_log_entry", "resolve_log_entry"}
ASSIGN_TYPES = {"assign_log_entry", "escalate_log_entry", "delegate_log_entry"}
INCIDENT_SORT_FIELDS = ("incident_number", "created_at", "resolved_at", "urgency")

# Record-level corruption (the malformed-record knob, for data-quality tests): top-level fields that
# hold timestamps, rewritten by the "naive" and "offset:" mutations.
TIMESTAMP_FIELDS = ("created_at", "updated_at", "resolved_at", "last_status_change_at")


def corrupt_record(record: dict[str, Any], mutations: list[str]) -> dict[str, Any]:
    """Apply malformed-record mutations to a rendered record (in place; returned for convenience).

    - ``drop:FIELD``: remove the key (a missing required field)
    - ``set:FIELD=JSON``: set it to a JSON value, e.g. ``set:incident_number="42"`` (a wrong type),
      ``set:type="mystery_log_entry"`` (an unknown log-entry type), ``set:created_at="2001-01-01T00:00:00Z"``
    - ``naive``: every top-level timestamp without its UTC offset
    - ``offset:+05:30``: every top-level timestamp rendered at that offset (the same instant)
    """
    import json
    from datetime import timezone as _tz

    for mutation in mutations:
        kind, _, arg = mutation.partition(":")
        if kind == "drop":
            record.pop(arg, None)
        elif kind == "set":
            key, _, value = arg.partition("=")
            record[key] = json.loads(value)
        elif kind in ("naive", "offset"):
            for key in TIMESTAMP_FIELDS:
                value = record.get(key)
                if not isinstance(value, str):
                    continue
                instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
                if kind == "naive":
                    record[key] = instant.replace(tzinfo=None).isoformat()
                else:
                    sign = -1 if arg.startswith("-") else 1
                    hours, _, minutes = arg.lstrip("+-").partition(":")
                    offset = _tz(sign * timedelta(hours=int(hours), minutes=int(minutes or 0)))
                    record[key] = instant.astimezone(offset).isoformat()
        else:
            raise ValueError(f"unknown record mutation {mutation!r} (drop:, set:, naive, offset:)")
    return record


def invalid(*errors: str, code: int = 2001, message: str = "Invalid Input Provided") -> ApiError:
    return ApiError(400, {"error": {"message": message, "code": code, "errors": list(errors)}})


@functools.lru_cache(maxsize=256)
def priority_id(name: str) -> str:
    """A stable PagerDuty-style id for a priority name."""
    digest = hashlib.sha1(("priority:" + name).encode()).hexdigest().upper()
    alnum = "".join(c for c in digest if c.isalnum())
    return "P" + alnum[:6]


@dataclass
class _State:
    status: str
    updated_at: datetime
    last_status_change_at: datetime
    last_status_change_by: tuple[str, str | None]  # (agent_type, agent_id)
    resolved_at: datetime | None
    assignments: list[tuple[datetime, str]]  # (at, user id)
    acknowledgements: list[tuple[datetime, str, str | None]]  # (at, agent type, agent id)


class PagerDutyApi:
    service_name = "pagerduty"
    prefix = "/pagerduty"

    def __init__(self, org: Organisation, clock: Callable[[], datetime], analytics_lag: timedelta = timedelta(0)) -> None:
        self.org = org
        self.clock = clock
        self.analytics_lag = analytics_lag
        self.subdomain = org.github_org or "acme"
        # The malformed-record knob (data-quality tests): record id -> mutations applied when the
        # incident or log entry is rendered (see corrupt_record); and a seed that shuffles the records
        # within every list page (records out of order). Both off by default.
        self.corruptions: dict[str, list[str]] = {}
        self.shuffle_seed: int | None = None
        self.routes: list[Route] = [
            compile_route("GET", "/incidents", self.list_incidents),
            compile_route("GET", "/incidents/{id}", self.get_incident),
            compile_route("GET", "/incidents/{id}/log_entries", self.incident_log_entries),
            compile_route("GET", "/incidents/{id}/alerts", self.incident_alerts),
            compile_route("GET", "/log_entries", self.list_log_entries),
            compile_route("GET", "/log_entries/{id}", self.get_log_entry),
            compile_route("GET", "/services", self.list_services),
            compile_route("GET", "/services/{id}", self.get_service),
            compile_route("GET", "/teams", self.list_teams),
            compile_route("GET", "/teams/{id}", self.get_team),
            compile_route("GET", "/users", self.list_users),
            compile_route("GET", "/users/{id}", self.get_user),
            compile_route("GET", "/priorities", self.list_priorities),
            compile_route("GET", "/escalation_policies", self.list_escalation_policies),
            compile_route("POST", "/analytics/raw/incidents", self.analytics_raw_incidents),
        ]
        self.reindex()

    # ------------------------------------------------------------------------------ indexes

    def reindex(self) -> None:
        """(Re)build lookup tables; call after mutating the organisation's records."""
        org = self.org
        self.account_zone = zone(org.account_time_zone) or ZoneInfo("UTC")
        self.svc_by_id: dict[str, Service] = {s.id: s for s in org.services}
        self.team_by_key: dict[str, Team] = {t.key: t for t in org.teams}
        self.team_by_id: dict[str, Team] = {t.id: t for t in org.teams}
        self.user_by_id: dict[str, User] = {u.id: u for u in org.users}
        self.incidents: list[Incident] = sorted(org.incidents, key=lambda i: (i.created_at, i.number))
        self.inc_times = [i.created_at for i in self.incidents]
        self.inc_by_id = {i.id: i for i in self.incidents}
        self.inc_by_number = {str(i.number): i for i in self.incidents}
        self.svc_times: dict[str, list[datetime]] = {}
        for inc in self.incidents:
            self.svc_times.setdefault(inc.service_id, []).append(inc.created_at)
        self.inc_team: dict[str, Team | None] = {}
        self.inc_entries: dict[str, list[LogEntry]] = {}
        self.children: dict[str, list[Incident]] = {}
        by_time = attrgetter("created_at")
        entries: list[LogEntry] = []
        for inc in self.incidents:
            svc = self.svc_by_id.get(inc.service_id)
            self.inc_team[inc.id] = self.team_by_key.get(svc.owner_on(inc.created_at.date())) if svc else None
            ents = inc.log_entries
            if any(a.created_at > b.created_at for a, b in zip(ents, ents[1:])):
                ents = sorted(ents, key=by_time)  # stable: ties keep the incident's order
            self.inc_entries[inc.id] = ents
            entries.extend(ents)
            if inc.merged_into:
                self.children.setdefault(inc.merged_into, []).append(inc)
        # One stable sort by time over the entries in incident order: ties stay in incident, then
        # entry order. Sorted lists and bisect make every page O(page), whatever the history.
        entries.sort(key=by_time)
        self.entries = entries
        self.entry_times = [e.created_at for e in entries]
        self.overview_entries = [e for e in entries if e.type not in OVERVIEW_DROPS]
        self.overview_times = [e.created_at for e in self.overview_entries]
        self._entry_by_id: dict[str, LogEntry] | None = None  # built on the first GET /log_entries/{id}
        self._index_lock = threading.Lock()
        self._refs: dict[tuple[str, str, str], dict[str, Any]] = {}  # (base url, kind, id) -> reference
        self.priority_names = sorted({i.priority for i in self.incidents if i.priority} | set(PRIORITY_ORDER), key=lambda p: PRIORITY_ORDER.get(p, 99))
        self.ep_owner: dict[str, Team | None] = {}
        for t in org.teams:
            if t.escalation_policy_id:
                self.ep_owner[t.escalation_policy_id] = t
        for s in org.services:
            self.ep_owner.setdefault(s.escalation_policy_id, self.team_by_key.get(s.owners[-1].team_key))

    # ------------------------------------------------------------------------------ dispatch

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        return match_route(self.routes, method, path)

    def check_auth(self, req: Request, valid_tokens: set[str]) -> Response | None:
        """None when authorised; else the 401 response."""
        auth = req.headers.get("Authorization") or ""
        token = None
        if auth.startswith("Token token="):
            token = auth[len("Token token="):]
        elif auth.startswith("Bearer "):
            token = auth[len("Bearer "):]
        if token is None or token not in valid_tokens:
            return Response.json(401, AUTH_ERROR)
        req.token = token
        return None

    # ------------------------------------------------------------------------------ helpers

    @property
    def entry_by_id(self) -> dict[str, LogEntry]:
        if self._entry_by_id is None:
            with self._index_lock:
                if self._entry_by_id is None:
                    self._entry_by_id = {e.id: e for e in self.entries}
        return self._entry_by_id

    def url(self, req: Request, path: str) -> str:
        return req.base_url + path

    def html(self, path: str) -> str:
        return f"https://{self.subdomain}.pagerduty.com{path}"

    def render_zone(self, req: Request, default: ZoneInfo | None) -> ZoneInfo | None:
        name = req.q("time_zone")
        if name is None:
            return default
        tz = zone(name)
        if tz is None:
            raise invalid("Time zone is invalid.")
        return tz

    def page_params(self, req: Request, offset_error: dict[str, Any]) -> tuple[int, int]:
        try:
            limit = int(req.q("limit", "25") or 25)
            offset = int(req.q("offset", "0") or 0)
        except ValueError:
            raise invalid("Limit and offset must be integers.") from None
        if offset < 0:
            raise invalid("Offset must be positive.")
        limit = max(1, min(100, limit))
        if offset + limit > MAX_OFFSET:
            raise ApiError(400, offset_error)
        return limit, offset

    def paginate(self, req: Request, key: str, items: list[Any] | None, count: int | None, getter: Callable[[int, int], list[Any]] | None,
                 render: Callable[[Any], dict[str, Any]], offset_error: dict[str, Any] = OFFSET_ERROR_INCIDENTS) -> Response:
        """Classic offset pagination over ``items`` (or ``getter(start, stop)`` over ``count`` records)."""
        limit, offset = self.page_params(req, offset_error)
        total = len(items) if items is not None else int(count or 0)
        start = offset
        if "duplicate" in req.data_faults and offset > 0:
            start = offset - 1  # the last record of the previous page again at the top
        stop = start + limit
        if "empty_page" in req.data_faults:
            page: list[Any] = []
            more = True
        else:
            page = items[start:stop] if items is not None else getter(start, min(stop, total)) if start < total else []
            more = stop < total
            if self.shuffle_seed is not None:
                import random

                page = list(page)
                random.Random(f"{self.shuffle_seed}:{req.path}:{offset}").shuffle(page)
        payload = {key: [render(x) for x in page], "limit": limit, "offset": offset, "more": more,
                   "total": total if req.qbool("total") else None}
        return Response.json(200, payload)

    # references

    def ref(self, kind: str, id_: str, summary: str | None, api_path: str | None, html_path: str | None, req: Request) -> dict[str, Any]:
        return {
            "id": id_,
            "type": f"{kind}_reference",
            "summary": summary,
            "self": self.url(req, api_path) if api_path else None,
            "html_url": self.html(html_path) if html_path else None,
        }

    def _cached_ref(self, kind: str, id_: str, req: Request, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """References to directory objects (services, teams, users, policies, priorities) are the same
        in every record: built once per base URL (the dicts are shared, never mutated)."""
        key = (req.base_url, kind, id_)
        ref = self._refs.get(key)
        if ref is None:
            ref = self._refs[key] = make()
        return ref

    def service_ref(self, svc_id: str, req: Request) -> dict[str, Any]:
        def make() -> dict[str, Any]:
            svc = self.svc_by_id.get(svc_id)
            return self.ref("service", svc_id, svc.name if svc else None, f"/services/{svc_id}",
                            f"/service-directory/{svc_id}", req)
        return self._cached_ref("service", svc_id, req, make)

    def team_ref(self, team: Team, req: Request) -> dict[str, Any]:
        return self._cached_ref("team", team.id, req, lambda: self.ref(
            "team", team.id, team.name, f"/teams/{team.id}", f"/teams/{team.id}", req))

    def user_ref(self, user_id: str, req: Request) -> dict[str, Any]:
        def make() -> dict[str, Any]:
            u = self.user_by_id.get(user_id)
            return self.ref("user", user_id, u.name if u else user_id, f"/users/{user_id}", f"/users/{user_id}", req)
        return self._cached_ref("user", user_id, req, make)

    def agent_ref(self, agent_type: str, agent_id: str | None, svc_id: str, req: Request) -> dict[str, Any]:
        if agent_type == "user_reference" and agent_id:
            return self.user_ref(agent_id, req)
        if agent_type == "integration_reference" and agent_id:
            return self.ref("integration", agent_id, "Integration", None, None, req)
        return self.service_ref(agent_id or svc_id, req)

    def ep_id(self, inc: Incident) -> str:
        team = self.inc_team.get(inc.id)
        if team and team.escalation_policy_id:
            return team.escalation_policy_id
        svc = self.svc_by_id.get(inc.service_id)
        return svc.escalation_policy_id if svc else "PEP0001"

    def ep_name(self, ep_id: str) -> str:
        team = self.ep_owner.get(ep_id)
        return f"{team.name} Escalation Policy" if team else "Default Escalation Policy"

    def ep_ref(self, ep_id: str, req: Request) -> dict[str, Any]:
        return self._cached_ref("escalation_policy", ep_id, req, lambda: self.ref(
            "escalation_policy", ep_id, self.ep_name(ep_id), f"/escalation_policies/{ep_id}",
            f"/escalation_policies/{ep_id}", req))

    def priority_ref(self, name: str, req: Request) -> dict[str, Any]:
        pid = priority_id(name)
        return self._cached_ref("priority", pid, req, lambda: self.ref("priority", pid, name, f"/priorities/{pid}", None, req))

    # full objects

    def priority_obj(self, name: str, req: Request) -> dict[str, Any]:
        pid = priority_id(name)
        return {"id": pid, "type": "priority", "summary": name, "self": self.url(req, f"/priorities/{pid}"), "html_url": None,
                "name": name, "description": f"Priority {name}", "order": PRIORITY_ORDER.get(name, 99) * 100}

    def team_obj(self, team: Team, req: Request) -> dict[str, Any]:
        return {
            "id": team.id, "type": "team", "summary": team.name, "self": self.url(req, f"/teams/{team.id}"),
            "html_url": self.html(f"/teams/{team.id}"), "name": team.name, "description": f"{team.name} team ({team.key})",
            "default_role": "manager", "parent": None,
        }

    def user_obj(self, user_id: str, req: Request, include_teams: bool = False) -> dict[str, Any]:
        u = self.user_by_id.get(user_id)
        if u is None:
            return {**self.user_ref(user_id, req), "type": "user", "name": user_id, "email": f"{user_id.lower()}@example.invalid",
                    "teams": [], "contact_methods": [], "notification_rules": []}
        team = self.team_by_key.get(u.team_key or "")
        teams = [self.team_obj(team, req) if include_teams else self.team_ref(team, req)] if team else []
        return {
            "id": u.id, "type": "user", "summary": u.name, "self": self.url(req, f"/users/{u.id}"),
            "html_url": self.html(f"/users/{u.id}"), "name": u.name, "email": u.email,
            "time_zone": u.time_zone or self.org.account_time_zone, "color": "green", "role": "user",
            "avatar_url": f"https://secure.gravatar.com/avatar/{hashlib.md5(u.email.encode()).hexdigest()}.png?d=mm&r=PG",
            "description": None, "invitation_sent": False, "job_title": "Engineer",
            "teams": teams, "contact_methods": [], "notification_rules": [], "coordinated_incidents": [],
        }

    def ep_obj(self, ep_id: str, req: Request) -> dict[str, Any]:
        team = self.ep_owner.get(ep_id)
        members = [u for u in self.org.users if team and u.team_key == team.key]
        rules = []
        for level, chunk in enumerate((members[:1], members[1:2] or members[:1]), start=1):
            if chunk:
                rules.append({"id": f"R{ep_id[1:]}{level}", "escalation_delay_in_minutes": 15,
                              "targets": [self.user_ref(u.id, req) for u in chunk]})
        if not rules:
            rules = [{"id": f"R{ep_id[1:]}1", "escalation_delay_in_minutes": 30, "targets": []}]
        services = [self.service_ref(s.id, req) for s in self.org.services if s.escalation_policy_id == ep_id]
        return {
            "id": ep_id, "type": "escalation_policy", "summary": self.ep_name(ep_id), "self": self.url(req, f"/escalation_policies/{ep_id}"),
            "html_url": self.html(f"/escalation_policies/{ep_id}"), "name": self.ep_name(ep_id), "description": "",
            "num_loops": 0, "on_call_handoff_notifications": "if_has_services", "escalation_rules": rules,
            "services": services, "teams": [self.team_ref(team, req)] if team else [],
        }

    def service_obj(self, svc: Service, req: Request, tz: ZoneInfo | None, includes: set[str], now: datetime) -> dict[str, Any]:
        owner = self.team_by_key.get(svc.owner_on(now.date()))
        times = self.svc_times.get(svc.id, [])
        k = bisect.bisect_right(times, now)
        last = times[k - 1] if k else None
        status = "active"
        return {
            "id": svc.id, "type": "service", "summary": svc.name, "self": self.url(req, f"/services/{svc.id}"),
            "html_url": self.html(f"/service-directory/{svc.id}"), "name": svc.name,
            "description": f"{svc.name} (repos: {', '.join(svc.repos) or 'none'})",
            "auto_resolve_timeout": 14400, "acknowledgement_timeout": 1800,
            "created_at": fmt_time(svc.created_at, tz),
            "status": status, "last_incident_timestamp": fmt_time(last, tz),
            "escalation_policy": self.ep_obj(svc.escalation_policy_id, req) if "escalation_policies" in includes else self.ep_ref(svc.escalation_policy_id, req),
            "response_play": None,
            "teams": ([self.team_obj(owner, req) if "teams" in includes else self.team_ref(owner, req)] if owner else []),
            "integrations": [], "incident_urgency_rule": {"type": "constant", "urgency": "high"},
            "support_hours": None, "scheduled_actions": [], "addons": [],
            "alert_creation": "create_alerts_and_incidents", "alert_grouping_parameters": {"type": None},
            "auto_pause_notifications_parameters": {"enabled": False, "timeout": None},
        }

    # ------------------------------------------------------------------------------ incident state

    def state(self, inc: Incident, now: datetime) -> _State:
        ents = self.inc_entries.get(inc.id, [])
        resolved_at = inc.resolved_at if inc.resolved_at is not None and inc.resolved_at <= now else None
        if not ents:  # hand-made incidents without log entries: derive from the fields
            acked = inc.acknowledged_at is not None and inc.acknowledged_at <= now
            status = "resolved" if resolved_at else "acknowledged" if acked else "triggered"
            change = resolved_at or (inc.acknowledged_at if acked else None) or inc.created_at
            acks = [(inc.acknowledged_at, "user_reference", None)] if acked and not resolved_at else []
            return _State(status, change, change, ("service_reference", inc.service_id), resolved_at, [], acks)
        status = "triggered"
        updated = inc.created_at
        change_at = inc.created_at
        change_by: tuple[str, str | None] = ("service_reference", inc.service_id)
        assignees: list[tuple[datetime, str]] = []
        acks: list[tuple[datetime, str, str | None]] = []
        for e in ents:
            if e.created_at > now:
                break
            updated = max(updated, e.created_at)
            t = e.type
            if t in ASSIGN_TYPES and e.assignees:
                assignees = [(e.created_at, uid) for uid in e.assignees]
            if t == "acknowledge_log_entry" and status != "resolved":
                status = "acknowledged"
                acks.append((e.created_at, e.agent_type, e.agent_id))
            elif t == "unacknowledge_log_entry" and status != "resolved":
                status = "triggered"
                acks = []
            elif t == "resolve_log_entry":
                status = "resolved"
            if t in STATUS_TYPES:
                change_at = e.created_at
                change_by = (e.agent_type, e.agent_id)
        if resolved_at is not None and status != "resolved":
            status = "resolved"
            change_at = resolved_at
            updated = max(updated, resolved_at)
        if status == "resolved":
            assignees = []
            acks = []
        elif status == "triggered":
            acks = []
        return _State(status, updated, change_at, change_by, resolved_at if status == "resolved" else None, assignees, acks)

    def render_incident(self, inc: Incident, req: Request, now: datetime, tz: ZoneInfo | None, includes: set[str]) -> dict[str, Any]:
        st = self.state(inc, now)
        svc = self.svc_by_id.get(inc.service_id)
        team = self.inc_team.get(inc.id)
        ep = self.ep_id(inc)
        ents = self.inc_entries.get(inc.id, [])
        trigger = next((e for e in ents if e.type == "trigger_log_entry"), None)
        users_full = includes & {"assignees", "users"}
        ackers_full = includes & {"acknowledgers", "users"}
        merged_children = [c for c in self.children.get(inc.id, []) if c.resolved_at and c.resolved_at <= now and c.created_at <= now]
        n_alerts = 1 + len(merged_children)
        if "services" in includes and svc is not None:
            service = self.service_obj(svc, req, tz, set(), now)
        else:
            service = self.service_ref(inc.service_id, req)
        if trigger is None:
            first_trigger = None
        elif "first_trigger_log_entries" in includes:
            first_trigger = self.render_entry(trigger, req, now, tz, set())
        else:
            first_trigger = self.ref("trigger_log_entry", trigger.id, trigger.summary or "Triggered through the API.",
                                     f"/log_entries/{trigger.id}?incident_id={inc.id}", f"/incidents/{inc.id}/log_entries/{trigger.id}", req)
        agent_type, agent_id = st.last_status_change_by
        if "agents" in includes and agent_type == "user_reference" and agent_id:
            last_by = self.user_obj(agent_id, req)
        else:
            last_by = self.agent_ref(agent_type, agent_id, inc.service_id, req)
        acks = []
        for at, a_type, a_id in st.acknowledgements:
            if a_type == "user_reference" and a_id:
                who = self.user_obj(a_id, req) if ackers_full else self.user_ref(a_id, req)
            elif a_type == "user_reference":
                who = {"id": "PUNKNOWN", "type": "user_reference", "summary": None, "self": None, "html_url": None}
            else:
                who = self.service_ref(a_id or inc.service_id, req)
            acks.append({"at": fmt_time(at, tz), "acknowledger": who})
        resolve_reason = None
        if st.status == "resolved" and inc.resolve_reason == "merge_resolve_reason":
            parent = self.inc_by_id.get(inc.merged_into or "")
            resolve_reason = {
                "type": "merge_resolve_reason",
                "incident": self.ref("incident", parent.id, f"[#{parent.number}] {parent.title}", f"/incidents/{parent.id}", f"/incidents/{parent.id}", req)
                if parent else None,
            }
        if inc.priority:
            priority = self.priority_obj(inc.priority, req) if "priorities" in includes else self.priority_ref(inc.priority, req)
        else:
            priority = None
        out = {
            "id": inc.id,
            "type": "incident",
            "summary": f"[#{inc.number}] {inc.title}",
            "self": self.url(req, f"/incidents/{inc.id}"),
            "html_url": self.html(f"/incidents/{inc.id}"),
            "incident_number": inc.number,
            "title": inc.title,
            "description": inc.title,
            "created_at": fmt_time(inc.created_at, tz),
            "updated_at": fmt_time(st.updated_at, tz),
            "status": st.status,
            "incident_key": inc.incident_key,
            "service": service,
            "assignments": [
                {"at": fmt_time(at, tz), "assignee": self.user_obj(uid, req) if users_full else self.user_ref(uid, req)}
                for at, uid in st.assignments
            ],
            "assigned_via": "escalation_policy",
            "last_status_change_at": fmt_time(st.last_status_change_at, tz),
            "last_status_change_by": last_by,
            "resolved_at": fmt_time(st.resolved_at, tz),
            "first_trigger_log_entry": first_trigger,
            "alert_counts": {"all": n_alerts, "triggered": 0 if st.status == "resolved" else n_alerts,
                             "resolved": n_alerts if st.status == "resolved" else 0},
            "is_mergeable": True,
            "incident_type": {"name": "incident_default"},
            "escalation_policy": self.ep_obj(ep, req) if "escalation_policies" in includes else self.ep_ref(ep, req),
            "teams": ([self.team_obj(team, req) if "teams" in includes else self.team_ref(team, req)] if team else []),
            "pending_actions": [],
            "acknowledgements": acks,
            "alert_grouping": None,
            "priority": priority,
            "resolve_reason": resolve_reason,
            "urgency": inc.urgency,
            "incidents_responders": [],
            "responder_requests": [],
        }
        if inc.id in self.corruptions:
            corrupt_record(out, self.corruptions[inc.id])
        return out

    # ------------------------------------------------------------------------------ log entries

    _DEFAULT_SUMMARY = {
        "trigger_log_entry": "Triggered through the API.",
        "acknowledge_log_entry": "Acknowledged.",
        "unacknowledge_log_entry": "Unacknowledged due to timeout.",
        "assign_log_entry": "Assigned.",
        "delegate_log_entry": "Delegated.",
        "escalate_log_entry": "Escalated.",
        "notify_log_entry": "Notified.",
        "annotate_log_entry": "Note added.",
        "resolve_log_entry": "Resolved.",
    }

    def render_entry(self, e: LogEntry, req: Request, now: datetime, tz: ZoneInfo | None, includes: set[str]) -> dict[str, Any]:
        inc = self.inc_by_id.get(e.incident_id)
        svc_id = inc.service_id if inc else (e.agent_id or "")
        team = self.inc_team.get(e.incident_id) if inc else None
        if e.channel_type == "api" and inc is not None and e.type == "trigger_log_entry":
            channel: dict[str, Any] = {"type": "api", "summary": inc.title, "description": inc.title,
                                       "incident_key": inc.incident_key, "details": {}}
        elif e.channel_type == "email" and inc is not None and e.type == "trigger_log_entry":
            channel = {"type": "email", "summary": inc.title, "subject": inc.title,
                       "from": f"alerts@{self.subdomain}.example", "to": f"{svc_id.lower()}@{self.subdomain}.pagerduty.com"}
        elif e.type == "annotate_log_entry":
            channel = {"type": "note", "summary": e.note or e.summary}
        elif e.type == "notify_log_entry":
            channel = {"type": e.channel_type or "auto"}
            if e.notification_type:
                channel["notification"] = {"type": e.notification_type, "status": "success",
                                           "started_at": fmt_time(e.created_at, tz)}
        else:
            channel = {"type": e.channel_type or "auto"}
        out: dict[str, Any] = {
            "id": e.id,
            "type": e.type,
            "summary": e.summary or self._DEFAULT_SUMMARY.get(e.type, e.type),
            "self": self.url(req, f"/log_entries/{e.id}?incident_id={e.incident_id}"),
            "html_url": self.html(f"/incidents/{e.incident_id}/log_entries/{e.id}"),
            "created_at": fmt_time(e.created_at, tz),
            "agent": self.agent_ref(e.agent_type, e.agent_id, svc_id, req),
            "channel": channel,
            "service": self.service_ref(svc_id, req),
            "incident": (self.render_incident(inc, req, now, tz, set()) if "incidents" in includes and inc is not None
                         else self.ref("incident", e.incident_id, f"[#{inc.number}] {inc.title}" if inc else None,
                                       f"/incidents/{e.incident_id}", f"/incidents/{e.incident_id}", req)),
            "teams": ([self.team_obj(team, req) if "teams" in includes else self.team_ref(team, req)] if team else []),
            "contexts": [],
        }
        if "services" in includes and inc is not None and inc.service_id in self.svc_by_id:
            out["service"] = self.service_obj(self.svc_by_id[inc.service_id], req, tz, set(), now)
        if e.type == "trigger_log_entry":
            out["event_details"] = {"description": inc.title if inc else e.summary}
        if e.type in ASSIGN_TYPES:
            out["assignees"] = [self.user_ref(u, req) for u in e.assignees]
        if e.type == "notify_log_entry" and e.assignees:
            out["user"] = self.user_ref(e.assignees[0], req)
        if e.type == "acknowledge_log_entry":
            out["acknowledgement_timeout"] = 1800
        if e.id in self.corruptions:
            corrupt_record(out, self.corruptions[e.id])
        return out

    def _entry_window(self, req: Request, tz: ZoneInfo | None) -> tuple[datetime | None, datetime | None]:
        zone_in = tz or self.account_zone
        since = until = None
        try:
            if req.q("since"):
                since = parse_time(req.q("since") or "", zone_in)
            if req.q("until"):
                until = parse_time(req.q("until") or "", zone_in)
        except ValueError:
            raise invalid("since and until must be valid ISO 8601 date-times.", code=2004,
                          message="Invalid time values in 'since' and/or 'until'") from None
        if since and until and until < since:
            raise invalid("until must be after since.", code=2005, message="Invalid Query Date Range")
        return since, until

    def _list_entries(self, req: Request, incident: Incident | None) -> Response:
        now = self.clock()
        tz = self.render_zone(req, self.account_zone)  # log entries render in the account zone by default
        since, until = self._entry_window(req, tz)
        includes = set(req.qlist("include"))
        overview = req.qbool("is_overview")
        team_ids = set(req.qlist("team_ids")) if incident is None else set()
        hi_time = now if until is None else min(now, until - timedelta(microseconds=1))
        if incident is not None:
            ents = [e for e in self.inc_entries.get(incident.id, [])
                    if e.created_at <= hi_time and (since is None or e.created_at >= since)
                    and not (overview and e.type in OVERVIEW_DROPS)]
            items = list(reversed(ents))
            return self.paginate(req, "log_entries", items, None, None,
                                 lambda e: self.render_entry(e, req, now, tz, includes), OFFSET_ERROR_LOG_ENTRIES)
        entries, times = (self.overview_entries, self.overview_times) if overview else (self.entries, self.entry_times)
        lo = 0 if since is None else bisect.bisect_left(times, since)
        hi = bisect.bisect_right(times, hi_time)
        if team_ids:
            items = [e for e in reversed(entries[lo:hi]) if (t := self.inc_team.get(e.incident_id)) is not None and t.id in team_ids]
            return self.paginate(req, "log_entries", items, None, None,
                                 lambda e: self.render_entry(e, req, now, tz, includes), OFFSET_ERROR_LOG_ENTRIES)
        count = max(0, hi - lo)

        def getter(start: int, stop: int) -> list[LogEntry]:
            # newest first: position k counts back from hi
            a = max(lo, hi - stop)
            b = max(lo, hi - start)
            return list(reversed(entries[a:b]))

        return self.paginate(req, "log_entries", None, count, getter,
                             lambda e: self.render_entry(e, req, now, tz, includes), OFFSET_ERROR_LOG_ENTRIES)

    # ------------------------------------------------------------------------------ handlers

    def list_log_entries(self, req: Request, params: dict[str, str]) -> Response:
        return self._list_entries(req, None)

    def incident_log_entries(self, req: Request, params: dict[str, str]) -> Response:
        inc = self._find_incident(params["id"])
        return self._list_entries(req, inc)

    def incident_alerts(self, req: Request, params: dict[str, str]) -> Response:
        """The incident's one alert (what per-incident extractors such as tap-pagerduty ask for)."""
        inc = self._find_incident(params["id"])
        now = self.clock()
        resolved = inc.resolved_at is not None and inc.resolved_at <= now
        alert = {
            "id": "A" + inc.id[1:], "type": "alert", "summary": inc.title, "self": self.url(req, f"/incidents/{inc.id}/alerts"),
            "html_url": self.html(f"/alerts/A{inc.id[1:]}"), "created_at": fmt_time(inc.created_at, self.render_zone(req, None)),
            "status": "resolved" if resolved else "triggered", "alert_key": inc.incident_key or inc.id,
            "service": self.service_ref(inc.service_id, req), "incident": self.ref("incident", inc.id, inc.title, f"/incidents/{inc.id}",
                                                                                  f"/incidents/{inc.id}", req),
            "suppressed": False, "severity": "critical" if inc.urgency == "high" else "warning", "body": None,
        }
        return self.paginate(req, "alerts", [alert], None, None, lambda a: a)

    def get_log_entry(self, req: Request, params: dict[str, str]) -> Response:
        now = self.clock()
        e = self.entry_by_id.get(params["id"])
        if e is None or e.created_at > now:
            raise ApiError(404, NOT_FOUND)
        tz = self.render_zone(req, self.account_zone)
        return Response.json(200, {"log_entry": self.render_entry(e, req, now, tz, set(req.qlist("include")))})

    def _find_incident(self, key: str) -> Incident:
        now = self.clock()
        inc = self.inc_by_id.get(key) or self.inc_by_number.get(key)
        if inc is None or inc.created_at > now:
            raise ApiError(404, NOT_FOUND)
        return inc

    def get_incident(self, req: Request, params: dict[str, str]) -> Response:
        inc = self._find_incident(params["id"])
        tz = self.render_zone(req, None)
        return Response.json(200, {"incident": self.render_incident(inc, req, self.clock(), tz, set(req.qlist("include")))})

    def list_incidents(self, req: Request, params: dict[str, str]) -> Response:
        now = self.clock()
        tz = self.render_zone(req, None)  # /incidents renders in UTC by default
        zone_in = tz or self.account_zone  # ... but reads naive since/until in the account zone
        if req.q("date_range") == "all":
            since, until = None, None
        else:
            try:
                since = parse_time(req.q("since") or "", zone_in) if req.q("since") else None
                until = parse_time(req.q("until") or "", zone_in) if req.q("until") else None
            except ValueError:
                raise invalid("since and until must be valid ISO 8601 date-times.", code=2004,
                              message="Invalid time values in 'since' and/or 'until'") from None
            if since is None and until is None:
                until = now
                since = add_months(now, -1)
            elif until is None:
                until = add_months(since, 1)
            elif since is None:
                since = add_months(until, -1)
            if until < since:
                raise invalid("until must be after since.", code=2005, message="Invalid Query Date Range")
            if until > add_months(since, 6):
                raise invalid(" is invalid.")  # the body PagerDuty sends for a range over 6 months
        statuses = req.qlist("statuses")
        for s in statuses:
            if s not in ("triggered", "acknowledged", "resolved"):
                raise invalid(f"Statuses {s} is not a valid status.")
        urgencies = req.qlist("urgencies")
        for u in urgencies:
            if u not in ("high", "low"):
                raise invalid(f"Urgencies {u} is not a valid urgency.")
        service_ids = set(req.qlist("service_ids"))
        team_ids = set(req.qlist("team_ids"))
        user_ids = set(req.qlist("user_ids"))
        incident_key = req.q("incident_key")
        sort = self._parse_sort(req)
        includes = set(req.qlist("include"))

        lo = 0 if since is None else bisect.bisect_left(self.inc_times, since)
        hi_time = now if until is None else min(now, until - timedelta(microseconds=1))
        hi = bisect.bisect_right(self.inc_times, hi_time)
        render = lambda i: self.render_incident(i, req, now, tz, includes)  # noqa: E731
        if not (service_ids or team_ids or urgencies or incident_key or statuses or user_ids) and \
                sort in ([("created_at", False)], [("created_at", True)]):
            # The common case (a time window in creation order): O(page), no copy of the window.
            incidents, desc = self.incidents, sort[0][1]

            def getter(start: int, stop: int) -> list[Incident]:
                if desc:
                    return incidents[max(lo, hi - stop):max(lo, hi - start)][::-1]
                return incidents[lo + start:lo + stop]

            return self.paginate(req, "incidents", None, max(0, hi - lo), getter, render)
        items = self.incidents[lo:hi]
        if service_ids:
            items = [i for i in items if i.service_id in service_ids]
        if team_ids:
            items = [i for i in items if (t := self.inc_team.get(i.id)) is not None and t.id in team_ids]
        if urgencies:
            items = [i for i in items if i.urgency in urgencies]
        if incident_key:
            items = [i for i in items if i.incident_key == incident_key]
        if statuses or user_ids:
            keep = []
            for i in items:
                st = self.state(i, now)
                if statuses and st.status not in statuses:
                    continue
                if user_ids and (st.status == "resolved" or not any(uid in user_ids for _, uid in st.assignments)):
                    continue
                keep.append(i)
            items = keep
        if sort != [("created_at", False)]:
            for field, desc in reversed(sort):
                items = sorted(items, key=self._sort_key(field, now), reverse=desc)
        return self.paginate(req, "incidents", items, None, None, render)

    def _parse_sort(self, req: Request) -> list[tuple[str, bool]]:
        specs = req.qlist("sort_by")
        if not specs:
            return [("created_at", False)]
        if len(specs) > 2:
            raise invalid("Sort by can only take up to 2 fields.")
        out = []
        for s in specs:
            field, _, direction = s.partition(":")
            if field not in INCIDENT_SORT_FIELDS or direction not in ("", "asc", "desc"):
                raise invalid(f"Sort by {s} is not valid.")
            out.append((field, direction == "desc"))
        return out

    def _sort_key(self, field: str, now: datetime) -> Callable[[Incident], Any]:
        if field == "incident_number":
            return lambda i: i.number
        if field == "created_at":
            return lambda i: (i.created_at, i.number)
        if field == "urgency":
            return lambda i: (0 if i.urgency == "high" else 1, i.number)
        far = datetime.max.replace(tzinfo=UTC)
        return lambda i: (i.resolved_at if i.resolved_at and i.resolved_at <= now else far, i.number)

    def list_services(self, req: Request, params: dict[str, str]) -> Response:
        now = self.clock()
        tz = self.render_zone(req, None)
        team_ids = set(req.qlist("team_ids"))
        query = (req.q("query") or "").lower()
        includes = set(req.qlist("include"))
        items = [s for s in self.org.services if (s.created_at is None or s.created_at <= now)]
        if team_ids:
            items = [s for s in items if (t := self.team_by_key.get(s.owner_on(now.date()))) is not None and t.id in team_ids]
        if query:
            items = [s for s in items if query in s.name.lower()]
        if req.q("sort_by", "name").startswith("name"):
            items = sorted(items, key=lambda s: s.name.lower(), reverse=(req.q("sort_by") or "").endswith(":desc"))
        return self.paginate(req, "services", items, None, None, lambda s: self.service_obj(s, req, tz, includes, now))

    def get_service(self, req: Request, params: dict[str, str]) -> Response:
        now = self.clock()
        svc = self.svc_by_id.get(params["id"])
        if svc is None or (svc.created_at is not None and svc.created_at > now):
            raise ApiError(404, NOT_FOUND)
        return Response.json(200, {"service": self.service_obj(svc, req, self.render_zone(req, None), set(req.qlist("include")), now)})

    def list_teams(self, req: Request, params: dict[str, str]) -> Response:
        query = (req.q("query") or "").lower()
        items = [t for t in self.org.teams if not query or query in t.name.lower()]
        items = sorted(items, key=lambda t: t.name.lower())
        return self.paginate(req, "teams", items, None, None, lambda t: self.team_obj(t, req))

    def get_team(self, req: Request, params: dict[str, str]) -> Response:
        team = self.team_by_id.get(params["id"])
        if team is None:
            raise ApiError(404, NOT_FOUND)
        return Response.json(200, {"team": self.team_obj(team, req)})

    def list_users(self, req: Request, params: dict[str, str]) -> Response:
        query = (req.q("query") or "").lower()
        team_ids = set(req.qlist("team_ids"))
        include_teams = "teams" in req.qlist("include")
        items = list(self.org.users)
        if query:
            items = [u for u in items if query in u.name.lower() or query in u.email.lower()]
        if team_ids:
            items = [u for u in items if (t := self.team_by_key.get(u.team_key or "")) is not None and t.id in team_ids]
        items.sort(key=lambda u: u.name.lower())
        return self.paginate(req, "users", items, None, None, lambda u: self.user_obj(u.id, req, include_teams))

    def get_user(self, req: Request, params: dict[str, str]) -> Response:
        if params["id"] not in self.user_by_id:
            raise ApiError(404, NOT_FOUND)
        return Response.json(200, {"user": self.user_obj(params["id"], req, "teams" in req.qlist("include"))})

    def list_priorities(self, req: Request, params: dict[str, str]) -> Response:
        return self.paginate(req, "priorities", self.priority_names, None, None, lambda p: self.priority_obj(p, req))

    def list_escalation_policies(self, req: Request, params: dict[str, str]) -> Response:
        ids = sorted(self.ep_owner, key=lambda e: self.ep_name(e).lower())
        return self.paginate(req, "escalation_policies", ids, None, None, lambda e: self.ep_obj(e, req))

    # ------------------------------------------------------------------------------ analytics

    def analytics_raw_incidents(self, req: Request, params: dict[str, str]) -> Response:
        try:
            body = req.json_body()
        except ValueError:
            raise invalid("Request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise invalid("Request body must be a JSON object.")
        filters = body.get("filters") or {}
        tz_name = body.get("time_zone") or "Etc/UTC"
        tz = zone(tz_name)
        if tz is None:
            raise invalid("time_zone is invalid.")
        limit = body.get("limit", 100)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
            raise invalid("limit must be an integer between 1 and 1000.")
        order = body.get("order", "desc")
        order_by = body.get("order_by", "created_at")
        if order not in ("asc", "desc") or order_by not in ("created_at", "seconds_to_resolve"):
            raise invalid("order must be asc|desc and order_by created_at|seconds_to_resolve.")
        try:
            cstart = parse_time(filters["created_at_start"], tz) if filters.get("created_at_start") else None
            cend = parse_time(filters["created_at_end"], tz) if filters.get("created_at_end") else None
            upd_after = parse_time(filters["updated_after"], tz) if filters.get("updated_after") else None
        except (ValueError, TypeError):
            raise invalid("created_at_start, created_at_end and updated_after must be ISO 8601 date-times.") from None
        snapshot = self.clock() - self.analytics_lag
        rows_src = self.incidents[: bisect.bisect_right(self.inc_times, snapshot)]
        if cstart:
            rows_src = [i for i in rows_src if i.created_at >= cstart]
        if cend:
            rows_src = [i for i in rows_src if i.created_at < cend]
        if filters.get("urgency"):
            rows_src = [i for i in rows_src if i.urgency == filters["urgency"]]
        if filters.get("service_ids"):
            ids = set(filters["service_ids"])
            rows_src = [i for i in rows_src if i.service_id in ids]
        if filters.get("team_ids"):
            ids = set(filters["team_ids"])
            rows_src = [i for i in rows_src if (t := self.inc_team.get(i.id)) is not None and t.id in ids]
        if filters.get("priority_names"):
            names = set(filters["priority_names"])
            rows_src = [i for i in rows_src if i.priority in names]
        if "major" in filters and filters["major"] is not None:
            rows_src = [i for i in rows_src if (i.priority in ("P1", "P2")) == bool(filters["major"])]
        # cheap keys first (created, analytics updated_at, seconds to resolve); full rows for the page only
        keyed = []
        for i in rows_src:
            updated = self._analytics_updated(i, snapshot)
            if upd_after and not updated > upd_after:
                continue
            resolved = i.resolved_at if i.resolved_at is not None and i.resolved_at <= snapshot else None
            keyed.append((i, seconds_between(i.created_at, resolved)))
        if order_by == "created_at":
            keyed.sort(key=lambda r: (r[0].created_at, r[0].number), reverse=(order == "desc"))
        else:
            big = 10**12
            keyed.sort(key=lambda r: (r[1] if r[1] is not None else big, r[0].number), reverse=(order == "desc"))
        ids = [r[0].id for r in keyed]
        if body.get("starting_after"):
            try:
                start = ids.index(body["starting_after"]) + 1
            except ValueError:
                raise invalid("starting_after is not a valid cursor.") from None
            chosen = keyed[start:start + limit]
            more = start + limit < len(keyed)
        elif body.get("ending_before"):
            try:
                pos = ids.index(body["ending_before"])
            except ValueError:
                raise invalid("ending_before is not a valid cursor.") from None
            chosen = keyed[max(0, pos - limit):pos]
            more = pos - limit > 0
        else:
            chosen = keyed[:limit]
            more = limit < len(keyed)
        page = [self._analytics_row(i, snapshot) for i, _ in chosen]
        data = []
        for r in page:
            r = dict(r)
            created, updated, resolved = r.pop("_created"), r.pop("_updated"), r.pop("_resolved")
            r["created_at"] = fmt_naive(created, tz)
            r["updated_at"] = fmt_naive(updated, tz)
            r["resolved_at"] = fmt_naive(resolved, tz)
            data.append(r)
        return Response.json(200, {
            "first": data[0]["id"] if data else None,
            "last": data[-1]["id"] if data else None,
            "limit": limit, "more": more, "order": order, "order_by": order_by,
            "starting_after": body.get("starting_after"), "ending_before": body.get("ending_before"),
            "filters": filters, "time_zone": tz_name, "data": data,
        })

    def _analytics_updated(self, inc: Incident, snapshot: datetime) -> datetime:
        """When the analytics process last saw a change: the last change before the snapshot, plus the lag."""
        last = inc.created_at
        for e in self.inc_entries.get(inc.id, []):
            if e.created_at > snapshot:
                break
            last = e.created_at
        if inc.resolved_at is not None and inc.resolved_at <= snapshot:
            last = max(last, inc.resolved_at)
        return last + self.analytics_lag

    def _analytics_row(self, inc: Incident, snapshot: datetime) -> dict[str, Any]:
        st = self.state(inc, snapshot)
        ents = [e for e in self.inc_entries.get(inc.id, []) if e.created_at <= snapshot]
        svc = self.svc_by_id.get(inc.service_id)
        team = self.inc_team.get(inc.id)
        ep = self.ep_id(inc)
        acks = [e for e in ents if e.type == "acknowledge_log_entry"]
        first_ack = acks[0].created_at if acks else (inc.acknowledged_at if not ents and inc.acknowledged_at and inc.acknowledged_at <= snapshot else None)
        resolved = st.resolved_at
        assigned: list[str] = []
        for e in ents:
            if e.type in ASSIGN_TYPES:
                for u in e.assignees:
                    if u not in assigned:
                        assigned.append(u)
        ackers: list[str] = []
        for e in acks:
            if e.agent_type == "user_reference" and e.agent_id and e.agent_id not in ackers:
                ackers.append(e.agent_id)
        resolver = next((e for e in reversed(ents) if e.type == "resolve_log_entry"), None)
        resolver_id = resolver.agent_id if resolver and resolver.agent_type == "user_reference" else None
        notifies = [e for e in ents if e.type == "notify_log_entry"]
        business = off = sleep = 0
        for e in notifies:
            u = self.user_by_id.get(e.assignees[0]) if e.assignees else None
            local = e.created_at.astimezone(zone(u.time_zone if u and u.time_zone else None) or self.account_zone)
            if local.hour >= 22 or local.hour < 8:
                sleep += 1
            elif local.weekday() < 5 and 8 <= local.hour < 18:
                business += 1
            else:
                off += 1
        name = lambda uid: self.user_by_id[uid].name if uid in self.user_by_id else uid  # noqa: E731
        return {
            "id": inc.id,
            "incident_number": inc.number,
            "_created": inc.created_at,
            "_updated": self._analytics_updated(inc, snapshot),
            "_resolved": resolved,
            "status": st.status,
            "urgency": inc.urgency,
            "major": inc.priority in ("P1", "P2"),
            "priority_id": priority_id(inc.priority) if inc.priority else None,
            "priority_name": inc.priority,
            "priority_order": PRIORITY_ORDER.get(inc.priority) if inc.priority else None,
            "service_id": inc.service_id,
            "service_name": svc.name if svc else None,
            "team_id": team.id if team else None,
            "team_name": team.name if team else None,
            "escalation_policy_id": ep,
            "escalation_policy_name": self.ep_name(ep),
            "incident_type_id": "PINCDEF",
            "incident_type_name": "incident_default",
            "seconds_to_first_ack": seconds_between(inc.created_at, first_ack),
            "seconds_to_engage": seconds_between(inc.created_at, first_ack),
            "seconds_to_mobilize": None,
            "seconds_to_resolve": seconds_between(inc.created_at, resolved),
            "engaged_seconds": seconds_between(first_ack, resolved) if first_ack and resolved else 0,
            "snoozed_seconds": 0,
            "user_defined_effort_seconds": None,
            "acknowledgement_count": len(acks),
            "assignment_count": sum(1 for e in ents if e.type in ASSIGN_TYPES),
            "reassignment_count": sum(1 for e in ents if e.type in ("assign_log_entry", "delegate_log_entry") and e.agent_type == "user_reference"),
            "escalation_count": sum(1 for e in ents if e.type == "escalate_log_entry"),
            "manual_escalation_count": sum(1 for e in ents if e.type == "escalate_log_entry" and e.agent_type == "user_reference"),
            "timeout_escalation_count": sum(1 for e in ents if e.type == "escalate_log_entry" and e.channel_type == "timeout"),
            "auto_resolved": bool(inc.auto_resolved and resolved is not None),
            "acknowledged_user_ids": ackers,
            "acknowledged_user_names": [name(u) for u in ackers],
            "assigned_user_ids": assigned,
            "assigned_user_names": [name(u) for u in assigned],
            "joined_user_ids": [],
            "joined_user_names": [],
            "resolved_by_user_id": resolver_id,
            "resolved_by_user_name": name(resolver_id) if resolver_id else None,
            "business_hour_interruptions": business,
            "off_hour_interruptions": off,
            "sleep_hour_interruptions": sleep,
            "total_interruptions": business + off + sleep,
            "total_notifications": len(notifies),
            "engaged_user_count": len(ackers),
            "active_user_count": len(ackers),
            "description": inc.title,
        }
