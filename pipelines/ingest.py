"""Ingestion: read each stream from its API and upsert it into ``raw.*``, incrementally.

Each function here is one stream's sync step; Dagster assets (``assets/ingest_*.py``) only wire
resources to them. A step reads from the bookmark (minus a rewind that re-reads the edge), writes
the records and advances the bookmark in ONE DuckDB transaction, so a crash at any point leaves
either the old state or the new one, never half of a window.

Bookmarks are data times (the newest record seen), not wall-clock times, so re-running a night
with no new data changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import duckdb

from pipelines import warehouse as wh
from pipelines.ownership import Ownership
from pipelines.records import parse_time, quarantine_inconsistent, split_valid
from pipelines.sources.http import ApiError, AuthError

PAGERDUTY = "pagerduty"
GITHUB = "github"
FINAL_DEPLOYMENT_STATES = frozenset({"success", "failure", "error", "inactive"})


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


def _stats_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after}


def _stream_stats(client, stream: str) -> dict[str, int]:
    s = client.stats.get(stream)
    return dict(s.as_metadata()) if s is not None else {}


def quarantine(con, *, source: str, stream: str, record: Any, rule: str, reason: str, run_id: str) -> None:
    record_id = record.get("id") if isinstance(record, dict) else None
    payload = json.dumps(record, sort_keys=True, default=str)[:100_000]
    rid = None if record_id is None else str(record_id)
    # The same bad record seen again on a later run is not counted twice.
    con.execute(
        """
        insert into quarantine.rejected_records
        select ?, ?, ?, ?, ?, ?, ?, ?
        where not exists (
            select 1 from quarantine.rejected_records
            where source = ? and stream = ? and record_id is not distinct from ? and rule = ? and payload = ?)
        """,
        [source, stream, rid, rule, reason, payload, run_id, datetime.now(timezone.utc),
         source, stream, rid, rule, payload],
    )


# ------------------------------------------------------------------------------ staging for raw

# The history streams (PagerDuty incidents and log entries, GitHub deployments, statuses and pull
# requests) are staged first, batch by batch, in a temporary table outside any transaction (each
# insert commits at once, and under STAGING_MEMORY_LIMIT DuckDB spills it to its temporary
# directory), then merged into raw in ONE transaction with the quarantine and the bookmarks. A crash
# before that commit leaves nothing of the run: the temporary table dies with the connection.
# Two things this avoids, both measured on the large benchmark organisation:
# - inside ONE DuckDB transaction every row written by many small inserts stays in memory until
#   the commit (DuckDB 2.0's transaction-local storage held about 3 KB per log entry: 4 GB for a
#   two-year backfill), whatever the batch size;
# - many small committed writes (one transaction per GitHub repo) make DuckDB checkpoint every
#   16 MB of WAL, and a checkpoint's cost grows with the table (about 8 s at 400k pull requests):
#   the pull-request load grew quadratically, 16 minutes for 582 repos. Staged, the same rows go
#   in with one bulk insert and one checkpoint.
STAGING_MEMORY_LIMIT = "1GB"


class _Staging:
    """One stream's records on their way to ``raw.<table>`` (see above). Use as a context manager;
    :meth:`merge` runs inside the caller's transaction and does what ``wh.upsert_raw`` does for
    one batch: upsert by id (the last version of an id wins), rows rewritten only when the payload
    differs. ``extra`` names constant columns given per :meth:`add` (GitHub's ``repo``)."""

    def __init__(self, con, table: str, *, extra: tuple[str, ...] = (), log_entry_fields: bool = False) -> None:
        self.con, self.table = con, table
        self.name = f"staging_{table}"
        self.extra = extra
        self.rows = 0
        self._limit = wh.memory_limit(con, STAGING_MEMORY_LIMIT)
        # Log entries: also each entry's type, incident and time, read here in passing, so the
        # acknowledgement rule (records.quarantine_inconsistent) need not parse this run's JSON again.
        self.log_entry_fields = log_entry_fields

    def __enter__(self) -> "_Staging":
        con = self.con
        self._limit.__enter__()
        fields = "".join(f", {c} varchar" for c in self.extra)
        fields += ", kind varchar, incident_id varchar, created_at timestamptz" if self.log_entry_fields else ""
        # payload as JSON: DuckDB parses it here, batch by batch while pages arrive, not in the merge
        con.execute(f"create or replace temp table {self.name} (seq bigint, id varchar, payload json{fields})")
        return self

    def __exit__(self, *exc) -> None:
        con = self.con
        try:
            con.execute(f"drop table if exists temp.{self.name}")
        finally:
            self._limit.__exit__(*exc)

    def add(self, records: list[dict], **extra: str) -> None:
        if sorted(extra) != sorted(self.extra):
            raise TypeError(f"staging {self.table} takes the columns {self.extra}, got {tuple(extra)}")
        if not records:
            return
        import pandas as pd

        frame = pd.DataFrame({
            "seq": range(self.rows, self.rows + len(records)),
            "id": [str(r["id"]) for r in records],
            "payload": [json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False) for r in records],
        })
        for column, value in extra.items():
            frame[column] = value
        if self.log_entry_fields:  # split_log_entries let only entries with a time and an incident through
            frame["kind"] = [r.get("type") if isinstance(r.get("type"), str) else None for r in records]
            frame["incident_id"] = [str(r["incident"]["id"]) for r in records]
            frame["created_at"] = pd.to_datetime([parse_time(r["created_at"]) for r in records], utc=True)
        self.rows += len(records)
        wh.register(self.con, "incoming_staged", frame)
        try:
            self.con.execute(f"insert into temp.{self.name} by name select * from incoming_staged")
        finally:
            self.con.unregister("incoming_staged")

    def merge(self, *, run_id: str, fetched_at: datetime) -> wh.UpsertResult:
        con, table = self.con, self.table
        if not self.rows:
            return wh.UpsertResult()
        received = con.execute(f"select count(distinct id) from temp.{self.name}").fetchone()[0]
        # The client yields each record once, so the ids are unique; if one came twice, its last
        # version wins (the window costs a sort of the whole stream, hence only then).
        columns = ["id", *self.extra, "payload"]
        latest = (f"temp.{self.name}" if received == self.rows else
                  f"(select {', '.join(columns)} from temp.{self.name} "
                  "qualify row_number() over (partition by id order by seq desc) = 1)")
        count = f"select count(*) from raw.{table} where run_id = ?"
        before = con.execute(count, [run_id]).fetchone()[0]
        con.execute(
            f"""
            update raw.{table} as t
            set payload = s.payload, fetched_at = ?, run_id = ?{''.join(f', {c} = s.{c}' for c in self.extra)}
            from {latest} as s
            where t.id = s.id and t.payload::varchar <> s.payload::varchar
            """,
            [fetched_at, run_id],
        )
        con.execute(
            f"""
            insert into raw.{table} ({', '.join(columns)}, fetched_at, run_id)
            select {', '.join(f's.{c}' for c in columns)}, ?, ? from {latest} as s
            where not exists (select 1 from raw.{table} as t where t.id = s.id)
            """,
            [fetched_at, run_id],
        )
        after = con.execute(count, [run_id]).fetchone()[0]
        return wh.UpsertResult(received=int(received), changed=int(after - before))


