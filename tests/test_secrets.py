"""Secrets and privacy, end to end: ``incident-metrics run`` in a subprocess against the emulator with
recognisable tokens, a persistent Dagster instance (DAGSTER_HOME) and a clean organisation whose
people have recognisable names and emails. Then every output is searched: each file under the data
directory and DAGSTER_HOME, every value of every table of the warehouse and the analyst snapshot,
every Dagster event (metadata, logs, errors) and the captured stdout/stderr.

Failure paths (a rejected token, an unreachable API) are searched for the tokens in
tests/test_bad_input.py.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from emulator.server import EmulatorServer
from tests.bad_input_helpers import USERS, clean_organisation, cli

PD_SECRET = "pd-SECRET-4242"
GH_SECRET = "gh-SECRET-4242"
GL_SECRET = "glpat-SECRET-4242"
SECRETS = (PD_SECRET, GH_SECRET, GL_SECRET)
PEOPLE = [u.name for u in USERS] + [u.email for u in USERS]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("secrets")
    org = clean_organisation()
    org.incidents[2].title = f"paged {USERS[0].email} ({USERS[0].name}) twice"  # personal data in a raw payload
    _add_gitlab_repo(org)
    ownership = tmp / "ownership.yaml"
    ownership.write_text(org.ownership_yaml(), encoding="utf-8")
    home = tmp / "dagster_home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PAGERDUTY", "GITHUB", "GITLAB", "INCIDENT_METRICS", "DAGSTER", "EMULATOR"))}
    with EmulatorServer(org, port=0, pagerduty_token=PD_SECRET, github_token=GH_SECRET, gitlab_token=GL_SECRET) as srv:
        env.update({
            "PAGERDUTY_API_URL": srv.pagerduty_url, "PAGERDUTY_API_TOKEN": PD_SECRET,
            "GITHUB_API_URL": srv.github_url, "GITHUB_TOKEN": GH_SECRET,
            "GITLAB_API_URL": srv.gitlab_url, "GITLAB_TOKEN": GL_SECRET,
            "INCIDENT_METRICS_OWNERSHIP": str(ownership), "INCIDENT_METRICS_DATA_DIR": str(tmp / "data"),
            "INCIDENT_METRICS_HISTORY_DAYS": "1000", "DAGSTER_HOME": str(home),
        })
        proc = cli(["run"], env, fast_retries=False)
        requests = srv.stats()["by_service"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert min(requests[s]["requests"] for s in ("pagerduty", "github", "gitlab")) > 0  # every token was used
    return {"proc": proc, "data": tmp / "data", "home": home, "tmp": tmp}


def _add_gitlab_repo(org) -> None:
    """svc-b gets a repo on GitLab (in a nested group), with one successful production deployment."""
    from emulator.model import Deployment, DeploymentStatus, Repo

    org.repos.append(Repo(2, "acme/platform/svc-b", host="gitlab"))
    org.services[1].repos = ["acme/platform/svc-b"]
    when = datetime(2025, 5, 21, 10, 0, tzinfo=timezone.utc)
    org.deployments.append(Deployment(102, "acme/platform/svc-b", "b" * 40, "main", "production", when,
                                      statuses=[DeploymentStatus(1002, "success", when + timedelta(minutes=4))]))


def _instance_events(home: Path) -> list[str]:
    """Every event of every run in the persistent instance, serialized (metadata, messages, errors)."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef
    from dagster._serdes import serialize_value

    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    try:
        runs = instance.get_runs()
        assert runs
        out = []
        for run in runs:
            out.append(serialize_value(run))
            out.extend(serialize_value(entry) for entry in instance.all_logs(run.run_id))
        return out
    finally:
        instance.dispose()


def _table_values(path: Path) -> dict[str, str]:
    """Every table of a DuckDB file as text (all rows, all columns, lists and JSON included)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = con.execute("select database_name, schema_name, table_name from duckdb_tables() "
                             "where database_name = current_database()").fetchall()
        return {f"{s}.{t}": repr(con.execute(f'select * from "{s}"."{t}"').fetchall()) for _, s, t in tables}
    finally:
        con.close()


def test_tokens_appear_in_no_file_table_event_or_log(demo):
    files = [p for root in (demo["data"], demo["home"]) for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "warehouse.duckdb" for p in files) and any(p.suffix == ".html" for p in files)
    for path in files:
        blob = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in blob, path
    for db in ("warehouse.duckdb", "analytics.duckdb"):  # DuckDB may compress strings on disk: read them back
        for table, text in _table_values(demo["data"] / db).items():
            assert not any(s in text for s in SECRETS), (db, table)
    events = _instance_events(demo["home"])
    assert len(events) > 50
    for text in events:
        assert not any(s in text for s in SECRETS), text[:300]
    out = demo["proc"].stdout + demo["proc"].stderr
    assert "nightly run finished" in out
    assert not any(s in out for s in SECRETS)


def test_a_clean_run_passes_every_check_and_quarantines_nothing(demo):
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(demo["home"])))
    try:
        [run] = instance.get_runs()
        evaluations = [e.dagster_event.event_specific_data for e in instance.all_logs(run.run_id)
                       if e.dagster_event and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"]
    finally:
        instance.dispose()
    assert len(evaluations) >= 20
    failed = {f"{e.asset_key.to_user_string()}:{e.check_name}": e.description for e in evaluations if not e.passed}
    assert failed == {}
    con = duckdb.connect(str(demo["data"] / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute("select count(*) from quarantine.rejected_records").fetchone() == (0,)
    finally:
        con.close()
    html = (demo["data"] / "reports" / "latest" / "index.html").read_text(encoding="utf-8")
    assert 'data-summary="quarantined_records" data-value="0"' in html


def test_the_snapshot_and_the_report_carry_no_names_or_emails(demo):
    raw = _table_values(demo["data"] / "warehouse.duckdb")
    # not vacuous: the API did send the people (log-entry agents, an incident title) and raw keeps them
    assert USERS[0].name in raw["raw.pagerduty_log_entries"] and USERS[0].email in raw["raw.pagerduty_incidents"]
    for table, text in _table_values(demo["data"] / "analytics.duckdb").items():
        for person in PEOPLE:
            assert person not in text, (table, person)
    report = demo["data"] / "reports" / "latest"
    files = [p for p in report.rglob("*") if p.is_file()]
    assert any(p.suffix == ".csv" for p in files)
    for path in files:
        blob = path.read_bytes()
        for person in PEOPLE:
            assert person.encode() not in blob, (path, person)


def test_the_snapshot_has_ids_not_people(demo):
    """The snapshot copies staging and marts: no column may hold a person (ids of services and teams only)."""
    personal = re.compile(r"email|user|agent_(id|name)|assignee|responder|acknowledger|login|creator|author|person")
    con = duckdb.connect(str(demo["data"] / "analytics.duckdb"), read_only=True)
    try:
        columns = con.execute("select schema_name || '.' || table_name || '.' || column_name from duckdb_columns() "
                              "where database_name = current_database()").fetchall()
    finally:
        con.close()
    assert len(columns) > 50
    assert [c for (c,) in columns if personal.search(c.split(".")[-1]) and not c.split(".")[-1].startswith("n_")] == []
