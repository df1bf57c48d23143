"""Production Dagster as deploy/ lays it out, on one machine: a real PostgreSQL server holding the
instance (deploy/dagster.yaml as shipped), a user-code server over gRPC, ``dagster-daemon``.

* The nightly schedule ticks (a cron for the next minute): the daemon launches the run, the run is
  recorded in PostgreSQL (runs, tags, materialization events) and the warehouse is built.
* Two runs queued at once run one after the other: the warehouse pool (limit 1 per run) holds the
  second in the queue until the first has ended, so they never fight over the DuckDB file lock.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest
import yaml

from pipelines.emulator.generator import visible_incidents
from tests.incremental_helpers import (
    GH_TOKEN, PD_TOKEN, ROOT, diff_states, materialize_all, small_org, start_emulator, subprocess_env, warehouse_state,
    write_ownership,
)
from tests.postgres_helpers import PASSWORD, PostgresServer

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _next_minute_cron(now: datetime) -> tuple[str, datetime]:
    """A cron that fires once, at least 40 s from now (time for the servers to start)."""
    at = (now + timedelta(seconds=40 + 59)).replace(second=0, microsecond=0)
    return f"{at.minute} {at.hour} * * *", at


class Production:
    """The user-code server and the daemon as processes of their own, on one DAGSTER_HOME."""

    def __init__(self, tmp: Path, env: dict[str, str], pg: PostgresServer):
        self.tmp, self.env, self.pg = tmp, env, pg
        self.port = _free_port()
        self.workspace = tmp / "workspace.yaml"
        ws = yaml.safe_load((ROOT / "deploy" / "workspace.yaml").read_text())
        ws["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=self.port)
        self.workspace.write_text(yaml.safe_dump(ws))
        self.procs: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, cmd: list[str]) -> None:
        log = open(self.tmp / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def start_code_server(self) -> None:
        self._start("code_server", [str(BIN / "dagster"), "code-server", "start", "-h", "127.0.0.1",
                                    "-p", str(self.port), "-m", "pipelines.definitions",
                                    "--location-name", "incident_metrics"])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ok = subprocess.run([str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(self.port)],
                                env=self.env, capture_output=True, text=True)
            if ok.returncode == 0:
                return
            assert self.procs["code_server"].poll() is None, self.log("code_server")
            time.sleep(1)
        pytest.fail("the user-code server did not start:\n" + self.log("code_server"))

    def start_daemon(self) -> None:
        self._start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(self.workspace)])

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(name, None)
        if proc and proc.poll() is None:
            os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def launch(self, job: str) -> None:
        done = subprocess.run([str(BIN / "dagster"), "job", "launch", "-j", job, "-w", str(self.workspace),
                               "-l", "incident_metrics"], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr

    def runs(self) -> list[dict]:
        """The runs as PostgreSQL holds them, oldest first (none before a Dagster process created the tables)."""
        if not self.pg.psql("select to_regclass('runs')").strip():
            return []
        out = self.pg.psql("select run_id, pipeline_name, status, coalesce(start_time, 0), coalesce(end_time, 0), "
                           "extract(epoch from create_timestamp) from runs order by create_timestamp")
        rows = [line.split("|") for line in out.splitlines() if line]
        return [{"run_id": r[0], "job": r[1], "status": r[2], "start": float(r[3]), "end": float(r[4]),
                 "created": float(r[5])} for r in rows]

    def wait_for(self, predicate, timeout: float, what: str) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs()
            if predicate(runs):
                return runs
            failed = [r for r in runs if r["status"] == "FAILURE"]
            assert not failed, (failed, self.log("daemon"), self.log("code_server"))
            for name, proc in self.procs.items():
                assert proc.poll() is None, f"{name} exited ({proc.returncode}):\n{self.log(name)}"
            time.sleep(2)
        pytest.fail(f"timed out waiting for {what}: {self.runs()}\n{self.log('daemon')}")

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("production")
    org = small_org(seed=5, months=3, n_teams=2, future_days=0)
    srv = start_emulator(org)
    ownership = write_ownership(org, tmp)
    data = tmp / "data"
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")  # as shipped
    cron, fires_at = _next_minute_cron(datetime.now(timezone.utc))
    with PostgresServer() as pg:
        env = {**subprocess_env(srv, data, ownership), **pg.env(), "DAGSTER_HOME": str(home),
               "INCIDENT_METRICS_SCHEDULE": cron}
        prod = Production(tmp, env, pg)
        try:
            prod.start_code_server()
            prod.start_daemon()
            scheduled = prod.wait_for(lambda rs: any(r["status"] == "SUCCESS" for r in rs),
                                      timeout=240, what="the scheduled nightly run")
            yield {"prod": prod, "pg": pg, "org": org, "data": data, "fires_at": fires_at, "srv": srv,
                   "ownership": ownership,
                   "scheduled": scheduled}
        finally:
            prod.close()
            srv.stop()


def test_the_schedule_ticks_and_the_run_is_recorded_in_postgres(production):
    prod, pg = production["prod"], production["pg"]
    (run,) = production["scheduled"]
    assert run["job"] == "nightly" and run["status"] == "SUCCESS"
    assert run["created"] >= production["fires_at"].timestamp() - 1  # launched by the tick, not before
    tags = dict(line.split("|", 1) for line in pg.psql(
        f"select key, value from run_tags where run_id = '{run['run_id']}'").splitlines())
    assert tags["dagster/schedule_name"] == "nightly_schedule"
    ticks = pg.psql("select count(*) from job_ticks where status = 'SUCCESS'").strip()
    assert int(ticks) == 1
    # Every asset of the nightly job was materialized in this run, as the event log in PostgreSQL says.
    from pipelines.definitions import defs

    keys = {"/".join(k.path) for k in defs.resolve_job_def("nightly").asset_layer.executable_asset_keys}
    materialized = {line for line in pg.psql(
        "select distinct asset_key from event_logs where dagster_event_type = 'ASSET_MATERIALIZATION' "
        f"and run_id = '{run['run_id']}'").splitlines()}
    assert {k.strip('[]').replace('", "', "/").strip('"') for k in materialized} == keys


def test_the_scheduled_run_built_the_warehouse(production, tmp_path):
    data, org = production["data"], production["org"]
    # the same night run in-process on another data directory: the daemon's run built the same tables
    reference = tmp_path / "reference"
    materialize_all(production["srv"], reference, production["ownership"])
    built, expected = warehouse_state(data / "warehouse.duckdb"), warehouse_state(reference / "warehouse.duckdb")
    assert diff_states(built, expected) == {}
    assert len(built["raw.pagerduty_incidents"]) == len(visible_incidents(org))
    con = duckdb.connect(str(data / "analytics.duckdb"), read_only=True)
    try:
        teams = con.execute("select count(distinct team_key) from marts.team_baselines").fetchone()[0]
    finally:
        con.close()
    assert teams == len(org.teams)
    assert (data / "reports" / "latest" / "index.html").exists()


def test_no_secret_reaches_the_dagster_storage(production):
    pg = production["pg"]
    for secret in (PASSWORD, PD_TOKEN, GH_TOKEN):
        hits = pg.psql(f"select count(*) from event_logs where event like '%{secret}%'").strip()
        runs = pg.psql(f"select count(*) from runs where run_body like '%{secret}%'").strip()
        assert (hits, runs) == ("0", "0"), secret


def test_two_queued_runs_take_the_warehouse_one_after_the_other(production):
    prod = production["prod"]
    prod.stop("daemon")  # nothing dequeues: both runs wait in the queue together
    before = len(prod.runs())
    prod.launch("rebuild")
    prod.launch("rebuild")
    queued = prod.runs()[before:]
    assert [r["status"] for r in queued] == ["QUEUED", "QUEUED"]
    prod.start_daemon()
    runs = prod.wait_for(lambda rs: len(rs) == before + 2 and all(r["status"] == "SUCCESS" for r in rs[before:]),
                         timeout=240, what="both queued rebuild runs")
    first, second = sorted(runs[before:], key=lambda r: r["start"])
    assert first["end"] > first["start"] > 0
    assert second["start"] >= first["end"]  # never both in progress