_END = object()


def _fetch_in_order(items: list, fetch: Callable[[Any], Any], workers: int):
    """``(item, fetch(item))`` for each item, in order, with up to ``workers`` fetches running at
    once in threads and at most ``2 * workers`` results waiting, so memory stays bounded. The caller
    (the DuckDB writes) stays in its own thread. A fetch that raises ends the iteration with its
    exception, once the fetches in flight have finished (the queued ones are cancelled)."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, int(workers or 1))
    if workers == 1 or len(items) <= 1:
        for item in items:
            yield item, fetch(item)
        return
    import threading

    failed = threading.Event()

    def guarded(item: Any) -> Any:
        if failed.is_set():  # an earlier fetch failed the run: ask nothing more (never consumed)
            return None
        try:
            return fetch(item)
        except BaseException:
            failed.set()
            raise

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest-fetch")
    pending: deque = deque()
    queue = iter(items)
    try:
        for item in queue:
            pending.append((item, pool.submit(guarded, item)))
            if len(pending) >= 2 * workers:
                break
        while pending:
            item, future = pending.popleft()
            following = next(queue, _END)
            if following is not _END:
                pending.append((following, pool.submit(guarded, following)))
            yield item, future.result()  # raises the fetch's exception, after the finally below
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------------------- PagerDuty


def sync_pagerduty_directory(con, client, *, stream: str, run_id: str, now: datetime) -> StreamResult:
    """Teams or services: small, no change filter in the API, so read in full every run."""
    fetch: Callable[[], Iterable[dict]] = {"teams": client.teams, "services": client.services}[stream]
    before = _stream_stats(client, stream)
    records = list(fetch())
    result = StreamResult(PAGERDUTY, stream)
    good = [r for r in records if isinstance(r, dict) and r.get("id")]
    with wh.transaction(con):
        for r in records:
            if not (isinstance(r, dict) and r.get("id")):
                quarantine(con, source=PAGERDUTY, stream=stream, record=r, rule="missing_id",
                           reason="the record has no id", run_id=run_id)
                result.quarantined += 1
        up = wh.upsert_raw(con, f"pagerduty_{stream}", good, run_id=run_id, fetched_at=now)
        result.api = _stats_delta(before, _stream_stats(client, stream))
        wh.record_sync_run(con, run_id=run_id, source=PAGERDUTY, stream=stream, stats={**result.api, "records": len(records)})
    result.received, result.changed = up.received, up.changed
    return result


def _window(con, source: str, stream: str, now: datetime, settings: SyncSettings) -> tuple[datetime, datetime | None]:
    hwm = wh.high_water_mark(con, source, stream)
    since = (hwm - settings.rewind) if hwm else now - timedelta(days=settings.history_days)
    return since, hwm


def sync_pagerduty_incidents(con, client, *, run_id: str, now: datetime, settings: SyncSettings,
                             batch_size: int = 5_000) -> StreamResult:
    """Incidents created since the bookmark (minus the rewind), plus every incident still open.

    The API filters incidents by creation time only, so an incident that was open at the last run
    and resolved since would otherwise never be re-read: those are fetched one by one, after the
    list. Incidents are staged ``batch_size`` at a time and written in ONE transaction at the end
    (see ``_Staging``), as log entries are: memory stays bounded on a long backfill, and a failure
    or a kill anywhere leaves nothing of this run behind."""
    since, hwm = _window(con, PAGERDUTY, "incidents", now, settings)
    before = _stream_stats(client, "incidents")
    result = StreamResult(PAGERDUTY, "incidents", since, now)
    # Open at the last run and created before this window: the list below cannot bring them back.
    still_open = {
        row[0]
        for row in con.execute(
            "select id from raw.pagerduty_incidents where payload ->> 'status' <> 'resolved' "
            "and cast(payload ->> 'created_at' as timestamptz) < ?",
            [since],
        ).fetchall()
    }
    new_hwm, n_records = hwm, 0
    rejects: list[tuple[Any, str, str]] = []  # few: a clean run has none
    with _Staging(con, "pagerduty_incidents") as staging:

        def write(batch: list[dict]) -> None:
            nonlocal new_hwm
            good, bad = split_valid(batch, "created_at")
            rejects.extend(bad)
            staging.add(good)
            new_hwm = max([new_hwm] * (new_hwm is not None) + [parse_time(r["created_at"]) for r in good],
                          default=None)

        batch: list[dict] = []

        def add(record: dict) -> None:
            nonlocal batch, n_records
            batch.append(record)
            n_records += 1
            if len(batch) >= batch_size:
                write(batch)
                batch = []

        for record in client.incidents(since, now):
            if isinstance(record, dict):
                still_open.discard(record.get("id"))
            add(record)
        # GET /incidents/{id} for each, up to client.concurrency at once: a few hundred a night on
        # the large benchmark organisation (sequential, they took 25 s of a 35 s night)
        for _, record in _fetch_in_order(sorted(still_open), client.incident, getattr(client, "concurrency", 1)):
            add(record)
        write(batch)
        with wh.transaction(con):
            for r, rule, reason in rejects:
                quarantine(con, source=PAGERDUTY, stream="incidents", record=r, rule=rule, reason=reason,
                           run_id=run_id)
            up = staging.merge(run_id=run_id, fetched_at=now)
            quarantine_inconsistent(con, run_id=run_id)  # acks outside their incident (records.py)
            if new_hwm is not None:
                wh.set_high_water_mark(con, PAGERDUTY, "incidents", new_hwm, run_id)
            result.api = _stats_delta(before, _stream_stats(client, "incidents"))
            wh.record_sync_run(con, run_id=run_id, source=PAGERDUTY, stream="incidents",
                               stats={**result.api, "records": n_records}, window=(since, now))
    result.received, result.changed, result.quarantined = up.received, up.changed, len(rejects)
    result.high_water_mark = new_hwm
    return result


def split_log_entries(records: list[dict]) -> tuple[list[dict], list[tuple[dict, str, str]]]:
    """Log entries that can be stored (an id, a time, and the incident they belong to), and the rejects."""
    good, bad = split_valid(records, "created_at")
    attributable = []
    for r in good:
        if isinstance(r.get("incident"), dict) and r["incident"].get("id"):
            attributable.append(r)
        else:
            bad.append((r, "missing_incident", "the log entry does not name its incident"))
    return attributable, bad


def sync_pagerduty_log_entries(con, client, *, run_id: str, now: datetime, settings: SyncSettings,
                               batch_size: int = 5_000) -> StreamResult:
    """The account-wide log-entry feed by time window: every ack, resolve and reassignment since
    the bookmark, one request per 100 entries (never one request per incident).

    Entries are staged ``batch_size`` at a time and written in ONE transaction at the end (see
    ``_Staging``), so memory stays bounded (a two-year backfill holds a million entries) and a
    failure or a kill anywhere still leaves nothing of this run behind."""
    since, hwm = _window(con, PAGERDUTY, "log_entries", now, settings)
    before = _stream_stats(client, "log_entries")
    result = StreamResult(PAGERDUTY, "log_entries", since, now)
    new_hwm, n_records = hwm, 0
    rejects: list[tuple[Any, str, str]] = []  # few: a clean run has none
    with _Staging(con, "pagerduty_log_entries", log_entry_fields=True) as staging:

        def write(batch: list[dict]) -> None:
            nonlocal new_hwm
            # Embedded full incidents (include[]=incidents) are not stored: raw keeps the entry as sent.
            attributable, bad = split_log_entries(batch)
            rejects.extend(bad)
            staging.add(attributable)
            new_hwm = max([new_hwm] * (new_hwm is not None) + [parse_time(r["created_at"]) for r in attributable],
                          default=None)

        batch: list[dict] = []
        for record in client.log_entries(since, now):
            batch.append(record)
            n_records += 1
            if len(batch) >= batch_size:
                write(batch)
                batch = []
        write(batch)
        with wh.transaction(con):
            for r, rule, reason in rejects:
                quarantine(con, source=PAGERDUTY, stream="log_entries", record=r, rule=rule, reason=reason,
                           run_id=run_id)
            up = staging.merge(run_id=run_id, fetched_at=now)
            # acks outside their incident (records.py); this run's entries as staged, not parsed again
            swept = quarantine_inconsistent(con, run_id=run_id, staged_entries=f"temp.{staging.name}")
            if new_hwm is not None:
                wh.set_high_water_mark(con, PAGERDUTY, "log_entries", new_hwm, run_id)
            result.api = _stats_delta(before, _stream_stats(client, "log_entries"))
            wh.record_sync_run(con, run_id=run_id, source=PAGERDUTY, stream="log_entries",
                               stats={**result.api, "records": n_records}, window=(since, now))
    result.received, result.changed, result.quarantined = up.received, up.changed, len(rejects) + swept
    result.high_water_mark = new_hwm
    return result


# ------------------------------------------------------------------------------------- GitHub


def is_one_repo_problem(exc: ApiError) -> bool:
    """A repo the token cannot see (404) or page through (422): quarantined, and the other repos
    load. A rejected token (401, 403: AuthError) or an unreachable or failing API (no status, 5xx)
    is everyone's problem and fails the run."""
    return not isinstance(exc, AuthError) and exc.status is not None and exc.status < 500



