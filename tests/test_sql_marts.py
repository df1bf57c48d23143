"""The staging and marts SQL on a small hand-made warehouse: exact values for every definition edge case.

The fixture (all times UTC):

team alpha: Europe/Berlin, 09:00-17:00 Mon-Fri, adopted 2025-06-01; owns S1 until 2025-05-14
team beta:  America/New_York, 09:00-17:00 Mon-Fri, not adopted; owns S1 from 2025-05-15, and S2

I9  S1 Fri 2025-03-28 07:30 (Berlin 08:30 CET: after hours)   ack +120 s  resolved +3600 s
I8  S1 Mon 2025-03-31 07:30 (Berlin 09:30 CEST, after the DST switch: business hours) ack +60 s resolved +3600 s
I1  S1 Thu 2025-05-01 10:00 (business hours)    ack +300 s  resolved +3600 s
I2  S1 Sat 2025-05-03 10:00 (weekend)           ack +600 s  resolved +7200 s; assign, escalate, assign = 2 handoffs
I3  S1 Tue 2025-05-20 10:00 -> beta (New York 06:00: after hours) ack +60 s, auto-resolved by timeout +1800 s
I4  S2 merged away                               excluded from metrics
I6  S2 2025-05-10 00:00 key k1, ack +300 s, resolved 00:30; I7 same key 06:00 (within 24 h), resolved 07:00
    -> one incident of 25200 s with one re-trigger
I5  S2 2025-05-25 00:00 still open, ack at 02:00 (the newest record: data_as_of = 2025-05-25 02:00)
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from pipelines import warehouse as wh
from pipelines.ingest.raw import upsert_raw
from pipelines.ownership import load_ownership_tables, parse_ownership
from tests.factories import pd_incident, pd_log_entry

OWNERSHIP = """
version: 1
teams:
  - key: alpha
    name: Alpha
    time_zone: Europe/Berlin
    business_hours: {start: "09:00", end: "17:00", days: [mon, tue, wed, thu, fri]}
    adopted_on: 2025-06-01
  - key: beta
    name: Beta
    time_zone: America/New_York
services:
  - pagerduty_service_id: S1
    name: checkout
    repos: [acme/checkout]
    owners:
      - team: alpha
      - team: beta
        from: 2025-05-15
  - pagerduty_service_id: S2
    name: search
    owner: beta
