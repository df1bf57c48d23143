"""The optional PagerDuty Analytics fast path: ``POST /analytics/raw/incidents`` into
``raw.pagerduty_analytics_incidents``.

Where the account has Analytics (and ``PagerDutyResource.use_analytics`` is on), one request brings
1,000 incidents with PagerDuty's own per-incident metrics (``seconds_to_first_ack``,
``seconds_to_resolve``, ``reassignment_count``, ``escalation_count``, ``auto_resolved`` ...):
a cross-check of the metrics the marts compute from incidents and log entries, for about a tenth of
the requests. Where it does not (402 missing ability, 403, 404), the step records the fallback and
writes nothing: incidents plus log entries, which always run, remain the source of the marts.

Analytics data lags the REST API by up to a day, so each run re-reads ``ANALYTICS_REWIND`` before
the bookmark (upserts by id make the overlap free of duplicates).
"""


from datetime import datetime, timedelta

from pipelines import warehouse as wh
from pipelines.ingest import PAGERDUTY, StreamResult, SyncSettings, quarantine
from pipelines.records import parse_time
from pipelines.sources.http import ApiError

STREAM = "analytics_incidents"
TABLE = "pagerduty_analytics_incidents"
ANALYTICS_REWIND = timedelta(days=2)
UNAVAILABLE = {402, 403, 404}  # the account or the token has no Analytics: fall back, do not fail


def sync_pagerduty_analytics(con, client, *, run_id: str, now: datetime, settings: SyncSettings) -> StreamResult:
    """Read analytics rows for incidents created since the bookmark (minus two days) into raw.

    Returns a result whose ``api`` holds ``analytics_available`` 0/1; on 402/403/404 nothing is
    written and the bookmark does not move.
    """
    hwm = wh.high_water_mark(con, PAGERDUTY, STREAM)
    since = (hwm - ANALYTICS_REWIND) if hwm else now - timedelta(days=settings.history_days)
    result = StreamResult(PAGERDUTY, STREAM, since, now)
    before = dict(client.stats[STREAM_KEY].as_metadata()) if STREAM_KEY in client.stats else {}
    try:
        records = list(client.analytics_incidents(since, now))
    except ApiError as exc:
        if exc.status not in UNAVAILABLE:
            raise
        result.api = {"analytics_available": 0, "fallback_status": int(exc.status or 0)}
        return result
    good, bad, created_times = [], [], []
    for r in records:
        created = _utc(r.get("created_at")) if isinstance(r, dict) and r.get("id") else None
        if created is None:
            bad.append(r)
        else:
            good.append(r)
            created_times.append(created)
    new_hwm = max([hwm] * (hwm is not None) + created_times, default=None)
    after = client.stats[STREAM_KEY].as_metadata() if STREAM_KEY in client.stats else {}
    api = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    with wh.transaction(con):
        for r in bad:
            quarantine(con, source=PAGERDUTY, stream=STREAM, record=r, rule="missing_field",
                       reason="the analytics row has no id or no parsable created_at", run_id=run_id)
        up = wh.upsert_raw(con, TABLE, good, run_id=run_id, fetched_at=now)
        if new_hwm is not None:
            wh.set_high_water_mark(con, PAGERDUTY, STREAM, new_hwm, run_id)
        wh.record_sync_run(con, run_id=run_id, source=PAGERDUTY, stream=STREAM,
                           stats={**api, "records": len(records)}, window=(since, now))
    result.received, result.changed, result.quarantined = up.received, up.changed, len(bad)
    result.high_water_mark = new_hwm
    result.api = {**api, "analytics_available": 1}
    return result


STREAM_KEY = "analytics"  # PagerDutyClient's stream name for the analytics endpoint


def _utc(value) -> datetime | None:
    """Analytics timestamps carry no offset; they are UTC because the request sends time_zone Etc/UTC."""
    if isinstance(value, str) and value and not value.endswith("Z") and "+" not in value[10:] and "-" not in value[10:]:
        value += "Z"
    return parse_time(value)
