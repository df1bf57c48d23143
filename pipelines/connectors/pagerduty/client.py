"""PagerDuty REST API v2 client: incidents, log entries, directory lists and raw analytics.

How the history endpoints (``/incidents``, ``/log_entries``) are read:

- the requested range is cut into creation-time windows of at most ``max_window_days`` (the API
  refuses ranges over 6 months); ``since``/``until`` always go out as UTC with an explicit ``Z``,
  together with ``time_zone=UTC`` (PagerDuty otherwise reads and renders times in the account's zone);
- the first request of each window asks ``total=true``. A window holding more than 10,000 records
  is cut into whole-second parts of about 8,000 records (``SPLIT_TARGET``), recursively, down to one
  second, so paging never reaches the ``offset+limit`` cap of 10,000 and nothing is skipped. The
  first page of a window that needs no split is used as data, so a window costs
  ``max(1, ceil(records / 100))`` requests plus one probe per window that had to be cut;
- windows are probed, cut and paged by ``concurrency`` threads (requests in flight at most; by
  default enough for the token bucket's rate, at least 4); each window pages sequentially;
- offsets advance by the number of records actually returned (not the echoed ``limit``), less any
  repeats of records already seen in the window (a repeat means the list shifted while we paged:
  re-reading from there avoids skipping the record pushed past the page end); paging stops on
  ``more=false``; an empty page that still says ``more=true`` is asked again (twice), then the call
  fails with an :class:`ApiError` rather than silently missing records;
- records are de-duplicated by ``id`` within their window (offset paging over changing data repeats
  rows) and, near window ends, across windows, so the iterator yields every record once;
- memory is bounded: pages reach the caller through a buffer of ``max_buffered_pages`` pages, and
  the threads wait while it is full, so the client holds a few dozen pages at most, never a window
  or a stream (records come page by page, in the order the pages arrive; within a window, in order).

Log entries come from the account-wide ``/log_entries`` feed with ``is_overview=true``: it keeps
the state changes the metrics need (trigger, acknowledge, unacknowledge, assign, delegate, escalate,
resolve) and drops the notification and annotation noise, which would multiply the page count.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Iterator
from urllib.parse import quote

from pipelines.http import ApiError, HttpClient, SourceClient

logger = logging.getLogger("incident_metrics.sources")

DEFAULT_PAGERDUTY_API_URL = "https://api.pagerduty.com"
PAGE_LIMIT = 100  # the API's maximum page size
OFFSET_CAP = 10_000  # offset + limit may not exceed this
ANALYTICS_PAGE_LIMIT = 1000
MAX_WINDOW_DAYS = 180  # "the maximum range is 6 months"
MIN_WINDOW = timedelta(seconds=1)
SPLIT_TARGET = 8_000  # a window over the cap is cut into parts of about this many records (margin for unevenness)
DEFAULT_CONCURRENCY = 4
MAX_CONCURRENCY = 32
# Concurrency by default: enough requests in flight to keep the token bucket busy while each takes
# up to this long (Little's law: in flight = rate x time per request); at least DEFAULT_CONCURRENCY.
SECONDS_PER_REQUEST = 0.25
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
    """A creation-time window of a history endpoint, as one worker pages it."""

    since: datetime
    until: datetime
    first: _Page | None = None  # the answer to total=true at offset 0, once asked (until handed on)
    total: int | None = None  # the total that answer reported
    seen: set | None = None  # ids taken from this window so far (shared by the parts of a re-split)
    group: "_SplitGroup | None" = None  # the split this window is a part of

    def edges(self) -> frozenset[str]:
        """The minutes at this window's ends (``YYYY-MM-DDTHH:MM``, UTC). Whether PagerDuty's
        since/until are inclusive, and to what granularity, is undocumented, so a record near an end
        may come back in the neighbouring window too: those records (a handful a window) are
        de-duplicated across windows; every other record can only come from its own window."""
        minute = timedelta(minutes=1)
        return frozenset(t.strftime("%Y-%m-%dT%H:%M") for t in
                         (self.since - minute, self.since, self.until - timedelta(seconds=1), self.until))


class _SplitGroup:
    """The parts one window over the offset cap was cut into, probed independently. A server that
    ignores the finer since/until answers every part with the parent's full total; only when all
    parts have answered is that known, so the parent's first page is kept until a part answers with
    less (proof that the bounds are honoured), or until the group resolves."""

    def __init__(self, parent: _Window, parts: int) -> None:
        self.parent = parent
        self.lock = threading.Lock()
        self.waiting = parts  # parts that have not answered yet
        self.honoured = False  # some part answered with less than the parent's total
        self.undecided: list[_Window] = []  # parts that answered with the full total


class _PageBuffer:
    """A bounded FIFO of pages between the paging threads and the consumer. ``put`` blocks while
    ``maxsize`` pages wait (backpressure: a slow consumer slows the paging, never grows memory);
    control messages (done, error) go past the bound. ``close`` drops everything and releases
    blocked producers."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = max(1, maxsize)
        self._items: deque = deque()
        self._cv = threading.Condition()
        self.closed = False

    def put(self, item) -> bool:
        with self._cv:
            while len(self._items) >= self.maxsize and not self.closed:
                self._cv.wait()
            if self.closed:
                return False
            self._items.append(item)
            self._cv.notify_all()
            return True

    def put_control(self, item, *, first: bool = False) -> None:
        with self._cv:
            if not self.closed:
                (self._items.appendleft if first else self._items.append)(item)
                self._cv.notify_all()

    def get(self):
        with self._cv:
            while not self._items:
                self._cv.wait()
            item = self._items.popleft()
            self._cv.notify_all()
            return item

    def close(self) -> None:
        with self._cv:
            self.closed = True
            self._items.clear()
            self._cv.notify_all()


