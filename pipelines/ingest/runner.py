"""The one ingest runner: read a stream (``contract.Stream``) from its API into ``raw.*``, for a night
or over a backfill range.

The envelope, written once for every stream of every connector:

1. the window: on a night, from the bookmark minus a rewind (``Read.window``); in a backfill, the
   range window by window (ACCOUNT streams) or repo by repo (PER_REPO streams);
2. the reader yields ``Part``s; each table's records are judged by that table's rules
   (``pipelines/records.py``), the good ones staged (``raw.Staging``), the rejects kept;
3. ONE transaction: the rejects into the quarantine, the staged records merged into raw, the
   stream's cross-record rules (``after_merge``), the bookmarks moved to the newest record time
   seen, and ``raw.sync_runs`` (requests, retries, records).

A crash or a kill at any point before that commit leaves the warehouse as it was; after it, as
the run left it. A night reads from the bookmarks it commits, so re-running a night with no new
data changes nothing. A backfill commits unit by unit (a killed backfill keeps the units it
finished and can simply be run again) and never moves a bookmark: the next night neither skips nor
re-reads anything because of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from pipelines import warehouse as wh
from pipelines.ingest.contract import ACCOUNT, FULL, Part, Read, Reject, Stream, StreamUnavailable
from pipelines.ingest.raw import Staging, UpsertResult, quarantine
from pipelines.records import split_valid

UTC = timezone.utc
Echo = Callable[[str], None]


@dataclass
class SyncSettings:
    history_days: int = 730  # how far back the first load reads
    rewind: timedelta = timedelta(hours=1)  # re-read this much before the bookmark
    production_environment: str = "production"
    # A deployment without a final status is re-read (record and statuses) every night for this
    # long after its creation (counted back from the bookmark, a data time); one still unfinished
    # after that is abandoned, and re-reading it for ever would make a night cost grow with history.
    unfinished_deployment_window: timedelta = timedelta(days=7)


@dataclass
class StreamResult:
    """What one raw table got from one run of its stream (the asset's metadata)."""

    source: str
    stream: str
    window_start: datetime | None = None
    window_end: datetime | None = None
    received: int = 0
    changed: int = 0
    quarantined: int = 0
    high_water_mark: datetime | None = None
    api: dict[str, int] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "records_received": self.received,
            "records_changed": self.changed,
            "records_quarantined": self.quarantined,
        }
        if self.window_start:
            out["window_start"] = self.window_start.isoformat()
        if self.window_end:
            out["window_end"] = self.window_end.isoformat()
        if self.high_water_mark:
            out["high_water_mark"] = self.high_water_mark.isoformat()
        out.update({f"api_{k}": v for k, v in self.api.items()})
        return out


# ------------------------------------------------------------------------------------- backfill range


