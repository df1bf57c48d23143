"""PagerDuty REST API v2 client: incidents, log entries, directory lists and raw analytics.

How the history endpoints (``/incidents``, ``/log_entries``) are read:

- the requested range is cut into creation-time windows of at most ``max_window_days`` (the API
  refuses ranges over 6 months); ``since``/``until`` always go out as UTC with an explicit ``Z``,
  together with ``time_zone=UTC`` (PagerDuty otherwise reads and renders times in the account's zone);
- the first request of each window asks ``total=true``. A window holding more than 10,000 records
  is split in two, recursively, down to one second, so paging never reaches the ``offset+limit``
  cap of 10,000 and nothing is skipped. The first page of a window that needs no split is used as
  data, so a window costs ``max(1, ceil(records / 100))`` requests plus one probe per split;
- the chunks are planned concurrently and the windows paged concurrently (``concurrency`` requests
  in flight at most, default 4, under the token bucket); each window pages sequentially;
- offsets advance by the number of records actually returned (not the echoed ``limit``), less any
  repeats of records already seen in the window (a repeat means the list shifted while we paged:
  re-reading from there avoids skipping the record pushed past the page end); paging stops on
  ``more=false``; an empty page that still says ``more=true`` is asked again (twice), then the call
  fails with an :class:`ApiError` rather than silently missing records;
- records are de-duplicated by ``id`` within a call (offset paging over changing data repeats rows),
  and windows are paged concurrently (bounded) while the iterator yields every record once.

Log entries come from the account-wide ``/log_entries`` feed with ``is_overview=true``: it keeps
the state changes the metrics need (trigger, acknowledge, unacknowledge, assign, delegate, escalate,
resolve) and drops the notification and annotation noise, which would multiply the page count.
"""

from __future__ import annotations

import logging
import math
import time
from urllib.parse import quote
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Iterator

from .http import ApiError, HttpClient, SourceClient

logger = logging.getLogger("incident_metrics.sources")

DEFAULT_PAGERDUTY_API_URL = "https://api.pagerduty.com"
PAGE_LIMIT = 100  # the API's maximum page size
OFFSET_CAP = 10_000  # offset + limit may not exceed this
ANALYTICS_PAGE_LIMIT = 1000
MAX_WINDOW_DAYS = 180  # "the maximum range is 6 months"
MIN_WINDOW = timedelta(seconds=1)
EMPTY_PAGE_RETRIES = 2  # an empty page that says more=true is asked again this many times
ACCEPT = "application/vnd.pagerduty+json;version=2"

Params = list[tuple[str, Any]]


@dataclass
class _Page:
    records: list[dict]
    more: bool
    total: int | None


@dataclass
class _Window:
    since: datetime
    until: datetime
    first: _Page  # the first page (asked with total=true)


def _require_aware(name: str, value: datetime) -> None:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{name}={value.isoformat()} is a naive datetime; pass a timezone-aware one "
            "(e.g. datetime(..., tzinfo=timezone.utc)): PagerDuty would read it in the account's time zone"
        )


