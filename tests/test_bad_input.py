"""Every bad input of docs/data-quality.md, through the real emulator (HTTP on 127.0.0.1) and the real
pipeline (Dagster materialize of every asset and check, or ``incident-metrics run`` in a subprocess).

One "dirty" run carries most record-level cases at once (each record is bad in its own way, see
``tests/bad_input_helpers.py``); the others need a run of their own: an empty organisation, a broken
ownership file, a persistent HTML answer, a missing token, an unreachable API.
"""

from __future__ import annotations

import json
import shutil
import socket
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from emulator.faults import FaultRule, Faults
from emulator.model import Organisation, Team
from tests.bad_input_helpers import (
    DIRTY_INCIDENTS,
    DIRTY_LOG_ENTRIES,
    LONG_TITLE,
    N_FILLER,
    PD_TOKEN,
    SCRIPT,
    SERVICE_NAME_INJECTION,
    TEAM_NAME_INJECTION,
    UNICODE_TITLE,
    RunView,
    cli,
    dirty_organisation,
    dirty_ownership_yaml,
    quarantine_rows,
    resources,
    run_pipeline,
    start_emulator,
    table_contents,
)

UTC = timezone.utc


def dirty_emulator(faults: Faults | None = None):
    org = dirty_organisation()
    srv = start_emulator(org, faults=faults)
    for record_id, (mutations, _) in {**DIRTY_INCIDENTS, **DIRTY_LOG_ENTRIES}.items():
        srv.pagerduty.corruptions[record_id] = mutations
    srv.pagerduty.corruptions["D006"] = ["offset:+05:30"]  # times at +05:30: the same instants
    srv.pagerduty.shuffle_seed = 11  # every list page in a shuffled order (log entries out of order)
    return org, srv


TRANSIENT = Faults(rules=[
    FaultRule("truncate", route="/pagerduty/incidents", count=1),  # malformed JSON (a 200 that does not parse)
    FaultRule("short_body", route="/pagerduty/log_entries", count=1),  # the body cut off mid-transfer
    FaultRule("html", route="/github/", count=1),  # a proxy's HTML page with status 200
    FaultRule("duplicate", route="/pagerduty/incidents"),  # the last record of each page again on the next
    FaultRule("duplicate", route="/pagerduty/log_entries"),
])


