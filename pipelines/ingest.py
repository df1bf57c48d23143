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


def sync_pagerduty_incidents(con, client, *, run_id: str, now: datetime, settings: SyncSettings) -> StreamResult:
    """Incidents created since the bookmark (minus the rewind), plus every incident still open.

    The API filters incidents by creation time only, so an incident that was open at the last run
    and resolved since would otherwise never be re-read: those are fetched one by one.
    """
    since, hwm = _window(con, PAGERDUTY, "incidents", now, settings)
    before = _stream_stats(client, "incidents")
    records = list(client.incidents(since, now))
    seen = {r.get("id") for r in records if isinstance(r, dict)}
    still_open = [
        row[0]
        for row in con.execute(
            "select id from raw.pagerduty_incidents where payload ->> 'status' <> 'resolved' "
            "and cast(payload ->> 'created_at' as timestamptz) < ? order by id",
            [since],
        ).fetchall()
        if row[0] not in seen
    ]
    for incident_id in still_open:
        records.append(client.incident(incident_id))  # GET /incidents/{id}: a handful a night
    good, bad = split_valid(records, "created_at")
    result = StreamResult(PAGERDUTY, "incidents", since, now)
    new_hwm = max([hwm] * (hwm is not None) + [parse_time(r["created_at"]) for r in good], default=None)
    with wh.transaction(con):
        for r, rule, reason in bad:
            quarantine(con, source=PAGERDUTY, stream="incidents", record=r, rule=rule, reason=reason, run_id=run_id)
        up = wh.upsert_raw(con, "pagerduty_incidents", good, run_id=run_id, fetched_at=now)
        quarantine_inconsistent(con, run_id=run_id)  # acks outside their incident (records.py)
        if new_hwm is not None:
            wh.set_high_water_mark(con, PAGERDUTY, "incidents", new_hwm, run_id)
        result.api = _stats_delta(before, _stream_stats(client, "incidents"))
        wh.record_sync_run(con, run_id=run_id, source=PAGERDUTY, stream="incidents",
                           stats={**result.api, "records": len(records)}, window=(since, now))
    result.received, result.changed, result.quarantined = up.received, up.changed, len(bad)
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

    Entries are written ``batch_size`` at a time inside ONE transaction, so memory stays bounded
    (a two-year backfill holds hundreds of thousands of entries) and a failure or a kill anywhere
    still leaves nothing of this run behind."""
    since, hwm = _window(con, PAGERDUTY, "log_entries", now, settings)
    before = _stream_stats(client, "log_entries")
    result = StreamResult(PAGERDUTY, "log_entries", since, now)
    new_hwm, n_records, n_bad = hwm, 0, 0
    up = wh.UpsertResult()
    with wh.transaction(con):

        def write(batch: list[dict]) -> None:
            nonlocal new_hwm, n_bad, up
            # Embedded full incidents (include[]=incidents) are not stored: raw keeps the entry as sent.
            attributable, bad = split_log_entries(batch)
            for r, rule, reason in bad:
                quarantine(con, source=PAGERDUTY, stream="log_entries", record=r, rule=rule, reason=reason,
                           run_id=run_id)
            n_bad += len(bad)
            up += wh.upsert_raw(con, "pagerduty_log_entries", attributable, run_id=run_id, fetched_at=now)
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
        swept = quarantine_inconsistent(con, run_id=run_id)  # acks outside their incident (records.py)
        if new_hwm is not None:
            wh.set_high_water_mark(con, PAGERDUTY, "log_entries", new_hwm, run_id)
        result.api = _stats_delta(before, _stream_stats(client, "log_entries"))
        wh.record_sync_run(con, run_id=run_id, source=PAGERDUTY, stream="log_entries",
                           stats={**result.api, "records": n_records}, window=(since, now))
    result.received, result.changed, result.quarantined = up.received, up.changed, n_bad + swept
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
    """
    deployments_result = StreamResult(GITHUB, "deployments", window_end=now)
    statuses_result = StreamResult(GITHUB, "deployment_statuses", window_end=now)
    before_d, before_s = _stream_stats(client, "deployments"), _stream_stats(client, "deployment_statuses")
    for repo in repos:
        stream = f"deployments:{repo}"
        since, hwm = _window(con, GITHUB, stream, now, settings)
        unfinished = _unfinished_deployments(con, repo, hwm - settings.unfinished_deployment_window) if hwm else {}
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
            with wh.transaction(con):
                quarantine(con, source=GITHUB, stream="deployments", record={"repo": repo}, rule="repo_unreadable",
                           reason=str(exc), run_id=run_id)
            deployments_result.quarantined += 1
            continue
        good, bad = split_valid(new, "created_at")
        wanted = {int(d["id"]) for d in good} | {int(i) for i in unfinished}
        # One request per deployment (GitHub has no bulk endpoint), a few in flight at a time.
        gone: list[int] = []
        statuses = client.deployment_statuses_many(repo, sorted(wanted), missing=gone)
        for deployment_id in gone:  # deleted since it was listed: quarantined (once), the rest loads
            bad.append(({"id": deployment_id, "repo": repo}, "deployment_gone",
                        "GitHub answered 404 for this deployment's statuses: it was deleted"))
        good_s, bad_s = split_valid(statuses, "created_at")
        new_hwm = max([hwm] * (hwm is not None) + [parse_time(d["created_at"]) for d in good], default=None)
        with wh.transaction(con):
            for r, rule, reason in bad + bad_s:
                quarantine(con, source=GITHUB, stream="deployments", record=r, rule=rule, reason=reason, run_id=run_id)
            up_d = wh.upsert_raw(con, "github_deployments", good, run_id=run_id, fetched_at=now, extra={"repo": repo})
            up_s = wh.upsert_raw(con, "github_deployment_statuses", good_s, run_id=run_id, fetched_at=now,
                                 extra={"repo": repo})
            if new_hwm is not None:
                wh.set_high_water_mark(con, GITHUB, stream, new_hwm, run_id)
        deployments_result.received += up_d.received
        deployments_result.changed += up_d.changed
        deployments_result.quarantined += len(bad) + len(bad_s)
        statuses_result.received += up_s.received
        statuses_result.changed += up_s.changed
    deployments_result.api = _stats_delta(before_d, _stream_stats(client, "deployments"))
    statuses_result.api = _stats_delta(before_s, _stream_stats(client, "deployment_statuses"))
    with wh.transaction(con):
        wh.record_sync_run(con, run_id=run_id, source=GITHUB, stream="deployments",
                           stats={**deployments_result.api, "records": deployments_result.received})
        wh.record_sync_run(con, run_id=run_id, source=GITHUB, stream="deployment_statuses",
                           stats={**statuses_result.api, "records": statuses_result.received})
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