"""

RUN = "run-1"
NOW = datetime(2025, 5, 26, tzinfo=timezone.utc)


def _incidents():
    return [
        pd_incident("I9", "S1", "2025-03-28T07:30:00Z", resolved="2025-03-28T08:30:00Z"),
        pd_incident("I8", "S1", "2025-03-31T07:30:00Z", resolved="2025-03-31T08:30:00Z"),
        pd_incident("I1", "S1", "2025-05-01T10:00:00Z", resolved="2025-05-01T11:00:00Z", priority="P2"),
        pd_incident("I2", "S1", "2025-05-03T10:00:00Z", resolved="2025-05-03T12:00:00Z", urgency="low"),
        pd_incident("I3", "S1", "2025-05-20T10:00:00Z", resolved="2025-05-20T10:30:00Z"),
        pd_incident("I4", "S2", "2025-05-12T10:00:00Z", resolved="2025-05-12T10:05:00Z", merged=True),
        pd_incident("I6", "S2", "2025-05-10T00:00:00Z", resolved="2025-05-10T00:30:00Z", key="k1"),
        pd_incident("I7", "S2", "2025-05-10T06:00:00Z", resolved="2025-05-10T07:00:00Z", key="k1"),
        pd_incident("I5", "S2", "2025-05-25T00:00:00Z", status="acknowledged"),
    ]


def _log_entries():
    L = pd_log_entry
    return [
        L("L90", "I9", "trigger", "2025-03-28T07:30:00Z"),
        L("L91", "I9", "acknowledge", "2025-03-28T07:32:00Z"),
        L("L92", "I9", "resolve", "2025-03-28T08:30:00Z"),
        L("L80", "I8", "acknowledge", "2025-03-31T07:31:00Z"),
        L("L10", "I1", "acknowledge", "2025-05-01T10:05:00Z"),
        L("L11", "I1", "acknowledge", "2025-05-01T10:09:00Z"),  # a second ack does not count
        L("L20", "I2", "assign", "2025-05-03T10:00:00Z", assignees=1),
        L("L21", "I2", "escalate", "2025-05-03T10:20:00Z", assignees=1),
        L("L22", "I2", "assign", "2025-05-03T10:30:00Z", assignees=1),
        L("L23", "I2", "acknowledge", "2025-05-03T10:10:00Z"),
        L("L30", "I3", "acknowledge", "2025-05-20T10:01:00Z"),
        L("L31", "I3", "resolve", "2025-05-20T10:30:00Z", channel="timeout", agent="service_reference"),
        L("L60", "I6", "acknowledge", "2025-05-10T00:05:00Z"),
        L("L70", "I7", "acknowledge", "2025-05-10T06:02:00Z"),
        L("L50", "I5", "acknowledge", "2025-05-25T02:00:00Z"),
    ]


@pytest.fixture()
def con(tmp_path):
    con = wh.connect(tmp_path / "warehouse.duckdb")
    wh.ensure_schemas(con)
    load_ownership_tables(con, parse_ownership(OWNERSHIP))
    with wh.transaction(con):
        upsert_raw(con, "pagerduty_incidents", _incidents(), run_id=RUN, fetched_at=NOW)
        upsert_raw(con, "pagerduty_log_entries", _log_entries(), run_id=RUN, fetched_at=NOW)
    wh.build_all(con)
    yield con
    con.close()


def _fct(con) -> dict[str, dict]:
    df = con.execute("select * from marts.fct_incidents").df()
    return {r["incident_id"]: r for r in df.to_dict("records")}


def test_fct_incidents_times_and_team_as_of_creation(con):
    f = _fct(con)
    assert sorted(f) == ["I1", "I2", "I3", "I4", "I5", "I6", "I8", "I9"]  # I7 folded into I6
    assert (f["I1"]["team_key"], f["I1"]["seconds_to_acknowledge"], f["I1"]["seconds_to_resolve"]) == ("alpha", 300, 3600)
    assert (f["I2"]["seconds_to_acknowledge"], f["I2"]["seconds_to_resolve"], f["I2"]["handoffs"]) == (600, 7200, 2)
    assert f["I1"]["priority"] == "P2" and f["I2"]["urgency"] == "low"
    # ownership moved on 2025-05-15: the same service's incident belongs to the new team
    assert f["I3"]["team_key"] == "beta"


def test_merged_open_auto_resolved_and_retriggers(con):
    f = _fct(con)
    assert f["I4"]["is_merged"] and not f["I1"]["is_merged"]
    assert f["I3"]["is_auto_resolved"] and not f["I1"]["is_auto_resolved"]
    assert f["I5"]["is_open"] and f["I5"]["resolved_at"] is None or str(f["I5"]["resolved_at"]) == "NaT"
    assert f["I5"]["seconds_open_so_far"] == 7200  # censored at data_as_of 2025-05-25 02:00
    assert f["I5"]["seconds_to_acknowledge"] == 7200
    assert f["I6"]["n_retriggers"] == 1
    assert f["I6"]["seconds_to_resolve"] == 25200  # 00:00 -> 07:00, first trigger to final resolve
    assert f["I6"]["seconds_to_acknowledge"] == 300


def test_after_hours_in_team_time_zone_across_dst(con):
    f = _fct(con)
    assert f["I9"]["is_after_hours"]  # 08:30 CET, before the switch
    assert not f["I8"]["is_after_hours"]  # 09:30 CEST, after the switch
    assert not f["I1"]["is_after_hours"]
    assert f["I2"]["is_after_hours"]  # Saturday
    assert f["I3"]["is_after_hours"]  # 06:00 in New York


def test_team_baselines_hand_computed(con):
    rows = con.execute(
        "select team_key, period_kind, period_start, period_end, n_incidents, n_resolved, n_open, "
        "median_seconds_to_resolve, p90_seconds_to_resolve, median_seconds_to_acknowledge "
        "from marts.team_baselines order by team_key"
    ).fetchall()
    assert rows == [
        # alpha: I9, I8, I1, I2 -> TTR [3600, 3600, 3600, 7200], TTA [120, 60, 300, 600]
        ("alpha", "pre_adoption_90d", date(2025, 3, 3), date(2025, 6, 1), 4, 4, 0, 3600.0, None, 210.0),
        # beta: I3 (1800), I6+I7 (25200), I5 open; TTA [60, 300, 7200]; trailing window to data_as_of + 1 day
        ("beta", "trailing_90d", date(2025, 2, 25), date(2025, 5, 26), 3, 2, 1, 13500.0, None, 300.0),
    ]


def test_team_monthly_metrics(con):
    rows = con.execute(
        "select team_key, month, n_incidents, n_resolved, n_open, median_seconds_to_resolve, "
        "after_hours_share, handoffs_per_incident from marts.team_monthly_metrics order by team_key, month"
    ).fetchall()
    assert rows == [
        ("alpha", date(2025, 3, 1), 2, 2, 0, 3600.0, 0.5, 0.0),
        ("alpha", date(2025, 5, 1), 2, 2, 0, 5400.0, 0.5, 1.0),
        # New York: I3 06:00 Tue, I6 20:00 Fri, I5 20:00 Sat: all outside 09:00-17:00
        ("beta", date(2025, 5, 1), 3, 2, 1, 13500.0, 1.0, 0.0),
    ]


def test_dim_tables(con):
    assert con.execute("select team_key, n_services_now from marts.dim_teams order by 1").fetchall() == [
        ("alpha", 0), ("beta", 2)]
    assert con.execute(
        "select service_id, current_team_key, n_owner_changes, repos, in_ownership_file from marts.dim_services order by 1"
    ).fetchall() == [("S1", "beta", 1, ["acme/checkout"], True), ("S2", "beta", 0, [], True)]


def test_rebuilding_is_idempotent(con):
    before = {t: con.execute(f"select * from {t} order by all").fetchall() for t in wh.build_all(con)}
    wh.build_all(con)
    after = {t: con.execute(f"select * from {t} order by all").fetchall() for t in before}
    assert before == after


def test_raw_upsert_keeps_unchanged_rows_and_updates_changed(con):
    changed = pd_incident("I5", "S2", "2025-05-25T00:00:00Z", resolved="2025-05-25T03:00:00Z")
    with wh.transaction(con):
        same = upsert_raw(con, "pagerduty_incidents", _incidents()[:3], run_id="run-2", fetched_at=NOW)
        new = upsert_raw(con, "pagerduty_incidents", [changed], run_id="run-2", fetched_at=NOW)
    assert (same.received, same.changed) == (3, 0)
    assert (new.received, new.changed) == (1, 1)
    assert con.execute("select count(*), count(*) filter (where run_id = 'run-2') from raw.pagerduty_incidents"
                       ).fetchone() == (9, 1)
    wh.build_all(con)
    assert _fct(con)["I5"]["seconds_to_resolve"] == 10800


def test_sql_files_document_every_marts_column(con):
    for f in wh.sql_files("marts"):
        columns = [r[0] for r in con.execute(
            "select column_name from information_schema.columns where table_schema='marts' and table_name=?",
            [f.table]).fetchall()]
        undocumented = [c for c in columns if c not in f.column_docs]
        assert f.description, f.table
        # every column except obvious pass-through ids carries a comment in DuckDB
        assert len(undocumented) <= 4, (f.table, undocumented)


def _deployment(id_, env, created):
    return {"id": id_, "sha": f"{id_:040d}", "ref": "main", "environment": env, "created_at": created,
            "task": "deploy", "payload": {}}


def _status(id_, deployment, state, created):
    return {"id": id_, "state": state, "created_at": created,
            "deployment_url": f"https://api.github.com/repos/acme/checkout/deployments/{deployment}"}


def _pull(id_, number, created, merged):
    return {"id": id_, "number": number, "state": "closed", "created_at": created, "updated_at": merged or created,
            "closed_at": merged or created, "merged_at": merged, "merge_commit_sha": None}


def test_delivery_metrics_hand_computed(con):
    """D1 prod success 05-01 08:10 is followed by I1 (S1, 10:00, resolved 11:00): a failed change,
    recovered in 11:00 - 08:10 = 10200 s. D2 prod success 05-04 12:05: no incident within 24 h.
    D3 is staging. PR1 merged 04-30 20:00 ships with D1 (43800 s); PR2 merged 05-02 00:00 with D2
    (216300 s); PR3 was closed unmerged; PR4 merged 05-10 has no deployment yet."""
    with wh.transaction(con):
        upsert_raw(con, "github_deployments", [
            _deployment(1, "production", "2025-05-01T08:00:00Z"),
            _deployment(2, "production", "2025-05-04T12:00:00Z"),
            _deployment(3, "staging", "2025-05-02T09:00:00Z"),
        ], run_id=RUN, fetched_at=NOW, extra={"repo": "acme/checkout"})
        upsert_raw(con, "github_deployment_statuses", [
            _status(11, 1, "in_progress", "2025-05-01T08:00:00Z"), _status(12, 1, "success", "2025-05-01T08:10:00Z"),
            _status(21, 2, "success", "2025-05-04T12:05:00Z"), _status(31, 3, "success", "2025-05-02T09:01:00Z"),
        ], run_id=RUN, fetched_at=NOW, extra={"repo": "acme/checkout"})
        upsert_raw(con, "github_pull_requests", [
            _pull(101, 1, "2025-04-29T10:00:00Z", "2025-04-30T20:00:00Z"),
            _pull(102, 2, "2025-05-01T10:00:00Z", "2025-05-02T00:00:00Z"),
            _pull(103, 3, "2025-05-01T10:00:00Z", None),
            _pull(104, 4, "2025-05-09T10:00:00Z", "2025-05-10T00:00:00Z"),
        ], run_id=RUN, fetched_at=NOW, extra={"repo": "acme/checkout"})
    wh.build_all(con)
    assert _fct(con)["I1"]["linked_deployment_id"] == 1
    assert con.execute(
        "select deployment_id, is_production, final_state, team_key, caused_incident, seconds_to_recover "
        "from marts.fct_deployments order by 1").fetchall() == [
        (1, True, "success", "alpha", True, 10200.0),
        (2, True, "success", "alpha", False, None),
        (3, False, "success", "alpha", False, None),
    ]
    assert con.execute(
        "select number, deployment_id, seconds_lead_time from marts.fct_pull_requests order by number").fetchall() == [
        (1, 1, 43800.0), (2, 2, 216300.0), (4, None, None)]
    assert con.execute("select * from marts.team_delivery_monthly").fetchall() == [
        ("alpha", date(2025, 5, 1), 2, 1, 0.5, 10200.0, 2, 130050.0)]


def test_a_repo_deploying_two_services_counts_each_deployment_once(con):
    """acme/checkout deploys S1 and (now) S2; S2 changed owner, so the old join matched twice.
    Deployments at 08:00, 10:00 and 12:00 succeed 5 minutes after creation, then I1-like incident at
    13:00 on S2: every one of the three is followed by it within 24 hours (change failure 3 of 3).
    The old join gave deployment rows twice; each must appear once."""
    ownership = parse_ownership(OWNERSHIP.replace("    name: search\n    owner: beta\n",
                                                  "    name: search\n    repos: [acme/checkout]\n    owners:\n"
                                                  "      - team: alpha\n      - team: beta\n        from: 2024-06-01\n"))
    load_ownership_tables(con, ownership)
    with wh.transaction(con):
        upsert_raw(con, "github_deployments", [_deployment(i, "production", f"2025-06-02T{h:02d}:00:00Z")
                                                  for i, h in ((1, 8), (2, 10), (3, 12))],
                      run_id=RUN, fetched_at=NOW, extra={"repo": "acme/checkout"})
        upsert_raw(con, "github_deployment_statuses", [_status(10 + i, i, "success", f"2025-06-02T{h:02d}:05:00Z")
                                                          for i, h in ((1, 8), (2, 10), (3, 12))],
                      run_id=RUN, fetched_at=NOW, extra={"repo": "acme/checkout"})
        upsert_raw(con, "pagerduty_incidents", [pd_incident("I20", "S2", "2025-06-02T13:00:00Z",
                                                               resolved="2025-06-02T14:00:00Z")],
                      run_id=RUN, fetched_at=NOW)
    wh.build_all(con)
    rows = con.execute("select deployment_id, team_key, caused_incident, seconds_to_recover "
                       "from marts.fct_deployments order by 1").fetchall()
    # team: the owner on 2025-06-02 of the repo's first service, S1, which beta owns since 2025-05-15
    assert rows == [(1, "beta", True, 6 * 3600 - 300.0), (2, "beta", True, 4 * 3600 - 300.0),
                    (3, "beta", True, 2 * 3600 - 300.0)]
    assert con.execute("select team_key, n_deployments, n_failed_changes from marts.team_delivery_monthly "
                       "where month = date '2025-06-01'").fetchall() == [("beta", 3, 3)]
    # the incident links to the latest of them
    assert _fct(con)["I20"]["linked_deployment_id"] == 3


def test_a_service_listed_as_unowned_is_known_but_has_no_team(con):
    """'unowned: true' (say, a shared alerting sink): its incidents stay out of every team's
    numbers, the service counts as known, and the blocking ownership checks pass."""
    from pipelines import quality

    load_ownership_tables(con, parse_ownership(
        OWNERSHIP + "  - pagerduty_service_id: S3\n    name: alert-sink\n    unowned: true\n"))
    with wh.transaction(con):
        upsert_raw(con, "pagerduty_incidents", [pd_incident("I30", "S3", "2025-05-02T10:00:00Z",
                                                               resolved="2025-05-02T10:10:00Z")],
                      run_id=RUN, fetched_at=NOW)
    wh.build_all(con)
    assert con.execute("select team_key from marts.fct_incidents where incident_id = 'I30'").fetchall() == [(None,)]
    assert con.execute("select current_team_key, in_ownership_file from marts.dim_services where service_id = 'S3'"
                       ).fetchall() == [(None, True)]
    for table in ("stg_ownership__service_owners", "stg_pagerduty__incidents"):
        for severity in ("blocking", "warning"):
            outcome = quality.check_table(con, table, severity)
            assert outcome.passed, (table, severity, outcome.failures)


def _gitlab_deployment(id_, environment_id, environment, created, finished, status="success", job=True):
    """As GitLab sends one: the finish time is its job's (``deployable``); one made through the API
    has no job, and its ``updated_at`` is the last change of its status."""
    return {"id": id_, "iid": id_, "sha": f"{id_:040d}", "ref": "main", "status": status, "created_at": created,
            "updated_at": finished or created, "environment": {"id": environment_id, "name": environment},
            "deployable": {"id": 10 * id_, "status": status, "finished_at": finished} if job else None}


def test_services_incidents_and_deployments_are_told_apart_by_their_source(con):
    """A second paging source with the same service id (S1) and incident id (I1), and a second git
    host with the same repo path (acme/checkout) and deployment id (1): each keeps its own owner,
    events and links. The rows of the other sources are written straight into the neutral layer
    (a second paging connector comes with issue 17).

    pagerduty I1: S1, 10:00, ack +300 s, resolved 11:00, alpha; after GitHub deployment 1 (08:10).
    opsgenie I1: S1, 10:00, ack +100 s, resolved 10:20, gamma; after GitLab deployment 1 (09:30):
    had the hosts been mixed, the PagerDuty incident would link to the later GitLab deployment."""
    from pipelines.connectors import CONNECTORS
    from pipelines.ingest.contract import Connector

    more = CONNECTORS + (Connector(name="opsgenie", label="Opsgenie", kind="paging", streams=(), resource=lambda: None),)
    load_ownership_tables(con, parse_ownership(
        OWNERSHIP.replace("services:\n", "  - key: gamma\n    name: Gamma\nservices:\n")
        + "  - ids: {opsgenie: S1}\n    name: checkout-alerts\n    repos: [{gitlab: acme/checkout}]\n    owner: gamma\n"
        + "  - ids: {pagerduty: S9, opsgenie: S9}\n    name: paged-twice\n    owner: gamma\n",
        "ownership.yaml", more))
    with wh.transaction(con):
        upsert_raw(con, "github_deployments", [_deployment(1, "production", "2025-05-01T08:00:00Z")],
                   run_id=RUN, fetched_at=NOW, extra={"repo": "acme/checkout"})
        upsert_raw(con, "github_deployment_statuses", [_status(12, 1, "success", "2025-05-01T08:10:00Z")],
                   run_id=RUN, fetched_at=NOW, extra={"repo": "acme/checkout"})
        upsert_raw(con, "gitlab_deployments", [_gitlab_deployment(1, 5, "production", "2025-05-01T09:25:00Z",
                                                                  "2025-05-01T09:30:00Z")],
                   run_id=RUN, fetched_at=NOW, extra={"repo": "acme/checkout"})
        upsert_raw(con, "gitlab_environments", [{"id": 5, "name": "production", "tier": "production"}],
                   run_id=RUN, fetched_at=NOW, extra={"repo": "acme/checkout"})
    wh.build_all(con)
    con.execute("""insert into intermediate.int_incidents by name select 'opsgenie' as source, 'I1' as incident_id,
        'S1' as service_id, 'high' as urgency, 'resolved' as status, timestamptz '2025-05-01 10:00:00+00' as created_at,
        timestamptz '2025-05-01 10:20:00+00' as resolved_at, false as is_merged""")
    con.execute("""insert into intermediate.int_incident_events by name select 'opsgenie' as source, 'E1' as event_id,
        'I1' as incident_id, 'acknowledged' as event_type, timestamptz '2025-05-01 10:01:40+00' as occurred_at""")
    wh.build_all(con, ("marts",))
    assert con.execute("""
        select source, team_key, seconds_to_acknowledge, seconds_to_resolve, linked_deployment_id, linked_deployment_source
        from marts.fct_incidents where incident_id = 'I1' order by source""").fetchall() == [
        ("opsgenie", "gamma", 100, 1200, 1, "gitlab"), ("pagerduty", "alpha", 300, 3600, 1, "github")]
    assert con.execute("""
        select source, deployment_id, team_key, caused_incident, seconds_to_recover
        from marts.fct_deployments order by source""").fetchall() == [
        ("github", 1, "alpha", True, 10200.0), ("gitlab", 1, "gamma", True, 3000.0)]
    assert con.execute("""
        select source, service_id, service_name, current_team_key, repos, repo_sources from marts.dim_services
        where service_id = 'S1' order by source""").fetchall() == [
        ("opsgenie", "S1", "checkout-alerts", "gamma", ["acme/checkout"], ["gitlab"]),
        ("pagerduty", "S1", "checkout", "beta", ["acme/checkout"], ["github"])]
    # gamma: S1 of the second source, and S9 paged from both sources: two services, not three ids
    assert con.execute("select team_key, n_services_now from marts.dim_teams order by 1").fetchall() == [
        ("alpha", 0), ("beta", 2), ("gamma", 2)]
    assert con.execute("select source, service_key from marts.dim_services where service_id = 'S9' order by 1"
                       ).fetchall() == [("opsgenie", "pagerduty:S9"), ("pagerduty", "pagerduty:S9")]


def test_gitlab_production_is_the_tier_unless_a_name_pattern_is_set(con):
    """GitLab guesses a tier from the name when CI sets none ("nonprod" guessed production). G1
    production/tier production; G2 nonprod/tier production; G3 live/tier other; G4 production on
    an environment without a tier (an old GitLab), made through the API (no job); G5 failed. By tier: G1, G2, G4. With the
    pattern ^(production|live)$: G1, G3, G4. Each deploys S1 (alpha until 2025-05-15)."""
    load_ownership_tables(con, parse_ownership(OWNERSHIP.replace(
        "    repos: [acme/checkout]\n", "    repos: [acme/checkout, {gitlab: acme/platform/checkout}]\n")))
    when = "2025-05-02T09:0{}:00Z"
    deployments = [_gitlab_deployment(i, env_id, name, when.format(i), when.format(i + 1), job=i != 4)
                   for i, env_id, name in ((1, 10, "production"), (2, 11, "nonprod"), (3, 12, "live"), (4, 13, "production"))]
    deployments.append(_gitlab_deployment(5, 10, "production", when.format(5), when.format(6), status="failed"))
    with wh.transaction(con):
        upsert_raw(con, "gitlab_deployments", deployments, run_id=RUN, fetched_at=NOW,
                   extra={"repo": "acme/platform/checkout"})
        upsert_raw(con, "gitlab_environments", [{"id": 10, "name": "production", "tier": "production"},
                                                {"id": 11, "name": "nonprod", "tier": "production"},
                                                {"id": 12, "name": "live", "tier": "other"},
                                                {"id": 13, "name": "production"}],
                   run_id=RUN, fetched_at=NOW, extra={"repo": "acme/platform/checkout"})
    wh.build_all(con)
    query = ("select deployment_id, is_production, final_state, succeeded_at is not null, team_key from marts.fct_deployments "
             "where source = 'gitlab' order by 1")
    assert con.execute(query).fetchall() == [
        (1, True, "success", True, "alpha"), (2, True, "success", True, "alpha"), (3, False, "success", True, "alpha"),
        (4, True, "success", True, "alpha"), (5, True, "failure", False, "alpha")]
    # the job's finish time; G4, made through the API without a job: the last change of its status
    assert con.execute("select deployment_id, succeeded_at from marts.fct_deployments where deployment_id in (1, 4) "
                       "and source = 'gitlab' order by 1").fetchall() == [
        (1, datetime(2025, 5, 2, 9, 2, tzinfo=timezone.utc)), (4, datetime(2025, 5, 2, 9, 5, tzinfo=timezone.utc))]
    con.execute("set variable gitlab_production_pattern = '^(production|live)$'")
    wh.build_all(con, ("intermediate", "marts"))
    assert [r[:2] for r in con.execute(query).fetchall()] == [(1, True), (2, False), (3, True), (4, True), (5, True)]


# ------------------------------------------------------------------------------- incremental staging


def _tables(con, schema: str) -> dict[str, list]:
    names = [r[0] for r in con.execute(
        "select table_name from duckdb_tables() where database_name = current_database() and schema_name = ? "
        "order by 1", [schema]).fetchall()]
    return {t: con.execute(f"select * from {schema}.{t} order by all").fetchall() for t in names}


@pytest.mark.parametrize("id_list_max", [5_000, 0], ids=["ids-as-a-list", "ids-joined"])
def test_incremental_staging_equals_a_full_build(con, monkeypatch, id_list_max):
    """After the first build only the raw rows written since are typed again. A later night that
    rewrites records, adds some, deletes one (as the quarantine does), and writes GitHub ids that do
    not parse or that parse to an existing key ('0012' and '12') must leave every staging and marts
    table exactly as a full build from scratch does (both ways of selecting the raw rows)."""
    monkeypatch.setattr(wh, "INCREMENTAL_ID_LIST_MAX", id_list_max)
    with wh.transaction(con):
        upsert_raw(con, "github_deployments", [_deployment(1, "production", "2025-05-01T08:00:00Z"),
                                                  _deployment(2, "production", "2025-05-04T12:00:00Z")],
                      run_id=RUN, fetched_at=NOW, extra={"repo": "acme/checkout"})
        upsert_raw(con, "github_deployment_statuses", [_status(12, 1, "success", "2025-05-01T08:10:00Z"),
                                                          _status(21, 2, "in_progress", "2025-05-04T12:01:00Z")],
                      run_id=RUN, fetched_at=NOW, extra={"repo": "acme/checkout"})
        upsert_raw(con, "github_pull_requests", [_pull(101, 1, "2025-04-29T10:00:00Z", "2025-04-30T20:00:00Z")],
                      run_id=RUN, fetched_at=NOW, extra={"repo": "acme/checkout"})
    wh.build_all(con)
    assert con.execute("select count(*) from build_state.stg_pagerduty__incidents").fetchone() == (9,)
    later = datetime(2025, 5, 27, tzinfo=timezone.utc)
    with wh.transaction(con):
        upsert_raw(con, "pagerduty_incidents", [
            pd_incident("I5", "S2", "2025-05-25T00:00:00Z", resolved="2025-05-26T03:00:00Z"),  # resolved now
            pd_incident("I10", "S1", "2025-05-26T09:00:00Z", resolved="2025-05-26T09:30:00Z"),  # new
        ], run_id="run-2", fetched_at=later)
        upsert_raw(con, "pagerduty_log_entries", [pd_log_entry("L51", "I5", "resolve", "2025-05-26T03:00:00Z"),
                                                     pd_log_entry("L100", "I10", "acknowledge", "2025-05-26T09:04:00Z")],
                      run_id="run-2", fetched_at=later)
        con.execute("delete from raw.pagerduty_log_entries where id = 'L11'")
        upsert_raw(con, "github_deployment_statuses", [_status(22, 2, "success", "2025-05-04T12:05:00Z"),
                                                          {**_status(0, 2, "success", "2025-05-04T12:06:00Z"),
                                                           "id": "oops"},
                                                          {**_status(0, 2, "failure", "2025-05-04T12:07:00Z"),
                                                           "id": "0012"}],
                      run_id="run-2", fetched_at=later, extra={"repo": "acme/checkout"})
        upsert_raw(con, "github_pull_requests", [_pull(102, 2, "2025-05-01T10:00:00Z", "2025-05-02T00:00:00Z")],
                      run_id="run-2", fetched_at=later, extra={"repo": "acme/checkout"})
    wh.build_all(con)
    with wh.transaction(con):  # a third night: one more status (the id that did not parse stays as it was)
        upsert_raw(con, "github_deployment_statuses", [_status(23, 2, "inactive", "2025-05-27T12:00:00Z")],
                      run_id="run-3", fetched_at=later, extra={"repo": "acme/checkout"})
    wh.build_all(con)
    con.execute("delete from raw.pagerduty_log_entries where id = 'L23'")  # a night that only removes a row
    wh.build_all(con)
    incremental = {**_tables(con, "staging"), **_tables(con, "marts")}
    assert ("oops" not in str(incremental["stg_github__deployment_statuses"])
            and sum(1 for r in incremental["stg_github__deployment_statuses"] if r[0] is None) == 1)
    assert sum(1 for r in incremental["stg_github__deployment_statuses"] if r[0] == 12) == 2  # '12' and '0012'
    assert not {"L11", "L23"} & {r[0] for r in incremental["stg_pagerduty__log_entries"]}
    con.execute("drop schema build_state cascade")  # no state: the next build is a full one
    wh.build_all(con)
    assert {**_tables(con, "staging"), **_tables(con, "marts")} == incremental


def test_incremental_staging_rebuilds_in_full_when_the_sql_changes(con, monkeypatch):
    """The state remembers a fingerprint of the SQL: a changed file is never applied to new rows only."""
    from pipelines.warehouse import SqlFile

    f = wh.sql_file("staging", "stg_pagerduty__incidents")
    changed = f.text.replace("f[5] as urgency", "upper(f[5]) as urgency")
    monkeypatch.setattr(SqlFile, "text", property(lambda self: changed if self.table == f.table else
                                                  self.path.read_text(encoding="utf-8")))
    wh.build_table(con, f)
    assert {r[0] for r in con.execute("select urgency from staging.stg_pagerduty__incidents").fetchall()} == {
        "HIGH", "LOW"}
