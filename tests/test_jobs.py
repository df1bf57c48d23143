"""Every job builds what it reads, and runs on a data directory that has never had a run.

* The asset graph, walked: every table a SQL model or a data-quality check reads is one of its
  upstream assets, and every job holds the upstream assets of all that it runs (a raw table
  outside the job is allowed: the warehouse creates every raw table, empty, when it opens).
* Each job (``nightly``, ``backfill``, ``rebuild``) materializes on an empty data directory.
* ``incident-metrics backfill`` into a fresh warehouse equals, in the backfilled range, a nightly
  run followed by the same backfill.
* A failure that is the user's to fix prints one line, the stack trace going to the log file.
"""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipelines import quality
from pipelines import warehouse as wh
from tests.incremental_helpers import (
    PYTHON,
    ROOT,
    resources,
    small_org,
    start_emulator,
    subprocess_env,
    write_ownership,
)

UTC = timezone.utc
JOBS = ("nightly", "backfill", "rebuild")
RAW_DDL = {dg.AssetKey(["raw", f.table]) for f in wh.sql_files("raw")}


def _defs():
    from pipelines.definitions import defs

    return defs


def _job_nodes(job_name: str) -> tuple[set[dg.AssetKey], list[tuple[str, dg.AssetCheckKey]]]:
    """The assets a job materializes and the checks it runs (a check runs where its op does)."""
    defs = _defs()
    job = defs.resolve_job_def(job_name)
    op_names = {node.name for node in job.graph.nodes}
    checks = [(c.node_def.name, key) for c in defs.asset_checks for key in c.check_keys if c.node_def.name in op_names]
    return set(job.asset_layer.selected_asset_keys), checks


def _check_deps(key: dg.AssetCheckKey) -> set[dg.AssetKey]:
    spec = _defs().resolve_asset_graph().get_check_spec(key)
    return {spec.asset_key, *(dep.asset_key for dep in spec.additional_deps)}


def test_every_sql_model_and_check_reads_only_its_upstream_assets():
    graph = _defs().resolve_asset_graph()
    for schema in ("staging", "intermediate", "marts"):
        for f in wh.sql_files(schema):
            parents = graph.get(dg.AssetKey([f.schema, f.table])).parent_keys
            missing = {dg.AssetKey(list(ref)) for ref in f.references} - parents
            assert not missing, f"sql/{schema}/{f.table}.sql reads {missing} outside its upstream assets"
    checked = 0
    for key in graph.asset_check_keys:
        table = key.asset_key.path[-1]
        if key.asset_key.path[0] != "staging" or table not in quality.tables():
            continue
        reads = {dg.AssetKey(list(ref)) for ref in wh.table_references(quality.tables()[table].frame_sql)}
        missing = reads - _check_deps(key)
        assert not missing, f"check {key.name} on {table} reads {missing} outside its upstream assets"
        checked += 1
    # gx_blocking on every staging table, gx_warnings where it has softer rules: each was walked
    assert checked == sum(1 + bool(t.rules_of(quality.WARNING)) for t in quality.tables().values()) > 10


def test_the_walk_catches_a_check_that_reads_outside_its_upstream():
    """The rule above, on a check whose SQL names a table it does not depend on."""
    spec = quality.tables()["stg_pagerduty__incidents"]
    reads = {dg.AssetKey(list(r)) for r in wh.table_references(spec.frame_sql + " join staging.stg_github__deployments")}
    key = dg.AssetCheckKey(dg.AssetKey(["staging", "stg_pagerduty__incidents"]), "gx_blocking")
    assert reads - _check_deps(key) == {dg.AssetKey(["staging", "stg_github__deployments"])}


@pytest.mark.parametrize("job_name", JOBS)
def test_each_job_holds_the_upstream_of_all_it_runs(job_name):
    graph = _defs().resolve_asset_graph()
    assets, checks = _job_nodes(job_name)
    for key in assets:
        outside = set(graph.get(key).parent_keys) - assets - RAW_DDL
        assert not outside, f"job {job_name}: {key.to_user_string()} reads {outside}, which the job does not build"
    for op_name, key in checks:
        outside = _check_deps(key) - assets - RAW_DDL
        assert not outside, f"job {job_name}: check {op_name} reads {outside}, which the job does not build"
    assert checks, job_name