def parse_when(text: str) -> datetime:
    """``YYYY-MM-DD`` (00:00 UTC that day) or an ISO 8601 time (UTC when it has no offset)."""
    text = text.strip()
    try:
        d = date.fromisoformat(text)
        return datetime(d.year, d.month, d.day, tzinfo=UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a date (YYYY-MM-DD) or an ISO 8601 time: {text!r}") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


@dataclass(frozen=True)
class BackfillRange:
    """``[since, until)`` to re-read, and the size of a window (a unit of an ACCOUNT stream)."""

    since: datetime
    until: datetime
    window: timedelta = timedelta(days=7)

    @classmethod
    def parse(cls, since: str, until: str | None, *, now: datetime, window_days: int = 7) -> "BackfillRange":
        a = parse_when(since)
        b = parse_when(until) if until else now
        if b > now:
            b = now
        if not a < b:
            raise ValueError(f"backfill range is empty: since {a.isoformat()} is not before until {b.isoformat()}")
        if window_days < 1:
            raise ValueError("window_days must be at least 1")
        return cls(a, b, timedelta(days=window_days))

    def windows(self) -> list[tuple[datetime, datetime]]:
        out, a = [], self.since
        while a < self.until:
            b = min(a + self.window, self.until)
            out.append((a, b))
            a = b
        return out


class Progress:
    """One line per finished unit: records so far, requests so far, ETA (from the share done)."""

    def __init__(self, label: str, total: int, echo: Echo, clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.total, self.echo, self.clock = label, max(1, total), echo, clock
        self.started = clock()
        self.done = 0
        self.records = 0

    def step(self, what: str, records: int, requests: int) -> str:
        self.done += 1
        self.records += records
        elapsed = self.clock() - self.started
        remaining = elapsed / self.done * (self.total - self.done)
        line = (f"{self.label} {self.done}/{self.total} {what}: {records} records "
                f"({self.records} so far), {requests} requests so far, "
                f"elapsed {_duration(elapsed)}, ETA {_duration(remaining)}")
        self.echo(line)
        return line


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


# ------------------------------------------------------------------------------------- the runner


def run_stream(con, client, stream: Stream, *, run_id: str, now: datetime, settings: SyncSettings,
               repos: Iterable[str] = (), backfill: BackfillRange | None = None,
               echo: Echo = print, batch_size: int | None = None) -> dict[str, StreamResult]:
    """Read ``stream`` into raw: a night (``backfill`` None) or a backfill of that range.
    Returns a result per raw table of the stream, keyed by table name. ``batch_size``: records a
    reader hands over at a time (default ``contract.BATCH_SIZE``)."""
    if backfill is not None and not stream.ranged:
        raise ValueError(f"{stream.source} {stream.name} cannot be backfilled: it has no range reader")
    run = _Run(con, client, stream, run_id=run_id, now=now, settings=settings)
    read = Read(con, client, stream, now, settings, repos=list(repos))
    if batch_size is not None:
        read.batch_size = batch_size
    if backfill is None:
        return run.night(read)
    return run.backfill(read, backfill, echo)


class _Run:
    """One run of one stream: its staging tables, rejects, bookmarks and request accounting."""

    def __init__(self, con, client, stream: Stream, *, run_id: str, now: datetime, settings: SyncSettings) -> None:
        self.con, self.client, self.stream = con, client, stream
        self.run_id, self.now, self.settings = run_id, now, settings
        self.before = self._api()
        self.received = {t.name: 0 for t in stream.tables}  # records the API sent, good or bad
        self.rejects: list[Reject] = []  # few: a clean run has none
        self.bookmarks: dict[str, datetime] = {}

    # -- request accounting: the client's counters for each table, before and after

    def _api(self) -> dict[str, dict[str, int]]:
        stats = getattr(self.client, "stats", {})
        return {t.name: dict(stats[t.api_stream].as_metadata()) if t.api_stream in stats else {}
                for t in self.stream.tables}

    def _api_delta(self) -> dict[str, dict[str, int]]:
        after = self._api()
        return {name: {k: v - self.before[name].get(k, 0) for k, v in now.items()} for name, now in after.items()}

    def _requests(self) -> int:
        return sum(d.get("requests", 0) for d in self._api_delta().values())

    # -- one part into the staging tables

    def _stage(self, part: Part, staging: dict[str, Staging]) -> int:
        """Judge, stage and bookmark one part; return how many records it brought."""
        main = self.stream.tables[0]
        n = 0
        for table in self.stream.tables:
            records = part.records.get(table.name, [])
            n += len(records)
            self.received[table.name] += len(records)
            good, bad = (records, []) if part.checked else split_valid(records, table.rules, now=self.now)
            self.rejects.extend(bad)
            staging[table.name].add(good, **part.extra)
            if table is main and part.bookmark and table.cursor:
                seen = self.bookmarks.get(part.bookmark)
                times = [t for t in map(table.cursor_of, good) if t is not None] + ([seen] if seen else [])
                if times:
                    self.bookmarks[part.bookmark] = max(times)
        self.rejects.extend(part.rejects)
        return n + (len(part.rejects) if part.checked else 0)

    def _commit(self, staging: dict[str, Staging], results: dict[str, StreamResult], *, bookmarks: bool) -> None:
        """The transaction: quarantine, merge, cross-record rules, bookmarks (on a night)."""
        stream, con = self.stream, self.con
        merged: dict[str, UpsertResult] = {}
        for r, rule, reason in self.rejects:
            quarantine(con, source=stream.source, stream=stream.name, record=r, rule=rule, reason=reason,
                       run_id=self.run_id)
        for table in stream.tables:
            merged[table.name] = staging[table.name].merge(run_id=self.run_id, fetched_at=self.now)
        swept = 0
        if stream.after_merge is not None:
            swept = stream.after_merge(con, self.run_id, {name: f"temp.{s.name}" for name, s in staging.items()})
        if bookmarks:
            for key, value in self.bookmarks.items():
                wh.set_high_water_mark(con, stream.source, key, value, self.run_id)
        main = results[stream.tables[0].name]
        main.quarantined += len(self.rejects) + swept
        for name, up in merged.items():
            results[name].received += up.received
            results[name].changed += up.changed
        self.rejects = []

    def _sync_runs(self, results: dict[str, StreamResult], *, suffix: str = "",
                   window: tuple[datetime | None, datetime | None] = (None, None)) -> None:
        for table in self.stream.tables:
            api = results[table.name].api
            wh.record_sync_run(self.con, run_id=self.run_id, source=self.stream.source,
                               stream=table.sync_stream + suffix, stats={**api, "records": self.received[table.name]},
                               window=window)

    def _results(self, start: datetime | None, end: datetime | None) -> dict[str, StreamResult]:
        return {t.name: StreamResult(self.stream.source, t.sync_stream, start, end) for t in self.stream.tables}

    def _staging(self, stack: ExitStack) -> dict[str, Staging]:
        return {t.name: stack.enter_context(Staging(self.con, t.name, extra=t.extra, fields=t.fields))
                for t in self.stream.tables}

    # -- the two modes

    def night(self, read: Read) -> dict[str, StreamResult]:
        stream = self.stream
        window: tuple[datetime | None, datetime | None] = (None, None)
        if stream.scope == ACCOUNT:
            read.since, read.high_water_mark = read.window(stream.name)
            window = (read.since, self.now)
        results = self._results(window[0], None if stream.scope == FULL else self.now)
        with ExitStack() as stack:
            staging = self._staging(stack)
            try:
                for part in stream.read(read):
                    self._stage(part, staging)
            except StreamUnavailable as exc:  # nothing written, no bookmark moved, no sync run
                for result in results.values():
                    result.api = {**({stream.availability: 0} if stream.availability else {}), **exc.metadata}
                return results
            # everything at once: a failure above or a kill before this commit leaves nothing
            with wh.transaction(self.con):
                self._commit(staging, results, bookmarks=True)
                for name, api in self._api_delta().items():
                    results[name].api = api
                self._sync_runs(results, window=window)
                if stream.availability:
                    for result in results.values():
                        result.api[stream.availability] = 1
        if stream.scope == ACCOUNT:
            results[stream.tables[0].name].high_water_mark = self.bookmarks.get(stream.name, read.high_water_mark)
        return results

    def backfill(self, read: Read, rng: BackfillRange, echo: Echo) -> dict[str, StreamResult]:
        stream = self.stream
        results = self._results(rng.since, rng.until)
        units: list[Any] = rng.windows() if stream.scope == ACCOUNT else list(read.repos)
        progress = Progress(f"backfill {stream.source} {stream.name}", len(units), echo)
        with ExitStack() as stack:
            staging = self._staging(stack)
            for unit in units:
                if stream.scope == ACCOUNT:
                    read.since, read.until = unit
                    label = f"{unit[0]:%Y-%m-%d %H:%M}..{unit[1]:%Y-%m-%d %H:%M}"
                else:
                    read.since, read.until = rng.since, rng.until
                    label = unit
                n = sum(self._stage(part, staging) for part in stream.read_range(read, unit))
                with wh.transaction(self.con):  # this unit, all or nothing
                    self._commit(staging, results, bookmarks=False)
                for s in staging.values():
                    s.clear()
                progress.step(label, n, self._requests())
        for name, api in self._api_delta().items():
            results[name].api = api
        with wh.transaction(self.con):
            self._sync_runs(results, suffix=":backfill", window=(rng.since, rng.until))
        return results