def sync_github_deployments(con, client, repos: list[str], *, run_id: str, now: datetime,
                            settings: SyncSettings) -> tuple[StreamResult, StreamResult]:
    """Deployments of each repo, newest first until the bookmark; statuses only for deployments
    that are new or whose latest status was not final at the last run.

    A deployment that was not final at the last run (``in_progress`` tonight, ``success``
    tomorrow) and was created within ``settings.unfinished_deployment_window`` of the bookmark is
    re-read: its statuses, and its record too (GitHub moves its ``updated_at`` with each status),
    by reading the newest-first list a little further back, down to the oldest such deployment.

    ``client.deployments_api`` picks the API: ``graphql`` (the default) reads 100 deployments with
    their statuses a request on a first load, and on a night (a repo with a bookmark) the newest
    BATCH_FIRST of BATCH_REPOS repos in one query, then further pages only for a repo with more new
    ones; ``rest`` lists deployments 100 a request and then asks each wanted deployment for its
    statuses (GitHub has no bulk endpoint). Up to ``client.concurrency`` reads run at once in threads;
    the writes stay in this thread: staged repo by repo, then merged in one transaction (``_Staging``).
    """
    deployments_result = StreamResult(GITHUB, "deployments", window_end=now)
    statuses_result = StreamResult(GITHUB, "deployment_statuses", window_end=now)
    before_d, before_s = _stream_stats(client, "deployments"), _stream_stats(client, "deployment_statuses")
    plans = {}
    for repo in repos:  # the bookmarks, read here: the DuckDB connection stays in this thread
        since, hwm = _window(con, GITHUB, f"deployments:{repo}", now, settings)
        unfinished = _unfinished_deployments(con, repo, hwm - settings.unfinished_deployment_window) if hwm else {}
        plans[repo] = (since, hwm, unfinished)
    graphql = getattr(client, "deployments_api", "rest") == "graphql"
    # GraphQL: repos with a bookmark (a night) go BATCH_REPOS to a query, BATCH_FIRST deployments each
    # (then their own pages where more are new); a first load reads each repo 100 at a time.
    batched = [r for r in repos if graphql and plans[r][1] is not None]
    units = [(r,) for r in repos if not (graphql and plans[r][1] is not None)]
    units += [tuple(batched[i:i + BATCH_REPOS]) for i in range(0, len(batched), BATCH_REPOS)]

    def fetch(unit: tuple[str, ...]) -> dict[str, Any]:
        if graphql and plans[unit[0]][1] is not None:
            return _read_deployments_graphql_batch(client, unit, plans)
        read = _read_deployments_graphql if graphql else _read_deployments_rest
        return {repo: read(client, repo, plans[repo][0], plans[repo][2]) for repo in unit}

    fetched_repos = ((repo, fetched[repo]) for unit, fetched in _fetch_in_order(units, fetch, getattr(client, "concurrency", 1))
                     for repo in unit)
    rejects: list[tuple[Any, str, str]] = []  # few: a clean run has none
    bookmarks: dict[str, datetime] = {}
    with _Staging(con, "github_deployments", extra=("repo",)) as staged_d, \
            _Staging(con, "github_deployment_statuses", extra=("repo",)) as staged_s:
        for repo, fetched in fetched_repos:
            if isinstance(fetched, ApiError):  # the repo could not be read: quarantined, the others load
                rejects.append(({"repo": repo}, "repo_unreadable", str(fetched)))
                continue
            good, bad, statuses = fetched
            good_s, bad_s = split_valid(statuses, "created_at")
            rejects.extend(bad + bad_s)
            staged_d.add(good, repo=repo)
            staged_s.add(good_s, repo=repo)
            hwm = plans[repo][1]
            new_hwm = max([hwm] * (hwm is not None) + [parse_time(d["created_at"]) for d in good], default=None)
            if new_hwm is not None:
                bookmarks[f"deployments:{repo}"] = new_hwm
        # everything at once (see _Staging): a failure above or a kill before this commit leaves nothing
        with wh.transaction(con):
            for r, rule, reason in rejects:
                quarantine(con, source=GITHUB, stream="deployments", record=r, rule=rule, reason=reason, run_id=run_id)
            up_d = staged_d.merge(run_id=run_id, fetched_at=now)
            up_s = staged_s.merge(run_id=run_id, fetched_at=now)
            for stream, value in bookmarks.items():
                wh.set_high_water_mark(con, GITHUB, stream, value, run_id)
            deployments_result.api = _stats_delta(before_d, _stream_stats(client, "deployments"))
            statuses_result.api = _stats_delta(before_s, _stream_stats(client, "deployment_statuses"))
            wh.record_sync_run(con, run_id=run_id, source=GITHUB, stream="deployments",
                               stats={**deployments_result.api, "records": up_d.received})
            wh.record_sync_run(con, run_id=run_id, source=GITHUB, stream="deployment_statuses",
                               stats={**statuses_result.api, "records": up_s.received})
    deployments_result.received, deployments_result.changed = up_d.received, up_d.changed
    statuses_result.received, statuses_result.changed = up_s.received, up_s.changed
    deployments_result.quarantined = len(rejects)
    return deployments_result, statuses_result