def default_concurrency(rate_per_minute: float | None) -> int:
    """Requests in flight for a token bucket of ``rate_per_minute``: four for PagerDuty's own limit
    (900 of 960 a minute), more for a raised one, so that the bucket, not the latency, sets the pace."""
    if not rate_per_minute:
        return DEFAULT_CONCURRENCY
    wanted = math.ceil(rate_per_minute / 60.0 * SECONDS_PER_REQUEST)
    return max(DEFAULT_CONCURRENCY, min(MAX_CONCURRENCY, wanted))


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
        concurrency: int | None = None,
        timeout: float = 30.0,
        max_window_days: int = MAX_WINDOW_DAYS,
        max_buffered_pages: int | None = None,
        sleep=time.sleep,
        **http_options: Any,
    ) -> None:
        """``concurrency``: requests in flight at most (default: :func:`default_concurrency` of the rate).
        ``max_buffered_pages``: pages of a history call waiting for the consumer at most (default four
        per request in flight); the paging threads wait while it is full.
        ``http_options`` go to :class:`HttpClient` (max_retries, retry_budget, backoff_base, clock...)."""
        if not token:
            raise ValueError("PagerDuty API token is empty: set PAGERDUTY_API_TOKEN")
        if not 1 <= max_window_days <= MAX_WINDOW_DAYS:
            raise ValueError(f"max_window_days must be between 1 and {MAX_WINDOW_DAYS} (the API caps ranges at 6 months)")
        self.max_window = timedelta(days=max_window_days)
        self.concurrency = max(1, int(concurrency)) if concurrency else default_concurrency(rate_per_minute)
        self.max_buffered_pages = max(1, int(max_buffered_pages or 4 * self.concurrency))
        self.buffered_pages_peak: dict[str, int] = {}  # per stream: most pages a history call held at once
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
            raise ApiError("PagerDuty answered GET /incidents/{id} without an 'incident' object",
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
        payload = self._http.json(resp)
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
    def _take_new(records: list[dict], seen: set, path: str, offset: int) -> tuple[list[dict], int]:
        """The records not seen before in this window, and how far to move the offset: the records
        actually returned, less those already seen. A repeat means the list shifted under us (offset
        paging over live data); re-reading from just after the new records costs a few repeats
        (dropped here) instead of skipping the records the shift pushed past the page end. A page of
        nothing but repeats still advances."""
        new: list[dict] = []
        for rec in records:
            rid = rec.get("id") if isinstance(rec, dict) else None
            if rid is None or rid not in seen:
                new.append(rec)
                if rid is not None:
                    seen.add(rid)
        if new and len(new) < len(records):
            logger.info("PagerDuty GET %s: %d repeated record(s) at offset %d; the list shifted while paging",
                        path, len(records) - len(new), offset)
        return new, len(new) or len(records)

    def _history(self, path: str, key: str, stream: str, since: datetime, until: datetime,
                 extra: Params) -> Iterator[dict]:
        a, b = self._check_range(since, until)  # validate eagerly, before the first next()
        return self._history_gen(path, key, stream, a, b, extra)

    def _history_gen(self, path, key, stream, a, b, extra) -> Iterator[dict]:
        reader = _HistoryReader(self, path, key, stream, extra)
        try:
            yield from reader.records(self._chunks(a, b))
        finally:
            self.buffered_pages_peak[stream] = max(self.buffered_pages_peak.get(stream, 0), reader.peak_held)

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


_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _HistoryReader:
    """One call of a history endpoint (``/incidents`` or ``/log_entries`` over a range).

    Work is a FIFO of small tasks run by ``client.concurrency`` threads: probe a window (its first
    page, asked with ``total=true``), then either page it to the end (sequentially: the shift-aware
    offsets depend on the previous page) or cut it into parts and queue their probes. No task ever
    waits for another, so the threads cannot deadlock. Every page goes through a bounded
    :class:`_PageBuffer` to the consumer (the generator), which yields its records: the client holds
    at most ``max_buffered_pages`` waiting pages, plus one page per thread and the one being
    yielded, whatever the size of the range or the speed of the consumer.
    """

    def __init__(self, client: "PagerDutyClient", path: str, key: str, stream: str, extra: Params) -> None:
        self.client = client
        self.path, self.key, self.stream, self.extra = path, key, stream, extra
        self.tasks: deque = deque()
        self.cv = threading.Condition()
        self.busy = 0  # tasks being run
        self.buffer = _PageBuffer(client.max_buffered_pages)
        self.stop = threading.Event()
        self._held_lock = threading.Lock()
        self.held = 0  # pages fetched and not yet yielded or dropped
        self.peak_held = 0

    # ------------------------------------------------------------------ bookkeeping

    def _hold(self, n: int) -> None:
        with self._held_lock:
            self.held += n
            if self.held > self.peak_held:
                self.peak_held = self.held

    def _add(self, fn, *args) -> None:
        with self.cv:
            self.tasks.append((fn, args))
            self.cv.notify()

    def _fail(self, exc: BaseException) -> None:
        self.stop.set()
        self.buffer.put_control(_Failure(exc), first=True)
        with self.cv:
            self.cv.notify_all()

    def _work(self) -> None:
        try:
            while True:
                with self.cv:
                    while not self.tasks and self.busy and not self.stop.is_set():
                        self.cv.wait()
                    if self.stop.is_set() or not self.tasks:
                        return  # nothing queued and nothing running that could queue more
                    fn, args = self.tasks.popleft()
                    self.busy += 1
                try:
                    fn(*args)
                finally:
                    with self.cv:
                        self.busy -= 1
                        self.cv.notify_all()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            self._fail(exc)

    # ------------------------------------------------------------------ the consumer side

    def records(self, chunks: list[tuple[datetime, datetime]]) -> Iterator[dict]:
        if not chunks:
            return
        first = _Window(*chunks[0])
        # The first probe goes alone, in the caller's thread: a rejected token stops the run after one request.
        self._probe(first)
        self.tasks.append((self._place, (first,)))
        for ca, cb in chunks[1:]:
            self.tasks.append((self._probe_task, (_Window(ca, cb),)))
        threads = [threading.Thread(target=self._work, name=f"pd-{self.stream}-{i}", daemon=True)
                   for i in range(self.client.concurrency)]
        def last_out() -> None:  # tells the consumer once every thread has returned
            for t in threads:
                t.join()
            self.buffer.put_control(_DONE)

        for t in threads:
            t.start()
        closer = threading.Thread(target=last_out, name=f"pd-{self.stream}-join", daemon=True)
        closer.start()
        edge_seen: set[Any] = set()
        http = self.client._http
        try:
            while True:
                item = self.buffer.get()
                if item is _DONE:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                page, edges = item
                for rec in page:
                    if isinstance(rec, dict):
                        created = rec.get("created_at")
                        if isinstance(created, str) and created[:16] in edges:
                            rid = rec.get("id")
                            if rid is not None:
                                if rid in edge_seen:
                                    continue  # the neighbouring window had it too
                                edge_seen.add(rid)
                    http.add_records(self.stream, 1)
                    yield rec
                self._hold(-1)
        finally:
            self.stop.set()
            self.buffer.close()
            with self.cv:
                self.cv.notify_all()
            closer.join()

    # ------------------------------------------------------------------ tasks

    def _probe(self, w: _Window) -> None:
        c = self.client
        w.first = c._fetch(self.path, self.key, self.stream, c._window_params(w.since, w.until, self.extra), 0,
                           total=True)
        w.total = w.first.total
        self._hold(1)

    def _probe_task(self, w: _Window) -> None:
        if self.stop.is_set():
            return
        self._probe(w)
        self._place(w)

    def _drop(self, w: _Window) -> None:
        if w.first is not None:
            w.first = None
            self._hold(-1)

    def _place(self, w: _Window) -> None:
        """A probed window: page it, cut it into parts, or (a part whose split is in doubt) wait."""
        if w.group is not None and not self._settle(w):
            return
        self._page_or_split(w)

    def _page_or_split(self, w: _Window) -> None:
        total = w.total
        if total is None or total <= OFFSET_CAP:
            if total is None and w.first is not None and w.first.more:
                logger.warning("PagerDuty GET %s: no 'total' in the answer to total=true for %s..%s; paging without it",
                               self.path, iso_utc(w.since), iso_utc(w.until))
            self._page(w)
        elif w.until - w.since <= MIN_WINDOW:
            logger.error(
                "PagerDuty GET %s: %d records created in the one-second window %s..%s; the API cannot page past "
                "%d, so %d of them are out of reach", self.path, total, iso_utc(w.since), iso_utc(w.until),
                OFFSET_CAP, total - OFFSET_CAP,
            )
            self._page(w)
        else:
            self._split(w)

    def _settle(self, w: _Window) -> bool:
        """True when this part of a split may go on now. A part answering with less than the parent's
        total proves the server honours the finer bounds; one answering with the full total is in
        doubt until then: if every part answers with the full total, the server ignores since/until
        and the parent is paged as it is (its first page was kept for that)."""
        g = w.group
        assert g is not None
        parent = g.parent
        to_split: list[_Window] = []
        fallback = False
        with g.lock:
            g.waiting -= 1
            if w.total != parent.total:
                if not g.honoured:
                    g.honoured = True
                    to_split, g.undecided = g.undecided, []
                go = True
            elif g.honoured:
                go = True
            else:
                g.undecided.append(w)
                go = False
                fallback = g.waiting == 0
        if g.honoured and parent.first is not None:
            with g.lock:
                self._drop(parent)
        for u in to_split:  # they hold the full total, more than the cap: cut them further
            self._split(u)
        if not go:
            self._drop(w)
        if fallback:
            logger.warning(
                "PagerDuty GET %s: every part of %s..%s reports the full total (%d): the server ignores the finer "
                "since/until; paging the window as is", self.path, iso_utc(parent.since), iso_utc(parent.until),
                parent.total,
            )
            self._page(parent)
        return go

    def _split(self, w: _Window) -> None:
        """Cut a window over the cap into whole-second parts of about SPLIT_TARGET records each and
        queue their probes (each probe's page is that part's first page of data)."""
        total = int(w.total or 0)
        seconds = int((w.until - w.since).total_seconds())
        k = max(2, min(seconds, math.ceil(total / SPLIT_TARGET)))
        bounds = [w.since + timedelta(seconds=seconds * i // k) for i in range(k)] + [w.until]
        logger.info("PagerDuty GET %s: %d records in %s..%s exceed the offset cap; split in %d",
                    self.path, total, iso_utc(w.since), iso_utc(w.until), k)
        group = _SplitGroup(w, k)
        if w.group is not None or w.first is None:
            self._drop(w)  # no fallback to page it as is from here: its own group settled that
            group.honoured = True
        for a, b in zip(bounds, bounds[1:]):
            self._add(self._probe_task, _Window(a, b, seen=w.seen, group=group))

    def _emit(self, records: list[dict], edges: frozenset[str]) -> bool:
        """Hand a page to the consumer (blocking while the buffer is full). False once the call is over."""
        if not records:
            self._hold(-1)
            return not self.stop.is_set()
        if self.buffer.put((records, edges)):
            return True
        self._hold(-1)
        return False

    def _page(self, w: _Window) -> None:
        """Page one window from its first page to ``more=false`` (see the module docstring)."""
        c, path = self.client, self.path
        params = c._window_params(w.since, w.until, self.extra)
        seen = w.seen if w.seen is not None else set()
        w.seen = seen
        edges = w.edges()
        page = w.first
        assert page is not None
        w.first = None  # from here the page belongs to the buffer
        new, _ = c._take_new(page.records, seen, path, 0)
        offset = len(page.records)
        if not self._emit(new, edges):
            return
        empty_streak = 0
        while page.more:
            if self.stop.is_set():
                return
            if not page.records:
                empty_streak += 1
                if empty_streak > EMPTY_PAGE_RETRIES:
                    raise c._empty_page_error(path, offset, w)
                logger.warning("PagerDuty GET %s: empty page with more=true at offset %d (%s..%s); asking again",
                               path, offset, iso_utc(w.since), iso_utc(w.until))
                c._http._count(self.stream, retries=1)
            else:
                empty_streak = 0
            limit = min(PAGE_LIMIT, OFFSET_CAP - offset)
            if limit <= 0:
                if w.until - w.since > MIN_WINDOW:
                    # The window grew past the cap while we paged it: probe it again and cut it; its
                    # parts share this window's ids, so what was already taken is not taken twice.
                    logger.warning("PagerDuty GET %s: %s..%s grew past %d records while paging; re-splitting",
                                   path, iso_utc(w.since), iso_utc(w.until), OFFSET_CAP)
                    self._add(self._probe_task, _Window(w.since, w.until, seen=seen))
                else:
                    logger.error("PagerDuty GET %s: stopped at the offset cap of %d in %s..%s",
                                 path, OFFSET_CAP, iso_utc(w.since), iso_utc(w.until))
                return
            page = c._fetch(path, self.key, self.stream, params, offset, limit=limit)
            self._hold(1)
            new, advance = c._take_new(page.records, seen, path, offset)
            if page.records:
                offset += advance
            if not self._emit(new, edges):
                return
