"""Production Dagster as deploy/ lays it out, on one machine: a real PostgreSQL server holding the
instance (deploy/dagster.yaml, its run-monitoring poll shortened), a user-code server over gRPC,
``dagster-daemon``.

* The nightly schedule ticks (every minute here, stopped after its first run): the daemon launches the run, the run is
  recorded in PostgreSQL (runs, tags, materialization events) and the warehouse is built.
* Two runs queued at once run one after the other: the warehouse pool (limit 1 per run) holds the
  second in the queue until the first has ended, so they never fight over the DuckDB file lock.
* Nothing lost: a PostgreSQL restart, a daemon restart and a kill of the user-code server (with the
  run's process, as when its container dies), each in the middle of a nightly run, end in a run that
  succeeded or in a failure with its reason followed by a successful retry (or re-run), and the
  warehouse equals the one an undisturbed night builds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
import yaml

from emulator.generator import visible_incidents
from tests.incremental_helpers import (
    GH_TOKEN,
    PD_TOKEN,
    ROOT,
    diff_states,
    materialize_all,
    small_org,
    start_emulator,
    subprocess_env,
    warehouse_state,
    write_ownership,
)
from tests.postgres_helpers import PASSWORD, PostgresServer
from tests.process_helpers import BIN, free_port, wait_until_serving

pytestmark = pytest.mark.slow


class Production:
    """The user-code server and the daemon as processes of their own, on one DAGSTER_HOME."""

    def __init__(self, tmp: Path, env: dict[str, str], pg: PostgresServer):
        self.tmp, self.env, self.pg = tmp, env, pg
        self.port = free_port()
        self.workspace = tmp / "workspace.yaml"
        ws = yaml.safe_load((ROOT / "deploy" / "workspace.yaml").read_text())
        ws["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=self.port)
        self.workspace.write_text(yaml.safe_dump(ws))
        self.procs: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, cmd: list[str]) -> None:
        with open(self.tmp / f"{name}.log", "ab") as log:  # the child keeps its own copy of the file
            self.procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)

    def start_code_server(self) -> None:
        self._start("code_server", [str(BIN / "dagster"), "api", "grpc", "-h", "127.0.0.1",
                                    "-p", str(self.port), "-m", "pipelines.definitions",
                                    "--location-name", "incident_metrics"])
        wait_until_serving(self.procs["code_server"], self.port, env=self.env, log=lambda: self.log("code_server"))

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

    def stop_schedule(self, name: str) -> None:
        done = subprocess.run([str(BIN / "dagster"), "schedule", "stop", name, "-w", str(self.workspace)],
                              cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr

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

    def wait_for(self, predicate, timeout: float, what: str, *, failures_allowed: bool = False) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs()
            if predicate(runs):
                return runs
            failed = [r for r in runs if r["status"] == "FAILURE"]
            assert failures_allowed or not failed, (failed, self.log("daemon"), self.log("code_server"))
            for name, proc in self.procs.items():
                assert proc.poll() is None, f"{name} exited ({proc.returncode}):\n{self.log(name)}"
            time.sleep(2)
        pytest.fail(f"timed out waiting for {what}: {self.runs()}\n{self.log('daemon')}")

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)


    def materializations(self, run_id: str) -> int:
        return int(self.pg.psql("select count(*) from event_logs where dagster_event_type = 'ASSET_MATERIALIZATION' "
                                f"and run_id = '{run_id}'").strip())

    def failure_message(self, run_id: str) -> str:
        return self.pg.psql(f"select event from event_logs where run_id = '{run_id}' "
                            "and dagster_event_type in ('PIPELINE_FAILURE', 'RUN_FAILURE')")

    def launch_and_wait_mid_run(self, job: str = "nightly", materialized: int = 3) -> dict:
        """Launch a run and return it once it has materialized a few assets (and has more to go)."""
        before = {r["run_id"] for r in self.runs()}
        self.launch(job)

        def in_progress(rs):
            new = [r for r in rs if r["run_id"] not in before]
            assert not any(r["status"] == "FAILURE" for r in new), (new, self.log("daemon"))
            return any(r["status"] == "STARTED" and self.materializations(r["run_id"]) >= materialized for r in new)

        runs = self.wait_for(in_progress, timeout=180, what=f"a {job} run in progress", failures_allowed=True)
        return next(r for r in runs if r["run_id"] not in before)

    def settle(self, run_id: str, timeout: float = 300) -> list[dict]:
        """Wait until the run and any retry of it have finished; return the chain, oldest first."""
        def chain(rs):
            ids, out = {run_id}, []
            for r in rs:
                if r["run_id"] in ids or self.parent(r["run_id"]) in ids:
                    ids.add(r["run_id"])
                    out.append(r)
            return out

        def done(rs):
            c = chain(rs)
            if not c or c[-1]["status"] not in ("SUCCESS", "FAILURE"):
                return False
            # a failed run is the end only once the retry daemon has decided not to retry it; when it
            # retries, the retry joins the chain (read in the same listing, so no race with its creation)
            return c[-1]["status"] == "SUCCESS" or self.tags(c[-1]["run_id"]).get("dagster/will_retry") == "false"

        return chain(self.wait_for(done, timeout=timeout, what="the run and its retries", failures_allowed=True))

    def tags(self, run_id: str) -> dict[str, str]:
        return dict(line.split("|", 1) for line in self.pg.psql(
            f"select key, value from run_tags where run_id = '{run_id}'").splitlines())

    def parent(self, run_id: str) -> str | None:
        return self.tags(run_id).get("dagster/parent_run_id")


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("production")
    org = small_org(seed=5, months=3, n_teams=2, future_days=0)
    srv = start_emulator(org)
    ownership = write_ownership(org, tmp)
    data = tmp / "data"
    home = tmp / "dagster_home"
    home.mkdir()
    # As shipped, but for run monitoring polling every 5 s instead of 30 s: the kill test waits less.
    instance = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    assert instance["run_monitoring"]["poll_interval_seconds"] == 30
    instance["run_monitoring"]["poll_interval_seconds"] = 5
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance))
    with PostgresServer() as pg:
        # The schedule ticks every minute; once the first tick has launched its run the schedule is
        # stopped (seconds later, long before the next minute), so this night is the only one.
        env = {**subprocess_env(srv, data, ownership), **pg.env(), "DAGSTER_HOME": str(home),
               "INCIDENT_METRICS_SCHEDULE": "* * * * *"}
        prod = Production(tmp, env, pg)
        try:
            prod.start_code_server()
            started = time.time()
            prod.start_daemon()
            prod.wait_for(lambda rs: len(rs) > 0, timeout=150, what="the first tick's run")
            prod.stop_schedule("nightly_schedule")
            scheduled = prod.wait_for(lambda rs: any(r["status"] == "SUCCESS" for r in rs),
                                      timeout=240, what="the scheduled nightly run")
            yield {"prod": prod, "pg": pg, "org": org, "data": data, "daemon_started": started, "srv": srv,
                   "ownership": ownership, "scheduled": scheduled}
        finally:
            prod.close()
            srv.stop()


def test_the_schedule_ticks_and_the_run_is_recorded_in_postgres(production):
    prod, pg = production["prod"], production["pg"]
    (run,) = production["scheduled"]
    assert run["job"] == "nightly" and run["status"] == "SUCCESS"
    tags = prod.tags(run["run_id"])
    assert tags["dagster/schedule_name"] == "nightly_schedule", tags
    # launched by a tick of the cron, at a whole minute after the daemon started
    tick = datetime.fromisoformat(tags[".dagster/scheduled_execution_time"])
    assert tick.second == 0 and tick.timestamp() >= production["daemon_started"] - 1
    assert run["created"] >= tick.timestamp()
    ticks = pg.psql("select count(*) from job_ticks where status = 'SUCCESS'").strip()
    assert int(ticks) == 1
    # Every asset of the nightly job was materialized in this run, as the event log in PostgreSQL says.
    from pipelines.definitions import defs

    keys = {"/".join(k.path) for k in defs.resolve_job_def("nightly").asset_layer.executable_asset_keys}
    materialized = {line for line in pg.psql(
        "select distinct asset_key from event_logs where dagster_event_type = 'ASSET_MATERIALIZATION' "
        f"and run_id = '{run['run_id']}'").splitlines()}
    assert {k.strip('[]').replace('", "', "/").strip('"') for k in materialized} == keys


@pytest.fixture(scope="module")
def reference_state(production, tmp_path_factory):
    """The same night run in-process on another data directory."""
    reference = tmp_path_factory.mktemp("reference")
    materialize_all(production["srv"], reference, production["ownership"])
    return warehouse_state(reference / "warehouse.duckdb")


def test_the_scheduled_run_built_the_warehouse(production, reference_state):
    data, org = production["data"], production["org"]
    built = warehouse_state(data / "warehouse.duckdb")
    assert diff_states(built, reference_state) == {}
    assert len(built["raw.pagerduty_incidents"]) == len(visible_incidents(org))
    con = duckdb.connect(str(data / "analytics.duckdb"), read_only=True)
    try:
        teams = con.execute("select count(distinct team_key) from marts.team_baselines").fetchone()[0]
    finally:
        con.close()
    assert teams == len(org.teams)
    assert (data / "reports" / "latest" / "index.html").exists()


def test_no_secret_reaches_the_dagster_storage_or_the_service_logs(production):
    pg, prod = production["pg"], production["prod"]
    for secret in (PASSWORD, PD_TOKEN, GH_TOKEN):
        counts = pg.psql(
            f"select (select count(*) from event_logs where event like '%{secret}%'), "
            f"(select count(*) from runs where run_body like '%{secret}%'), "
            f"(select count(*) from run_tags where value like '%{secret}%'), "
            f"(select count(*) from job_ticks where tick_body like '%{secret}%'), "
            f"(select count(*) from instigators where instigator_body like '%{secret}%')").strip()
        assert counts == "0|0|0|0|0", secret
        for name in ("daemon", "code_server"):
            assert secret not in (prod.tmp / f"{name}.log").read_text(errors="replace"), (secret, name)


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


def _ends_well(prod: Production, chain: list[dict]) -> None:
    """The run succeeded, or failed with its reason and a retry (or a re-run) then succeeded."""
    if chain[-1]["status"] != "SUCCESS":
        prod.launch("nightly")  # a failure with no retry: the next night (here, now) recovers
        rerun = prod.wait_for(lambda rs: rs[-1]["status"] in ("SUCCESS", "FAILURE"), timeout=240,
                              what="the re-run", failures_allowed=True)[-1]
        chain = [*chain, rerun]
    assert chain[-1]["status"] == "SUCCESS", chain
    for failed in chain[:-1]:
        assert failed["status"] == "FAILURE" and prod.failure_message(failed["run_id"]).strip(), failed


def test_a_postgres_restart_mid_run_loses_nothing(production, reference_state):
    prod, pg = production["prod"], production["pg"]
    run = prod.launch_and_wait_mid_run()
    pg.restart(down_seconds=2)
    chain = prod.settle(run["run_id"])
    _ends_well(prod, chain)
    assert diff_states(warehouse_state(production["data"] / "warehouse.duckdb"), reference_state) == {}


def test_a_daemon_restart_mid_run_loses_nothing(production, reference_state):
    prod = production["prod"]
    run = prod.launch_and_wait_mid_run()
    prod.stop("daemon", signal.SIGKILL)
    prod.start_daemon()
    chain = prod.settle(run["run_id"])
    # the run's process lives in the user-code server: it never noticed
    assert [r["status"] for r in chain] == ["SUCCESS"], chain
    assert diff_states(warehouse_state(production["data"] / "warehouse.duckdb"), reference_state) == {}


def test_a_killed_user_code_server_fails_the_run_with_the_reason_and_the_retry_completes(production, reference_state):
    prod = production["prod"]
    run = prod.launch_and_wait_mid_run()
    prod.stop("code_server", signal.SIGKILL)  # the server and the run's process, as when the container dies
    prod.start_code_server()  # the restart policy brings it back
    chain = prod.settle(run["run_id"])
    assert [r["status"] for r in chain] == ["FAILURE", "SUCCESS"], chain
    assert "user-code server" in prod.failure_message(run["run_id"])
    assert prod.parent(chain[1]["run_id"]) == run["run_id"]  # the retry, launched by the daemon
    assert diff_states(warehouse_state(production["data"] / "warehouse.duckdb"), reference_state) == {}
