"""PagerDuty incidents written in batches (inside one transaction) land exactly as in one batch.

Two nights against the emulator (a small generated organisation, one incident malformed on
purpose): the second night re-reads incidents still open at the first one (``GET /incidents/{id}``).
Batches of 7 and of 10,000 must leave the same raw rows, bookmarks, quarantine and counts.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pipelines import warehouse as wh
from pipelines.connectors import connector
from pipelines.connectors.pagerduty.client import PagerDutyClient
from pipelines.connectors.pagerduty.records import quarantine_inconsistent
from pipelines.connectors.pagerduty.streams import LOG_ENTRY_FIELDS
from pipelines.ingest.raw import Staging, upsert_raw
from pipelines.ingest.runner import SyncSettings, run_stream
from tests.incremental_helpers import PD_TOKEN, small_org, start_emulator

UTC = timezone.utc
INCIDENTS = connector("pagerduty").stream("incidents")


@pytest.fixture(scope="module")
def srv():
    org = small_org(seed=23, months=3, future_days=4)
    server = start_emulator(org)
    bad = org.incidents[len(org.incidents) // 2]
    server.pagerduty.corruptions[bad.id] = ['set:status="bogus"']  # quarantined, the rest loads
    yield server
    server.stop()


def _two_nights(srv, db, batch_size: int, now: datetime) -> dict:
    start = srv.now()
    con = wh.connect(db)
    wh.ensure_schemas(con)
    results, reread = [], []
    try:
        with PagerDutyClient(srv.pagerduty_url, PD_TOKEN, rate_per_minute=None) as client:
            for advance in (0, 2):
                srv.advance(timedelta(days=advance))
                srv.reset_stats()
                r = run_stream(con, client, INCIDENTS, run_id=f"night+{advance}", now=now + timedelta(minutes=advance),
                               settings=SyncSettings(history_days=1000), batch_size=batch_size)["pagerduty_incidents"]
                results.append((r.received, r.changed, r.quarantined, r.high_water_mark, r.window_start))
                reread.append(srv.stats()["by_route"].get("pagerduty GET /incidents/{id}", {}).get("requests", 0))
        state = {
            "raw": con.execute("select id, payload::varchar, run_id from raw.pagerduty_incidents order by id").fetchall(),
            "bookmarks": con.execute("select source, stream, high_water_mark from raw.sync_state order by all").fetchall(),
            "quarantine": con.execute("select source, stream, record_id, rule, reason, payload, run_id "
                                      "from quarantine.rejected_records order by all").fetchall(),
            "runs": con.execute("select stream, run_id from raw.sync_runs order by all").fetchall(),
        }
    finally:
        con.close()
        srv.set_now(start)
    return {"results": results, "reread": reread, **state}


def test_incidents_written_in_batches_equal_one_batch(srv, tmp_path):
    now = datetime.now(UTC)
    small = _two_nights(srv, tmp_path / "b7.duckdb", 7, now)
    whole = _two_nights(srv, tmp_path / "b10000.duckdb", 10_000, now)
    assert small == whole
    first, second = small["results"]
    assert first[0] > 7 * 10  # many batches of 7
    assert first[2] == 1 and small["quarantine"][0][3] == "unknown_value"
    assert small["reread"][1] > 0  # the second night re-read incidents still open at the first
    assert second[1] > 0  # ... and some of them changed (resolved meanwhile)


def test_incidents_still_open_are_reread_concurrently_and_in_order(srv, tmp_path):
    """The second night's ``GET /incidents/{id}`` re-reads run up to ``client.concurrency`` at once
    (a few hundred a night on the large benchmark organisation) and land as the sequential ones do."""
    import threading
    import time

    class CountingClient(PagerDutyClient):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            self.lock, self.in_flight, self.most_in_flight, self.asked = threading.Lock(), 0, 0, []

        def incident(self, incident_id):
            with self.lock:
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                self.asked.append(incident_id)
            try:
                time.sleep(0.05)  # long enough for the other workers to start theirs
                return super().incident(incident_id)
            finally:
                with self.lock:
                    self.in_flight -= 1

    now = datetime.now(UTC)
    start = srv.now()
    states = {}
    try:
        for workers in (1, 4):
            srv.set_now(start)
            con = wh.connect(tmp_path / f"c{workers}.duckdb")
            wh.ensure_schemas(con)
            with CountingClient(srv.pagerduty_url, PD_TOKEN, rate_per_minute=None, concurrency=workers) as client:
                for advance in (0, 2):
                    srv.advance(timedelta(days=advance))
                    run_stream(con, client, INCIDENTS, run_id=f"night+{advance}", now=now + timedelta(minutes=advance),
                               settings=SyncSettings(history_days=1000))
            states[workers] = (client.most_in_flight, len(client.asked), con.execute(
                "select id, payload::varchar, run_id from raw.pagerduty_incidents order by id").fetchall())
            con.close()
    finally:
        srv.set_now(start)
    (one, n_one, rows_one), (four, n_four, rows_four) = states[1], states[4]
    assert n_one == n_four > 4  # the same re-reads, more than one worker's worth
    assert one == 1 and four == 4
    assert rows_one == rows_four


def test_staging_merges_as_an_upsert_by_id(tmp_path):
    """What the staged merge writes: new ids inserted, changed payloads rewritten (with this run's
    id), unchanged rows left as they were, and the last version of an id staged twice wins."""
    con = wh.connect(tmp_path / "w.duckdb")
    wh.ensure_schemas(con)
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    try:
        def run(run_id, *batches):
            with Staging(con, "pagerduty_incidents") as staging:
                for batch in batches:
                    staging.add(batch)
                with wh.transaction(con):
                    up = staging.merge(run_id=run_id, fetched_at=t0)
            rows = con.execute("select id, payload ->> 'v', run_id from raw.pagerduty_incidents order by id").fetchall()
            return (up.received, up.changed), rows

        assert run("r1", [{"id": "A", "v": 1}, {"id": "B", "v": 1}]) == ((2, 2), [("A", "1", "r1"), ("B", "1", "r1")])
        # B unchanged, A changed, C new; A staged twice: its last version wins
        assert run("r2", [{"id": "A", "v": 2}, {"id": "B", "v": 1}], [{"id": "C", "v": 1}, {"id": "A", "v": 3}]) == \
            ((3, 2), [("A", "3", "r2"), ("B", "1", "r1"), ("C", "1", "r2")])
        assert run("r3", [{"id": "C", "v": 1}]) == ((1, 0), [("A", "3", "r2"), ("B", "1", "r1"), ("C", "1", "r2")])
        assert run("r4") == ((0, 0), [("A", "3", "r2"), ("B", "1", "r1"), ("C", "1", "r2")])
        # the staging is temporary and the memory limit is back to what it was
        assert con.execute("select count(*) from duckdb_tables() where table_name like 'staging_%'").fetchone() == (0,)
        limit = con.execute("select current_setting('memory_limit')").fetchone()[0]
        con.execute("reset memory_limit")
        assert con.execute("select current_setting('memory_limit')").fetchone()[0] == limit
    finally:
        con.close()


def test_ack_rule_reads_this_runs_entries_from_the_staging_with_the_same_result(tmp_path):
    """quarantine_inconsistent with this run's entries staged (their JSON not parsed again) moves
    exactly the acknowledgements the plain rule moves: this run's, and older ones of this run's
    incidents, with resolves from either."""
    from tests.factories import pd_incident, pd_log_entry

    old_entries = [pd_log_entry("L1", "I1", "acknowledge", "2025-05-01T09:59:00Z"),  # older run, I1 re-read now
                   pd_log_entry("L5", "I2", "resolve", "2025-05-02T10:30:00Z"),  # older run: I2 resolved by the feed
                   pd_log_entry("L7", "I3", "acknowledge", "2025-05-03T08:00:00Z")]  # older run, I3 untouched
    new_entries = [pd_log_entry("L2", "I1", "acknowledge", "2025-05-01T10:05:00Z"),
                   pd_log_entry("L3", "I1", "acknowledge", "2025-05-01T11:30:00Z"),  # after I1 resolved
                   pd_log_entry("L4", "I2", "acknowledge", "2025-05-02T10:01:00Z"),
                   pd_log_entry("L6", "I2", "acknowledge", "2025-05-02T10:40:00Z"),  # after L5
                   pd_log_entry("L8", "I4", "acknowledge", "2025-05-04T10:00:00Z"),
                   pd_log_entry("L9", "I4", "resolve", "2025-05-04T09:00:00Z")]  # this run's resolve, before L8
    now = datetime(2025, 6, 1, tzinfo=UTC)
    outcomes = []
    for staged in (False, True):
        con = wh.connect(tmp_path / f"w{staged}.duckdb")
        wh.ensure_schemas(con)
        try:
            with wh.transaction(con):
                upsert_raw(con, "pagerduty_incidents",
                              [pd_incident("I3", "S1", "2025-05-03T09:00:00Z", resolved="2025-05-03T10:00:00Z")],
                              run_id="old", fetched_at=now)
                upsert_raw(con, "pagerduty_log_entries", old_entries, run_id="old", fetched_at=now)
            with Staging(con, "pagerduty_log_entries", fields=LOG_ENTRY_FIELDS) as staging:
                staging.add(new_entries)
                with wh.transaction(con):
                    upsert_raw(con, "pagerduty_incidents", [
                        pd_incident("I1", "S1", "2025-05-01T10:00:00Z", resolved="2025-05-01T11:00:00Z"),
                        pd_incident("I2", "S1", "2025-05-02T10:00:00Z", status="acknowledged"),
                        pd_incident("I4", "S1", "2025-05-04T08:00:00Z", status="acknowledged")],
                        run_id="new", fetched_at=now)
                    staging.merge(run_id="new", fetched_at=now)
                    n = quarantine_inconsistent(
                        con, run_id="new", staged_entries=f"temp.{staging.name}" if staged else None)
            outcomes.append((n, con.execute("select record_id, reason from quarantine.rejected_records "
                                            "order by 1").fetchall()))
        finally:
            con.close()
    assert outcomes[0] == outcomes[1]
    # L1 (older, its incident re-read), L3, L6 (after the older resolve L5), L8 (after this run's L9);
    # L7 is older and its incident was not touched: judged in its own run
    assert [r[0] for r in outcomes[0][1]] == ["L1", "L3", "L6", "L8"] and outcomes[0][0] == 4


def test_staging_caps_duckdb_memory_and_restores_the_setting_after():
    import duckdb

    con = duckdb.connect()
    limit = lambda: con.execute("select current_setting('memory_limit')").fetchone()[0]  # noqa: E731
    default = limit()
    con.execute("create schema raw")
    with Staging(con, "pagerduty_incidents"):
        assert limit() != default  # the staging limit holds while records stream in
    assert limit() == default
    con.execute("set memory_limit = '2GiB'")  # a value DuckDB prints back exactly
    two_gb = limit()
    with Staging(con, "pagerduty_incidents"):
        assert limit() != two_gb
    assert limit() == two_gb
