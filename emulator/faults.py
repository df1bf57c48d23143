"""Deterministic fault injection for the emulator.

A :class:`Faults` holds latency settings and a list of :class:`FaultRule`. Each rule counts the
requests it matches (by service, route substring and method); it fires on matching requests number
``start`` .. ``start + count - 1`` (1-based; ``count=None`` = forever), each with ``probability``
drawn from a rng seeded by ``(Faults.seed, rule index)``. Counters make schedules reproducible:
"fail the 3rd and 4th request to /log_entries with 503" is
``FaultRule("status", route="/log_entries", status=503, start=3, count=2)``.

The same rules are written on the command line as ``KIND[:key=value,...]``, e.g.
``--fault status:status=503,start=3,count=2,route=/log_entries`` (see :func:`parse_fault`).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field, fields

# kind -> what happens (all documented in docs/emulator.md)
FAULT_KINDS = {
    "status": "answer with an error status (status=500|502|503|504|408|401|403|...) and the API's error body",
    "reset": "close the connection without a response (TCP reset)",
    "hang": "sleep `seconds` (default 65) before answering: past the client's timeout",
    "truncate": "send the JSON body cut in half with a matching Content-Length (invalid JSON)",
    "short_body": "announce the full Content-Length, send half the body, close the connection",
    "html": "answer 200 with an HTML error page (a proxy in the way)",
    "duplicate": "list endpoints: repeat the last record of the previous page at the top of this page",
    "empty_page": "list endpoints: an empty page that still says more=true (PagerDuty) / has a next link",
    "rate_limit": "429 with the API's rate-limit headers and body (PagerDuty: ratelimit-reset=`seconds`)",
    "rate_limit_bare": "429 without headers and without a body",
    "gh_secondary": "GitHub secondary rate limit: status 403 (or status=429), retry-after=`seconds` if given, remaining > 0",
    "gh_primary": "GitHub primary rate limit exhausted: 403 (or status=429), x-ratelimit-remaining 0, reset in `seconds`",
    "gh_not_accessible": "GitHub 403 'Resource not accessible by integration' (must not be retried)",
}
TRANSPORT_KINDS = set(FAULT_KINDS) - {"duplicate", "empty_page"}
GITHUB_ONLY = {"gh_secondary", "gh_primary", "gh_not_accessible"}


@dataclass
class FaultRule:
    kind: str
    route: str | None = None  # substring of the request path, e.g. "/log_entries" or "/github/"; None = all
    start: int = 1  # first matching request (1-based) that fails
    count: int | None = None  # how many consecutive matching requests fail; None = all from start
    probability: float = 1.0  # chance to fire inside [start, start+count)
    status: int | None = None  # kind=status (default 500); gh_secondary/gh_primary: 403 (default) or 429
    seconds: float | None = None  # hang: sleep; rate_limit/gh_primary: reset in; gh_secondary: retry-after (None = none)
    service: str | None = None  # "pagerduty" | "github" | None (both; gh_* kinds are GitHub only)
    method: str | None = None  # "GET" | "POST" | None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of: {', '.join(sorted(FAULT_KINDS))}")
        if self.start < 1:
            raise ValueError("start is 1-based")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")


@dataclass
class Faults:
    latency_ms: float = 0.0  # added to every matching request
    jitter_ms: float = 0.0  # plus uniform(0, jitter_ms)
    latency_route: str | None = None  # only requests whose path contains this; None = all
    rules: list[FaultRule] = field(default_factory=list)
    github_max_page: int | None = None  # GitHub list endpoints answer 422 for page > this
    seed: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._counters = [0] * len(self.rules)
        self._rngs = [random.Random(f"{self.seed}:{i}") for i in range(len(self.rules))]
        self._latency_rng = random.Random(f"{self.seed}:latency")
        self.fired: dict[str, int] = {}

    def reset(self) -> None:
        """Restart all counters and rngs (the schedule replays from the beginning)."""
        self.__post_init__()

    def latency_seconds(self, path: str) -> float:
        if self.latency_ms <= 0 and self.jitter_ms <= 0:
            return 0.0
        if self.latency_route and self.latency_route not in path:
            return 0.0
        with self._lock:
            jitter = self._latency_rng.uniform(0, self.jitter_ms) if self.jitter_ms > 0 else 0.0
        return (self.latency_ms + jitter) / 1000.0

    def evaluate(self, service: str, method: str, path: str) -> list[FaultRule]:
        """The rules firing for this request, in declaration order (counters advance)."""
        fired = []
        with self._lock:
            if len(self._counters) != len(self.rules):  # rules appended after construction
                self._counters += [0] * (len(self.rules) - len(self._counters))
                self._rngs += [random.Random(f"{self.seed}:{i}") for i in range(len(self._rngs), len(self.rules))]
            for i, rule in enumerate(self.rules):
                svc = rule.service or ("github" if rule.kind in GITHUB_ONLY else None)
                if svc and svc != service:
                    continue
                if rule.route and rule.route not in path:
                    continue
                if rule.method and rule.method.upper() != method:
                    continue
                self._counters[i] += 1
                n = self._counters[i]
                if n < rule.start or (rule.count is not None and n >= rule.start + rule.count):
                    continue
                if rule.probability < 1.0 and self._rngs[i].random() >= rule.probability:
                    continue
                fired.append(rule)
                self.fired[rule.kind] = self.fired.get(rule.kind, 0) + 1
        return fired


def parse_fault(spec: str) -> FaultRule:
    """``KIND[:key=value,...]`` -> FaultRule, e.g. ``status:status=503,start=3,count=2,route=/log_entries``."""
    kind, _, rest = spec.partition(":")
    kw: dict[str, object] = {}
    types = {f.name: f.type for f in fields(FaultRule)}
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or key not in types or key == "kind":
            raise ValueError(f"bad fault option {part!r} in {spec!r}")
        value = value.strip()
        if key in ("start", "count", "status"):
            kw[key] = None if value.lower() == "none" else int(value)
        elif key in ("probability", "seconds"):
            kw[key] = None if value.lower() == "none" else float(value)
        else:
            kw[key] = value
    return FaultRule(kind.strip(), **kw)  # type: ignore[arg-type]
