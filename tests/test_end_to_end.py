"""The whole nightly job, materialized by Dagster into a real DuckDB file, against the real emulator
(a threaded HTTP server on 127.0.0.1) serving a tiny hand-made organisation.

Hand-computed expectations (UTC):
  team red  (Europe/Berlin, adopted 2025-06-01) owns svc-a until 2025-05-14; blue owns it from 2025-05-15
  team blue (America/New_York, not adopted) owns svc-b
  P001 svc-a 2025-05-05 (Mon) 08:00 (Berlin 10:00)  ack +120 s  resolved +1800 s   -> red
  P002 svc-a 2025-05-06 (Tue) 06:00 (Berlin 08:00, after hours) ack +600 s resolved +5400 s, one reassignment -> red
  P003 svc-a 2025-05-07 (Wed) 12:00 (Berlin 14:00)  ack +60 s   resolved +3600 s   -> red
  P004 svc-a 2025-05-20 (Tue) 15:00 (New York 11:00) ack +300 s resolved +900 s, auto-resolved -> blue (owner moved)
  P005 svc-b 2025-05-21 10:00 merged into P004 -> excluded
  P006 svc-b 2025-05-22 (Thu) 02:00 (New York 22:00, after hours) ack +240 s, still open -> blue, censored
Baselines: red pre-adoption 90 d = 2025-03-03..2025-06-01: TTR [1800, 3600, 5400] -> median 3600; TTA [60, 120, 600] -> 120.
           blue trailing 90 d to data_as_of (P006's ack, 2025-05-22 02:04) + 1 day: TTR [900] -> 900, n 2 (1 open);
           TTA [240, 300] -> median 270.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest

from emulator.model import (
    Deployment,
    DeploymentStatus,
    Incident,
    LogEntry,
    Organisation,
    OwnershipPeriod,
    Repo,
    Service,
    Team,
)

UTC = timezone.utc
PD_TOKEN = "e2e-pd-token-3f9a"
GH_TOKEN = "e2e-gh-token-77c1"


def t(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=UTC)


def _incident(id_, number, service, created, *, ack_s, resolve_s=None, merged=False, auto=False, reassign=False):
    c = t(created)
    entries = [LogEntry(f"L{id_}T", "trigger_log_entry", c, id_),
               LogEntry(f"L{id_}A", "assign_log_entry", c, id_, assignees=["PU1"])]
    ack = c + timedelta(seconds=ack_s) if ack_s is not None else None
    if ack:
        entries.append(LogEntry(f"L{id_}K", "acknowledge_log_entry", ack, id_, agent_type="user_reference",
                                agent_id="PU1", channel_type="website"))
    if reassign:
        entries.append(LogEntry(f"L{id_}R", "assign_log_entry", c + timedelta(seconds=900), id_,
                                agent_type="user_reference", agent_id="PU1", assignees=["PU2"]))
    resolved = c + timedelta(seconds=resolve_s) if resolve_s is not None else None
    if resolved:
        entries.append(LogEntry(f"L{id_}Z", "resolve_log_entry", resolved, id_,
                                agent_type="service_reference" if auto else "user_reference",
                                channel_type="timeout" if auto else "website"))
    return Incident(id=id_, number=number, title=f"incident {number}", service_id=service, created_at=c,
                    acknowledged_at=ack, resolved_at=resolved,
                    resolve_reason="merge_resolve_reason" if merged else None, auto_resolved=auto,
                    log_entries=entries)


def tiny_organisation() -> Organisation:
    teams = [
        Team("PTRED01", "red", "Red Team", "Europe/Berlin", adopted_on=date(2025, 6, 1)),
        Team("PTBLU01", "blue", "Blue Team", "America/New_York"),
    ]
    services = [
        Service("PSVCA01", "svc-a", [OwnershipPeriod("red"), OwnershipPeriod("blue", date(2025, 5, 15))],
                repos=["acme/svc-a"]),
        Service("PSVCB01", "svc-b", [OwnershipPeriod("blue")]),
    ]
    incidents = [
        _incident("P001", 1, "PSVCA01", "2025-05-05 08:00:00", ack_s=120, resolve_s=1800),
        _incident("P002", 2, "PSVCA01", "2025-05-06 06:00:00", ack_s=600, resolve_s=5400, reassign=True),
        _incident("P003", 3, "PSVCA01", "2025-05-07 12:00:00", ack_s=60, resolve_s=3600),
        _incident("P004", 4, "PSVCA01", "2025-05-20 15:00:00", ack_s=300, resolve_s=900, auto=True),
        _incident("P005", 5, "PSVCB01", "2025-05-21 10:00:00", ack_s=None, resolve_s=60, merged=True),
        _incident("P006", 6, "PSVCB01", "2025-05-22 02:00:00", ack_s=240),
    ]
    deployments = [
        Deployment(101, "acme/svc-a", "a" * 40, "main", "production", t("2025-05-20 13:00:00"),
                   statuses=[DeploymentStatus(1001, "in_progress", t("2025-05-20 13:00:10")),
                             DeploymentStatus(1002, "success", t("2025-05-20 13:05:00"))]),
        Deployment(102, "acme/svc-a", "b" * 40, "main", "staging", t("2025-05-21 09:00:00"),
                   statuses=[DeploymentStatus(1003, "failure", t("2025-05-21 09:03:00"))]),
    ]
    return Organisation(teams=teams, services=services, incidents=incidents,
                        repos=[Repo(1, "acme/svc-a")], deployments=deployments, github_org="acme")


@pytest.fixture(scope="module")
def emulator():
    from emulator.server import EmulatorServer

    srv = EmulatorServer(tiny_organisation(), port=0, pagerduty_token=PD_TOKEN, github_token=GH_TOKEN).start()
    yield srv
    srv.stop()


def _resources(srv, data_dir: Path, ownership_path: Path):
    from pipelines.connectors.github.resource import GitHubResource
    from pipelines.connectors.gitlab.resource import GitLabResource
    from pipelines.connectors.pagerduty.resource import PagerDutyResource
    from pipelines.resources import OwnershipResource, WarehouseResource

    return {
        "pagerduty": PagerDutyResource(api_url=srv.pagerduty_url, api_token=PD_TOKEN),
        "github": GitHubResource(api_url=srv.github_url, token=GH_TOKEN),
        "gitlab": GitLabResource(api_url=srv.gitlab_url),
        "ownership": OwnershipResource(path=str(ownership_path)),
        "warehouse": WarehouseResource(data_dir=str(data_dir), history_days=1000),
    }


def _run(srv, tmp_path) -> dg.ExecuteInProcessResult:
    from pipelines.definitions import all_assets

    ownership = tmp_path / "ownership.yaml"
    ownership.write_text(tiny_organisation().ownership_yaml())
    return dg.materialize(all_assets, resources=_resources(srv, tmp_path / "data", ownership),
                          instance=dg.DagsterInstance.ephemeral())


def _tables(con) -> dict[str, list]:
    names = con.execute(
        "select schema_name || '.' || table_name from duckdb_tables() "
        "where schema_name in ('raw', 'staging', 'intermediate', 'marts', 'quarantine') and table_name <> 'sync_runs' order by 1"
    ).fetchall()
    return {n: con.execute(f"select * from {n} order by all").fetchall() for (n,) in names}


@pytest.fixture(scope="module")
def warehouse_after_two_runs(emulator, tmp_path_factory):
    import duckdb

    tmp = tmp_path_factory.mktemp("e2e")
    first = _run(emulator, tmp)
    assert first.success
    con = duckdb.connect(str(tmp / "data" / "warehouse.duckdb"), read_only=True)
    tables_1 = _tables(con)
    con.close()
    second = _run(emulator, tmp)
    assert second.success
    con = duckdb.connect(str(tmp / "data" / "warehouse.duckdb"), read_only=True)
    tables_2 = _tables(con)
    yield {"con": con, "first": first, "tables_1": tables_1, "tables_2": tables_2, "dir": tmp / "data"}
    con.close()


def test_fct_incidents_exact(warehouse_after_two_runs):
    con = warehouse_after_two_runs["con"]
    rows = con.execute(
        "select incident_id, team_key, seconds_to_acknowledge, seconds_to_resolve, is_merged, is_auto_resolved, "
        "is_open, is_after_hours, handoffs, linked_deployment_id from marts.fct_incidents order by incident_id"
    ).fetchall()
    assert rows == [
        ("P001", "red", 120, 1800, False, False, False, False, 0, None),
        ("P002", "red", 600, 5400, False, False, False, True, 1, None),
        ("P003", "red", 60, 3600, False, False, False, False, 0, None),
        ("P004", "blue", 300, 900, False, True, False, False, 0, 101),  # 2 h after the production deploy
        ("P005", "blue", None, 60, True, False, False, True, 0, None),
        ("P006", "blue", 240, None, False, False, True, True, 0, None),
    ]
    assert con.execute("select seconds_open_so_far from marts.fct_incidents where incident_id = 'P006'"
                       ).fetchone() == (240,)


def test_team_baselines_exact(warehouse_after_two_runs):
    con = warehouse_after_two_runs["con"]
    assert con.execute(
        "select team_key, period_kind, period_start, period_end, n_incidents, n_resolved, n_open, "
        "median_seconds_to_resolve, p90_seconds_to_resolve, median_seconds_to_acknowledge "
        "from marts.team_baselines order by team_key"
    ).fetchall() == [
        ("blue", "trailing_90d", date(2025, 2, 22), date(2025, 5, 23), 2, 1, 1, 900.0, None, 270.0),
        ("red", "pre_adoption_90d", date(2025, 3, 3), date(2025, 6, 1), 3, 3, 0, 3600.0, None, 120.0),
    ]
    assert con.execute(
        "select team_key, month, n_incidents, median_seconds_to_resolve from marts.team_monthly_metrics order by 1, 2"
    ).fetchall() == [("blue", date(2025, 5, 1), 2, 900.0), ("red", date(2025, 5, 1), 3, 3600.0)]


def test_deployments_exact(warehouse_after_two_runs):
    con = warehouse_after_two_runs["con"]
    assert con.execute(
        "select deployment_id, repo, is_production, final_state, is_successful, team_key, caused_incident, "
        "seconds_to_recover from marts.fct_deployments order by 1"
    ).fetchall() == [
        (101, "acme/svc-a", True, "success", True, "blue", True, 7800.0),  # success 13:05 -> P004 resolved 15:15
        (102, "acme/svc-a", False, "failure", False, "blue", False, None),
    ]


def test_second_run_changes_nothing(warehouse_after_two_runs):
    assert warehouse_after_two_runs["tables_1"] == warehouse_after_two_runs["tables_2"]
    assert warehouse_after_two_runs["tables_1"]["raw.pagerduty_incidents"]  # not vacuously equal
    assert warehouse_after_two_runs["tables_1"]["quarantine.rejected_records"] == []


def test_metadata_report_and_snapshot(warehouse_after_two_runs):
    import duckdb

    result = warehouse_after_two_runs["first"]
    mats = {m.asset_key.to_user_string(): m.metadata for m in
            (e.event_specific_data.materialization for e in result.get_asset_materialization_events())}
    assert mats["marts/fct_incidents"]["dagster/row_count"].value == 6
    assert mats["raw/pagerduty_incidents"]["api_requests"].value >= 1
    assert mats["raw/pagerduty_log_entries"]["records_received"].value == 6 * 2 + 5 + 1 + 5  # trigger+assign, acks, reassignment, resolves
    data = warehouse_after_two_runs["dir"]
    csv = (data / "reports" / "latest" / "team_baselines.csv").read_text()
    assert "red,pre_adoption_90d,2025-03-03,2025-06-01,3,3,0,3600.0" in csv
    html = (data / "reports" / "latest" / "index.html").read_text()
    assert "Red Team" in html and "60 min" in html
    snap = duckdb.connect(str(data / "analytics.duckdb"), read_only=True)
    try:
        assert snap.execute("select count(*) from marts.fct_incidents").fetchone() == (6,)
        assert snap.execute("select count(*) from duckdb_tables() where schema_name = 'raw'").fetchone() == (0,)
        comment = snap.execute("select comment from duckdb_columns() where table_name = 'fct_incidents' "
                               "and column_name = 'seconds_to_resolve'").fetchone()[0]
        assert "seconds" in comment
    finally:
        snap.close()


def test_tokens_never_reach_the_warehouse_or_report(warehouse_after_two_runs):
    data = warehouse_after_two_runs["dir"]
    for path in data.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            assert PD_TOKEN.encode() not in blob and GH_TOKEN.encode() not in blob, path


def test_statistics_marts_say_insufficient_data_for_a_tiny_team(warehouse_after_two_runs):
    con = warehouse_after_two_runs["con"]
    # red adopted 2025-06-01; its 3 incidents (May 5-7) fall in the 30-day transition window, so the
    # transition-excluded comparison has none before, and the "all" variant has 3: under 20 per arm.
    rows = con.execute(
        "select variant, n_before, n_after, verdict, low_power from marts.team_comparisons "
        "where team = 'red' and metric = 'time_to_resolve' order by variant"
    ).fetchall()
    assert rows == [("all", 3, 0, "insufficient_data", True), ("transition_excluded", 0, 0, "insufficient_data", True)]
    assert con.execute("select count(*) from marts.team_comparisons where team = 'blue'").fetchone() == (0,)
    org = con.execute("select verdict from marts.org_effects where metric = 'time_to_resolve'").fetchone()
    assert org == ("insufficient_data",)


def test_log_entries_written_in_batches_equal_one_batch(emulator, tmp_path):
    """Batches bound memory on big backfills; they must not change what lands (23 entries, batches of 2)."""
    from pipelines import warehouse as wh
    from pipelines.connectors import connector
    from pipelines.connectors.pagerduty.client import PagerDutyClient
    from pipelines.ingest.runner import SyncSettings, run_stream

    now = datetime.now(UTC)
    contents = []
    for batch_size in (2, 10_000):
        con = wh.connect(tmp_path / f"w{batch_size}.duckdb")
        wh.ensure_schemas(con)
        with PagerDutyClient(emulator.pagerduty_url, PD_TOKEN) as client:
            result = run_stream(con, client, connector("pagerduty").stream("log_entries"), run_id="r", now=now,
                                settings=SyncSettings(history_days=1000), batch_size=batch_size)["pagerduty_log_entries"]
        assert (result.received, result.changed, result.quarantined) == (23, 23, 0)
        contents.append((con.execute("select id, payload from raw.pagerduty_log_entries order by id").fetchall(),
                         con.execute("select high_water_mark from raw.sync_state").fetchall()))
        con.close()
    assert contents[0] == contents[1]
    assert len(contents[0][0]) == 23
