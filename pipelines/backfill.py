"""Backfill: re-read a historical range of every ranged stream, without touching the rest.

    incident-metrics backfill --since 2025-01-01 [--until 2025-03-01] [--window-days 7]

or the Dagster job ``backfill`` with run config ``{since: "2025-01-01", until: "2025-03-01"}``.

* PagerDuty incidents and log entries created in ``[since, until)`` are read window by window
  (``window_days`` each); GitHub deployments created in the range (with their statuses) and
  closed pull requests updated in the range are read repo by repo. Each window / repo is upserted
  by id in its own transaction, so a killed backfill keeps what it finished and can simply be run
  again. Records outside the range are not touched.
* The bookmarks (``raw.sync_state``) are never moved: a backfill neither makes the next night skip
  anything nor makes it re-read anything (``set_high_water_mark`` only moves forward anyway).
* One progress line per window: records so far, requests so far, ETA.
* GitHub lists deployments and pull requests newest first without a date filter, so reaching an
  old range costs the pages of everything newer (one request per 100 records).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Optional

import dagster as dg

from pipelines import ingest
from pipelines import warehouse as wh
from pipelines.ingest import GITHUB, PAGERDUTY, StreamResult, quarantine
from pipelines.records import parse_time, quarantine_inconsistent, split_valid

UTC = timezone.utc
Echo = Callable[[str], None]


class BackfillConfig(dg.Config):
    """Run config of the ranged raw assets. Empty (the default): the nightly incremental sync.
    ``backfill_since`` set (YYYY-MM-DD or ISO 8601, UTC): re-read ``[since, until)`` instead."""

    backfill_since: Optional[str] = None
    backfill_until: Optional[str] = None  # default: now
    window_days: int = 7
    echo_progress: bool = False  # also print the progress lines on stdout (the CLI sets it)

    def range(self, now: datetime) -> "BackfillRange | None":
        if not self.backfill_since:
            return None
        return BackfillRange.parse(self.backfill_since, self.backfill_until, now=now, window_days=self.window_days)


def progress_echo(context: dg.AssetExecutionContext, config: BackfillConfig) -> Echo:
    """Progress lines go to the Dagster log (the UI), and to stdout when ``echo_progress``."""
    def echo(line: str) -> None:
        context.log.info(line)
        if config.echo_progress:
            print(line, flush=True)

    return echo


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
    """One line per finished window: records so far, requests so far, ETA (from the share done)."""

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


def _requests(client, stream: str) -> int:
    return ingest._stream_stats(client, stream).get("requests", 0)


# ------------------------------------------------------------------------------------- PagerDuty


def backfill_pagerduty(con, client, stream: str, rng: BackfillRange, *, run_id: str, now: datetime,
                       echo: Echo = print) -> StreamResult:
    """Re-read PagerDuty ``incidents`` or ``log_entries`` created in the range, window by window."""
    fetch = {"incidents": client.incidents, "log_entries": client.log_entries}[stream]
    before = ingest._stream_stats(client, stream)
    result = StreamResult(PAGERDUTY, stream, rng.since, rng.until)
    windows = rng.windows()
    progress = Progress(f"backfill pagerduty {stream}", len(windows), echo)
    for a, b in windows:
        records = list(fetch(a, b))
        if stream == "incidents":
            good, bad = split_valid(records, "created_at")
        else:
            good, bad = ingest.split_log_entries(records)
        with wh.transaction(con):
            for r, rule, reason in bad:
                quarantine(con, source=PAGERDUTY, stream=stream, record=r, rule=rule, reason=reason, run_id=run_id)
            up = wh.upsert_raw(con, f"pagerduty_{stream}", good, run_id=run_id, fetched_at=now)
            result.quarantined += quarantine_inconsistent(con, run_id=run_id)  # as the nightly sync does
        result.received += up.received
        result.changed += up.changed
        result.quarantined += len(bad)
        progress.step(f"{a:%Y-%m-%d %H:%M}..{b:%Y-%m-%d %H:%M}", len(records),
                      _requests(client, stream) - before.get("requests", 0))
    result.api = ingest._stats_delta(before, ingest._stream_stats(client, stream))
    with wh.transaction(con):
        wh.record_sync_run(con, run_id=run_id, source=PAGERDUTY, stream=f"{stream}:backfill",
                           stats={**result.api, "records": result.received}, window=(rng.since, rng.until))
    return result


# ------------------------------------------------------------------------------------- GitHub


def _in_range(items, field: str, rng: BackfillRange):
    """Records of a newest-first list whose ``field`` is in the range: skip the newer, stop at the older."""
    for item in items:
        when = parse_time(item.get(field)) if isinstance(item, dict) else None
        if when is not None and when >= rng.until:
            continue
        if when is not None and when < rng.since:
            return
        yield item


def backfill_github_deployments(con, client, repos: list[str], rng: BackfillRange, *, run_id: str, now: datetime,
                                echo: Echo = print) -> tuple[StreamResult, StreamResult]:
    """Deployments created in the range, with all their statuses, repo by repo."""
    deployments = StreamResult(GITHUB, "deployments", rng.since, rng.until)
    statuses_result = StreamResult(GITHUB, "deployment_statuses", rng.since, rng.until)
    before_d, before_s = ingest._stream_stats(client, "deployments"), ingest._stream_stats(client, "deployment_statuses")
    progress = Progress("backfill github deployments", len(repos), echo)
    for repo in repos:
        try:
            found = list(_in_range(client.deployments(repo), "created_at", rng))
        except Exception as exc:  # noqa: BLE001 - one unreadable repo must not lose the others
            from pipelines.sources.http import ApiError, AuthError

            if isinstance(exc, AuthError) or not isinstance(exc, ApiError):
                raise
            with wh.transaction(con):
                quarantine(con, source=GITHUB, stream="deployments", record={"repo": repo}, rule="repo_unreadable",
                           reason=str(exc), run_id=run_id)
            deployments.quarantined += 1
            progress.step(repo, 0, _requests(client, "deployments") + _requests(client, "deployment_statuses")
                          - before_d.get("requests", 0) - before_s.get("requests", 0))
            continue
        good, bad = split_valid(found, "created_at")
        statuses: list[dict] = []
        for d in good:
            statuses.extend(client.deployment_statuses(repo, int(d["id"])))
        good_s, bad_s = split_valid(statuses, "created_at")
        with wh.transaction(con):
            for r, rule, reason in bad + bad_s:
                quarantine(con, source=GITHUB, stream="deployments", record=r, rule=rule, reason=reason, run_id=run_id)
            up_d = wh.upsert_raw(con, "github_deployments", good, run_id=run_id, fetched_at=now, extra={"repo": repo})
            up_s = wh.upsert_raw(con, "github_deployment_statuses", good_s, run_id=run_id, fetched_at=now,
                                 extra={"repo": repo})
        deployments.received += up_d.received
        deployments.changed += up_d.changed
        deployments.quarantined += len(bad) + len(bad_s)
        statuses_result.received += up_s.received
        statuses_result.changed += up_s.changed
        progress.step(repo, len(found) + len(statuses),
                      _requests(client, "deployments") + _requests(client, "deployment_statuses")
                      - before_d.get("requests", 0) - before_s.get("requests", 0))
    deployments.api = ingest._stats_delta(before_d, ingest._stream_stats(client, "deployments"))
    statuses_result.api = ingest._stats_delta(before_s, ingest._stream_stats(client, "deployment_statuses"))
    with wh.transaction(con):
        wh.record_sync_run(con, run_id=run_id, source=GITHUB, stream="deployments:backfill",
                           stats={**deployments.api, "records": deployments.received}, window=(rng.since, rng.until))
        wh.record_sync_run(con, run_id=run_id, source=GITHUB, stream="deployment_statuses:backfill",
                           stats={**statuses_result.api, "records": statuses_result.received},
                           window=(rng.since, rng.until))
    return deployments, statuses_result


def backfill_github_pull_requests(con, client, repos: list[str], rng: BackfillRange, *, run_id: str, now: datetime,
                                  echo: Echo = print) -> StreamResult:
    """Closed pull requests updated in the range, repo by repo."""
    result = StreamResult(GITHUB, "pull_requests", rng.since, rng.until)
    before = ingest._stream_stats(client, "pulls")
    progress = Progress("backfill github pull requests", len(repos), echo)
    for repo in repos:
        try:
            found = list(_in_range(client.pulls(repo, state="closed"), "updated_at", rng))
        except Exception as exc:  # noqa: BLE001
            from pipelines.sources.http import ApiError, AuthError

            if isinstance(exc, AuthError) or not isinstance(exc, ApiError):
                raise
            with wh.transaction(con):
                quarantine(con, source=GITHUB, stream="pull_requests", record={"repo": repo}, rule="repo_unreadable",
                           reason=str(exc), run_id=run_id)
            result.quarantined += 1
            progress.step(repo, 0, _requests(client, "pulls") - before.get("requests", 0))
            continue
        good, bad = split_valid(found, "updated_at")
        with wh.transaction(con):
            for r, rule, reason in bad:
                quarantine(con, source=GITHUB, stream="pull_requests", record=r, rule=rule, reason=reason, run_id=run_id)
            up = wh.upsert_raw(con, "github_pull_requests", good, run_id=run_id, fetched_at=now, extra={"repo": repo})
        result.received += up.received
        result.changed += up.changed
        result.quarantined += len(bad)
        progress.step(repo, len(found), _requests(client, "pulls") - before.get("requests", 0))
    result.api = ingest._stats_delta(before, ingest._stream_stats(client, "pulls"))
    with wh.transaction(con):
        wh.record_sync_run(con, run_id=run_id, source=GITHUB, stream="pull_requests:backfill",
                           stats={**result.api, "records": result.received}, window=(rng.since, rng.until))
    return result


# ------------------------------------------------------------------------------------- Dagster job

def build_backfill_job(ranged_assets: list[dg.AssetsDefinition],
                       selection: dg.AssetSelection) -> dg.UnresolvedAssetJobDefinition:
    """The ``backfill`` job: ``selection`` (the assets it runs), of which ``ranged_assets`` run in
    backfill mode; the others run as they do every night (the ownership file and the directory
    streams are read in full), so that a backfill into a warehouse that has never had a run builds
    all that the staging tables, the marts and their checks read.

    Run config (the whole of it)::

        since: "2025-01-01"      # required: YYYY-MM-DD or ISO 8601 (UTC)
        until: "2025-03-01"      # optional, default now
        window_days: 7           # optional, the size of a progress window
    """
    op_names = sorted({a.op.name for a in ranged_assets})

    @dg.config_mapping(config_schema={
        "since": dg.Field(str, description="start of the range, YYYY-MM-DD or ISO 8601 (UTC), inclusive"),
        "until": dg.Field(str, is_required=False, description="end of the range (exclusive); default now"),
        "window_days": dg.Field(int, default_value=7, description="days per progress window"),
        "echo_progress": dg.Field(bool, default_value=False, description="also print progress lines on stdout"),
        "log_level": dg.Field(str, default_value="INFO", description="console log level"),
        "log_file": dg.Field(dg.Noneable(str), default_value=None, description="also log everything to this file"),
    })
    def _config(values: dict) -> dict:
        BackfillRange.parse(values["since"], values.get("until"), now=datetime.now(UTC),
                            window_days=values["window_days"])  # fail early on a bad range
        op_config = {"backfill_since": values["since"], "window_days": values["window_days"],
                     "echo_progress": values["echo_progress"]}
        if values.get("until"):
            op_config["backfill_until"] = values["until"]
        return {"ops": {name: {"config": op_config} for name in op_names},
                "loggers": {"console": {"config": {"log_level": values["log_level"]}},
                            "file": {"config": {"path": values["log_file"]}}}}

    return dg.define_asset_job(
        "backfill",
        selection=selection,
        executor_def=dg.in_process_executor,
        config=_config,
        description="Re-read a historical range of PagerDuty incidents and log entries, GitHub deployments and "
                    "pull requests (run config: since, until), with the ownership file, PagerDuty teams and services "
                    "as every run reads them, then rebuild staging, marts, report and snapshot. Bookmarks are not moved.",
    )