def _unfinished_deployments(con, repo: str, created_since: datetime) -> dict[str, datetime]:
    """Deployments of ``repo`` created since ``created_since`` without a final status: {id: created_at}."""
    rows = con.execute(
        """
        select d.id, cast(d.payload ->> 'created_at' as timestamptz) as created_at
        from raw.github_deployments as d
        where d.repo = ?
          and cast(d.payload ->> 'created_at' as timestamptz) >= ?
          and not exists (
            select 1 from raw.github_deployment_statuses as s
            where s.repo = d.repo
              and regexp_extract(s.payload ->> 'deployment_url', '/deployments/([0-9]+)$', 1) = d.id
              and s.payload ->> 'state' in ('success', 'failure', 'error', 'inactive'))
        order by 1
        """,
        [repo, created_since],
    ).fetchall()
    return {str(r[0]): r[1] for r in rows}


DeploymentsRead = tuple[list[dict], list[tuple[dict, str, str]], list[dict]]  # good, rejected, statuses


def _read_deployments_rest(client, repo: str, since: datetime, unfinished: dict[str, datetime]) -> DeploymentsRead | ApiError:
    """REST: the newest-first list down to the bookmark (or the oldest unfinished deployment), then
    one statuses request per wanted deployment. A repo that cannot be listed is returned as its error."""
    scan_since = min([since, *unfinished.values()])
    try:
        new = []
        for d in client.deployments(repo):
            created = parse_time(d.get("created_at")) if isinstance(d, dict) else None
            if created is not None and created < scan_since:
                break  # newest first: everything further is older than the bookmark
            if created is None or created >= since or str(d.get("id")) in unfinished:
                new.append(d)
    except ApiError as exc:
        if not is_one_repo_problem(exc):
            raise
        return exc
    good, bad = split_valid(new, "created_at")
    wanted = {int(d["id"]) for d in good} | {int(i) for i in unfinished}
    # One request per deployment (GitHub has no bulk endpoint), a few in flight at a time.
    gone: list[int] = []
    statuses = client.deployment_statuses_many(repo, sorted(wanted), missing=gone)
    for deployment_id in gone:  # deleted since it was listed: quarantined (once), the rest loads
        bad.append(({"id": deployment_id, "repo": repo}, "deployment_gone",
                    "GitHub answered 404 for this deployment's statuses: it was deleted"))
    return good, bad, statuses


