"""``benchmarks/seed_warehouse.py`` leaves the warehouse a first nightly run against the emulator leaves.

One organisation, two warehouses: one filled by a real nightly run through the emulator (HTTP, the
clients, the Dagster assets), one seeded without HTTP and then built by the same staging, marts and
statistics assets. Every table (bookmarks, quarantine, staging, marts, the raw records) must be the
same. The history window cuts the organisation's history in the middle, at an instant with no
record near it, so the window logic of the seeding is exercised too.
"""

from __future__ import annotations

import sys
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pytest

from emulator.generator import GeneratorConfig, generate_organisation
from tests.incremental_helpers import (
    ROOT,
    diff_states,
    materialize_all,
    resources,
    start_emulator,
    warehouse_state,
    write_ownership,
)

sys.path.insert(0, str(ROOT / "benchmarks"))
from seed_warehouse import seed  # noqa: E402

UTC = timezone.utc
OVERVIEW_DROPS = {"notify_log_entry", "annotate_log_entry"}


def _org():
    return generate_organisation(5, GeneratorConfig(n_teams=3, months=4, end=date(2025, 6, 1), future_days=3,
                                                    incidents_per_team_month=30.0, deploys_per_repo_week=1.0))


def _record_times(org) -> list[datetime]:
    times = [i.created_at for i in org.incidents]
    times += [e.created_at for i in org.incidents for e in i.log_entries if e.type not in OVERVIEW_DROPS]
    times += [d.created_at for d in org.deployments]
    times += [p.updated_at for p in org.pulls] + [p.closed_at for p in org.pulls if p.closed_at is not None]
    return times


def _quiet_history_days(org, now: datetime) -> int:
    """A history length whose window start (now minus that many days) lies mid-history, at least an
    hour from any record time, so the few seconds between the two runs cannot move a record across it."""
    times = _record_times(org)
    middle = org.now - timedelta(days=60)
    for days in range((now - middle).days, (now - middle).days + 40):
        since = now - timedelta(days=days)
        if all(abs(t - since) > timedelta(hours=1) for t in times):
            return days
    raise AssertionError("no quiet window start found")


def _build(srv, data, ownership, history_days: int) -> None:
    """The staging, marts and statistics assets on a seeded warehouse (what the nightly job runs after raw)."""
    from pipelines.definitions import all_assets

    keys = [k for a in all_assets for k in a.keys if k.path[0] in ("staging", "intermediate", "marts")]
    result = dg.materialize(all_assets, selection=dg.AssetSelection.assets(*keys),
                            resources=resources(srv, data, ownership, history_days=history_days),
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success


@pytest.fixture(scope="module")
def warehouses(tmp_path_factory):
    """The two warehouses after a first run, and again after the next night (clock one day on)."""
    tmp = tmp_path_factory.mktemp("seed")
    org = _org()
    history_days = _quiet_history_days(org, datetime.now(UTC))
    real, seeded = tmp / "real" / "data", tmp / "seeded" / "data"
    srv = start_emulator(org)
    try:
        real_ownership = write_ownership(org, tmp / "real")
        materialize_all(srv, real, real_ownership, history_days=history_days)
        seeded_ownership = write_ownership(org, tmp / "seeded")
        counts = seed(org, seeded, ownership_path=seeded_ownership, history_days=history_days,
                      base_url=srv.base_url, batch_size=500)
        _build(srv, seeded, seeded_ownership, history_days)
        first = (warehouse_state(real / "warehouse.duckdb"), warehouse_state(seeded / "warehouse.duckdb"))
        srv.advance(timedelta(days=1))  # the shared organisation's clock: tonight's records appear
        materialize_all(srv, real, real_ownership, history_days=history_days)
        seed(org, seeded, ownership_path=seeded_ownership, history_days=history_days, base_url=srv.base_url)
        _build(srv, seeded, seeded_ownership, history_days)
        night = (warehouse_state(real / "warehouse.duckdb"), warehouse_state(seeded / "warehouse.duckdb"))
    finally:
        srv.stop()
    since = datetime.now(UTC) - timedelta(days=history_days)
    return {"org": org, "since": since, "counts": counts, "first": first, "night": night,
            "seeded": seeded / "warehouse.duckdb"}


def _assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    # Staging, marts, bookmarks and quarantine: the same rows. Raw: the same records (ids); the
    # payloads too for PagerDuty (GitHub deployments may be read through GraphQL, which does not
    # send every field of the REST shapes the seeding writes, e.g. the creator's links).
    raw_ids = {t for t in a if t.startswith("raw.github_deployment")}
    assert {t: sorted(a[t]) for t in raw_ids} == {t: sorted(b[t]) for t in raw_ids}
    assert diff_states({t: v for t, v in a.items() if t not in raw_ids},
                       {t: v for t, v in b.items() if t not in raw_ids}) == {}
    # Not vacuous: the marts hold rows.
    for table in ("marts.fct_incidents", "marts.fct_deployments", "marts.fct_pull_requests",
                  "marts.team_comparisons", "marts.team_period_metrics", "staging.stg_pagerduty__log_entries"):
        assert len(a[table]) > 0, table


def test_seeded_warehouse_equals_a_real_first_run(warehouses):
    _assert_same(*warehouses["first"])


def test_a_seeded_night_equals_a_real_night(warehouses):
    real, seeded = warehouses["night"]
    _assert_same(real, seeded)
    first_real, _ = warehouses["first"]
    # The night brought new incidents and moved the bookmarks on.
    assert len(real["staging.stg_pagerduty__incidents"]) > len(first_real["staging.stg_pagerduty__incidents"])
    assert real["raw.sync_state"] != first_real["raw.sync_state"]


def test_seeded_records_are_the_window_a_first_run_reads(warehouses):
    org, since, counts = warehouses["org"], warehouses["since"], warehouses["counts"]
    clock = org.now - timedelta(days=1)  # the first run's clock (the fixture moved it on for the night)
    expected_incidents = sum(1 for i in org.incidents if since <= i.created_at <= clock)
    expected_entries = sum(1 for i in org.incidents for e in i.log_entries
                           if e.type not in OVERVIEW_DROPS and since <= e.created_at <= clock)
    expected_deployments = sum(1 for d in org.deployments if since <= d.created_at <= clock)
    # The window starts mid-history and the clock hides the future days: both cut something.
    assert expected_incidents < sum(1 for i in org.incidents if i.created_at >= since)
    assert expected_incidents < sum(1 for i in org.incidents if i.created_at <= clock)
    _, first = warehouses["first"]
    quarantined_acks = sum(1 for row in first["quarantine.rejected_records"].values() if "ack_outside_incident" in row)
    bookmarks = {row[1]: row[2] for row in first["raw.sync_state"].values() if row[0] == "pagerduty"}
    assert counts["pagerduty_incidents"] == expected_incidents
    assert counts["pagerduty_log_entries"] == expected_entries - quarantined_acks
    assert counts["github_deployments"] == expected_deployments
    assert bookmarks["incidents"] == max(i.created_at for i in org.incidents if since <= i.created_at <= clock)
