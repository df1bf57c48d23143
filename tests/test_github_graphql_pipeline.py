"""The nightly pipeline reading GitHub deployments through GraphQL (the default) against the same
emulator state as through REST: the warehouses are equal table by table (staging and marts without
any allowance; raw differs only in fields REST has and GraphQL does not), over a full load and an
incremental night that lands while a deployment is in flight; and the requests drop from one per
deployment to one per 100 deployments of each repo."""

from __future__ import annotations

import math
from datetime import timedelta

import dagster as dg
import pytest

from emulator.faults import Faults
from emulator.server import EmulatorServer
from pipelines import warehouse as wh
from pipelines.connectors import connector
from pipelines.connectors.github.client import GitHubClient
from pipelines.connectors.github.streams import BATCH_FIRST, BATCH_REPOS
from pipelines.ingest.runner import SyncSettings, run_stream
from pipelines.records import parse_time
from tests.incremental_helpers import (
    GH_TOKEN,
    PD_TOKEN,
    deployment_in_flight,
    diff_states,
    pick_clock,
    small_org,
    warehouse_state,
    write_ownership,
)

GRAPHQL = "github POST /graphql"
LIST = "github GET /repos/{owner}/{repo}/deployments"
STATUSES = "github GET /repos/{owner}/{repo}/deployments/{deployment_id}/statuses"
# What REST sends and GraphQL has no field for (the user object is reduced to login, id and type).
REST_ONLY = {
    "raw.github_deployments": {"transient_environment", "production_environment", "performed_via_github_app",
                               "creator.node_id", "creator.avatar_url", "creator.gravatar_id", "creator.url",
                               "creator.html_url", "creator.repos_url", "creator.site_admin"},
    "raw.github_deployment_statuses": {"target_url", "performed_via_github_app", "creator.node_id",
                                       "creator.avatar_url", "creator.gravatar_id", "creator.url", "creator.html_url",
                                       "creator.repos_url", "creator.site_admin"},
}


def _night(srv, data_dir, ownership, api: str) -> dict:
    from pipelines.connectors.github.resource import GitHubResource
    from pipelines.connectors.gitlab.resource import GitLabResource
    from pipelines.connectors.pagerduty.resource import PagerDutyResource
    from pipelines.definitions import all_assets
    from pipelines.resources import OwnershipResource, WarehouseResource

    srv.reset_stats()
    resources = {
        "pagerduty": PagerDutyResource(api_url=srv.pagerduty_url, api_token=PD_TOKEN),
        "github": GitHubResource(api_url=srv.github_url, token=GH_TOKEN, deployments_api=api),
        "gitlab": GitLabResource(api_url=srv.gitlab_url),
        "ownership": OwnershipResource(path=str(ownership)),
        "warehouse": WarehouseResource(data_dir=str(data_dir)),
    }
    selection = dg.AssetSelection.all() - dg.AssetSelection.assets(["reports", "baseline_report"])
    result = dg.materialize(all_assets, resources=resources, instance=dg.DagsterInstance.ephemeral(), selection=selection)
    assert result.success
    meta = {e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
            for e in result.get_asset_materialization_events()}
    return {"stats": srv.stats(), "meta": meta}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("graphql-vs-rest")
    # ~130 deployments per repo in six months: two GraphQL pages a repo on the full load
    org = small_org(seed=23, future_days=3, deploys_per_repo_week=5.0)
    ownership = write_ownership(org, tmp)
    srv = EmulatorServer(org, port=0, pagerduty_token=PD_TOKEN, github_token=GH_TOKEN,
                         github_rate_limit_per_hour=100_000).start()
    out = {"org": org, "nights": {}}
    try:
        # night 1 lands while a deployment is in flight; night 2 a day later, when it has finished
        first = pick_clock(org, srv.now(), deployment_in_flight)
        clocks = [first, first + timedelta(days=1)]
        out["clocks"] = clocks
        for n, clock in enumerate(clocks):
            srv.set_now(clock)
            for api in ("graphql", "rest"):
                out["nights"][(n, api)] = _night(srv, tmp / api, ownership, api)
                out[("state", n, api)] = warehouse_state(tmp / api / "warehouse.duckdb")
    finally:
        srv.stop()
    return out


