"""Threaded HTTP server emulating PagerDuty (under /pagerduty), GitHub (under /github) and GitLab
(under /gitlab/api/v4) on one port.

    srv = EmulatorServer(org).start()
    srv.pagerduty_url   # http://127.0.0.1:PORT/pagerduty
    srv.github_url      # http://127.0.0.1:PORT/github
    srv.gitlab_url      # http://127.0.0.1:PORT/gitlab/api/v4
    srv.stop()

See docs/emulator.md for the behaviour, the fault modes and the deviations from the real APIs.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import socket
import ssl
import struct
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pipelines.connectors.github import resource as github_resource
from pipelines.connectors.gitlab import resource as gitlab_resource
from pipelines.connectors.pagerduty import resource as pagerduty_resource

from .faults import TRANSPORT_KINDS, FaultRule, Faults
from .github_api import BAD_CREDENTIALS, SUPPORTED_VERSIONS, GitHubApi
from .gitlab_api import GitLabApi
from .http_common import UTC, ApiError, Request, Response, http_date, parse_time
from .model import Organisation
from .pagerduty_api import (
    AUTH_ERROR,
    INTERNAL_ERROR,
    NOT_FOUND,
    RATE_LIMIT_ERROR,
    TIMEOUT_ERROR,
    PagerDutyApi,
)

__all__ = ["EmulatorServer"]

GITHUB_RATE_DOCS = "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"


# ------------------------------------------------------------------------------------------------
# rate limiting


class _TokenBucket:
    """PagerDuty-style limiter: ``capacity`` requests per minute, refilled continuously."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.tokens = float(per_minute)
        self.last = time.monotonic()

    def take(self) -> tuple[bool, int, int]:
        """(allowed, remaining, reset seconds)."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            reset = math.ceil((self.capacity - self.tokens) / self.rate) if self.rate else 60
            return True, int(self.tokens), max(0, reset)
        reset = math.ceil((1.0 - self.tokens) / self.rate) if self.rate else 60
        return False, 0, max(1, reset)


class _GitHubQuota:
    """GitHub primary limit: ``limit`` requests per token per hour, fixed window (wall clock)."""

    def __init__(self, per_hour: int) -> None:
        self.limit = per_hour
        self.windows: dict[str, list[float | int]] = {}  # token -> [window start epoch, used]

    def _window(self, token: str) -> list[float | int]:
        now = time.time()
        w = self.windows.get(token)
        if w is None or now >= w[0] + 3600:
            w = [now, 0]
            self.windows[token] = w
        return w

    def info(self, token: str | None) -> dict[str, int]:
        w = self._window(token or "")
        used = int(w[1])
        return {"limit": self.limit, "remaining": max(0, self.limit - used), "used": used,
                "reset": int(w[0] + 3600), "resource": "core"}  # type: ignore[dict-item]

    def spend(self, token: str | None) -> None:
        w = self._window(token or "")
        w[1] = int(w[1]) + 1


# ------------------------------------------------------------------------------------------------
# statistics


class _Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight: dict[str, int] = {}  # service -> requests being served now
        self.reset()

    def reset(self) -> None:
        """Call with ``lock`` held (or before the server starts)."""
        self.rows: dict[tuple[str, str, str, int], list[int]] = {}
        self.faults: dict[str, int] = {}
        self.most_in_flight = dict(self.in_flight)  # service -> most served at once since the reset

    def enter(self, service: str) -> None:
        with self.lock:
            now = self.in_flight[service] = self.in_flight.get(service, 0) + 1
            self.most_in_flight[service] = max(self.most_in_flight.get(service, 0), now)

    def leave(self, service: str) -> None:
        with self.lock:
            self.in_flight[service] -= 1

    def record(self, service: str, method: str, route: str, status: int, nbytes: int, fault: str | None) -> None:
        with self.lock:
            row = self.rows.setdefault((service, method, route, status), [0, 0])
            row[0] += 1
            row[1] += nbytes
            if fault:
                self.faults[fault] = self.faults.get(fault, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            rows = sorted(self.rows.items())
            faults = dict(self.faults)
            most_in_flight = dict(self.most_in_flight)
        by_service: dict[str, dict[str, int]] = {}
        by_route: dict[str, dict[str, Any]] = {}
        routes = []
        total = nbytes = limited = not_modified = 0
        for (service, method, route, status), (count, b) in rows:
            total += count
            nbytes += b
            limited += count if status == 429 else 0
            not_modified += count if status == 304 else 0
            s = by_service.setdefault(service, {"requests": 0, "bytes": 0, "rate_limited": 0})
            s["requests"] += count
            s["bytes"] += b
            s["rate_limited"] += count if status == 429 else 0
            key = f"{service} {method} {route}"
            r = by_route.setdefault(key, {"requests": 0, "bytes": 0, "by_status": {}})
            r["requests"] += count
            r["bytes"] += b
            r["by_status"][str(status)] = r["by_status"].get(str(status), 0) + count
            routes.append({"service": service, "method": method, "route": route, "status": status, "count": count, "bytes": b})
        return {"requests": total, "bytes": nbytes, "rate_limited": limited, "not_modified": not_modified,
                "faults": faults, "most_in_flight": most_in_flight,
                "by_service": by_service, "by_route": by_route, "routes": routes}


# ------------------------------------------------------------------------------------------------
# HTTP plumbing


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], emulator: "EmulatorServer", ssl_ctx: ssl.SSLContext | None) -> None:
        self.emulator = emulator
        self.ssl_ctx = ssl_ctx
        super().__init__(addr, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:  # runs in the per-connection thread
        if self.ssl_ctx is None:
            super().finish_request(request, client_address)
            return
        try:
            tls_sock = self.ssl_ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(tls_sock, client_address, self)
        finally:
            try:
                tls_sock.close()
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLError, TimeoutError, socket.timeout)):
            return
        if self.emulator.verbose:
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "incident-metrics-emulator/1.0"
    timeout = 120  # idle keep-alive connections are closed after this

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without TCP_NODELAY, Nagle's algorithm meets the
        # client's delayed ACK and every keep-alive response waits ~40 ms.
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - not a TCP socket
            pass

    def _dispatch(self) -> None:
        self.server.emulator._handle(self)  # type: ignore[attr-defined]

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.emulator.verbose:  # type: ignore[attr-defined]
            sys.stderr.write("emulator: %s - %s\n" % (self.address_string(), format % args))


class EmulatorServer:
    """PagerDuty, GitHub and GitLab API emulator serving ``org`` on one loopback port (see module docstring)."""

    def __init__(
        self,
        org: Organisation,
        host: str = "127.0.0.1",
        port: int = 0,
        pagerduty_token: str | Iterable[str] = "pd-demo-token",
        github_token: str | Iterable[str] = "gh-demo-token",
        gitlab_token: str | Iterable[str] = "gl-demo-token",
        tls: bool = False,
        rate_limit_per_minute: int | None = 960,
        github_rate_limit_per_hour: int = 5000,
        gitlab_rate_limit_per_minute: int | None = 2000,
        faults: Faults | None = None,
        analytics_lag: timedelta = timedelta(hours=0),
        github_exhausted_status: int = 403,
        verbose: bool = False,
    ) -> None:
        self.org = org
        self.host = host
        self.requested_port = port
        self.pagerduty_tokens = {pagerduty_token} if isinstance(pagerduty_token, str) else set(pagerduty_token)
        self.github_tokens = {github_token} if isinstance(github_token, str) else set(github_token)
        self.gitlab_tokens = {gitlab_token} if isinstance(gitlab_token, str) else set(gitlab_token)
        # the token client_env() hands out: the one given, or the first of several
        self._client_tokens = tuple(t if isinstance(t, str) else next(iter(t))
                                    for t in (pagerduty_token, github_token, gitlab_token))
        self.gitlab_rate_limit_per_minute = gitlab_rate_limit_per_minute
        self.tls = tls
        self.rate_limit_per_minute = rate_limit_per_minute
        self.faults = faults or Faults()
        self.github_exhausted_status = github_exhausted_status
        self.verbose = verbose
        self.pagerduty = PagerDutyApi(org, self.now, analytics_lag)
        self.github = GitHubApi(org, self.now)
        self.github.rate_limit_info = self._github_info
        self.github.graphql.quota.limit = github_rate_limit_per_hour  # points an hour, as GitHub's 5,000
        self.gitlab = GitLabApi(org, self.now)
        self._lock = threading.Lock()
        self._buckets: dict[str, _TokenBucket] = {}
        self._quota = _GitHubQuota(github_rate_limit_per_hour)
        self._stats = _Stats()
        self._stop = threading.Event()
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._tmpdir: Path | None = None
        self.ca_file: str | None = None
        self.port: int = port

    # ------------------------------------------------------------------------------ lifecycle

    def start(self) -> "EmulatorServer":
        if self._httpd is not None:
            return self
        ctx = None
        if self.tls:
            from .tls import make_server_context

            ctx, ca_path, self._tmpdir = make_server_context()
            self.ca_file = str(ca_path)
        self._stop.clear()
        self._httpd = _HttpServer((self.host, self.requested_port), self, ctx)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"emulator-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes hanging / delayed requests
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
            self.ca_file = None

    def __enter__(self) -> "EmulatorServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def serve_until_stopped(self) -> None:
        """Block until :meth:`stop` is called (from a signal handler, for instance)."""
        while not self._stop.wait(0.5):
            pass

    # ------------------------------------------------------------------------------ public helpers

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def pagerduty_url(self) -> str:
        return self.base_url + PagerDutyApi.prefix

    @property
    def github_url(self) -> str:
        return self.base_url + GitHubApi.prefix

    @property
    def gitlab_url(self) -> str:
        return self.base_url + GitLabApi.prefix

    def client_env(self) -> dict[str, str]:
        """The environment that points the product's connectors at this emulator: each API's URL and
        an accepted token, under the variables the connectors read (what ``make demo`` sets)."""
        pagerduty_token, github_token, gitlab_token = self._client_tokens
        return {
            pagerduty_resource.ENV_URL: self.pagerduty_url,
            pagerduty_resource.ENV_TOKEN: pagerduty_token,
            github_resource.ENV_URL: self.github_url,
            github_resource.ENV_TOKEN: github_token,
            gitlab_resource.ENV_URL: self.gitlab_url,
            gitlab_resource.ENV_TOKEN: gitlab_token,
        }

    def now(self) -> datetime:
        """The emulator clock: ``org.now``, or the wall clock when it is None."""
        return self.org.now if self.org.now is not None else datetime.now(UTC)

    def set_now(self, dt: datetime) -> None:
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        self.org.now = dt.astimezone(UTC)

    def advance(self, delta: timedelta) -> datetime:
        self.set_now(self.now() + delta)
        return self.now()

    def reindex(self) -> None:
        """Rebuild the lookup tables after changing the organisation's records in place."""
        self.pagerduty.reindex()
        self.github.reindex()
        self.gitlab.reindex()

    def stats(self) -> dict[str, Any]:
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        with self._stats.lock:
            self._stats.reset()

    def _github_info(self, token: str | None) -> dict[str, int]:
        with self._lock:
            return self._quota.info(token)

    # ------------------------------------------------------------------------------ request handling

    def _handle(self, h: _Handler) -> None:
        method = h.command
        split = urlsplit(h.path)
        path = split.path
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length > 0 else b""
        host = h.headers.get("Host") or f"{self.host}:{self.port}"
        scheme = "https" if self.tls else "http"
        service, api = "emulator", None
        for candidate in (self.pagerduty, self.github, self.gitlab):
            if path == candidate.prefix or path.startswith(candidate.prefix + "/"):
                service, api = candidate.service_name, candidate
                break
        if api is None:
            resp = self._emulator_route(method, path, body)
            self._write(h, resp, None)
            return
        req = Request(
            method=method,
            # GitLab names a project by its URL-encoded path (acme%2Fapi): it decodes the parts itself
            path=(path[len(api.prefix):] if api is self.gitlab else unquote(path[len(api.prefix):])) or "/",
            full_path=path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers=h.headers,
            body=body,
            base_url=f"{scheme}://{host}{api.prefix}",
        )
        route, params, _ = api.match(method, req.path)
        template = route.template if route else "(unmatched)"
        fault_name: str | None = None
        action: str | None = None
        self._stats.enter(service)
        try:
            if service == "pagerduty":
                resp, action, fault_name = self._serve_pagerduty(req, route, params)
            elif service == "gitlab":
                resp, action, fault_name = self._serve_gitlab(req, route, params)
            else:
                resp, action, fault_name = self._serve_github(req, route, params)
        except Exception:  # noqa: BLE001 - a bug must still answer
            if self.verbose:
                traceback.print_exc()
            payload = (INTERNAL_ERROR if service == "pagerduty" else {"message": "500 Internal Server Error"}
                       if service == "gitlab" else {"message": "Server Error"})
            resp = Response.json(500, payload)
        finally:
            self._stats.leave(service)
        # record first: a client holding the response must find it in the stats
        if action == "reset":
            self._stats.record(service, method, template, 0, 0, fault_name)
            self._reset_connection(h)
            return
        nbytes = len(resp.body) // 2 if action in ("truncate", "short_body") else (0 if resp.status == 304 else len(resp.body))
        self._stats.record(service, method, template, resp.status, nbytes, fault_name)
        self._write(h, resp, action)

    def _fault_response(self, service: str, rule: FaultRule) -> tuple[Response | None, str | None]:
        """Response (or transport action) for a transport-level fault."""
        kind = rule.kind
        if kind == "reset":
            return None, "reset"
        if kind == "html":
            page = (b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>"
                    b"<h1>Bad Gateway</h1><p>The proxy server received an invalid response from an upstream server.</p>"
                    b"</body></html>")
            return Response(200, page, content_type="text/html; charset=utf-8"), None
        if kind == "rate_limit_bare":
            return Response(429, b"", content_type=""), None
        if kind == "rate_limit":
            if service == "gitlab":
                return self._gitlab_limited(rule.seconds if rule.seconds is not None else 20), None
            if service == "pagerduty":
                limit = self.rate_limit_per_minute or 960
                reset = int(rule.seconds if rule.seconds is not None else 20)
                return Response.json(429, RATE_LIMIT_ERROR, [("ratelimit-limit", str(limit)), ("ratelimit-remaining", "0"),
                                                             ("ratelimit-reset", str(reset))]), None
            return self._github_limited(rule.status or 429, rule.seconds), None
        if kind == "gh_primary":
            return self._github_limited(rule.status or 403, rule.seconds), None
        if kind == "gh_secondary":
            headers = []
            if rule.seconds is not None:
                headers.append(("retry-after", str(int(rule.seconds))))
            payload = {"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
                                  "If you reach out to GitHub Support for help, please include the request ID.",
                       "documentation_url": GITHUB_RATE_DOCS + "#about-secondary-rate-limits", "status": str(rule.status or 403)}
            return Response.json(rule.status or 403, payload, headers), None
        if kind == "gh_not_accessible":
            return Response.json(403, {"message": "Resource not accessible by integration",
                                       "documentation_url": "https://docs.github.com/rest", "status": "403"},
                                 [("X-Accepted-GitHub-Permissions", "deployments=read; pull_requests=read")]), None
        # kind == "status" (and the default for anything else)
        status = rule.status or 500
        if service == "gitlab":
            reason = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout",
                      502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}.get(status, "Internal Server Error")
            return Response.json(status, {"message": f"{status} {reason}"}), None
        if service == "pagerduty":
            payload = {401: AUTH_ERROR, 404: NOT_FOUND, 408: TIMEOUT_ERROR, 429: RATE_LIMIT_ERROR,
                       403: {"error": {"message": "Access Denied", "code": 2010}}}.get(status, INTERNAL_ERROR)
            if 400 <= status < 500 and status not in (401, 403, 404, 408, 429):
                payload = {"error": {"message": "Invalid Input Provided", "code": 2001, "errors": ["Injected fault."]}}
        else:
            payload = {401: BAD_CREDENTIALS}.get(status) or {
                "message": "Server Error" if status >= 500 else "Request Timeout" if status == 408 else "Injected fault",
                "documentation_url": "https://docs.github.com/rest", "status": str(status)}
        return Response.json(status, payload), None

    def _github_limited(self, status: int, reset_in: float | None) -> Response:
        reset = int(time.time() + (reset_in if reset_in is not None else 60))
        return Response.json(status, {
            "message": "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID.",
            "documentation_url": GITHUB_RATE_DOCS + "#about-the-primary-rate-limit", "status": str(status),
        }, [("x-ratelimit-limit", str(self._quota.limit)), ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-used", str(self._quota.limit)), ("x-ratelimit-reset", str(reset)), ("x-ratelimit-resource", "core")])

    def _apply_faults(self, service: str, req: Request) -> tuple[Response | None, str | None, str | None]:
        delay = self.faults.latency_seconds(req.full_path)
        if delay > 0:
            self._stop.wait(delay)
        fired = self.faults.evaluate(service, req.method, req.full_path)
        if service == "github" and self.faults.github_max_page is not None:
            req.max_page = self.faults.github_max_page
        transport = None
        for rule in fired:
            if rule.kind in TRANSPORT_KINDS:
                if transport is None:
                    transport = rule
            else:
                req.data_faults.add(rule.kind)
        if transport is None:
            return None, None, (next(iter(req.data_faults)) if req.data_faults else None)
        if transport.kind == "hang":
            self._stop.wait(transport.seconds if transport.seconds is not None else 65.0)
            return None, None, "hang"
        if transport.kind in ("truncate", "short_body"):
            return None, transport.kind, transport.kind
        resp, action = self._fault_response(service, transport)
        return resp, action, transport.kind

    def _serve_pagerduty(self, req: Request, route: Any, params: dict[str, str]) -> tuple[Response, str | None, str | None]:
        request_id = [("X-Request-Id", str(uuid.uuid4()))]
        ended, action, fault = self._admit("pagerduty", self.pagerduty, self.pagerduty_tokens, req, request_id)
        if ended is not None:
            return ended, action, fault
        rl_headers: list[tuple[str, str]] = []
        if self.rate_limit_per_minute:
            allowed, remaining, reset = self._take(req.token or "", self.rate_limit_per_minute)
            rl_headers = [("ratelimit-limit", str(self.rate_limit_per_minute)), ("ratelimit-remaining", str(remaining)),
                          ("ratelimit-reset", str(reset))]
            if not allowed:
                return Response.json(429, RATE_LIMIT_ERROR, rl_headers + request_id), None, None
        resp = self._dispatch(route, req, params, Response.json(404, NOT_FOUND))
        resp.headers += rl_headers + request_id
        return resp, action, fault

    def _serve_github(self, req: Request, route: Any, params: dict[str, str]) -> tuple[Response, str | None, str | None]:
        request_id = [("X-GitHub-Request-Id", uuid.uuid4().hex[:20].upper())]
        if not req.headers.get("User-Agent"):
            return Response.json(403, {
                "message": "Request forbidden by administrative rules. Please make sure your request has a User-Agent header "
                           "(https://docs.github.com/rest/overview/resources-in-the-rest-api#user-agent-required).",
                "documentation_url": "https://docs.github.com/rest", "status": "403"}, request_id), None, None
        version = req.headers.get("X-GitHub-Api-Version")
        if version and version not in SUPPORTED_VERSIONS:
            return Response.json(400, {"message": f"Unsupported 'X-GitHub-Api-Version' header value: {version}.",
                                       "documentation_url": "https://docs.github.com/rest/about-the-rest-api/api-versions",
                                       "status": "400"}, request_id), None, None
        denied = self.github.check_auth(req, self.github_tokens)
        if denied is not None:
            denied.headers += request_id
            return denied, None, None
        fault_resp, action, fault = self._apply_faults("github", req)
        if fault_resp is not None or action == "reset":
            if fault_resp is not None and fault != "rate_limit_bare":
                if fault in ("gh_secondary", "gh_not_accessible", "status", "html", "truncate", "short_body"):
                    with self._lock:  # the primary quota is not exhausted: remaining > 0
                        info = self._quota.info(req.token)
                    fault_resp.headers += [("x-ratelimit-limit", str(info["limit"])), ("x-ratelimit-remaining", str(info["remaining"])),
                                           ("x-ratelimit-used", str(info["used"])), ("x-ratelimit-reset", str(info["reset"])),
                                           ("x-ratelimit-resource", "core")]
                fault_resp.headers += request_id
            return fault_resp or Response(0), action, fault
        if route is not None and route.template == "/graphql":
            # GraphQL spends points from its own budget and sends its own x-ratelimit-* headers
            # (resource graphql): see github_graphql.py.
            resp = route.handler(req, params)
            resp.headers += [("X-GitHub-Media-Type", "github.v4; format=json")] + request_id
            return resp, action, fault
        with self._lock:
            info = self._quota.info(req.token)
        is_rate_limit_route = route is not None and route.template == "/rate_limit"
        if info["remaining"] <= 0 and not is_rate_limit_route:
            resp = self._github_limited(self.github_exhausted_status, info["reset"] - time.time())
            resp.headers += request_id
            return resp, None, None
        if route is None:
            resp = Response.json(404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"})
        else:
            try:
                resp = route.handler(req, params)
            except ApiError as e:
                resp = e.response
        if resp.status == 200 and req.method == "GET":
            etag = 'W/"' + hashlib.sha256((req.token or "").encode() + b"\0" + resp.body).hexdigest() + '"'
            inm = req.headers.get("If-None-Match")
            if inm and any(t.strip() in (etag, etag[2:], "*") for t in inm.split(",")):
                resp = Response(304, b"", content_type="")
                resp.counts_quota = False
            resp.headers += [("ETag", etag), ("Cache-Control", "private, max-age=60, s-maxage=60"),
                             ("Vary", "Accept, Authorization, Cookie, X-GitHub-OTP")]
        with self._lock:
            if resp.counts_quota and not is_rate_limit_route:
                self._quota.spend(req.token)
            info = self._quota.info(req.token)
        resp.headers += [("x-ratelimit-limit", str(info["limit"])), ("x-ratelimit-remaining", str(info["remaining"])),
                         ("x-ratelimit-used", str(info["used"])), ("x-ratelimit-reset", str(info["reset"])),
                         ("x-ratelimit-resource", "core"), ("X-GitHub-Media-Type", "github.v3; format=json"),
                         ("X-GitHub-Api-Version-Selected", version or "2022-11-28")] + request_id
        return resp, action, fault

    def _take(self, key: str, per_minute: int) -> tuple[bool, int, int]:
        """One request from the per-minute bucket of ``key``: (allowed, remaining, reset seconds)."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _TokenBucket(per_minute)
            return bucket.take()

    def _gitlab_headers(self, limit: int, remaining: int, reset_in: float) -> list[tuple[str, str]]:
        reset = time.time() + reset_in
        return [("RateLimit-Name", "throttle_authenticated_api"), ("RateLimit-Limit", str(limit)),
                ("RateLimit-Observed", str(limit - remaining)), ("RateLimit-Remaining", str(remaining)),
                ("RateLimit-Reset", str(int(reset))),
                ("RateLimit-ResetTime", http_date(datetime.fromtimestamp(reset, UTC)))]

    def _gitlab_limited(self, retry_in: float) -> Response:
        """GitLab's 429 (Rack::Attack): a plain-text body, Retry-After and the RateLimit headers."""
        limit = self.gitlab_rate_limit_per_minute or 2000
        return Response(429, b"Retry later\n", self._gitlab_headers(limit, 0, retry_in) + [("Retry-After", str(int(retry_in)))],
                        content_type="text/plain")

    def _serve_gitlab(self, req: Request, route: Any, params: dict[str, str]) -> tuple[Response, str | None, str | None]:
        request_id = [("X-Request-Id", uuid.uuid4().hex[:26].upper())]
        ended, action, fault = self._admit("gitlab", self.gitlab, self.gitlab_tokens, req, request_id)
        if ended is not None:
            return ended, action, fault
        rl_headers: list[tuple[str, str]] = []
        if self.gitlab_rate_limit_per_minute:
            allowed, remaining, reset = self._take("gitlab:" + (req.token or ""), self.gitlab_rate_limit_per_minute)
            if not allowed:
                return self._gitlab_limited(reset), None, None
            rl_headers = self._gitlab_headers(self.gitlab_rate_limit_per_minute, remaining, reset)
        resp = self._dispatch(route, req, params, Response.json(404, {"error": "404 Not Found"}))
        resp.headers += rl_headers + request_id
        return resp, action, fault

    @staticmethod
    def _dispatch(route: Any, req: Request, params: dict[str, str], not_found: Response) -> Response:
        """The route's answer (its ApiError's response when it raises one), or ``not_found``."""
        if route is None:
            return not_found
        try:
            return route.handler(req, params)
        except ApiError as e:
            return e.response

    def _admit(self, service: str, api: Any, tokens: set[str], req: Request,
               request_id: list[tuple[str, str]]) -> tuple[Response | None, str | None, str | None]:
        """The token, then the faults: ``(response, action, fault)`` where the request ends here
        (a 401, a fault answered instead), else ``(None, action, fault)`` and it is served (the
        action, a cut body, applies to the answer; the fault may be a data fault)."""
        denied = api.check_auth(req, tokens)
        if denied is not None:
            denied.headers += request_id
            return denied, None, None
        fault_resp, action, fault = self._apply_faults(service, req)
        if fault_resp is not None or action == "reset":
            if fault_resp is not None and fault != "rate_limit_bare":
                fault_resp.headers += request_id
            return fault_resp or Response(0), action, fault
        return None, action, fault

    def _emulator_route(self, method: str, path: str, body: bytes) -> Response:
        if path in ("/__emulator/stats", "/__emulator/stats/") and method == "GET":
            return Response.json(200, self.stats())
        if path == "/__emulator/stats/reset" and method == "POST":
            self.reset_stats()
            return Response.json(200, {"ok": True})
        if path == "/__emulator/health":
            return Response.json(200, {"ok": True, "now": self.now().isoformat()})
        if path == "/__emulator/clock":
            if method == "POST":
                try:
                    payload = json.loads(body or b"{}")
                    if "now" in payload:
                        self.set_now(parse_time(payload["now"], UTC))
                    if "advance_seconds" in payload:
                        self.advance(timedelta(seconds=float(payload["advance_seconds"])))
                except (ValueError, TypeError):
                    return Response.json(400, {"error": "body must be {\"now\": ISO 8601} or {\"advance_seconds\": n}"})
            return Response.json(200, {"now": self.now().isoformat()})
        return Response.json(404, {"message": "Not Found: the emulator serves /pagerduty/..., /github/..., /gitlab/api/v4/... and /__emulator/stats"})

    def _write(self, h: _Handler, resp: Response, action: str | None) -> int:
        body = resp.body
        sent = body
        if action in ("truncate", "short_body"):
            sent = body[: len(body) // 2]
        try:
            h.send_response(resp.status)
            for k, v in resp.headers:
                h.send_header(k, v)
            if resp.status != 304:
                if resp.content_type:
                    h.send_header("Content-Type", resp.content_type)
                h.send_header("Content-Length", str(len(body) if action == "short_body" else len(sent)))
            h.end_headers()
            if resp.status != 304 and sent:
                h.wfile.write(sent)
            if action == "short_body":
                h.close_connection = True
        except (ConnectionError, OSError):
            h.close_connection = True
            return 0
        return len(sent)

    @staticmethod
    def _reset_connection(h: _Handler) -> None:
        try:
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        h.close_connection = True
        try:
            h.connection.close()
        except OSError:
            pass
