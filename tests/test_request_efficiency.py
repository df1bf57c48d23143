"""The demo backfill costs at most 1.05 times the minimum number of list requests, per stream.

The organisation is the one ``incident-metrics demo`` serves (seed 7, half a deploy per repo a
week). The minimum is computed from the organisation itself and the window plan: one request per
100 records of each window (at least one per window), per stream. GitHub deployments come through
GraphQL with their statuses (REST has no bulk endpoint for statuses, which cost one request per
deployment there): one request per 100 deployments of each repo, plus one per 100 statuses beyond
the first 10 of a deployment (none here: the generator gives a deployment at most 3). The requests
counted are the ones the emulator served (``/__emulator/stats``), so nothing the client forgets to
count escapes.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import dagster as dg
import pytest

from emulator.generator import GeneratorConfig, generate_organisation
from emulator.server import EmulatorServer

PD_TOKEN = "efficiency-pd-token"
GH_TOKEN = "efficiency-gh-token"
OVERVIEW_DROPS = {"notify_log_entry", "annotate_log_entry"}  # what is_overview=true leaves out
WINDOW = timedelta(days=180)
SLACK = 1.05


def windows(since: datetime, until: datetime) -> list[tuple[datetime, datetime]]:
    out = []
    while since < until:
        out.append((since, min(since + WINDOW, until)))
        since = out[-1][1]
    return out


def pages(times: list[datetime], plan: list[tuple[datetime, datetime]]) -> int:
    return sum(max(1, math.ceil(sum(1 for t in times if a <= t < b) / 100)) for a, b in plan)


@pytest.fixture(scope="module")
def backfill(tmp_path_factory):
    from assets import ownership, raw
    from pipelines.connectors.github.resource import GitHubResource
    from pipelines.connectors.gitlab.resource import GitLabResource
    from pipelines.connectors.pagerduty.resource import PagerDutyResource
    from pipelines.resources import OwnershipResource, WarehouseResource

    org = generate_organisation(7, GeneratorConfig(deploys_per_repo_week=0.5))
    tmp = tmp_path_factory.mktemp("efficiency")
    (tmp / "ownership.yaml").write_text(org.ownership_yaml())
    ingest = [ownership.ownership_tables, *(raw.asset_of("pagerduty", s) for s in ("teams", "services", "incidents",
                                                                                    "log_entries")),
              raw.asset_of("github", "deployments"), raw.asset_of("github", "pull_requests")]
    # Rate limits off on both sides: this test counts requests; the benchmarks measure time.
    with EmulatorServer(org, port=0, pagerduty_token=PD_TOKEN, github_token=GH_TOKEN, rate_limit_per_minute=None,
                        github_rate_limit_per_hour=1_000_000) as srv:
        result = dg.materialize(ingest, resources={
            "pagerduty": PagerDutyResource(api_url=srv.pagerduty_url, api_token=PD_TOKEN, rate_per_minute=1_000_000),
            "github": GitHubResource(api_url=srv.github_url, token=GH_TOKEN),
            "gitlab": GitLabResource(api_url=srv.gitlab_url),
            "ownership": OwnershipResource(path=str(tmp / "ownership.yaml")),
            "warehouse": WarehouseResource(data_dir=str(tmp / "data")),
        }, instance=dg.DagsterInstance.ephemeral())
        stats = srv.stats()
    assert result.success
    meta = {e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
            for e in result.get_asset_materialization_events()}
    return org, stats, meta


def served(stats: dict, route: str) -> int:
    entry = stats["by_route"].get(route, {"by_status": {}})
    assert set(entry["by_status"]) <= {"200"}, (route, entry["by_status"])  # no errors, no 429s, no retries
    return entry.get("requests", 0)


def minimums(org, meta) -> dict[str, int]:
    def plan(asset: str):
        m = meta[asset]
        return windows(datetime.fromisoformat(m["window_start"].value), datetime.fromisoformat(m["window_end"].value))

    now = org.now
    since = datetime.fromisoformat(meta["raw/pagerduty_incidents"]["window_start"].value)  # 730 days of history
    incidents = [i.created_at for i in org.incidents if i.created_at <= now]
    entries = [e.created_at for i in org.incidents for e in i.log_entries if e.type not in OVERVIEW_DROPS and e.created_at <= now]
    repos = sorted({r.full_name for r in org.repos if r.accessible})
    deployments = [d for d in org.deployments if since <= d.created_at <= now]
    assert max(len(d.statuses) for d in deployments) <= 10  # so no status follow-up pages (see above)
    closed = [p for p in org.pulls if p.closed_at is not None and p.closed_at <= now]
    return {
        "pagerduty GET /teams": 1,
        "pagerduty GET /services": 1,
        "pagerduty GET /incidents": pages(incidents, plan("raw/pagerduty_incidents")),
        "pagerduty GET /log_entries": pages(entries, plan("raw/pagerduty_log_entries")),
        # was REST: the same list pages plus len(deployments) (2,016) statuses requests
        "github POST /graphql": sum(max(1, math.ceil(sum(d.repo == r for d in deployments) / 100)) for r in repos),
        "github GET /repos/{owner}/{repo}/pulls": sum(max(1, math.ceil(sum(p.repo == r for p in closed) / 100)) for r in repos),
    }


def test_backfill_list_requests_within_5_percent_of_the_minimum_per_stream(backfill):
    org, stats, meta = backfill
    expected = minimums(org, meta)
    got = {route: served(stats, route) for route in expected}
    for route, minimum in expected.items():
        assert minimum <= got[route] <= SLACK * minimum, (route, got[route], minimum)
    # nothing else was asked: no per-incident requests, no retries, no re-reads
    assert sum(got.values()) == stats["requests"], sorted(stats["by_route"])
    assert expected["pagerduty GET /incidents"] + expected["pagerduty GET /log_entries"] < 600  # ~5,000 incidents


def test_asset_metadata_accounts_for_every_request(backfill):
    org, stats, meta = backfill
    m = meta["raw/pagerduty_log_entries"]
    assert m["api_requests"].value == served(stats, "pagerduty GET /log_entries")
    assert m["api_records"].value == m["records_received"].value > 15_000
    for key in ("api_retries", "api_throttled", "api_bytes"):
        assert key in m
    since = datetime.fromisoformat(meta["raw/pagerduty_incidents"]["window_start"].value)
    assert meta["raw/pagerduty_incidents"]["api_records"].value == \
        sum(1 for i in org.incidents if since <= i.created_at <= org.now)
    assert meta["raw/github_deployments"]["api_requests"].value == served(stats, "github POST /graphql")
    assert meta["raw/github_deployments"]["api_records"].value == meta["raw/github_deployments"]["records_received"].value
    # the statuses came with their deployments: no request of their own, every one counted as a record
    assert meta["raw/github_deployment_statuses"]["api_requests"].value == 0
    assert meta["raw/github_deployment_statuses"]["api_records"].value == \
        meta["raw/github_deployment_statuses"]["records_received"].value > 5_000
