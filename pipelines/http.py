"""The shared HTTP layer behind every connector's client.

One :class:`HttpClient` per source holds one pooled ``requests.Session`` and applies, on every call:

- a timeout (connect and read);
- bounded concurrency (a semaphore) under a token bucket of ``rate_per_minute`` requests, plus
  adaptive pacing when an ``x-ratelimit-remaining`` quota runs low;
- retries with capped exponential backoff and full jitter on 429, 5xx, 408, connection errors,
  timeouts and bodies that are not valid JSON (an HTML error page with status 200, cut-off JSON),
  honouring ``Retry-After`` (seconds or HTTP date), ``ratelimit-reset`` (delta seconds, on a 429)
  and ``x-ratelimit-reset`` (epoch seconds, when ``x-ratelimit-remaining`` is 0);
- a retry budget shared by the whole client (one run), after which :class:`RetryBudgetExceeded`;
- no retry at all for 401 and permission 403s: :class:`AuthError` names the environment variable.

The token lives only in the session's auth object. It never appears in exception messages, log
records or reprs; any text that comes back from the server is redacted before it is shown.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

from pipelines.errors import UserFacingError

logger = logging.getLogger("incident_metrics.sources")

_MAX_DETAIL_CHARS = 300
_PARSED_ATTR = "_incident_metrics_json"  # the body as parsed by _classify, on the Response
_NOT_PARSED = object()


def _is_utf8(resp: requests.Response) -> bool:
    """True when ``resp.json()`` would read the body as UTF-8 (as ``json.loads`` of the bytes does)."""
    encoding = (resp.encoding or "utf-8").lower().replace("_", "-")
    return encoding in ("utf-8", "utf8")


class ApiError(RuntimeError):
    """An API call failed for good. The message names the source, the endpoint path and the status."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        endpoint: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.source = source
        self.endpoint = endpoint
        self.status = status
        self.request_id = request_id

    def __reduce__(self):  # keep the exception picklable (keyword-only attributes)
        return (
            _rebuild_error,
            (type(self), str(self), self.source, self.endpoint, self.status, self.request_id),
        )


def _rebuild_error(cls, message, source, endpoint, status, request_id):
    return cls(message, source=source, endpoint=endpoint, status=status, request_id=request_id)


class AuthError(UserFacingError, ApiError):
    """401, or a 403 that is a permission problem rather than a rate limit. Never retried; the
    message names the environment variable to fix."""


class RetryBudgetExceeded(ApiError):
    """The client used up its retry budget for this run."""