def _read_deployments_graphql(client, repo: str, since: datetime,
                              unfinished: dict[str, datetime]) -> DeploymentsRead | ApiError:
    """GraphQL: the same records as :func:`_read_deployments_rest`, 100 deployments with their
    statuses a request. Re-reading unfinished deployments is reading a little further back. A repo
    that cannot be read (NOT_FOUND) is returned as its error."""
    scan_since = min([since, *unfinished.values()])
    try:
        pairs = [(d, statuses) for d, statuses in client.deployments_with_statuses(repo, stop_before=scan_since)]
    except ApiError as exc:
        if not is_one_repo_problem(exc):
            raise
        return exc
    return _select_graphql_read(repo, pairs, since, unfinished)


BATCH_REPOS = 25  # repos per GraphQL query on a night: 25 x (1 + BATCH_FIRST) requests = 3 points
BATCH_FIRST = 10  # deployments per repo in that query; a repo with more new ones reads on, 100 a page


def _read_deployments_graphql_batch(client, unit: tuple[str, ...], plans: dict[str, tuple]) -> dict[str, Any]:
    """A night's GraphQL read of several repos in one query (``GitHubClient.deployments_with_statuses_batch``):
    ``{repo: what _read_deployments_graphql returns}``."""
    scan = {repo: min([plans[repo][0], *plans[repo][2].values()]) for repo in unit}
    got = client.deployments_with_statuses_batch(list(unit), stop_before=scan, first=BATCH_FIRST)
    out: dict[str, Any] = {}
    for repo in unit:
        pairs = got[repo]
        if isinstance(pairs, ApiError):
            if not is_one_repo_problem(pairs):
                raise pairs
            out[repo] = pairs
        else:
            out[repo] = _select_graphql_read(repo, pairs, plans[repo][0], plans[repo][2])
    return out