def test_the_jobs_select_what_they_should():
    nightly, _ = _job_nodes("nightly")
    backfill, _ = _job_nodes("backfill")
    rebuild, _ = _job_nodes("rebuild")
    analytics = dg.AssetKey(["raw", "pagerduty_analytics_incidents"])
    assert backfill == nightly - {analytics}  # its bookmark is nightly only
    assert {k for k in nightly - rebuild} == {
        dg.AssetKey(["raw", t]) for t in ("pagerduty_teams", "pagerduty_services", "pagerduty_incidents",
                                          "pagerduty_log_entries", "pagerduty_analytics_incidents",
                                          "github_deployments", "github_deployment_statuses",
                                          "github_pull_requests", "gitlab_deployments", "gitlab_environments",
                                          "gitlab_merge_requests")}
    assert dg.AssetKey(["raw", "ownership_teams"]) in rebuild


# ----------------------------------------------------------------------------------- on an empty data directory


@pytest.fixture(scope="module")
def org_and_emulator(tmp_path_factory):
    org = small_org(seed=7, months=4, future_days=0)
    srv = start_emulator(org)
    ownership = write_ownership(org, tmp_path_factory.mktemp("ownership"))
    try:
        yield org, srv, ownership
    finally:
        srv.stop()


def _range() -> tuple[str, str]:
    today = datetime.now(UTC).date()
    return (today - timedelta(days=150)).isoformat(), (today - timedelta(days=50)).isoformat()


def _run_job(job_name: str, srv, data: Path, ownership: Path, *, history_days: int = 730):
    run_config = {}
    if job_name == "backfill":
        since, until = _range()
        run_config = {"since": since, "until": until, "window_days": 30}
    return _defs().resolve_job_def(job_name).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), run_config=run_config, raise_on_error=False,
        resources=resources(srv, data, ownership, history_days=history_days))


def _one(db: Path, sql: str, params=()):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchone()
    finally:
        con.close()


@pytest.mark.slow
@pytest.mark.parametrize("job_name", JOBS)
def test_each_job_runs_on_an_empty_data_directory(job_name, org_and_emulator, tmp_path):
    org, srv, ownership = org_and_emulator
    data = tmp_path / "data"
    srv.reset_stats()
    result = _run_job(job_name, srv, data, ownership)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    db = data / "warehouse.duckdb"
    assert _one(db, "select count(*) from marts.dim_teams")[0] == len(org.teams)  # the ownership file was loaded
    assert (data / "reports" / "latest" / "index.html").exists() and (data / "analytics.duckdb").exists()
    incidents = _one(db, "select count(*) from raw.pagerduty_incidents")[0]
    if job_name == "rebuild":
        assert srv.stats()["requests"] == 0  # no API call
        assert incidents == 0 and _one(db, "select count(*) from marts.fct_incidents")[0] == 0
    elif job_name == "backfill":
        since, until = (datetime.fromisoformat(d).replace(tzinfo=UTC) for d in _range())
        expected = sum(1 for i in org.incidents if since <= i.created_at < until)
        assert incidents == expected > 0
        assert _one(db, "select count(*) from raw.sync_state")[0] == 0  # no bookmark moved
    else:
        assert incidents == len(org.incidents)


# ----------------------------------------------------------------------------------- backfill into a fresh warehouse

# The backfilled range's rows, table by table: raw records by the time the range is taken on,
# and the facts of the incidents and deployments created in it. data_as_of (the newest record
# seen anywhere) and seconds_open_so_far (measured to it) depend on what lies outside the range.
IN_RANGE = {
    "raw.pagerduty_incidents": "select id, payload::varchar from raw.pagerduty_incidents "
                               "where cast(payload ->> 'created_at' as timestamptz) >= ? "
                               "and cast(payload ->> 'created_at' as timestamptz) < ?",
    "raw.pagerduty_log_entries": "select id, payload::varchar from raw.pagerduty_log_entries "
                                 "where cast(payload ->> 'created_at' as timestamptz) >= ? "
                                 "and cast(payload ->> 'created_at' as timestamptz) < ?",
    "raw.github_deployments": "select id, payload::varchar from raw.github_deployments "
                              "where cast(payload ->> 'created_at' as timestamptz) >= ? "
                              "and cast(payload ->> 'created_at' as timestamptz) < ?",
    "raw.github_pull_requests": "select id, payload::varchar from raw.github_pull_requests "
                                "where cast(payload ->> 'updated_at' as timestamptz) >= ? "
                                "and cast(payload ->> 'updated_at' as timestamptz) < ?",
    "marts.fct_incidents": "select * exclude (data_as_of, seconds_open_so_far) from marts.fct_incidents "
                           "where created_at >= ? and created_at < ?",
    "marts.fct_deployments": "select * from marts.fct_deployments where created_at >= ? and created_at < ?",
}


def _in_range(db: Path, since: datetime, until: datetime) -> dict[str, list]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {t: sorted(con.execute(sql, [since, until]).fetchall(), key=repr) for t, sql in IN_RANGE.items()}
    finally:
        con.close()


