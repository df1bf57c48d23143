"""SIGKILL at several points of the nightly job, then a rerun: the same warehouse as a clean run.

The job runs in a child process (``pipelines.cli.run_nightly``, exactly what ``incident-metrics
run`` does) against the emulator serving from this process. It is killed with SIGKILL:

0. on the first load, after the second repo's pull requests are staged, other repos still being
   read;
1. while it reads incidents from the API (detected from the emulator's request counters), and
   again after its second batch of incidents is staged (batches of 20), pages still coming;
2. inside the open log-entries transaction, after the upsert and before the commit;
3. inside the transaction that rebuilds ``marts.fct_incidents``;
4. while it writes the analyst snapshot, before the rename.

Points 0 and 1b-4 are reached with a pause the child script wraps around warehouse functions and the
staging of the history streams (a test seam living in this file only: production code has no hook). After each kill the warehouse opens,
every table is readable, the interrupted transaction left no trace (the table is as it was before
the killed run), and the analyst snapshot is either absent or the complete previous one. The last
rerun completes; its warehouse then equals a clean run's, table by table.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import pytest

from tests.incremental_helpers import (
    PYTHON,
    diff_states,
    materialize_all,
    small_org,
    start_emulator,
    subprocess_env,
    warehouse_state,
    write_ownership,
)

CHILD = r"""
import os, sys, time
from pathlib import Path

from pipelines import warehouse as wh

PAUSE = os.environ.get("KILL_TEST_PAUSE", "")
READY = Path(os.environ["KILL_TEST_READY"])


def pause(point):
    if point == PAUSE:
        READY.write_text(point)
        time.sleep(600)  # the test kills us here


from pipelines.ingest import contract
from pipelines.ingest.raw import Staging
if os.environ.get("KILL_TEST_INCIDENT_BATCH"):  # records handed over (and staged) in small batches
    contract.BATCH_SIZE = int(os.environ["KILL_TEST_INCIDENT_BATCH"])

# every stream: staged batch by batch (GitHub: repo by repo), then merged into raw in one transaction
_merge, _stage, _staged = Staging.merge, Staging.add, {}
def merge(self, **kw):
    result = _merge(self, **kw)
    pause(f"upsert:{self.table}")  # inside the step's transaction: written, not committed
    return result
def stage(self, records, **extra):
    _stage(self, records, **extra)
    _staged[self.table] = _staged.get(self.table, 0) + 1
    pause(f"stage:{self.table}#{_staged[self.table]}")  # the n-th batch staged, pages still coming
Staging.merge, Staging.add = merge, stage

_comment = wh.comment_table
def comment_table(con, schema, table, *args, **kw):
    _comment(con, schema, table, *args, **kw)
    pause(f"build:{schema}.{table}")  # inside build_table's transaction, after create or replace
wh.comment_table = comment_table

_extras = wh._write_snapshot_extras
def write_snapshot_extras(con, alias, **kw):
    _extras(con, alias, **kw)
    pause("snapshot")  # the new snapshot is half built in its temporary file
wh._write_snapshot_extras = write_snapshot_extras

from pipelines.cli import run_nightly
sys.exit(0 if run_nightly() else 1)
"""


def _rows(db: Path, table: str) -> list:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"select * from {table} order by all").fetchall()
    finally:
        con.close()


def _bookmarks(db: Path) -> dict:
    return {(s, st): h for s, st, h, *_ in _rows(db, "raw.sync_state")}


def _check_consistent(db: Path) -> None:
    """The warehouse opens and every table reads in full."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = con.execute("select schema_name, table_name from duckdb_tables() "
                             "where database_name = current_database()").fetchall()
        assert tables
        for schema, table in tables:
            con.execute(f"select * from {schema}.{table}").fetchall()
    finally:
        con.close()


