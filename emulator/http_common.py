"""Small pieces shared by the PagerDuty and GitHub emulations: request/response objects, time helpers."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = timezone.utc


@dataclass
class Request:
    """A parsed HTTP request, as seen by one API emulation (path without the service prefix)."""

    method: str
    path: str  # e.g. "/incidents/P123ABC" (no service prefix, no query)
    full_path: str  # e.g. "/pagerduty/incidents/P123ABC" (no query)
    query: dict[str, list[str]]
    headers: Any  # email.message.Message: case-insensitive .get()
    body: bytes
    base_url: str  # scheme://host:port/prefix, for links in responses
    token: str | None = None
    data_faults: set[str] = field(default_factory=set)  # "duplicate", "empty_page" (set by the fault engine)
    max_page: int | None = None  # GitHub: 422 beyond this page (fault)

    def q(self, name: str, default: str | None = None) -> str | None:
        vals = self.query.get(name)
        if not vals:
            return default
        return vals[-1]

    def qlist(self, name: str) -> list[str]:
        """A set filter: ``name[]`` repeated (PagerDuty style), ``name`` repeated, or comma separated."""
        out: list[str] = []
        for key in (name + "[]", name):
            for v in self.query.get(key, []):
                out.extend(x for x in v.split(",") if x != "")
        return out

    def qbool(self, name: str, default: bool = False) -> bool:
        v = self.q(name)
        if v is None:
            return default
        return v in ("true", "1")

    def json_body(self) -> Any:
        if not self.body:
            return {}
        return json.loads(self.body.decode("utf-8"))

    def url_with(self, **params: Any) -> str:
        """This request's URL with some query parameters replaced (for pagination links)."""
        items: list[tuple[str, str]] = []
        replaced = set(params)
        for k, vals in self.query.items():
            if k in replaced:
                continue
            for v in vals:
                items.append((k, v))
        for k, v in params.items():
            if v is not None:
                items.append((k, str(v)))
        qs = urlencode(items)
        return self.base_url + self.path + ("?" + qs if qs else "")


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json; charset=utf-8"
    counts_quota: bool = True  # GitHub: a 304 and /rate_limit do not count

    @classmethod
    def json(cls, status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> "Response":
        return cls(status, dumps(payload), list(headers or []))


class ApiError(Exception):
    """Raised by a handler to answer with an error response."""

    def __init__(self, status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(f"{status}: {payload}")
        self.response = Response.json(status, payload, headers)


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# ---------------------------------------------------------------------------------------------
# time helpers


def zone(name: str | None) -> ZoneInfo | None:
    """ZoneInfo for an IANA name (also 'Etc/UTC', 'UTC'); None when unknown."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def fmt_time(dt: datetime | None, tz: ZoneInfo | None = None) -> str | None:
    """ISO 8601 rendering: 'Z' in UTC, otherwise the zone's offset ('-07:00')."""
    if dt is None:
        return None
    if tz is None or tz.key in ("UTC", "Etc/UTC", "Etc/GMT", "GMT", "Universal", "Zulu"):
        return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return dt.astimezone(tz).isoformat(timespec="seconds")


def fmt_naive(dt: datetime | None, tz: ZoneInfo | None) -> str | None:
    """Analytics style: no offset, rendered in the requested zone."""
    if dt is None:
        return None
    return dt.astimezone(tz or UTC).replace(tzinfo=None).isoformat(timespec="seconds")


_PLUS_AS_SPACE = re.compile(r"^(.*T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")


def parse_time(value: str, default_zone: ZoneInfo | None) -> datetime:
    """Parse an ISO 8601 date or date-time; naive values are read in ``default_zone``."""
    v = value.strip()
    m = _PLUS_AS_SPACE.match(v)
    if m:  # an unencoded '+' in a query string arrives as a space
        v = f"{m.group(1)}+{m.group(2)}"
    dt = datetime.fromisoformat(v)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=default_zone or UTC)
    return dt.astimezone(UTC)


def add_months(dt: datetime, months: int) -> datetime:
    y, m = divmod(dt.month - 1 + months, 12)
    y += dt.year
    m += 1
    for day in (dt.day, 30, 29, 28):
        try:
            return dt.replace(year=y, month=m, day=min(dt.day, day))
        except ValueError:
            continue
    raise ValueError(dt)


def http_date(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


Handler = Callable[[Request, dict[str, str]], Response]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    template: str
    handler: Handler


def compile_route(method: str, template: str, handler: Handler) -> Route:
    """'/incidents/{id}/log_entries' -> regex with named groups."""
    rx = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "/?$"
    return Route(method, re.compile(rx), template, handler)


def match_route(routes: list[Route], method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
    """(route, path params, path_known_with_other_method)."""
    other = False
    for r in routes:
        m = r.pattern.match(path)
        if m:
            if r.method == method:
                return r, m.groupdict(), False
            other = True
    return None, {}, other


def today_utc() -> date:
    return datetime.now(UTC).date()


def seconds_between(a: datetime | None, b: datetime | None) -> int | None:
    if a is None or b is None:
        return None
    return int(round((b - a).total_seconds()))


def clamp_delta(td: timedelta) -> int:
    return max(0, int(round(td.total_seconds())))