def sync_github_pull_requests(con, client, repos: list[str], *, run_id: str, now: datetime,
                              settings: SyncSettings) -> StreamResult:
    """Closed pull requests of each repo, most recently updated first, until the bookmark."""
    result = StreamResult(GITHUB, "pull_requests", window_end=now)
    before = _stream_stats(client, "pulls")
    for repo in repos:
        stream = f"pull_requests:{repo}"
        since, hwm = _window(con, GITHUB, stream, now, settings)
        try:
            new = []
            for p in client.pulls(repo, state="closed"):
                updated = parse_time(p.get("updated_at")) if isinstance(p, dict) else None
                if updated is not None and updated < since:
                    break
                new.append(p)
        except ApiError as exc:
            if not is_one_repo_problem(exc):
                raise
            with wh.transaction(con):
                quarantine(con, source=GITHUB, stream="pull_requests", record={"repo": repo}, rule="repo_unreadable",
                           reason=str(exc), run_id=run_id)
            result.quarantined += 1
            continue
        good, bad = split_valid(new, "updated_at")
        new_hwm = max([hwm] * (hwm is not None) + [parse_time(p["updated_at"]) for p in good], default=None)
        with wh.transaction(con):
            for r, rule, reason in bad:
                quarantine(con, source=GITHUB, stream="pull_requests", record=r, rule=rule, reason=reason, run_id=run_id)
            up = wh.upsert_raw(con, "github_pull_requests", good, run_id=run_id, fetched_at=now, extra={"repo": repo})
            if new_hwm is not None:
                wh.set_high_water_mark(con, GITHUB, stream, new_hwm, run_id)
        result.received += up.received
        result.changed += up.changed
        result.quarantined += len(bad)
    result.api = _stats_delta(before, _stream_stats(client, "pulls"))
    with wh.transaction(con):
        wh.record_sync_run(con, run_id=run_id, source=GITHUB, stream="pull_requests",
                           stats={**result.api, "records": result.received})
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