@dataclass
class StreamStats:
    """Per-stream accounting, reported as asset metadata."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0  # 429s and rate-limit 403s
    not_modified: int = 0  # 304s (conditional requests)
    bytes: int = 0
    records: int = 0

    def as_metadata(self) -> dict[str, int]:
        return {k: int(v) for k, v in asdict(self).items()}


class _HeaderAuth(AuthBase):
    """Sets the Authorization header. Using an auth object (not session.headers) stops requests from
    replacing it with ~/.netrc credentials, and keeps the secret out of every repr."""

    def __init__(self, value: str, name: str = "Authorization") -> None:
        self._value = value
        self._name = name

    def __call__(self, r):
        r.headers[self._name] = self._value
        return r

    def __repr__(self) -> str:
        return "<_HeaderAuth ***>"


class TokenBucket:
    """Thread-safe token bucket: ``rate_per_minute`` requests a minute with a burst of one second's
    worth, so no 60-second window ever sees more than ``rate_per_minute + burst`` requests.

    Callers reserve a token (the balance may go negative) and sleep off their own debt outside the
    lock, so waiting threads queue fairly without holding the lock.
    """

    def __init__(
        self,
        rate_per_minute: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        self.rate_per_second = rate_per_minute / 60.0
        self.capacity = burst if burst is not None else max(1.0, self.rate_per_second)
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping if needed. Returns the time slept."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate_per_second)
            self._last = now
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate_per_second
        if wait > 0:
            self._sleep(wait)
        return wait


class _Retry(Exception):
    """Internal: this attempt failed in a retryable way."""

    def __init__(self, reason: str, *, wait: float | None = None, throttled: bool = False, min_wait: float = 0.0):
        super().__init__(reason)
        self.reason = reason
        self.wait = wait  # server-specified wait, if any
        self.throttled = throttled
        self.min_wait = min_wait


def _header_float(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return float(value.strip())
    except (TypeError, ValueError):
        return None


class HttpClient:
    """A pooled, retrying, rate-limited JSON client for one API source."""

    def __init__(
        self,
        base_url: str,
        *,
        auth_header: str,
        source: str,
        token_env_var: str,
        url_env_var: str,
        timeout: float = 30.0,
        max_retries: int = 6,
        retry_budget: int = 50,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        rate_per_minute: float | None = None,
        concurrency: int = 4,
        ca_bundle: str | None = None,
        user_agent: str = "incident-metrics/0.1",
        sleep: Callable[[float], None] = time.sleep,
        # Additions beyond the agreed interface (all optional):
        default_headers: Mapping[str, str] | None = None,
        auth_hint: str | None = None,
        auth_header_name: str = "Authorization",
        quota_headers: str = "x-ratelimit",
        delta_reset_header: str | None = "ratelimit-reset",
        request_id_header: str = "X-Request-Id",
        permissions_header: str | None = None,
        max_rate_limit_wait: float = 3900.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if not base_url:
            raise ValueError(f"{source}: empty base URL; set {url_env_var}")
        split = urlsplit(base_url)
        if split.scheme not in ("http", "https") or not split.netloc:
            raise ValueError(f"{source}: {url_env_var} must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._base_origin = (split.scheme, split.netloc)
        self._base_path = split.path.rstrip("/")
        self.source = source
        self.token_env_var = token_env_var
        self.url_env_var = url_env_var
        self.auth_hint = auth_hint
        # <quota_headers>-remaining / -limit / -reset (epoch seconds): the quota the server reports
        self.quota_headers = quota_headers
        # on a 429: a header giving the seconds to wait from now (PagerDuty's); None: the client has none
        self.delta_reset_header = delta_reset_header
        self.request_id_header = request_id_header  # the server's id of a request, quoted in errors
        self.permissions_header = permissions_header  # on a 403: the permissions the endpoint accepts
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_budget = retry_budget
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_rate_limit_wait = max_rate_limit_wait
        self.concurrency = max(1, int(concurrency))
        self._sleep = sleep
        self._clock = clock
        self._now = now
        self._jitter = jitter

        # Secrets to scrub from any text shown to humans: the whole header value and the bare token.
        self._secrets = _secret_forms(auth_header)

        self._session = requests.Session()
        adapter = HTTPAdapter(
            pool_connections=self.concurrency,
            pool_maxsize=max(self.concurrency, 10),
            max_retries=0,  # retries are ours, with our accounting
        )
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._session.auth = _HeaderAuth(auth_header, auth_header_name)
        self._session.headers["User-Agent"] = user_agent
        self._session.headers["Accept-Encoding"] = "gzip, deflate"
        for k, v in (default_headers or {}).items():
            self._session.headers[k] = v
        # ca_bundle wins; otherwise requests reads REQUESTS_CA_BUNDLE itself (trust_env). It is passed
        # per request because a session-level verify loses to the environment in requests.
        self._verify: str | bool | None = ca_bundle

        self._semaphore = threading.BoundedSemaphore(self.concurrency)
        self._bucket = (
            TokenBucket(rate_per_minute, clock=clock, sleep=sleep) if rate_per_minute else None
        )
        self._pace_lock = threading.Lock()
        self._pace_interval = 0.0  # seconds between requests while x-ratelimit-remaining is low
        self._next_slot = 0.0

        self._stats_lock = threading.Lock()
        self.stats: dict[str, StreamStats] = {}
        self._budget_lock = threading.Lock()
        self._retries_used = 0
        self._failures: dict[str, dict[str, int]] = {}  # endpoint -> reason -> count

    # ------------------------------------------------------------------ public API

    def get(
        self,
        path_or_url: str,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        *,
        stream: str,
        headers: Mapping[str, str] | None = None,
        expect_json: bool = True,
    ) -> requests.Response:
        """GET with retries. Returns a 2xx or 304 response whose JSON body (if any) is valid."""
        return self._request("GET", path_or_url, params=params, body=None, stream=stream,
                             headers=headers, expect_json=expect_json)

    def post_json(self, path: str, body: dict, *, stream: str) -> requests.Response:
        """POST a JSON body (used for read-only query endpoints) with the same retry rules."""
        return self._request("POST", path, params=None, body=body, stream=stream, headers=None,
                             expect_json=True)

    @staticmethod
    def json(resp: requests.Response) -> Any:
        """The JSON body of a response this client returned: the value parsed while checking it
        (no second parse of a large page), else ``resp.json()``."""
        parsed = getattr(resp, _PARSED_ATTR, _NOT_PARSED)
        return resp.json() if parsed is _NOT_PARSED else parsed

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> "HttpClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HttpClient(source={self.source!r}, base_url={self.base_url!r})"

    def stream_stats(self, stream: str) -> StreamStats:
        with self._stats_lock:
            return self.stats.setdefault(stream, StreamStats())

    def add_records(self, stream: str, n: int) -> None:
        with self._stats_lock:
            self.stats.setdefault(stream, StreamStats()).records += n

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def endpoint_of(self, path_or_url: str) -> str:
        """The path shown in messages: relative to the base URL, without the query string."""
        path = urlsplit(self._url(path_or_url)).path
        if self._base_path and path.startswith(self._base_path):
            path = path[len(self._base_path):] or "/"
        return self.redact(path)

    # ------------------------------------------------------------------ internals

    def _count(self, stream: str, **deltas: int) -> None:
        with self._stats_lock:
            s = self.stats.setdefault(stream, StreamStats())
            for k, v in deltas.items():
                setattr(s, k, getattr(s, k) + v)

    def _url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            split = urlsplit(path_or_url)
            if (split.scheme, split.netloc) != self._base_origin:
                # Never send the token to a host other than the configured one (e.g. a Link header).
                raise ApiError(
                    f"{self.source}: refusing to follow a URL on another host ({split.netloc}) than "
                    f"{self.url_env_var} ({self._base_origin[1]})",
                    source=self.source,
                    endpoint=split.path,
                )
            return path_or_url
        if not path_or_url.startswith("/"):
            path_or_url = "/" + path_or_url
        return self.base_url + path_or_url

    def _pace(self) -> None:
        if self._bucket is not None:
            self._bucket.acquire()
        with self._pace_lock:
            interval = self._pace_interval
            if interval <= 0:
                return
            now = self._clock()
            slot = max(self._next_slot, now)
            self._next_slot = slot + interval
        wait = slot - now
        if wait > 0:
            self._sleep(wait)

    def _observe_rate_headers(self, resp: requests.Response) -> None:
        """``x-ratelimit-remaining`` / ``-reset`` (or the client's ``quota_headers``): pace the
        remaining quota evenly until the reset once it runs low."""
        remaining = _header_float(resp.headers, f"{self.quota_headers}-remaining")
        reset = _header_float(resp.headers, f"{self.quota_headers}-reset")
        if remaining is None or reset is None:
            return
        limit = _header_float(resp.headers, f"{self.quota_headers}-limit") or 0.0
        low_watermark = max(10.0, 0.05 * limit)
        with self._pace_lock:
            if remaining > low_watermark:
                self._pace_interval = 0.0
                return
            seconds_left = max(0.0, reset - self._now())
            was_pacing = self._pace_interval > 0
            self._pace_interval = min(seconds_left / max(remaining, 1.0), self.max_rate_limit_wait)
            if not was_pacing:
                self._next_slot = max(self._next_slot, self._clock() + self._pace_interval)
            if remaining <= 0:
                # Nothing left: the next request waits for the reset.
                self._next_slot = max(self._next_slot, self._clock() + seconds_left)

    def _backoff(self, retry_number: int) -> float:
        ceiling = min(self.backoff_cap, self.backoff_base * (2 ** (retry_number - 1)))
        return self._jitter() * ceiling

    def _server_wait(self, resp: requests.Response) -> float | None:
        """Seconds the server asked us to wait, from the headers, or None."""
        h = resp.headers
        retry_after = h.get("Retry-After")
        if retry_after is not None:
            value = retry_after.strip()
            try:
                return max(0.0, float(value))
            except ValueError:
                try:
                    when = email.utils.parsedate_to_datetime(value)
                except (TypeError, ValueError):
                    when = None
                if when is not None:
                    return max(0.0, when.timestamp() - self._now())
        quota_remaining = _header_float(h, f"{self.quota_headers}-remaining")
        quota_reset = _header_float(h, f"{self.quota_headers}-reset")
        if quota_remaining is not None and quota_remaining <= 0 and quota_reset is not None:
            return max(0.0, quota_reset - self._now())
        delta_reset = _header_float(h, self.delta_reset_header) if self.delta_reset_header else None
        if delta_reset is not None and resp.status_code == 429:
            return max(0.0, delta_reset)
        return None

    def _request_id(self, resp: requests.Response | None) -> str | None:
        if resp is None:
            return None
        rid = resp.headers.get(self.request_id_header) or resp.headers.get("X-Request-Id")
        return self.redact(rid) if rid else None

    def _detail(self, resp: requests.Response) -> str:
        """The server's own error text, shortened and redacted."""
        try:
            payload = resp.json()
        except ValueError:
            payload = None
        parts: list[str] = []
        if isinstance(payload, dict):
            err = payload.get("error")
            if isinstance(err, dict):  # {"error": {"message", "code", "errors"}}
                if err.get("message"):
                    parts.append(str(err["message"]))
                if err.get("code") is not None:
                    parts.append(f"code {err['code']}")
                errors = err.get("errors")
                if errors:
                    parts.append("; ".join(str(e) for e in errors))
            if payload.get("message"):  # {"message", "errors"}
                parts.append(str(payload["message"]))
                errors = payload.get("errors")
                if isinstance(errors, list) and errors:
                    parts.append("; ".join(
                        str(e.get("message") or e) if isinstance(e, dict) else str(e) for e in errors
                    ))
        if not parts:
            text = resp.text.strip() if resp.content else ""
            if text:
                parts.append(" ".join(text.split()))
        detail = self.redact(": ".join(parts))
        if len(detail) > _MAX_DETAIL_CHARS:
            detail = detail[:_MAX_DETAIL_CHARS] + "…"
        return detail

    def _auth_error(self, resp: requests.Response, endpoint: str, method: str) -> AuthError:
        status = resp.status_code
        rid = self._request_id(resp)
        detail = self._detail(resp)
        if status == 401:
            hint = f" (and {self.url_env_var}: {self.auth_hint})" if self.auth_hint else f" (and {self.url_env_var})"
            msg = (
                f"{self.source} rejected the API token (HTTP 401) at {endpoint}: "
                f"check {self.token_env_var}{hint}."
            )
        else:
            needed = resp.headers.get(self.permissions_header) if self.permissions_header else None
            msg = (
                f"{self.source} refused access (HTTP {status}) at {endpoint}"
                + (f": {detail!r}" if detail else "")
                + f". The token in {self.token_env_var} lacks a permission this endpoint needs"
                + (f" (the endpoint accepts: {self.redact(needed)})" if needed else "")
                + "; grant it read access to this resource and re-run."
            )
        if rid:
            msg += f" [request id {rid}]"
        return AuthError(msg, source=self.source, endpoint=endpoint, status=status, request_id=rid)

    def _is_rate_limit(self, resp: requests.Response) -> bool:
        if resp.status_code == 429:
            return True
        if resp.status_code != 403:
            return False
        remaining = _header_float(resp.headers, f"{self.quota_headers}-remaining")
        if remaining is not None and remaining <= 0:
            return True
        return "rate limit" in self._detail(resp).lower()

    def _classify(self, resp: requests.Response, endpoint: str, method: str, expect_json: bool) -> None:
        """Return normally on success, raise _Retry for transient failures, ApiError otherwise."""
        status = resp.status_code
        if status == 304:
            return
        if 200 <= status < 300:
            if expect_json and status != 204 and resp.content:
                try:
                    parsed = json.loads(resp.content)
                except ValueError:
                    ctype = resp.headers.get("Content-Type", "?").split(";")[0]
                    head = resp.content[:64].lstrip().lower()
                    kind = "an HTML page" if head.startswith((b"<!doctype", b"<html")) or "html" in ctype \
                        else "truncated or invalid JSON"
                    raise _Retry(f"HTTP {status} with {kind} (Content-Type {ctype}, {len(resp.content)} bytes)")
                if _is_utf8(resp):  # what resp.json() would return: kept, so the body is parsed once
                    setattr(resp, _PARSED_ATTR, parsed)
            return
        if status == 401:
            raise self._auth_error(resp, endpoint, method)
        if status in (403, 429) and self._is_rate_limit(resp):
            detail = self._detail(resp)
            secondary = "secondary rate limit" in detail.lower()
            raise _Retry(
                f"HTTP {status} rate limited" + (f" ({detail})" if detail else ""),
                wait=self._server_wait(resp),
                throttled=True,
                # A "secondary rate limit" without Retry-After means "wait at least a minute".
                min_wait=60.0 if secondary else 0.0,
            )
        if status == 403:
            raise self._auth_error(resp, endpoint, method)
        if status == 408 or status >= 500:
            detail = self._detail(resp)
            raise _Retry(f"HTTP {status}" + (f" ({detail})" if detail else ""), wait=self._server_wait(resp))
        rid = self._request_id(resp)
        detail = self._detail(resp)
        msg = f"{self.source} {method} {endpoint} failed with HTTP {status}" + (f": {detail}" if detail else "")
        if rid:
            msg += f" [request id {rid}]"
        raise ApiError(msg, source=self.source, endpoint=endpoint, status=status, request_id=rid)

    def _spend_retry(self, endpoint: str, reason: str, method: str) -> None:
        with self._budget_lock:
            per = self._failures.setdefault(endpoint, {})
            key = reason.split(" (")[0]
            per[key] = per.get(key, 0) + 1
            if self._retries_used >= self.retry_budget:
                worst = sorted(
                    ((sum(r.values()), ep, r) for ep, r in self._failures.items()), reverse=True
                )[:3]
                summary = "; ".join(
                    f"{ep}: " + ", ".join(f"{n}x {why}" for why, n in sorted(r.items(), key=lambda kv: -kv[1]))
                    for _, ep, r in worst
                )
                raise RetryBudgetExceeded(
                    f"{self.source}: retry budget of {self.retry_budget} retries for this run is used up; "
                    f"{method} {endpoint} kept failing (last: {reason}). Failures by endpoint: {summary}.",
                    source=self.source,
                    endpoint=endpoint,
                )
            self._retries_used += 1

    def _request(self, method, path_or_url, *, params, body, stream, headers, expect_json) -> requests.Response:
        url = self._url(path_or_url)
        endpoint = self.endpoint_of(url)
        retries = 0
        while True:
            self._pace()
            resp: requests.Response | None = None
            try:
                with self._semaphore:
                    self._count(stream, requests=1)
                    kwargs: dict[str, Any] = {"params": params, "headers": headers, "timeout": self.timeout}
                    if body is not None:
                        kwargs["json"] = body
                    if self._verify is not None:
                        kwargs["verify"] = self._verify
                    resp = self._session.request(method, url, **kwargs)
                    resp.content  # read the whole body here: truncation surfaces now, inside the retry loop
                self._count(stream, bytes=len(resp.content or b""))
                if resp.status_code == 304:
                    self._count(stream, not_modified=1)
                if resp.status_code < 400:  # a rate-limited answer is waited out by the retry below
                    self._observe_rate_headers(resp)
                self._classify(resp, endpoint, method, expect_json)
                return resp
            except requests.exceptions.SSLError as exc:
                # A certificate problem does not go away by retrying.
                raise ApiError(
                    f"{self.source}: TLS verification failed for {endpoint} on {self._base_origin[1]} "
                    f"({type(exc).__name__}). If the server uses a private CA, point REQUESTS_CA_BUNDLE "
                    f"(or the client's ca_bundle) at its certificate bundle; check {self.url_env_var}.",
                    source=self.source,
                    endpoint=endpoint,
                ) from None
            except _Retry as failure:
                reason, server_wait, throttled, min_wait = failure.reason, failure.wait, failure.throttled, failure.min_wait
            except (requests.ConnectionError, requests.Timeout) as exc:
                # ConnectionError covers resets and refused connections, ChunkedEncodingError covers a
                # body cut off mid-stream, Timeout covers connect and read timeouts.
                reason, server_wait, throttled, min_wait = self._describe_exception(exc), None, False, 0.0
            except requests.exceptions.ChunkedEncodingError as exc:
                reason, server_wait, throttled, min_wait = self._describe_exception(exc), None, False, 0.0
            except requests.exceptions.ContentDecodingError as exc:
                reason, server_wait, throttled, min_wait = self._describe_exception(exc), None, False, 0.0

            retries += 1
            rid = self._request_id(resp)
            if throttled:
                self._count(stream, throttled=1)
            if retries > self.max_retries:
                raise ApiError(
                    f"{self.source} {method} {endpoint} failed after {retries} attempts; last error: {reason}"
                    + (f" [request id {rid}]" if rid else ""),
                    source=self.source,
                    endpoint=endpoint,
                    status=resp.status_code if resp is not None else None,
                    request_id=rid,
                )
            self._spend_retry(endpoint, reason, method)
            self._count(stream, retries=1)
            if server_wait is not None and server_wait > 0:
                # The server said how long (Retry-After, reset headers): that is the wait. The
                # "wait at least a minute" applies only when a secondary limit says nothing.
                delay = server_wait
            else:
                delay = max(self._backoff(retries), min_wait)
            if delay > self.max_rate_limit_wait:
                raise ApiError(
                    f"{self.source} {method} {endpoint}: the server asks to wait {delay:.0f}s "
                    f"(more than the {self.max_rate_limit_wait:.0f}s allowed); last error: {reason}",
                    source=self.source,
                    endpoint=endpoint,
                    status=resp.status_code if resp is not None else None,
                    request_id=rid,
                )
            logger.warning(
                "%s %s %s: %s%s; retry %d/%d in %.2fs",
                self.source, method, endpoint, reason,
                f" [request id {rid}]" if rid else "",
                retries, self.max_retries, delay,
            )
            if delay > 0:
                self._sleep(delay)

    def _describe_exception(self, exc: Exception) -> str:
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            kind = f"connect timeout after {self.timeout}s"
        elif isinstance(exc, requests.Timeout):
            kind = f"read timeout after {self.timeout}s"
        elif isinstance(exc, requests.exceptions.ChunkedEncodingError):
            kind = "response body cut off"
        elif isinstance(exc, requests.exceptions.ContentDecodingError):
            kind = "response body could not be decoded"
        elif "timed out" in str(exc).lower():
            kind = f"read timeout after {self.timeout}s"  # a stall mid-body surfaces as ConnectionError
        else:
            kind = "connection error"
        # The exception text holds host, port and path (no headers); keep it short and redacted.
        text = self.redact(str(exc))
        if len(text) > 160:
            text = text[:160] + "…"
        return f"{kind} ({type(exc).__name__}: {text})"


def _secret_forms(auth_header: str) -> list[str]:
    """The strings that must never be shown: the header value and the bare token in it."""
    forms = {auth_header.strip()}
    tail = auth_header.strip().split(" ")[-1]
    forms.add(tail)
    if "=" in tail:
        forms.add(tail.split("=", 1)[1])
    # Longest first so that a header value is replaced whole before its parts.
    return sorted((f for f in forms if len(f) >= 4), key=len, reverse=True)


class SourceClient:
    """What every API client shares: its ``HttpClient`` (``self._http``), per-stream accounting,
    ``close()`` and use as a context manager. The repr names the base URL, never the token."""

    _http: HttpClient

    @property
    def stats(self) -> dict[str, StreamStats]:
        return self._http.stats

    @property
    def http(self) -> HttpClient:
        return self._http

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._http.base_url!r})"