@pytest.fixture(scope="module")
def dirty(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dirty")
    org, srv = dirty_emulator(TRANSIENT)
    try:
        result = run_pipeline(srv, tmp, dirty_ownership_yaml(org))
        yield {"view": RunView(result), "data": tmp / "data", "stats": srv.stats(), "org": org, "srv": srv,
               "ownership": tmp / "ownership.yaml"}
    finally:
        srv.stop()


def q(data: Path, sql: str, params=()):
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def fct(data: Path, incident_id: str):
    rows = q(data, "select team_key, created_at, seconds_to_acknowledge, seconds_to_resolve, handoffs "
                   "from marts.fct_incidents where incident_id = ?", [incident_id])
    return rows[0] if rows else None


# --------------------------------------------------------------------------- the dirty run


def test_dirty_run_succeeds_and_every_blocking_check_passes(dirty):
    view = dirty["view"]
    assert view.result.success, view.failure_messages()
    checks = view.checks()
    blocking = {k: c for k, c in checks.items() if k.endswith(":gx_blocking")}
    assert len(blocking) == 13 and all(c.passed for c in blocking.values()), \
        {k: c.description for k, c in blocking.items() if not c.passed}
    assert {"marts/fct_incidents", "reports/baseline_report", "reports/analyst_snapshot"} <= view.materialized


def test_malformed_json_truncated_body_and_html_200_are_retried(dirty):
    fired = dirty["stats"]["faults"]
    assert fired.get("truncate") == fired.get("short_body") == fired.get("html") == 1
    retried = {}
    for e in dirty["view"].result.get_asset_materialization_events():
        m = e.event_specific_data.materialization
        retried[m.asset_key.to_user_string()] = m.metadata.get("api_retries")
    assert retried["raw/pagerduty_incidents"].value >= 1 and retried["raw/pagerduty_log_entries"].value >= 1
    assert retried["raw/github_deployments"].value + retried["raw/github_pull_requests"].value >= 1
    rules = {r[3] for r in quarantine_rows(dirty["data"] / "warehouse.duckdb")}
    assert not rules & {"bad_json", "repo_unreadable"}  # nothing was lost to them


def test_duplicate_ids_across_pages_arrive_once(dirty):
    assert dirty["stats"]["faults"].get("duplicate", 0) >= 2  # pages at offset > 0 repeated a record
    served = N_FILLER + 16  # every incident of the organisation
    rejected = len(DIRTY_INCIDENTS)
    assert q(dirty["data"], "select count(*), count(distinct id) from raw.pagerduty_incidents") == \
        [(served - rejected, served - rejected)]
    unique = dirty["view"].checks()["staging/stg_pagerduty__incidents:gx_blocking"]
    assert unique.passed


def test_missing_fields_wrong_types_and_bad_times_are_quarantined_with_the_raw_payload(dirty):
    rows = {(r[1], r[2]): r for r in quarantine_rows(dirty["data"] / "warehouse.duckdb")}
    for record_id, (mutations, rule) in DIRTY_INCIDENTS.items():
        source, stream, rid, got_rule, reason, payload = rows[("incidents", record_id)]
        assert (source, got_rule) == ("pagerduty", rule), (record_id, reason)
        assert reason and json.loads(payload)["id"] == record_id  # the record as the API sent it
    for record_id, (mutations, rule) in DIRTY_LOG_ENTRIES.items():
        assert rows[("log_entries", record_id)][3] == rule
    quarantined = tuple(DIRTY_INCIDENTS)
    # nothing of them reached raw, staging or the marts
    marks = ",".join("?" * len(quarantined))
    assert q(dirty["data"], f"select count(*) from raw.pagerduty_incidents where id in ({marks})", quarantined) == [(0,)]
    assert q(dirty["data"], f"select count(*) from marts.fct_incidents where incident_id in ({marks})",
             quarantined) == [(0,)]


def test_quarantine_is_counted_in_asset_metadata_checks_and_the_report(dirty):
    view = dirty["view"]
    meta = {e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
            for e in view.result.get_asset_materialization_events()}
    assert meta["raw/pagerduty_incidents"]["records_quarantined"].value == len(DIRTY_INCIDENTS)
    check = view.checks()["raw/pagerduty_incidents:rejected_records"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["rejected_this_run"].value == len(DIRTY_INCIDENTS)
    details = {d["rule"]: d for d in check.metadata["details"].value}
    assert details["implausible_timestamp"]["records"] == 2
    assert sorted(details["implausible_timestamp"]["examples"]) == ["D011", "D012"]
    assert "missing_field" in check.metadata["by_rule"].value
    assert view.checks()["raw/pagerduty_teams:rejected_records"].passed
    # and in the report: every quarantined record of the run, by source, stream and rule
    total = len(DIRTY_INCIDENTS) + len(DIRTY_LOG_ENTRIES) + 2 + 1  # + two acknowledgements, one deployment status
    assert len(quarantine_rows(dirty["data"] / "warehouse.duckdb")) == total
    html = (dirty["data"] / "reports" / "latest" / "index.html").read_text(encoding="utf-8")
    assert f'data-summary="quarantined_records" data-value="{total}"' in html


def test_resolved_before_created_is_quarantined(dirty):
    rows = {r[2]: r for r in quarantine_rows(dirty["data"] / "warehouse.duckdb")}
    assert rows["D007"][3] == "resolved_before_created"
    assert "2025-05-08T11:00:00Z is before created_at 2025-05-08T12:00:00Z" in rows["D007"][4]


def test_acknowledgements_outside_the_incident_are_quarantined_and_the_incident_kept(dirty):
    rows = {r[2]: r for r in quarantine_rows(dirty["data"] / "warehouse.duckdb")}
    assert rows["LD008K"][3] == rows["LD013K"][3] == "ack_outside_incident"
    assert "before the incident was created" in rows["LD008K"][4]
    assert "after the incident was resolved" in rows["LD013K"][4]
    # the incidents stay, with no time to acknowledge (their only acknowledgement was impossible)
    assert fct(dirty["data"], "D008")[2:4] == (None, 1800)
    assert fct(dirty["data"], "D013")[2:4] == (None, 1800)


def test_unknown_log_entry_types_are_kept_not_counted_and_warned(dirty):
    assert q(dirty["data"], "select entry_type from staging.stg_pagerduty__log_entries where log_entry_id = 'LD001M'") \
        == [("mystery_log_entry",)]
    assert fct(dirty["data"], "D001")[2:5] == (120, 1800, 0)  # the metrics ignore it
    warning = dirty["view"].checks()["staging/stg_pagerduty__log_entries:gx_warnings"]
    assert not warning.passed and warning.severity == dg.AssetCheckSeverity.WARN
    assert warning.metadata["details"].value[0]["examples"] == ["LD001M"]
    assert "LD001M" not in {r[2] for r in quarantine_rows(dirty["data"] / "warehouse.duckdb")}


def test_log_entries_out_of_order_give_the_same_metrics(dirty):
    # the feed comes newest first and, here, shuffled within every page
    rows = q(dirty["data"], "select seconds_to_acknowledge, seconds_to_resolve, handoffs, count(*) "
                            "from marts.fct_incidents where incident_id like 'F%' group by all")
    assert rows == [(60, 600, 0, N_FILLER)]
    assert fct(dirty["data"], "D002")[2:4] == (600, 5400)


def test_offset_timestamps_are_read_as_the_same_instant_in_utc(dirty):
    payload = q(dirty["data"], "select payload ->> 'created_at' from raw.pagerduty_incidents where id = 'D006'")
    assert payload == [("2025-05-06T14:30:00+05:30",)]  # as sent
    team, created, tta, ttr, _ = fct(dirty["data"], "D006")
    assert created == datetime(2025, 5, 6, 9, 0, tzinfo=UTC)
    assert (tta, ttr) == (300, 3600)


def test_naive_timestamps_are_quarantined_not_guessed(dirty):
    rows = {r[2]: r for r in quarantine_rows(dirty["data"] / "warehouse.duckdb")}
    assert rows["D005"][3] == rows["LD002T"][3] == "naive_timestamp"
    assert "no UTC offset" in rows["D005"][4]


def test_unicode_and_very_long_titles_survive(dirty):
    titles = dict(q(dirty["data"], "select id, payload ->> 'title' from raw.pagerduty_incidents "
                                   "where id in ('D001', 'D002')"))
    assert titles == {"D001": UNICODE_TITLE, "D002": LONG_TITLE}
    assert fct(dirty["data"], "D002") is not None
    html = (dirty["data"] / "reports" / "latest" / "index.html").read_text(encoding="utf-8")
    assert "<html" in html.lower()


def test_sql_and_html_injection_in_names_is_stored_verbatim_and_escaped_in_the_report(dirty):
    assert q(dirty["data"], "select team_name from marts.dim_teams where team_key = 'red'") == [(TEAM_NAME_INJECTION,)]
    assert q(dirty["data"], "select service_name from marts.dim_services where service_id = 'PSVCA01'") == \
        [(SERVICE_NAME_INJECTION,)]
    assert q(dirty["data"], "select count(*) from marts.fct_incidents")[0][0] > 0  # the table is still there
    report = dirty["data"] / "reports" / "latest"
    html = (report / "index.html").read_text(encoding="utf-8")
    assert SCRIPT not in html and "&lt;script&gt;" in html
    for path in report.iterdir():
        if path.suffix in (".html", ".svg"):
            assert SCRIPT.encode() not in path.read_bytes(), path


def test_a_service_missing_from_the_ownership_file_has_no_team_and_a_warning(dirty):
    assert fct(dirty["data"], "D009")[0] is None
    assert q(dirty["data"], "select in_ownership_file from marts.dim_services where service_id = 'PSVCX01'") == \
        [(False,)]
    checks = dirty["view"].checks()
    incidents = checks["staging/stg_pagerduty__incidents:gx_warnings"]
    assert not incidents.passed and incidents.metadata["details"].value[0]["examples"] == ["D009"]
    services = checks["staging/stg_pagerduty__services:gx_warnings"]
    assert not services.passed and services.metadata["details"].value[0]["examples"] == ["PSVCX01"]


def test_deployment_state_and_environment_outside_the_allowed_sets(dirty):
    rows = {r[2]: r for r in quarantine_rows(dirty["data"] / "warehouse.duckdb")}
    assert (rows["1003"][0], rows["1003"][3]) == ("github", "unknown_value")
    assert q(dirty["data"], "select deployment_id, is_production, final_state from marts.fct_deployments order by 1") \
        == [(101, True, "success"), (102, False, "in_progress")]
    warning = dirty["view"].checks()["staging/stg_github__deployments:gx_warnings"]
    assert not warning.passed and warning.metadata["details"].value[0]["examples"] == ["102"]


def test_a_persistent_html_answer_fails_clearly_and_writes_nothing(dirty, tmp_path):
    """A proxy answering HTML for good: the client retries, then the asset fails naming the endpoint;
    its transaction never started, so the warehouse is exactly as before."""
    from assets.raw import asset_of
    pagerduty_incidents = asset_of("pagerduty", "incidents")

    data = tmp_path / "data"
    shutil.copytree(dirty["data"], data, symlinks=True)
    before = table_contents(data / "warehouse.duckdb")
    _, srv = dirty_emulator(Faults(rules=[FaultRule("html", route="/pagerduty/incidents")]))
    try:
        result = dg.materialize([pagerduty_incidents], resources=resources(srv, data, dirty["ownership"]),
                                instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    finally:
        srv.stop()
    assert not result.success
    [message] = RunView(result).failure_messages()
    assert "PagerDuty GET /incidents failed after 7 attempts" in message and "HTML page" in message
    assert table_contents(data / "warehouse.duckdb") == before


# --------------------------------------------------------------------------- runs of their own


def test_an_empty_organisation_runs_clean(tmp_path):
    org = Organisation(teams=[Team("PTSOLO1", "solo", "Solo", "UTC")], services=[], incidents=[], repos=[],
                       deployments=[], github_org="acme")
    srv = start_emulator(org)
    try:
        result = run_pipeline(srv, tmp_path, org.ownership_yaml())
    finally:
        srv.stop()
    view = RunView(result)
    assert result.success, view.failure_messages()
    assert all(c.passed for c in view.checks().values()), \
        {k: c.description for k, c in view.checks().items() if not c.passed}
    data = tmp_path / "data"
    assert q(data, "select count(*) from marts.fct_incidents") == [(0,)]
    assert q(data, "select team_key, n_incidents from marts.team_baselines") == [("solo", 0)]
    assert quarantine_rows(data / "warehouse.duckdb") == []
    assert (data / "reports" / "latest" / "index.html").exists() and (data / "analytics.duckdb").exists()


GOOD_TEAMS = """version: 1
teams:
  - key: red
    name: Red
services:
"""


@pytest.mark.parametrize("body, line, reason", [
    (GOOD_TEAMS + "  - pagerduty_service_id: S1\n    owner: [red\n", 8, "not valid YAML"),  # noticed at the end
    (GOOD_TEAMS + "  - pagerduty_service_id: S1\n    owner: purple\n", 7, "owned by unknown team 'purple'"),
    (GOOD_TEAMS + "  - pagerduty_service_id: S1\n    name: lonely\n", 6, "has no owner"),
    (GOOD_TEAMS.replace("key: red", "key: Red Team") + "  []\n", 3, "must be lower-case"),
], ids=["yaml-syntax", "unknown-team", "service-without-owner", "bad-team-key"])
def test_an_ownership_file_with_errors_fails_with_file_and_line(tmp_path, body, line, reason):
    from assets.ownership import ownership_tables
    from pipelines.resources import OwnershipResource, WarehouseResource

    path = tmp_path / "ownership.yaml"
    path.write_text(body, encoding="utf-8")
    result = dg.materialize([ownership_tables], raise_on_error=False, instance=dg.DagsterInstance.ephemeral(),
                            resources={"ownership": OwnershipResource(path=str(path)),
                                       "warehouse": WarehouseResource(data_dir=str(tmp_path / "data"))})
    assert not result.success
    [message] = RunView(result).failure_messages()
    assert f"{path}:{line}: " in message and reason in message, message
    assert not (tmp_path / "data" / "warehouse.duckdb").exists()  # the file is read before the warehouse is opened


def _env(data: Path, ownership: Path, **settings: str) -> dict[str, str]:
    import os

    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("PAGERDUTY", "GITHUB", "INCIDENT_METRICS", "DAGSTER", "EMULATOR"))}
    return {**base, "INCIDENT_METRICS_DATA_DIR": str(data), "INCIDENT_METRICS_OWNERSHIP": str(ownership),
            "INCIDENT_METRICS_HISTORY_DAYS": "1000", **settings}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_missing_token_stops_before_anything_is_written(dirty, tmp_path):
    data = tmp_path / "data"
    proc = cli(["run"], _env(data, dirty["ownership"], PAGERDUTY_API_URL=dirty["srv"].pagerduty_url,
                             PAGERDUTY_API_TOKEN=PD_TOKEN, GITHUB_API_URL=dirty["srv"].github_url))
    assert proc.returncode == 2
    assert "error: GITHUB_TOKEN is not set; nothing was run" in proc.stderr
    assert "Traceback" not in proc.stderr  # one clear line, not a stack
    assert not data.exists()  # the configuration is resolved before the first asset runs
    assert PD_TOKEN not in proc.stdout + proc.stderr


def test_an_unreachable_api_and_a_rejected_token_fail_clearly_and_leave_the_last_state(dirty, tmp_path):
    """PagerDuty at a closed port, GitHub with a token it rejects, over a warehouse from an earlier
    night: exit code 1, a message naming the address and the variable, and every table, the report
    and the snapshot exactly as they were."""
    data = tmp_path / "data"
    shutil.copytree(dirty["data"], data, symlinks=True)
    before = table_contents(data / "warehouse.duckdb")
    outputs = {p: p.read_bytes() for p in [data / "analytics.duckdb", *(data / "reports").rglob("*")] if p.is_file()}
    port = _closed_port()
    wrong = "gh-SECRET-WRONG-4242"
    proc = cli(["run"], _env(data, dirty["ownership"], PAGERDUTY_API_URL=f"http://127.0.0.1:{port}/pagerduty",
                             PAGERDUTY_API_TOKEN=PD_TOKEN, GITHUB_API_URL=dirty["srv"].github_url, GITHUB_TOKEN=wrong))
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith(("error in ", "error: "))]
    assert any("PagerDuty GET /" in e and "connection error" in e and f"port={port}" in e for e in errors), errors
    assert any("GITHUB_TOKEN" in e and "401" in e for e in errors), errors
    assert "nightly run failed; the warehouse keeps the last complete state" in proc.stderr
    assert table_contents(data / "warehouse.duckdb") == before
    assert {p: p.read_bytes() for p in outputs} == outputs
    assert wrong not in proc.stdout + proc.stderr and PD_TOKEN not in proc.stdout + proc.stderr


def test_the_malformed_record_knob():
    from emulator.pagerduty_api import corrupt_record

    record = {"id": "P1", "created_at": "2025-05-01T10:00:00Z", "resolved_at": None, "incident_number": 1}
    assert corrupt_record(dict(record), ["drop:created_at"]) == {"id": "P1", "resolved_at": None, "incident_number": 1}
    assert corrupt_record(dict(record), ['set:incident_number="1"'])["incident_number"] == "1"
    assert corrupt_record(dict(record), ["naive"])["created_at"] == "2025-05-01T10:00:00"
    assert corrupt_record(dict(record), ["offset:-07:00"])["created_at"] == "2025-05-01T03:00:00-07:00"
    with pytest.raises(ValueError, match="unknown record mutation"):
        corrupt_record(dict(record), ["explode"])