def _explained_raw_differences(graphql_state, rest_state) -> dict:
    diff = diff_states(graphql_state, rest_state)
    for table, allowed in REST_ONLY.items():
        d = diff.pop(table, None)
        if d is None:
            continue
        assert not d["missing"] and not d["extra"], (table, d["missing"][:5], d["extra"][:5])
        for record_id, paths in d["changed"].items():
            if "creator" in paths:  # a deleted user: REST says null, GraphQL's Actor! is GitHub's "ghost"
                assert rest_state[table][record_id][0]["creator"] is None, (table, record_id)
                assert graphql_state[table][record_id][0]["creator"]["login"] == "ghost", (table, record_id)
            assert set(paths) - {"creator"} <= allowed, (table, record_id, paths)
    return diff


@pytest.mark.parametrize("night", [0, 1])
def test_graphql_and_rest_warehouses_are_equal_table_by_table(runs, night):
    graphql_state, rest_state = runs[("state", night, "graphql")], runs[("state", night, "rest")]
    assert _explained_raw_differences(graphql_state, rest_state) == {}
    for table in graphql_state:
        if table.startswith(("staging.", "marts.")):
            assert graphql_state[table] == rest_state[table], table
    # not vacuous: deployments, statuses and the marts built on them are there
    for table in ("raw.github_deployments", "raw.github_deployment_statuses", "staging.stg_github__deployments",
                  "staging.stg_github__deployment_statuses", "marts.fct_deployments"):
        assert len(graphql_state[table]) > 100, table
    # nothing of the deployments was rejected (the generator's pull requests may be: equal on both sides)
    assert [r for r in graphql_state["quarantine.rejected_records"].values() if r[1] == "deployments"] == []


def test_the_incremental_night_re_reads_the_deployment_that_was_in_flight(runs):
    before, after = runs[("state", 0, "graphql")], runs[("state", 1, "graphql")]
    final = {"success", "failure", "error", "inactive"}

    def finished(state):
        return {p["deployment_url"].rsplit("/", 1)[1] for p, _ in state["raw.github_deployment_statuses"].values()
                if p["state"] in final}

    unfinished_then = set(before["raw.github_deployments"]) - finished(before)
    assert unfinished_then & finished(after), "no deployment turned final over the night"


def test_requests_drop_to_one_per_100_deployments_of_each_repo(runs):
    org = runs["org"]
    repos = sorted(r.full_name for r in org.repos if r.accessible)
    now = runs["clocks"][0]
    per_repo = {r: sum(1 for d in org.deployments if d.repo == r and d.created_at <= now) for r in repos}
    assert max(per_repo.values()) > 100  # some repos need a second page
    graphql, rest = runs["nights"][(0, "graphql")], runs["nights"][(0, "rest")]
    routes = {k: v["requests"] for k, v in graphql["stats"]["by_route"].items() if k.startswith("github")}
    # the full load: ceil(n / 100) GraphQL requests per repo (at least one), no REST deployments request
    # (no deployment has more than 10 statuses, so no status follow-up pages)
    expected = sum(max(1, math.ceil(n / 100)) for n in per_repo.values())
    assert routes[GRAPHQL] == expected and LIST not in routes and STATUSES not in routes
    assert graphql["meta"]["raw/github_deployments"]["api_requests"].value == expected
    assert graphql["meta"]["raw/github_deployments"]["deployments_api"].value == "graphql"
    assert graphql["meta"]["raw/github_deployment_statuses"]["api_requests"].value == 0
    # REST: the same list pages plus one statuses request per deployment
    rest_routes = {k: v["requests"] for k, v in rest["stats"]["by_route"].items()}
    assert rest_routes[LIST] == expected and rest_routes[STATUSES] == sum(per_repo.values())
    assert GRAPHQL not in rest_routes
    print(f"\nfull load, GitHub deployments: {expected} GraphQL requests instead of "
          f"{rest_routes[LIST] + rest_routes[STATUSES]} REST requests ({sum(per_repo.values())} deployments, {len(repos)} repos)")
    # the incremental night: one query for up to 25 repos, their 10 newest deployments each, and a
    # page of 100 of its own for a repo whose 10 newest do not reach back past its re-read edge (the
    # bookmark minus the rewind, or the oldest deployment still unfinished at the last night)
    prev = runs[("state", 0, "graphql")]
    deps = {k: (v[1][0], parse_time(v[0]["created_at"])) for k, v in prev["raw.github_deployments"].items()}
    final = {p["deployment_url"].rsplit("/", 1)[1] for p, _ in prev["raw.github_deployment_statuses"].values()
             if p["state"] in ("success", "failure", "error", "inactive")}
    hwm = {row[1].split(":", 1)[1]: row[2] for row in prev["raw.sync_state"].values() if row[1].startswith("deployments:")}
    clock = runs["clocks"][1]
    pages = math.ceil(len(repos) / BATCH_REPOS)
    for repo in repos:
        unfinished = [c for d, (r, c) in deps.items() if r == repo and d not in final and c >= hwm[repo] - timedelta(days=7)]
        edge = min([hwm[repo] - timedelta(hours=1), *unfinished])
        created = [d.created_at for d in org.deployments if d.repo == repo and d.created_at <= clock]
        within = sum(1 for c in created if c >= edge)
        if within >= BATCH_FIRST and len(created) > BATCH_FIRST:
            pages += math.ceil((within - BATCH_FIRST + (len(created) > within)) / 100)
    night = {k: v["requests"] for k, v in runs["nights"][(1, "graphql")]["stats"]["by_route"].items()}
    assert night[GRAPHQL] == pages and LIST not in night and STATUSES not in night
    print(f"incremental night, GitHub deployments: {pages} GraphQL requests for {len(repos)} repos")
    rest_night = {k: v["requests"] for k, v in runs["nights"][(1, "rest")]["stats"]["by_route"].items()}
    assert rest_night[LIST] == len(repos) and rest_night[STATUSES] > 0


