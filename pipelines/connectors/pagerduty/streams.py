"""PagerDuty's streams: how each reads a night and a backfill window (the runner does the rest).

- ``teams``, ``services``: small lists without a change filter, read in full every run;
- ``incidents``: by creation time from the bookmark, plus every incident still open at the last run
  (the API filters by creation time only, so an incident resolved since would never come back);
- ``log_entries``: the account-wide feed by time window (acknowledgements, reassignments,
  escalations, resolves), one request per 100 entries, never one request per incident;
- ``analytics_incidents``: the optional Analytics fast path (``POST /analytics/raw/incidents``,
  1,000 incidents a request with PagerDuty's own per-incident metrics), a cross-check of the marts.
  Where the account has no Analytics (402, 403, 404) it writes nothing: incidents plus log entries,
  which always run, remain the source of the marts. Its data lags the REST API by up to a day,
  hence a two-day rewind.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from pipelines.connectors.pagerduty import records as rules
from pipelines.http import ApiError
from pipelines.ingest.contract import FULL, Field, Part, RawTable, Read, Stream, StreamUnavailable
from pipelines.ingest.fetch import batches, fetch_in_order
from pipelines.records import parse_time

SOURCE = rules.SOURCE
TEAMS, SERVICES = "pagerduty_teams", "pagerduty_services"
INCIDENTS, LOG_ENTRIES = "pagerduty_incidents", "pagerduty_log_entries"
ANALYTICS = "pagerduty_analytics_incidents"
ANALYTICS_UNAVAILABLE = {402, 403, 404}  # the account or the token has no Analytics: fall back, do not fail


# ------------------------------------------------------------------------------------- readers


def _directory(fetch_name: str, table: str):
    def read(r: Read) -> Iterator[Part]:
        yield Part({table: list(getattr(r.client, fetch_name)())})

    return read


def read_incidents(r: Read) -> Iterator[Part]:
    """Incidents created since the bookmark (minus the rewind), then those still open at the last
    run and created before this window, one ``GET /incidents/{id}`` each (up to
    ``client.concurrency`` at once: a few hundred a night on the large benchmark organisation)."""
    still_open = {row[0] for row in r.con.execute(
        "select id from raw.pagerduty_incidents where payload ->> 'status' <> 'resolved' "
        "and cast(payload ->> 'created_at' as timestamptz) < ?", [r.since]).fetchall()}

    def listed() -> Iterator[dict]:
        for record in r.client.incidents(r.since, r.now):
            if isinstance(record, dict):
                still_open.discard(record.get("id"))
            yield record
        for _, record in fetch_in_order(sorted(still_open), r.client.incident, getattr(r.client, "concurrency", 1)):
            yield record

    for batch in batches(listed(), r.batch_size):
        yield Part({INCIDENTS: batch}, bookmark="incidents")


def read_incidents_window(r: Read, window) -> Iterator[Part]:
    for batch in batches(r.client.incidents(*window), r.batch_size):
        yield Part({INCIDENTS: batch})


def read_log_entries(r: Read) -> Iterator[Part]:
    # Embedded full incidents (include[]=incidents) are not stored: raw keeps the entry as sent.
    for batch in batches(r.client.log_entries(r.since, r.now), r.batch_size):
        yield Part({LOG_ENTRIES: batch}, bookmark="log_entries")


def read_log_entries_window(r: Read, window) -> Iterator[Part]:
    for batch in batches(r.client.log_entries(*window), r.batch_size):
        yield Part({LOG_ENTRIES: batch})


def read_analytics(r: Read) -> Iterator[Part]:
    try:
        records = list(r.client.analytics_incidents(r.since, r.now))
    except ApiError as exc:
        if exc.status not in ANALYTICS_UNAVAILABLE:
            raise
        raise StreamUnavailable(str(exc), {"fallback_status": int(exc.status or 0)}) from None
    yield Part({ANALYTICS: records}, bookmark="analytics_incidents")


# ------------------------------------------------------------------------------------- streams


def _acks_of_incidents(con, run_id: str, staged: dict[str, str]) -> int:
    return rules.quarantine_inconsistent(con, run_id=run_id)


def _acks_of_entries(con, run_id: str, staged: dict[str, str]) -> int:
    # this run's entries as staged (their type, incident and time), not parsed again
    return rules.quarantine_inconsistent(con, run_id=run_id, staged_entries=staged[LOG_ENTRIES])


LOG_ENTRY_FIELDS = (
    Field("kind", "varchar", lambda e: e.get("type") if isinstance(e.get("type"), str) else None),
    Field("incident_id", "varchar", lambda e: str(e["incident"]["id"])),
    Field("created_at", "timestamptz", lambda e: parse_time(e["created_at"])),
)

STREAMS = (
    Stream(SOURCE, "teams", (RawTable(TEAMS, rules.TEAM, "teams"),), _directory("teams", TEAMS), scope=FULL,
           description="PagerDuty teams as sent by GET /teams, read in full every run."),
    Stream(SOURCE, "services", (RawTable(SERVICES, rules.SERVICE, "services"),), _directory("services", SERVICES),
           scope=FULL, description="PagerDuty services as sent by GET /services, read in full every run."),
    Stream(SOURCE, "incidents", (RawTable(INCIDENTS, rules.INCIDENT, "incidents", cursor="created_at"),),
           read_incidents, read_incidents_window, after_merge=_acks_of_incidents,
           description="PagerDuty incidents as sent by GET /incidents, read by creation-time windows of at most "
                       "six months from the bookmark (minus a one-hour rewind), plus every incident still open. "
                       "With `since` in the run config (the `backfill` job): the incidents created in that range "
                       "instead, the bookmark untouched."),
    Stream(SOURCE, "log_entries", (RawTable(LOG_ENTRIES, rules.LOG_ENTRY, "log_entries", cursor="created_at",
                                            fields=LOG_ENTRY_FIELDS),),
           read_log_entries, read_log_entries_window, after_merge=_acks_of_entries,
           description="PagerDuty log entries from the account-wide GET /log_entries feed by time window "
                       "(acknowledgements, reassignments, escalations, resolves): never one request per incident. "
                       "With `since` in the run config: the entries created in that range."),
    Stream(SOURCE, "analytics_incidents",
           (RawTable(ANALYTICS, rules.ANALYTICS_ROW, "analytics", cursor="created_at",
                     parse_cursor=rules.analytics_time),),
           read_analytics, rewind=timedelta(days=2), enabled=lambda resource: resource.use_analytics,
           availability="analytics_available",
           description="PagerDuty Analytics per-incident metrics (POST /analytics/raw/incidents, 1,000 a page) where "
                       "the account has Analytics and PagerDutyResource.use_analytics is on; otherwise (or on "
                       "402/403/404) it writes nothing and the marts rely on incidents plus log entries, as always."),
)