def _select_graphql_read(repo: str, pairs: list[tuple[dict, list[dict]]], since: datetime,
                         unfinished: dict[str, datetime]) -> DeploymentsRead:
    """From the deployments read down to the scan edge, the new ones and the unfinished ones, with
    their statuses, as the REST path selects them."""
    new = [(d, s) for d, s in pairs
           if parse_time(d.get("created_at")) is None or parse_time(d["created_at"]) >= since
           or str(d.get("id")) in unfinished]
    good, bad = split_valid([d for d, _ in new], "created_at")
    good_ids = {id(d) for d in good}
    statuses = [s for d, sts in new if id(d) in good_ids for s in sts]  # as REST: statuses of good ones only
    listed = {str(d.get("id")) for d, _ in pairs}
    for deployment_id in sorted(set(unfinished) - listed, key=int):  # deleted since the last run
        bad.append(({"id": int(deployment_id), "repo": repo}, "deployment_gone",
                    "GitHub no longer lists this deployment: it was deleted"))
    return good, bad, statuses


class DeploymentsThroughGraphQL:
    """A GitHub client whose two deployment calls, ``deployments(repo)`` and then
    ``deployment_statuses(repo, id)`` per deployment (what ``pipelines/backfill.py`` makes), are
    answered through GraphQL: the statuses come with their deployments, so a backfill costs one
    request per 100 deployments instead of one more per deployment, and its records have the shapes
    the nightly GraphQL sync stores (a REST re-read would rewrite every row of the overlap in REST's
    shape). Everything else goes to the client."""

    def __init__(self, client) -> None:
        self._client = client
        self._statuses: dict[tuple[str, int], list[dict]] = {}

    def deployments(self, full_name: str) -> Iterable[dict]:
        for deployment, statuses in self._client.deployments_with_statuses(full_name):
            if isinstance(deployment.get("id"), int):
                self._statuses[(full_name, deployment["id"])] = statuses
            yield deployment

    def deployment_statuses(self, full_name: str, deployment_id: int) -> list[dict]:
        cached = self._statuses.pop((full_name, int(deployment_id)), None)
        return cached if cached is not None else self._client.deployment_statuses(full_name, deployment_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def sync_github_pull_requests(con, client, repos: list[str], *, run_id: str, now: datetime,
                              settings: SyncSettings) -> StreamResult:
    """Closed pull requests of each repo, most recently updated first, until the bookmark. Up to
    ``client.concurrency`` repos are read at once in threads; the writes stay in this thread: staged
    repo by repo, then merged in one transaction (``_Staging``)."""
    result = StreamResult(GITHUB, "pull_requests", window_end=now)
    before = _stream_stats(client, "pulls")
    windows = {repo: _window(con, GITHUB, f"pull_requests:{repo}", now, settings) for repo in repos}

    def fetch(repo: str):
        since = windows[repo][0]
        try:
            new = []
            for p in client.pulls(repo, state="closed"):
                updated = parse_time(p.get("updated_at")) if isinstance(p, dict) else None
                if updated is not None and updated < since:
                    break
                new.append(p)
            return new
        except ApiError as exc:
            if not is_one_repo_problem(exc):
                raise
            return exc

    rejects: list[tuple[Any, str, str]] = []  # few: a clean run has none
    bookmarks: dict[str, datetime] = {}
    with _Staging(con, "github_pull_requests", extra=("repo",)) as staged:
        for repo, new in _fetch_in_order(repos, fetch, getattr(client, "concurrency", 1)):
            if isinstance(new, ApiError):  # the repo could not be read: quarantined, the others load
                rejects.append(({"repo": repo}, "repo_unreadable", str(new)))
                continue
            good, bad = split_valid(new, "updated_at")
            rejects.extend(bad)
            staged.add(good, repo=repo)
            hwm = windows[repo][1]
            new_hwm = max([hwm] * (hwm is not None) + [parse_time(p["updated_at"]) for p in good], default=None)
            if new_hwm is not None:
                bookmarks[f"pull_requests:{repo}"] = new_hwm
        # everything at once (see _Staging): a failure above or a kill before this commit leaves nothing
        with wh.transaction(con):
            for r, rule, reason in rejects:
                quarantine(con, source=GITHUB, stream="pull_requests", record=r, rule=rule, reason=reason,
                           run_id=run_id)
            up = staged.merge(run_id=run_id, fetched_at=now)
            for stream, value in bookmarks.items():
                wh.set_high_water_mark(con, GITHUB, stream, value, run_id)
            result.api = _stats_delta(before, _stream_stats(client, "pulls"))
            wh.record_sync_run(con, run_id=run_id, source=GITHUB, stream="pull_requests",
                               stats={**result.api, "records": up.received})
    result.received, result.changed, result.quarantined = up.received, up.changed, len(rejects)
    return result


# ------------------------------------------------------------------------------------- ownership


def load_ownership_tables(con: duckdb.DuckDBPyConnection, ownership: Ownership) -> dict[str, int]:
    """Rewrite raw.ownership_* from the validated ownership file, all three tables at once."""
    with wh.transaction(con):
        counts = {
            "ownership_teams": wh.replace_frame(con, "raw", "ownership_teams", ownership.teams_frame()),
            "ownership_service_owners": wh.replace_frame(con, "raw", "ownership_service_owners",
                                                         ownership.service_owners_frame()),
            "ownership_service_repos": wh.replace_frame(con, "raw", "ownership_service_repos",
                                                        ownership.service_repos_frame()),
        }
    return counts