class Child:
    def __init__(self, srv, data: Path, ownership: Path, tmp: Path, pause: str = "", incident_batch: int = 0) -> None:
        self.ready = tmp / f"ready-{time.monotonic_ns()}"
        env = subprocess_env(srv, data, ownership)
        env.update({"KILL_TEST_PAUSE": pause, "KILL_TEST_READY": str(self.ready)})
        if incident_batch:
            env["KILL_TEST_INCIDENT_BATCH"] = str(incident_batch)
        self.log = open(tmp / f"child-{time.monotonic_ns()}.log", "w")
        self.proc = subprocess.Popen([PYTHON, "-c", CHILD], env=env, cwd=str(tmp), stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def wait_for(self, condition, what: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                self.log.flush()
                raise AssertionError(f"the child ended (rc {self.proc.returncode}) before {what}: "
                                     + Path(self.log.name).read_text()[-3000:])
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.005)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()
        assert self.proc.returncode == -signal.SIGKILL


def _route_requests(srv, route: str) -> int:
    return int(srv.stats()["by_route"].get(route, {}).get("requests", 0))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("crash")
    org = small_org(seed=5, months=4, future_days=3)
    srv = start_emulator(org)
    ownership = write_ownership(org, tmp)
    yield srv, tmp, ownership
    srv.stop()


def test_sigkill_at_several_points_then_rerun_equals_a_clean_run(setup):
    srv, tmp, ownership = setup
    data = tmp / "killed"
    db = data / "warehouse.duckdb"
    snapshot = data / "analytics.duckdb"

    # 0. the first load, during GitHub pull requests, between repos: two repos staged, more still
    # being read; nothing of them may survive, not even the first repos' bookmarks
    child = Child(srv, data, ownership, tmp, pause="stage:github_pull_requests#2")
    child.wait_for(child.ready.exists, "the second repo's pull requests")
    child.kill()
    _check_consistent(db)
    assert _rows(db, "raw.github_pull_requests") == []
    assert not [k for k in _bookmarks(db) if k[1].startswith("pull_requests:")]

    # 1. during incidents: killed while the incident pages are being read
    srv.reset_stats()
    child = Child(srv, data, ownership, tmp)
    child.wait_for(lambda: _route_requests(srv, "pagerduty GET /incidents") >= 1, "the first GET /incidents")
    child.kill()
    if db.exists():
        _check_consistent(db)

    # 1b. during incidents, between batches: two batches of 20 staged while the pages are still
    # being read; nothing of them may survive
    child = Child(srv, data, ownership, tmp, pause="stage:pagerduty_incidents#2", incident_batch=20)
    child.wait_for(child.ready.exists, "the second incidents batch")
    child.kill()
    _check_consistent(db)
    assert _rows(db, "raw.pagerduty_incidents") == []
    assert ("pagerduty", "incidents") not in _bookmarks(db)

    # 2. during log entries, inside the transaction: upserted, not committed
    before_entries = _rows(db, "raw.pagerduty_log_entries") if db.exists() else []
    child = Child(srv, data, ownership, tmp, pause="upsert:pagerduty_log_entries")
    child.wait_for(child.ready.exists, "the log-entries transaction")
    child.kill()
    _check_consistent(db)
    assert _rows(db, "raw.pagerduty_log_entries") == before_entries == []  # no trace of the uncommitted rows
    assert ("pagerduty", "log_entries") not in _bookmarks(db)
    assert _rows(db, "raw.pagerduty_incidents")  # committed before the kill: durable
    assert ("pagerduty", "incidents") in _bookmarks(db)

    # 3. during marts: inside the transaction that replaces marts.fct_incidents
    child = Child(srv, data, ownership, tmp, pause="build:marts.fct_incidents")
    child.wait_for(child.ready.exists, "the fct_incidents transaction")
    child.kill()
    _check_consistent(db)
    assert _rows(db, "raw.pagerduty_log_entries")  # this run's sync steps committed
    con = duckdb.connect(str(db), read_only=True)
    try:  # the table the killed transaction was replacing is as it was: absent (never built)
        assert con.execute("select count(*) from duckdb_tables() where schema_name = 'marts' "
                           "and table_name = 'fct_incidents'").fetchone() == (0,)
    finally:
        con.close()
    assert not snapshot.exists()

    # 4. while the snapshot is written: the temporary file is half built, nothing is published
    child = Child(srv, data, ownership, tmp, pause="snapshot")
    child.wait_for(child.ready.exists, "the snapshot")
    child.kill()
    _check_consistent(db)
    assert not snapshot.exists()  # never a half-written analytics.duckdb
    leftovers = [p.name for p in data.iterdir() if p.name.startswith(".analytics.duckdb.tmp")]
    assert leftovers  # the killed run's temporary file ...

    # the rerun completes
    materialize_all(srv, data, ownership)
    assert not [p for p in data.iterdir() if p.name.startswith(".analytics.duckdb.tmp")]  # ... is cleaned up
    _check_consistent(snapshot)

    # and ends with exactly the data of a clean run
    materialize_all(srv, tmp / "clean", ownership)
    killed, clean = warehouse_state(db), warehouse_state(tmp / "clean" / "warehouse.duckdb")
    assert diff_states(killed, clean) == {}
    assert killed["raw.pagerduty_incidents"] and killed["marts.fct_incidents"]


def test_sigkill_during_an_incremental_night(setup):
    """The next night (the clock two days on), killed inside its incidents transaction, then rerun:
    the killed night's rows left no trace, analysts still see the last good night, and the rerun
    ends equal to the clean warehouse running the same night (both from the test above)."""
    from datetime import timedelta

    srv, tmp, ownership = setup
    killed, clean = tmp / "killed", tmp / "clean"
    db = killed / "warehouse.duckdb"
    assert (clean / "warehouse.duckdb").exists(), "runs after test_sigkill_at_several_points_then_rerun_equals_a_clean_run"
    start = srv.now()
    try:
        snapshot_rows = _rows(killed / "analytics.duckdb", "marts.fct_incidents")
        srv.advance(timedelta(days=2))
        before = _rows(db, "raw.pagerduty_incidents"), _bookmarks(db)[("pagerduty", "incidents")]
        child = Child(srv, killed, ownership, tmp, pause="upsert:pagerduty_incidents")
        child.wait_for(child.ready.exists, "the incidents transaction")
        child.kill()
        _check_consistent(db)
        assert (_rows(db, "raw.pagerduty_incidents"), _bookmarks(db)[("pagerduty", "incidents")]) == before
        assert _rows(killed / "analytics.duckdb", "marts.fct_incidents") == snapshot_rows  # the last good night
        materialize_all(srv, killed, ownership)
        materialize_all(srv, clean, ownership)
        after = warehouse_state(db)
        assert len(after["raw.pagerduty_incidents"]) > len(before[0])  # the night brought new incidents
        assert diff_states(after, warehouse_state(clean / "warehouse.duckdb")) == {}
    finally:
        srv.set_now(start)