def test_the_setting_picks_the_api(monkeypatch):
    from pipelines.connectors.github.resource import GitHubResource

    monkeypatch.delenv("INCIDENT_METRICS_GITHUB_DEPLOYMENTS_API", raising=False)
    assert GitHubResource(token="t0ken").client().deployments_api == "graphql"
    monkeypatch.setenv("INCIDENT_METRICS_GITHUB_DEPLOYMENTS_API", "REST")
    assert GitHubResource(token="t0ken").client().deployments_api == "rest"
    assert GitHubResource(token="t0ken", deployments_api="graphql").client().deployments_api == "graphql"
    monkeypatch.setenv("INCIDENT_METRICS_GITHUB_DEPLOYMENTS_API", "soap")
    with pytest.raises(ValueError, match="must be one of graphql, rest"):
        GitHubResource(token="t0ken").client()


@pytest.mark.parametrize("api", ["graphql", "rest"])
def test_repos_are_read_concurrently_and_each_gets_its_bookmark(tmp_path, api):
    """With four workers the emulator serves four GitHub requests at once, never more (one with a
    single worker), for deployments and pull requests alike; the rows are the same and every repo
    gets its own bookmark. It counts requests in flight at the server instead of timing the run,
    so a busy machine cannot fail it."""
    org = small_org(seed=11, future_days=0, deploys_per_repo_week=0.5)
    repos = sorted(r.full_name for r in org.repos)
    seen = {}
    with EmulatorServer(org, port=0, github_token=GH_TOKEN, github_rate_limit_per_hour=100_000,
                        faults=Faults(latency_ms=150, latency_route="/github/")) as srv:
        for workers in (1, 4):
            con = wh.connect(tmp_path / f"w{workers}.duckdb")
            wh.ensure_schemas(con)
            client = GitHubClient(srv.github_url, GH_TOKEN, concurrency=workers, deployments_api=api)
            srv.reset_stats()
            github = connector("github")
            deployments = run_stream(con, client, github.stream("deployments"), repos=repos, run_id=f"r{workers}",
                                     now=srv.now(), settings=SyncSettings())["github_deployments"]
            at_once = [srv.stats()["most_in_flight"]["github"]]
            srv.reset_stats()
            pulls = run_stream(con, client, github.stream("pull_requests"), repos=repos, run_id=f"r{workers}",
                               now=srv.now(), settings=SyncSettings())["github_pull_requests"]
            at_once.append(srv.stats()["most_in_flight"]["github"])
            streams = {r[0] for r in con.execute("select stream from raw.sync_state").fetchall()}
            assert streams == {f"deployments:{r}" for r in repos} | {f"pull_requests:{r}" for r in repos}
            seen[workers] = (*at_once, deployments.received, pulls.received)
            con.close()
    assert seen[1][2:] == seen[4][2:] and seen[4][2] > 0
    # REST reads statuses concurrently inside each repo's worker: the client's limit still holds
    assert seen[1][:2] == (1, 1) and seen[4][:2] == (4, 4)