@pytest.mark.slow
def test_backfill_into_a_fresh_warehouse_equals_a_nightly_run_then_the_same_backfill(org_and_emulator, tmp_path):
    org, srv, ownership = org_and_emulator
    since, until = _range()
    fresh = tmp_path / "fresh"
    proc = subprocess.run(
        [PYTHON, "-m", "pipelines.cli", "backfill", "--since", since, "--until", until, "--window-days", "92"],
        env=subprocess_env(srv, fresh, ownership), cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Stack Trace" not in proc.stderr
    assert f"report: {fresh / 'reports' / 'latest' / 'index.html'}" in proc.stdout
    assert (fresh / "analytics.duckdb").exists() and (fresh / "reports" / "latest" / "index.html").exists()

    after_night = tmp_path / "after-night"
    night = _run_job("nightly", srv, after_night, ownership, history_days=60)
    assert night.success
    backfill = _run_job("backfill", srv, after_night, ownership)
    assert backfill.success

    a, b = (datetime.fromisoformat(d).replace(tzinfo=UTC) for d in (since, until))
    got, want = _in_range(fresh / "warehouse.duckdb", a, b), _in_range(after_night / "warehouse.duckdb", a, b)
    for table in IN_RANGE:
        assert got[table] == want[table], table
    assert len(got["raw.pagerduty_incidents"]) > 100 and len(got["marts.fct_incidents"]) > 100
    assert len(got["marts.fct_deployments"]) > 50
    # the snapshot an analyst opens holds the same marts rows in the range
    assert _one(fresh / "analytics.duckdb", "select count(*) from marts.fct_incidents where created_at >= ? "
                "and created_at < ?", (a, b))[0] == len(got["marts.fct_incidents"])


# ----------------------------------------------------------------------------------- errors that are the user's to fix


def _cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "pipelines.cli", *args], env=env, cwd=str(ROOT), capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_no_ownership_file_is_one_line_naming_the_setting_and_the_trace_goes_to_the_log(org_and_emulator, tmp_path):
    _, srv, _ = org_and_emulator
    data = tmp_path / "data"
    missing = tmp_path / "nowhere" / "ownership.yaml"
    since, until = _range()
    for args in (["backfill", "--since", since, "--until", until, "--window-days", "92"], ["run"], ["rebuild"]):
        srv.reset_stats()
        proc = _cli(args, subprocess_env(srv, data, missing))
        assert srv.stats()["requests"] == 0, args  # the file is read first: no API request is spent
        assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert proc.stderr.splitlines() == [
            f"error: {missing}:1: ownership file not found (set INCIDENT_METRICS_OWNERSHIP to the path of "
            "ownership.yaml)"], (args, proc.stderr)
    logs = sorted((data / "logs").glob("*.log"))
    assert [p.name.split("-")[0] for p in logs] == ["backfill", "rebuild", "run"]
    for log in logs:
        text = log.read_text(encoding="utf-8")
        assert "OwnershipError" in text and "Stack Trace" in text and 'File "' in text, log


def test_a_report_before_any_run_is_one_line_naming_the_fix(tmp_path):
    env = subprocess_env(type("S", (), {"pagerduty_url": "http://127.0.0.1:9", "github_url": "http://127.0.0.1:9",
                                      "gitlab_url": "http://127.0.0.1:9"})(),
                         tmp_path / "data", tmp_path / "ownership.yaml")
    proc = _cli(["report"], env)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"error: no warehouse at {tmp_path / 'data' / 'warehouse.duckdb'}: run `incident-metrics run` "
        "(or `backfill`, or `rebuild`) first"]
    # a warehouse whose marts were never built (a first run that failed early)
    wh.connect(tmp_path / "data" / "warehouse.duckdb").close()
    proc = _cli(["report"], env)
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1 and "has no marts yet" in proc.stderr


def test_failure_lines_say_a_user_error_once_and_other_failures_per_step():
    from pipelines.errors import failure_lines

    auth = "AuthError: GitHub answered 401 at GET /repos/acme/x/deployments: set GITHUB_TOKEN to a valid token"
    assert failure_lines([("a", "AuthError", auth), ("b", "AuthError", auth)], "/l.log") == [
        "error: GitHub answered 401 at GET /repos/acme/x/deployments: set GITHUB_TOKEN to a valid token"]
    assert failure_lines([("a", "AuthError", auth), ("s", "KeyError", "KeyError: 'x'\n  more")], "/l.log") == [
        "error: GitHub answered 401 at GET /repos/acme/x/deployments: set GITHUB_TOKEN to a valid token",
        "error in s: KeyError: 'x'",
        "stack traces: /l.log"]
