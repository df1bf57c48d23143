"""The PagerDuty Analytics fast path (pipelines/connectors/pagerduty/streams.py) against the emulator."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg
import duckdb

from emulator.faults import FaultRule, Faults
from emulator.generator import GeneratorConfig, generate_organisation
from emulator.server import EmulatorServer

PD_TOKEN = "analytics-pd-token"


def _materialize(srv, data_dir, use_analytics=True):
    from assets.raw import asset_of
    pagerduty_analytics_incidents = asset_of("pagerduty", "analytics_incidents")
    from pipelines.connectors.pagerduty.resource import PagerDutyResource
    from pipelines.resources import WarehouseResource

    return dg.materialize([pagerduty_analytics_incidents], resources={
        "pagerduty": PagerDutyResource(api_url=srv.pagerduty_url, api_token=PD_TOKEN, use_analytics=use_analytics),
        "warehouse": WarehouseResource(data_dir=str(data_dir), history_days=200),
    }, instance=dg.DagsterInstance.ephemeral())


def _rows(data_dir):
    con = duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute("select id, payload ->> 'seconds_to_resolve' from raw.pagerduty_analytics_incidents order by 1").fetchall()
    finally:
        con.close()


def _meta(result):
    return result.get_asset_materialization_events()[0].event_specific_data.materialization.metadata


def test_analytics_fast_path_reads_every_incident_in_1000_row_pages_and_is_idempotent(tmp_path):
    org = generate_organisation(3, GeneratorConfig(n_teams=3, months=6))
    since = datetime.now(timezone.utc) - timedelta(days=200)
    expected = {i.id for i in org.incidents if since <= i.created_at <= org.now}
    with EmulatorServer(org, port=0, pagerduty_token=PD_TOKEN, rate_limit_per_minute=None) as srv:
        first = _materialize(srv, tmp_path / "data")
        requests = srv.stats()["by_route"]["pagerduty POST /analytics/raw/incidents"]["requests"]
        rows = _rows(tmp_path / "data")
        second = _materialize(srv, tmp_path / "data")
    assert first.success and second.success
    assert {r[0] for r in rows} == expected and len(rows) == len(expected)
    assert requests <= 2 + len(expected) // 1000  # two 180-day windows at most, 1,000 a page
    assert _meta(first)["api_analytics_available"].value == 1
    assert _meta(first)["api_requests"].value == requests
    assert _rows(tmp_path / "data") == rows  # the re-read overlap changes nothing
    assert _meta(second)["records_changed"].value == 0


def test_no_analytics_falls_back_without_failing_or_writing(tmp_path):
    org = generate_organisation(3, GeneratorConfig(n_teams=2, months=2))
    for status in (402, 403, 404):
        faults = Faults(rules=[FaultRule("status", route="/analytics", status=status)])
        with EmulatorServer(org, port=0, pagerduty_token=PD_TOKEN, rate_limit_per_minute=None, faults=faults) as srv:
            result = _materialize(srv, tmp_path / f"data{status}")
            served = srv.stats()["requests"]
        assert result.success
        assert _meta(result)["api_analytics_available"].value == 0
        assert _meta(result)["api_fallback_status"].value == status
        assert served == 1  # not retried
        assert _rows(tmp_path / f"data{status}") == []


def test_off_by_default_costs_no_request(tmp_path):
    org = generate_organisation(3, GeneratorConfig(n_teams=2, months=2))
    with EmulatorServer(org, port=0, pagerduty_token=PD_TOKEN, rate_limit_per_minute=None) as srv:
        result = _materialize(srv, tmp_path / "data", use_analytics=False)
        assert srv.stats()["requests"] == 0
    assert result.success and _meta(result)["analytics_available"].value == 0