def iso_utc(value: datetime) -> str:
    """ISO 8601 in UTC with an explicit ``Z``, whole seconds."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _floor_second(value: datetime) -> datetime:
    return value.astimezone(timezone.utc).replace(microsecond=0)


def _ceil_second(value: datetime) -> datetime:
    v = value.astimezone(timezone.utc)
    return v.replace(microsecond=0) + timedelta(seconds=1) if v.microsecond else v


class PagerDutyClient(SourceClient):
    """Read-only PagerDuty client. Each method is a generator over records, counted per stream."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        oauth: bool = False,
        ca_bundle: str | None = None,
        rate_per_minute: float | None = 900,
        concurrency: int = 4,
        timeout: float = 30.0,
        max_window_days: int = MAX_WINDOW_DAYS,
        sleep=time.sleep,
        **http_options: Any,
    ) -> None:
        """``http_options`` go to :class:`HttpClient` (max_retries, retry_budget, backoff_base, clock...)."""
        if not token:
            raise ValueError("PagerDuty API token is empty: set PAGERDUTY_API_TOKEN")
        if not 1 <= max_window_days <= MAX_WINDOW_DAYS:
            raise ValueError(f"max_window_days must be between 1 and {MAX_WINDOW_DAYS} (the API caps ranges at 6 months)")
        self.max_window = timedelta(days=max_window_days)
        self.concurrency = max(1, int(concurrency))
        self._http = HttpClient(
            base_url or DEFAULT_PAGERDUTY_API_URL,
            auth_header=f"Bearer {token}" if oauth else f"Token token={token}",
            source="PagerDuty",
            token_env_var="PAGERDUTY_API_TOKEN",
            url_env_var="PAGERDUTY_API_URL",
            auth_hint="EU accounts use https://api.eu.pagerduty.com",
            timeout=timeout,
            rate_per_minute=rate_per_minute,
            concurrency=self.concurrency,
            ca_bundle=ca_bundle,
            sleep=sleep,
            default_headers={"Accept": ACCEPT},
            **http_options,
        )

    # ------------------------------------------------------------------ public API

    def teams(self) -> Iterator[dict]:
        return self._list("/teams", "teams", "teams")

    def services(self) -> Iterator[dict]:
        return self._list("/services", "services", "services")

    def users(self) -> Iterator[dict]:
        return self._list("/users", "users", "users")

    def incidents(self, since: datetime, until: datetime) -> Iterator[dict]:
        """Incidents created in ``[since, until)``, each once."""
        return self._history("/incidents", "incidents", "incidents", since, until,
                             [("sort_by", "created_at:asc")])

    def incident(self, incident_id: str) -> dict:
        """One incident by id (``GET /incidents/{id}``), e.g. to re-read an incident still open at the last run."""
        resp = self._http.get(f"/incidents/{quote(str(incident_id), safe='')}", [("time_zone", "UTC")],
                              stream="incidents")
        record = resp.json().get("incident")
        if not isinstance(record, dict):
            raise ApiError(f"PagerDuty answered GET /incidents/{{id}} without an 'incident' object",
                           source="PagerDuty", endpoint="/incidents/{id}", status=resp.status_code)
        self._http.add_records("incidents", 1)
        return record

    def log_entries(self, since: datetime, until: datetime) -> Iterator[dict]:
        """Account-wide log entries created in ``[since, until)`` (overview entries only), each once."""
        return self._history("/log_entries", "log_entries", "log_entries", since, until,
                             [("is_overview", "true")])

    def analytics_incidents(self, since: datetime, until: datetime) -> Iterator[dict]:
        """``POST /analytics/raw/incidents`` for incidents created in ``[since, until)``, 1,000 a page.

        Timestamps in these records carry no offset; they are UTC because ``time_zone`` is sent.
        """
        a, b = self._check_range(since, until)
        return self._analytics(a, b)

    # ------------------------------------------------------------------ internals

    def _check_range(self, since: datetime, until: datetime) -> tuple[datetime, datetime]:
        _require_aware("since", since)
        _require_aware("until", until)
        if since > until:
            raise ValueError(f"since ({iso_utc(since)}) is after until ({iso_utc(until)})")
        return _floor_second(since), _ceil_second(until)

    def _chunks(self, a: datetime, b: datetime) -> list[tuple[datetime, datetime]]:
        out = []
        while a < b:
            end = min(a + self.max_window, b)
            out.append((a, end))
            a = end
        return out

    def _fetch(self, path: str, key: str, stream: str, params: Params, offset: int,
               limit: int = PAGE_LIMIT, total: bool = False) -> _Page:
        query = list(params) + [("limit", limit), ("offset", offset)]
        if total:
            query.append(("total", "true"))
        resp = self._http.get(path, query, stream=stream)
        payload = resp.json()
        records = payload.get(key) if isinstance(payload, dict) else None
        if not isinstance(records, list):
            raise ApiError(
                f"PagerDuty GET {path} returned a body without a '{key}' list (keys: "
                f"{sorted(payload)[:8] if isinstance(payload, dict) else type(payload).__name__})",
                source="PagerDuty", endpoint=path, status=resp.status_code,
            )
        more = payload.get("more")
        if more is None:
            logger.warning("PagerDuty GET %s (offset %d): response has no 'more' field; treating it as the last page",
                           path, offset)
        raw_total = payload.get("total")
        return _Page(records=records, more=bool(more), total=int(raw_total) if raw_total is not None else None)

    def _window_params(self, a: datetime, b: datetime, extra: Params) -> Params:
        return [("since", iso_utc(a)), ("until", iso_utc(b)), ("time_zone", "UTC")] + list(extra)

    def _probe(self, path, key, stream, a, b, extra) -> _Page:
        return self._fetch(path, key, stream, self._window_params(a, b, extra), 0, total=True)

    def _plan(self, path, key, stream, a, b, extra, first: _Page | None = None) -> list[_Window]:
        """Windows covering [a, b) that each hold at most OFFSET_CAP records (probing as needed)."""
        if first is None:
            first = self._probe(path, key, stream, a, b, extra)
        total = first.total
        if total is None or total <= OFFSET_CAP:
            if total is None and first.more:
                logger.warning("PagerDuty GET %s: no 'total' in the answer to total=true for %s..%s; paging without it",
                               path, iso_utc(a), iso_utc(b))
            return [_Window(a, b, first)]
        if b - a <= MIN_WINDOW:
            logger.error(
                "PagerDuty GET %s: %d records created in the one-second window %s..%s; the API cannot page past "
                "%d, so %d of them are out of reach", path, total, iso_utc(a), iso_utc(b), OFFSET_CAP, total - OFFSET_CAP,
            )
            return [_Window(a, b, first)]
        mid = a + timedelta(seconds=math.floor((b - a).total_seconds() / 2))
        left = self._probe(path, key, stream, a, mid, extra)
        right = self._probe(path, key, stream, mid, b, extra)
        if left.total == total and right.total == total:
            logger.warning(
                "PagerDuty GET %s: both halves of %s..%s report the full total (%d): the server ignores the finer "
                "since/until; paging the window as is", path, iso_utc(a), iso_utc(b), total,
            )
            return [_Window(a, b, first)]
        logger.info("PagerDuty GET %s: %d records in %s..%s exceed the offset cap; split at %s",
                    path, total, iso_utc(a), iso_utc(b), iso_utc(mid))
        return (self._plan(path, key, stream, a, mid, extra, left)
                + self._plan(path, key, stream, mid, b, extra, right))

    def _page_rest(self, path, key, stream, window: _Window, extra: Params) -> list[dict]:
        """The records of a window after its first page."""
        params = self._window_params(window.since, window.until, extra)
        page = window.first
        offset = len(page.records)
        seen = {r.get("id") for r in page.records if isinstance(r, dict)}
        out: list[dict] = []
        empty_streak = 0
        while page.more:
            if not page.records:
                empty_streak += 1
                if empty_streak > EMPTY_PAGE_RETRIES:
                    raise self._empty_page_error(path, offset, window)
                logger.warning("PagerDuty GET %s: empty page with more=true at offset %d (%s..%s); asking again",
                               path, offset, iso_utc(window.since), iso_utc(window.until))
                self._http._count(stream, retries=1)
                page = self._fetch(path, key, stream, params, offset, limit=min(PAGE_LIMIT, OFFSET_CAP - offset))
                out.extend(page.records)
                offset += self._advance(page.records, seen, path, offset) if page.records else 0
                continue
            empty_streak = 0
            limit = min(PAGE_LIMIT, OFFSET_CAP - offset)
            if limit <= 0:
                if window.until - window.since > MIN_WINDOW:
                    # The window grew past the cap while we paged it: re-plan it (duplicates are dropped later).
                    logger.warning("PagerDuty GET %s: %s..%s grew past %d records while paging; re-splitting",
                                   path, iso_utc(window.since), iso_utc(window.until), OFFSET_CAP)
                    for sub in self._plan(path, key, stream, window.since, window.until, extra):
                        out.extend(sub.first.records)
                        out.extend(self._page_rest(path, key, stream, sub, extra))
                else:
                    logger.error("PagerDuty GET %s: stopped at the offset cap of %d in %s..%s",
                                 path, OFFSET_CAP, iso_utc(window.since), iso_utc(window.until))
                break
            page = self._fetch(path, key, stream, params, offset, limit=limit)
            out.extend(page.records)
            offset += self._advance(page.records, seen, path, offset)
        return out

    @staticmethod
    def _empty_page_error(path: str, offset: int, window: "_Window | None") -> ApiError:
        where = f" for {iso_utc(window.since)}..{iso_utc(window.until)}" if window is not None else ""
        return ApiError(
            f"PagerDuty GET {path} answered an empty page with more=true at offset {offset}{where} "
            f"{EMPTY_PAGE_RETRIES + 1} times in a row; stopping rather than silently missing records. "
            "Re-run later; if it persists, report it to PagerDuty support.",
            source="PagerDuty", endpoint=path,
        )

    @staticmethod
    def _advance(records: list[dict], seen: set, path: str, offset: int) -> int:
        """How far to move the offset: the records actually returned, less those already seen in this
        window. A repeat means the list shifted under us (offset paging over live data); re-reading
        from just after the new records costs a few repeats (dropped later) instead of skipping the
        records the shift pushed past the page end. A page of nothing but repeats still advances."""
        new = 0
        for rec in records:
            rid = rec.get("id") if isinstance(rec, dict) else None
            if rid is None or rid not in seen:
                new += 1
                seen.add(rid)
        if new and new < len(records):
            logger.info("PagerDuty GET %s: %d repeated record(s) at offset %d; the list shifted while paging",
                        path, len(records) - new, offset)
        return new or len(records)

    def _history(self, path: str, key: str, stream: str, since: datetime, until: datetime,
                 extra: Params) -> Iterator[dict]:
        a, b = self._check_range(since, until)  # validate eagerly, before the first next()
        return self._history_gen(path, key, stream, a, b, extra)

    def _history_gen(self, path, key, stream, a, b, extra) -> Iterator[dict]:
        """Plan every six-month chunk concurrently (the ``total`` probes), then page every window
        concurrently (each window sequentially, so the shift-aware offsets hold), and yield the
        records in chunk and window order. At most ``concurrency`` requests are in flight, under the
        token bucket. Tasks never wait on other tasks, so the bounded pool cannot deadlock."""
        seen: set[Any] = set()
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=f"pd-{stream}")
        pending: list[Future] = []
        try:
            plans: list[Future] = []
            for i, (ca, cb) in enumerate(self._chunks(a, b)):
                plan = pool.submit(self._plan, path, key, stream, ca, cb, extra)
                plans.append(plan)
                pending.append(plan)
                if i == 0:
                    plan.result()  # the first probe goes alone: a rejected token stops the run after one request
            work: list[tuple[_Window, Future | None]] = []
            for plan in plans:
                for w in plan.result():
                    fut = pool.submit(self._page_rest, path, key, stream, w, extra) if w.first.more else None
                    if fut is not None:
                        pending.append(fut)
                    work.append((w, fut))
            for w, fut in work:
                yield from self._unique(w.first.records, seen, stream)
                if fut is not None:
                    yield from self._unique(fut.result(), seen, stream)
        finally:
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def _unique(self, records: Iterable[dict], seen: set, stream: str) -> Iterator[dict]:
        for rec in records:
            rid = rec.get("id") if isinstance(rec, dict) else None
            if rid is not None:
                if rid in seen:
                    continue
                seen.add(rid)
            self._http.add_records(stream, 1)
            yield rec

    def _list(self, path: str, key: str, stream: str, extra: Params = ()) -> Iterator[dict]:
        seen: set[Any] = set()
        offset = 0
        while True:
            limit = min(PAGE_LIMIT, OFFSET_CAP - offset)
            if limit <= 0:
                raise ApiError(
                    f"PagerDuty GET {path}: more than {OFFSET_CAP} {key}; the API cannot page past offset {OFFSET_CAP}",
                    source="PagerDuty", endpoint=path,
                )
            page = self._fetch(path, key, stream, list(extra), offset, limit=limit)
            for _ in range(EMPTY_PAGE_RETRIES):
                if page.records or not page.more:
                    break
                logger.warning("PagerDuty GET %s: empty page with more=true at offset %d; asking again", path, offset)
                self._http._count(stream, retries=1)
                page = self._fetch(path, key, stream, list(extra), offset, limit=limit)
            yield from self._unique(page.records, seen, stream)
            if not page.more:
                return
            if not page.records:
                raise self._empty_page_error(path, offset, None)
            offset += len(page.records)

    def _analytics(self, a: datetime, b: datetime) -> Iterator[dict]:
        path, stream = "/analytics/raw/incidents", "analytics"
        seen: set[Any] = set()
        for ca, cb in self._chunks(a, b):
            body: dict[str, Any] = {
                "filters": {"created_at_start": iso_utc(ca), "created_at_end": iso_utc(cb)},
                "limit": ANALYTICS_PAGE_LIMIT,
                "order": "asc",
                "order_by": "created_at",
                "time_zone": "Etc/UTC",
            }
            while True:
                resp = self._http.post_json(path, body, stream=stream)
                payload = resp.json()
                data = payload.get("data") if isinstance(payload, dict) else None
                if not isinstance(data, list):
                    raise ApiError(f"PagerDuty POST {path} returned a body without a 'data' list",
                                   source="PagerDuty", endpoint=path, status=resp.status_code)
                yield from self._unique(data, seen, stream)
                if not payload.get("more"):
                    break
                last = payload.get("last") or (data[-1].get("id") if data else None)
                if not data or not last or last == body.get("starting_after"):
                    logger.warning("PagerDuty POST %s: more=true but no progress (%d records, last=%r); stopping",
                                   path, len(data), last)
                    break
                body = {**body, "starting_after": last}
