"""Data quality without the network: the record rules (first line), the staging flags, the GX suites
(second line) on hand-made DataFrames, and the asset checks in Dagster, where a failing blocking
check must stop the marts, the report and the snapshot in the same run.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import dagster as dg
import pandas as pd
import pytest

from pipelines import quality, records
from pipelines import warehouse as wh
from pipelines.connectors import connector
from pipelines.connectors.github import records as github_rules
from pipelines.connectors.pagerduty import records as pagerduty_rules
from pipelines.ingest.raw import upsert_raw
from pipelines.ownership import load_ownership_tables, parse_ownership
from tests.factories import pd_incident, pd_log_entry

UTC = timezone.utc
NOW = datetime(2025, 6, 1, tzinfo=UTC)

OWNERSHIP = """
version: 1
teams:
  - key: alpha
    name: Alpha
    time_zone: Europe/Berlin
services:
  - pagerduty_service_id: S1
    name: checkout
    repos: [acme/checkout]
    owner: alpha
"""


# ------------------------------------------------------------------------------- records.py


def _incident(**changes):
    r = pd_incident("I1", "S1", "2025-05-01T10:00:00Z", resolved="2025-05-01T11:00:00Z", number=7)
    for key, value in changes.items():
        if value is ...:
            r.pop(key)
        else:
            r[key] = value
    return r


@pytest.mark.parametrize("changes, rule", [
    ({}, None),
    ({"created_at": "2025-05-01T12:00:00+02:00"}, None),  # an offset is fine: it is converted to UTC
    ({"id": ...}, "missing_id"),
    ({"created_at": ...}, "missing_field"),
    ({"created_at": None}, "missing_field"),
    ({"created_at": 1746093600}, "wrong_type"),
    ({"created_at": "yesterday"}, "bad_timestamp"),
    ({"created_at": "2025-05-01T10:00:00"}, "naive_timestamp"),
    ({"created_at": "2008-12-31T23:59:59Z"}, "implausible_timestamp"),
    ({"created_at": "2099-01-01T00:00:00Z"}, "implausible_timestamp"),
    ({"resolved_at": "2025-05-01T09:00:00Z"}, "resolved_before_created"),
    ({"resolved_at": "2025-05-01T11:00:00"}, "naive_timestamp"),
    ({"updated_at": "soon"}, "bad_timestamp"),
    ({"incident_number": "7"}, "wrong_type"),
    ({"incident_number": True}, "wrong_type"),
    ({"service": None}, "missing_field"),
    ({"service": {"id": 12}}, "missing_field"),
    ({"status": "snoozed"}, "unknown_value"),
    ({"incident_key": {"k": 1}}, "wrong_type"),
])
def test_incident_rules(changes, rule):
    problem = records.validate_record(_incident(**changes), pagerduty_rules.INCIDENT, now=NOW)
    assert (problem[0] if problem else None) == rule
    if problem:
        assert problem[1]  # a reason a person can read


@pytest.mark.parametrize("record, kind, rule", [
    (pd_log_entry("L1", "I1", "acknowledge", "2025-05-01T10:05:00Z"), pagerduty_rules.LOG_ENTRY, None),
    (pd_log_entry("L1", "I1", "mystery", "2025-05-01T10:05:00Z"), pagerduty_rules.LOG_ENTRY, None),  # kept
    ({**pd_log_entry("L1", "I1", "acknowledge", "2025-05-01T10:05:00Z"), "created_at": "2025-05-01 10:05"},
     pagerduty_rules.LOG_ENTRY, "naive_timestamp"),
    ({"id": 5, "sha": "a", "task": "deploy", "environment": "production", "created_at": "2025-05-01T10:00:00Z"},
     github_rules.DEPLOYMENT, None),
    ({"id": "5", "sha": "a", "task": "deploy", "environment": "production", "created_at": "2025-05-01T10:00:00Z"},
     github_rules.DEPLOYMENT, "wrong_type"),
    ({"id": 5, "sha": "a", "task": "deploy", "created_at": "2025-05-01T10:00:00Z"}, github_rules.DEPLOYMENT,
     "missing_field"),
    ({"id": 9, "state": "success", "deployment_url": "https://x/deployments/5", "created_at": "2025-05-01T10:00:00Z"},
     github_rules.DEPLOYMENT_STATUS, None),
    ({"id": 9, "state": "exploded", "deployment_url": "https://x/deployments/5", "created_at": "2025-05-01T10:00:00Z"},
     github_rules.DEPLOYMENT_STATUS, "unknown_value"),
    ({"id": 3, "number": 1, "head": {}, "merge_commit_sha": None, "created_at": "2025-05-02T10:00:00Z",
      "updated_at": "2025-05-02T10:00:00Z", "merged_at": "2025-05-01T10:00:00Z"},
     github_rules.PULL_REQUEST, "merged_before_created"),
    ({**pd_log_entry("L1", "I1", "acknowledge", "2025-05-01T10:05:00Z"), "incident": None},
     pagerduty_rules.LOG_ENTRY, "missing_incident"),
    ("not a record", pagerduty_rules.INCIDENT, "not_an_object"),
])
def test_rules_of_other_records(record, kind, rule):
    problem = records.validate_record(record, kind, now=NOW)
    assert (problem[0] if problem else None) == rule


def test_a_record_is_judged_by_the_rules_of_the_table_its_stream_writes():
    """No guessing from the shape: an incident so malformed that nothing in it says "incident" (no
    type, no incident_number) still gets the incident rules, because the incidents stream's table
    names them; under the generic rules (an id and a time) it would have passed."""
    malformed = {"id": "I9", "created_at": "2025-05-01T10:00:00Z", "status": "snoozed",
                 "service": {"id": "S1"}}
    table = connector("pagerduty").stream("incidents").tables[0]
    assert table.rules is pagerduty_rules.INCIDENT
    assert records.validate_record(malformed, records.RecordRules("generic"), now=NOW) is None
    good, bad = records.split_valid([malformed], table.rules, now=NOW)
    assert good == [] and [(r["id"], rule) for r, rule, _ in bad] == [("I9", "unknown_value")]
    # and every raw table of every stream names rules of its own kind
    for c in (connector("pagerduty"), connector("github")):
        for s in c.streams:
            for t in s.tables:
                assert t.rules.kind == t.name.removesuffix("s").replace("_entrie", "_entry").replace(
                    "_statuse", "_status"), (t.name, t.rules.kind)


def test_split_valid_keeps_the_good_and_names_the_rule_of_the_bad():
    good, bad = records.split_valid([_incident(), _incident(id="I2", status="weird"), 42], pagerduty_rules.INCIDENT,
                                    now=NOW)
    assert [r["id"] for r in good] == ["I1"]
    assert [(b[0].get("id"), b[1]) for b in bad] == [("I2", "unknown_value"), (None, "not_an_object")]
    assert bad[1][0] == {"value": 42}  # the raw value is kept for the quarantine payload


@pytest.fixture()
def con(tmp_path):
    con = wh.connect(tmp_path / "warehouse.duckdb")
    wh.ensure_schemas(con)
    load_ownership_tables(con, parse_ownership(OWNERSHIP))
    yield con
    con.close()


def _load(con, incidents, entries):
    with wh.transaction(con):
        upsert_raw(con, "pagerduty_incidents", incidents, run_id="r1", fetched_at=NOW)
        upsert_raw(con, "pagerduty_log_entries", entries, run_id="r1", fetched_at=NOW)


def test_acknowledgements_outside_their_incident_move_to_the_quarantine(con):
    _load(con, [pd_incident("I1", "S1", "2025-05-01T10:00:00Z", resolved="2025-05-01T11:00:00Z"),
                pd_incident("I2", "S1", "2025-05-02T10:00:00Z", status="acknowledged")],
          [pd_log_entry("L1", "I1", "acknowledge", "2025-05-01T09:59:00Z"),  # before created
           pd_log_entry("L2", "I1", "acknowledge", "2025-05-01T10:05:00Z"),
           pd_log_entry("L3", "I1", "acknowledge", "2025-05-01T11:30:00Z"),  # after resolved
           pd_log_entry("L4", "I2", "acknowledge", "2025-05-02T10:01:00Z"),
           pd_log_entry("L5", "I2", "resolve", "2025-05-02T10:30:00Z"),  # resolved by the feed only
           pd_log_entry("L6", "I2", "acknowledge", "2025-05-02T10:40:00Z")])  # after that resolve
    with wh.transaction(con):
        assert pagerduty_rules.quarantine_inconsistent(con, run_id="r1") == 3
        assert pagerduty_rules.quarantine_inconsistent(con, run_id="r1") == 0  # idempotent
    assert [r[0] for r in con.execute("select id from raw.pagerduty_log_entries order by id").fetchall()] == \
        ["L2", "L4", "L5"]
    rows = con.execute("select record_id, rule, reason, payload from quarantine.rejected_records order by 1").fetchall()
    assert [(r[0], r[1]) for r in rows] == [("L1", "ack_outside_incident"), ("L3", "ack_outside_incident"),
                                            ("L6", "ack_outside_incident")]
    assert "before the incident was created" in rows[0][2] and "after the incident was resolved" in rows[1][2]
    assert json.loads(rows[0][3])["id"] == "L1"  # the raw payload, as sent


def test_staging_survives_bad_values_and_names_them(con):
    """Written straight into raw (bypassing records.py): try_cast keeps the build alive, and
    invalid_fields says what did not parse, for the blocking check to see."""
    bad = [
        {**pd_incident("I1", "S1", "not a time"), "incident_number": "seven"},
        pd_incident("I2", "S1", "2025-05-01T10:00:00", resolved="2025-05-01T10:30:00Z"),  # naive created_at
        pd_incident("I3", "S1", "2025-05-01T10:00:00Z", resolved="2025-05-01T10:30:00+00:00"),
    ]
    _load(con, bad, [{**pd_log_entry("L1", "I3", "assign", "2025-05-01T10:00:00Z"), "assignees": "PUSER1"}])
    wh.build_all(con)  # no exception
    rows = dict(con.execute("select incident_id, invalid_fields from staging.stg_pagerduty__incidents").fetchall())
    assert rows == {"I1": "incident_number, created_at, updated_at", "I2": "created_at", "I3": None}
    assert con.execute("select invalid_fields, n_assignees from staging.stg_pagerduty__log_entries").fetchall() == \
        [("assignees", 0)]


# ------------------------------------------------------------------------------- GX suites


def test_every_staging_table_has_a_blocking_suite_on_columns_that_exist(con):
    _load(con, [pd_incident("I1", "S1", "2025-05-01T10:00:00Z")], [])
    wh.build_all(con)
    assert set(quality.tables()) == {f.table for f in wh.sql_files("staging")}
    for table, spec in quality.tables().items():
        assert spec.rules_of(quality.BLOCKING), table
        frame = quality.load_frame(con, table)  # the SQL runs
        assert spec.id_column in frame.columns
        for severity in (quality.BLOCKING, quality.WARNING):
            assert len(quality.build_suite(table, severity).expectations) == len(spec.rules_of(severity))
        for severity, outcome in quality.check_frame_all(frame, table).items():  # one validation, both severities
            assert outcome.evaluated == len(spec.rules_of(severity))
            assert outcome.passed, outcome.description()  # clean data passes every rule


def test_suites_are_pure_builders():
    a = quality.build_suite("stg_pagerduty__incidents", quality.BLOCKING)
    b = quality.build_suite("stg_pagerduty__incidents", quality.BLOCKING)
    assert a is not b and a.name == b.name == "stg_pagerduty__incidents__blocking"
    assert [e.meta["rule"] for e in a.expectations] == [e.meta["rule"] for e in b.expectations]


def _ts(s):
    return pd.Timestamp(s, tz="UTC") if s else pd.NaT


def test_incident_suite_catches_each_rule_with_counts_and_at_most_five_examples():
    rows = [  # id, service, status, created, resolved, invalid_fields, in ownership file
        ("OK1", "S1", "resolved", "2025-05-01 10:00", "2025-05-01 11:00", None, True),
        ("DUP", "S1", "resolved", "2025-05-01 10:00", "2025-05-01 11:00", None, True),
        ("DUP", "S1", "resolved", "2025-05-01 10:00", "2025-05-01 11:00", None, True),
        ("OLD", "S1", "triggered", "2008-06-01 00:00", None, None, True),
        ("FUT", "S1", "triggered", "2099-06-01 00:00", None, None, True),
        ("NEG", "S1", "resolved", "2025-05-01 10:00", "2025-05-01 09:00", None, True),
        ("BAD", "S1", "triggered", None, None, "created_at", True),
        ("NOSVC", None, "triggered", "2025-05-01 10:00", None, None, False),
        ("ODD", "S1", "paused", "2025-05-01 10:00", None, None, True),
    ] + [(f"ORPHAN{i}", "S9", "triggered", "2025-05-01 10:00", None, None, False) for i in range(7)]
    df = pd.DataFrame(rows, columns=["incident_id", "service_id", "status", "created_at", "resolved_at",
                                     "invalid_fields", "service_in_ownership_file"])
    df["created_at"] = df["created_at"].map(_ts)
    df["resolved_at"] = df["resolved_at"].map(_ts)
    df["urgency"] = "high"
    blocking = quality.check_frame(df, "stg_pagerduty__incidents", quality.BLOCKING, quality.Settings(now=NOW))
    failed = {f.rule: (f.failing_rows, f.examples) for f in blocking.failures}
    assert failed == {
        "incident_id is unique": (2, ["DUP"]),
        "created_at is not before 2009 and not in the future": (2, ["OLD", "FUT"]),
        "resolved_at is at or after created_at": (1, ["NEG"]),
        "every value parsed (invalid_fields is null)": (1, ["BAD"]),
        "created_at is not null": (1, ["BAD"]),
        "service_id is not null": (1, ["NOSVC"]),
        "status is one of acknowledged, resolved, triggered": (1, ["ODD"]),
    }
    warning = quality.check_frame(df, "stg_pagerduty__incidents", quality.WARNING, quality.Settings(now=NOW))
    [orphans] = warning.failures
    assert orphans.failing_rows == 8 and len(orphans.examples) == 5 and orphans.examples[0] == "NOSVC"
    meta = blocking.metadata()
    assert meta["rules_failed"] == 7 and meta["failing_rows"] == 9 and meta["rows_checked"] == len(df)
    assert "| resolved_at is at or after created_at | 1 | NEG |" in blocking.markdown()


def test_log_entry_suite_catches_acknowledgements_outside_the_incident():
    df = pd.DataFrame({
        "log_entry_id": ["L1", "L2", "L3", "L4"],
        "incident_id": ["I1"] * 4,
        "entry_type": ["acknowledge_log_entry", "acknowledge_log_entry", "acknowledge_log_entry", "weird_log_entry"],
        "created_at": [_ts("2025-05-01 09:00"), _ts("2025-05-01 10:05"), _ts("2025-05-01 12:00"),
                       _ts("2025-05-01 10:06")],
        "invalid_fields": [None] * 4,
    })
    df["acknowledged_at"] = df["created_at"].where(df["entry_type"] == "acknowledge_log_entry")
    df["incident_created_at"] = _ts("2025-05-01 10:00")
    df["incident_resolved_at"] = _ts("2025-05-01 11:00")
    blocking = quality.check_frame(df, "stg_pagerduty__log_entries", quality.BLOCKING, quality.Settings(now=NOW))
    assert {f.rule: f.examples for f in blocking.failures} == {
        "acknowledged_at is at or after incident_created_at": ["L1"],
        "incident_resolved_at is at or after acknowledged_at": ["L3"],
    }
    warning = quality.check_frame(df, "stg_pagerduty__log_entries", quality.WARNING)
    assert [(f.failing_rows, f.examples) for f in warning.failures] == [(1, ["L4"])]


def test_deployment_environment_and_state_sets():
    deployments = pd.DataFrame({"deployment_id": [1, 2], "repo": ["a/b"] * 2, "environment": ["live", "staging"],
                                "created_at": [_ts("2025-05-01")] * 2, "invalid_fields": [None, None]})
    out = quality.check_frame(deployments, "stg_github__deployments", quality.WARNING,
                              quality.Settings(production_environment="live"))
    assert out.passed  # the configured production name is allowed
    out = quality.check_frame(deployments, "stg_github__deployments", quality.WARNING)
    assert [f.examples for f in out.failures] == [["1"]]
    statuses = pd.DataFrame({"status_id": [7], "deployment_id": [1], "state": ["exploded"],
                             "created_at": [_ts("2025-05-01")], "invalid_fields": [None]})
    out = quality.check_frame(statuses, "stg_github__deployment_statuses", quality.BLOCKING)
    assert [(f.rule, f.examples) for f in out.failures] == [
        ("state is one of error, failure, in_progress, inactive, pending, queued, success", ["7"])]


# ------------------------------------------------------------------------------- Dagster wiring


def test_checks_are_registered_blocking_on_staging_and_warning_elsewhere():
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    specs = {f"{k.asset_key.to_user_string()}:{k.name}": graph.get_check_spec(k) for k in graph.asset_check_keys}
    for f in wh.sql_files("staging"):
        assert specs[f"staging/{f.table}:gx_blocking"].blocking, f.table
    warnings = [k for k in specs if k.endswith(":gx_warnings")]
    assert "staging/stg_pagerduty__incidents:gx_warnings" in warnings
    assert not any(specs[k].blocking for k in warnings)
    for raw in ("pagerduty_incidents", "pagerduty_log_entries", "github_deployments", "github_pull_requests"):
        assert f"raw/{raw}:rejected_records" in specs
    job = defs.resolve_job_def("nightly")
    assert {k.name for k in job.asset_layer.asset_graph.asset_check_keys} >= {"gx_blocking", "gx_warnings"}


def _downstream_of_staging():
    from assets import checks, metrics, reports, snapshot, warehouse

    assets = [*warehouse.staging_assets, *warehouse.marts_sql_assets, metrics.statistics_marts,
              reports.baseline_report, snapshot.analyst_snapshot]
    gx_checks = [c for c in checks.all_checks if any(k.asset_key.path[0] == "staging" for k in c.check_keys)]
    return [*assets, *gx_checks]


def _materialize(data_dir):
    from pipelines.resources import WarehouseResource

    return dg.materialize(_downstream_of_staging(), resources={"warehouse": WarehouseResource(data_dir=str(data_dir))},
                          instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def _events(result):
    materialized = {e.event_specific_data.materialization.asset_key.to_user_string()
                    for e in result.get_asset_materialization_events()}
    checks = {f"{e.asset_key.to_user_string()}:{e.check_name}": e for e in result.get_asset_check_evaluations()}
    return materialized, checks


def test_a_failing_blocking_check_stops_the_marts_report_and_snapshot(tmp_path):
    """Bad rows written straight into raw (as if records.py had missed them): the staging table still
    builds, its blocking check fails with counts and examples, and nothing downstream is built."""
    data = tmp_path / "data"
    con = wh.connect(data / "warehouse.duckdb")
    wh.ensure_schemas(con)
    load_ownership_tables(con, parse_ownership(OWNERSHIP))
    _load(con, [pd_incident("I1", "S1", "2025-05-01T10:00:00Z", resolved="2025-05-01T11:00:00Z"),
                pd_incident("I2", "S1", "2025-05-02T10:00:00Z", resolved="2025-05-02T09:00:00Z"),  # resolved first
                pd_incident("I3", "S1", "2001-05-02T10:00:00Z")],  # before 2009
          [pd_log_entry("L1", "I1", "acknowledge", "2025-05-01T09:00:00Z")])  # ack before the incident
    con.close()

    result = _materialize(data)
    materialized, checks = _events(result)
    assert not result.success
    assert "staging/stg_pagerduty__incidents" in materialized
    blocked = {"marts/fct_incidents", "marts/fct_deployments", "marts/team_baselines", "marts/team_monthly_metrics",
               "marts/team_period_metrics", "marts/team_comparisons", "reports/baseline_report", "reports/analyst_snapshot"}
    assert not blocked & materialized, materialized
    assert "marts/dim_teams" in materialized  # not downstream of the failing table: built as usual
    incidents = checks["staging/stg_pagerduty__incidents:gx_blocking"]
    assert not incidents.passed and incidents.severity == dg.AssetCheckSeverity.ERROR
    assert incidents.metadata["failing_rows"].value == 2
    details = {d["rule"]: d for d in incidents.metadata["details"].value}
    assert details["resolved_at is at or after created_at"]["examples"] == ["I2"]
    assert details["created_at is not before 2009 and not in the future"]["examples"] == ["I3"]
    assert "I2" in incidents.metadata["failures"].value  # the markdown table shown in the UI
    # the log-entry suite reads the incidents (acknowledged within the incident), so it waits behind them
    assert "staging/stg_pagerduty__log_entries:gx_blocking" not in checks
    assert checks["staging/stg_ownership__teams:gx_blocking"].passed
    assert not (data / "analytics.duckdb").exists() and not (data / "reports").exists()
