"""GitHubClient.deployments_with_statuses against the emulator's GraphQL endpoint (real sockets):
request counts from the emulator's own counters, the bookmark stop, statuses beyond the first page,
the REST shapes, and the errors."""

from __future__ import annotations

import math
import time
from datetime import timedelta

import pytest
import requests

from emulator.model import Deployment, DeploymentStatus, Repo
from emulator.server import EmulatorServer
from pipelines.connectors.github.client import (
    GitHubClient,
    database_id_from_node_id,
    graphql_url,
    status_from_graphql,
    surrogate_id,
)
from pipelines.http import ApiError, AuthError
from tests.emulator_helpers import GH_HEADERS, GH_TOKEN, t, tiny_org

ROUTE = "github POST /graphql"


def org_with(n: int, *, statuses_of_newest: int = 1):
    """tiny_org with acme/payments-api holding ``n`` deployments (one an hour from 2025-06-01, each
    with one status), the newest of them with ``statuses_of_newest`` statuses."""
    org = tiny_org()
    org.deployments = []
    base = t("2025-06-01T00:00:00Z")
    for k in range(n):
        created = base + timedelta(hours=k)
        count = statuses_of_newest if k == n - 1 else 1
        sts = [DeploymentStatus(100_000 + 1000 * k + j, "in_progress" if j < count - 1 else "success",
                                created + timedelta(seconds=10 * (j + 1))) for j in range(count)]
        org.deployments.append(Deployment(id=10_000 + k, repo="acme/payments-api", sha=f"{k:040x}", ref="main",
                                          environment="production", created_at=created, statuses=sts))
    org.now = base + timedelta(hours=n + 1)
    return org


@pytest.fixture()
def serve():
    servers: list[EmulatorServer] = []

    def start(org) -> EmulatorServer:
        srv = EmulatorServer(org, port=0, github_token=GH_TOKEN).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


def requests_to(srv, route: str = ROUTE) -> int:
    return srv.stats()["by_route"].get(route, {}).get("requests", 0)


@pytest.mark.parametrize("n", [1, 100, 101, 250])
def test_n_deployments_cost_ceil_n_over_100_requests(serve, n):
    srv = serve(org_with(n))
    client = GitHubClient(srv.github_url, GH_TOKEN)
    got = list(client.deployments_with_statuses("acme/payments-api"))
    assert [d["id"] for d, _ in got] == [10_000 + k for k in reversed(range(n))]  # newest first
    assert requests_to(srv) == math.ceil(n / 100)
    assert client.stats["deployments"].requests == math.ceil(n / 100)
    assert client.stats["deployments"].records == n and client.stats["deployment_statuses"].records == n
    assert "deployment_statuses" not in client.stats or client.stats["deployment_statuses"].requests == 0
    assert srv.stats()["requests"] == requests_to(srv)  # nothing else was asked


def test_stop_before_ends_the_paging_early(serve):
    org = org_with(250)
    srv = serve(org)
    client = GitHubClient(srv.github_url, GH_TOKEN)
    # the 150 newest deployments are created at or after hour 100
    stop = t("2025-06-01T00:00:00Z") + timedelta(hours=100)
    got = list(client.deployments_with_statuses("acme/payments-api", stop_before=stop))
    assert [d["id"] for d, _ in got] == [10_000 + k for k in reversed(range(100, 250))]
    assert requests_to(srv) == 2  # 100 + 50: the second page holds the first one older than the stop
    srv.reset_stats()
    lazy = client.deployments_with_statuses("acme/payments-api")
    next(lazy)
    assert requests_to(srv) == 1  # a caller that stops iterating costs no further page


def test_a_deployment_with_more_than_100_statuses_gets_all_of_them(serve):
    org = org_with(3, statuses_of_newest=250)
    srv = serve(org)
    client = GitHubClient(srv.github_url, GH_TOKEN)
    got = dict((d["id"], statuses) for d, statuses in client.deployments_with_statuses("acme/payments-api"))
    # 1 page of deployments (with 10 statuses each), then 240 more statuses of one: 100 + 100 + 40
    assert client.stats["deployments"].requests == 1 and client.stats["deployment_statuses"].requests == 3
    assert requests_to(srv) == 4
    newest = got[10_002]
    rest = client.deployment_statuses("acme/payments-api", 10_002)
    assert len(newest) == 250 == len(rest)
    assert [s["id"] for s in newest] == [s["id"] for s in rest]  # the REST ids, newest first
    assert [(s["state"], s["created_at"], s["deployment_url"]) for s in newest] == \
           [(s["state"], s["created_at"], s["deployment_url"]) for s in rest]
    assert newest[0]["state"] == "success" and {s["state"] for s in newest[1:]} == {"in_progress"}
    assert [len(got[10_000]), len(got[10_001])] == [1, 1]


def test_records_have_the_rest_shapes_the_warehouse_reads(serve):
    srv = serve(tiny_org())
    client = GitHubClient(srv.github_url, GH_TOKEN)
    got = list(client.deployments_with_statuses("acme/payments-api"))
    for (d, statuses), r in zip(got, client.deployments("acme/payments-api"), strict=True):
        for key in ("url", "id", "node_id", "sha", "ref", "task", "payload", "original_environment", "environment",
                    "description", "created_at", "updated_at", "statuses_url", "repository_url"):
            assert d[key] == r[key], key
        assert d["creator"] == {"login": r["creator"]["login"], "id": r["creator"]["id"], "type": r["creator"]["type"]}
        rest_statuses = client.deployment_statuses("acme/payments-api", r["id"])
        assert len(statuses) == len(rest_statuses)
        for s, rs in zip(statuses, rest_statuses):
            for key in ("url", "id", "node_id", "state", "description", "environment", "environment_url", "log_url",
                        "created_at", "updated_at", "deployment_url", "repository_url"):
                assert s[key] == rs[key], key


def test_not_found_is_a_404_for_that_repo_and_a_bad_token_stops_at_once(serve):
    srv = serve(tiny_org())
    client = GitHubClient(srv.github_url, GH_TOKEN)
    with pytest.raises(ApiError) as caught:
        list(client.deployments_with_statuses("acme/secret-repo"))
    err = caught.value
    assert err.status == 404 and not isinstance(err, AuthError)
    assert "repository 'acme/secret-repo' does not exist, or GITHUB_TOKEN cannot see it" in str(err)
    assert "Could not resolve to a Repository with the name 'acme/secret-repo'." in str(err)
    assert requests_to(srv) == 1  # not retried
    wrong = "ghp_wrongwrongwrong123"
    with pytest.raises(AuthError) as caught:
        list(GitHubClient(srv.github_url, wrong).deployments_with_statuses("acme/payments-api"))
    assert "HTTP 401" in str(caught.value) and "GITHUB_TOKEN" in str(caught.value) and wrong not in str(caught.value)
    assert requests_to(srv) == 2


def test_a_server_without_graphql_fails_naming_the_rest_setting(serve):
    srv = serve(tiny_org())
    ghes_like = srv.base_url + "/github/api/v3"  # its GraphQL would be /github/api/graphql: not served
    client = GitHubClient(ghes_like, GH_TOKEN)
    assert client.graphql_url == srv.base_url + "/github/api/graphql"
    with pytest.raises(ApiError) as caught:
        list(client.deployments_with_statuses("acme/payments-api"))
    assert caught.value.status is None  # everyone's problem, not one repository's
    assert "INCIDENT_METRICS_GITHUB_DEPLOYMENTS_API=rest" in str(caught.value) and "answered 404" in str(caught.value)


def test_an_exhausted_points_budget_is_waited_out_then_fails_clearly(tmp_path):
    org = org_with(5)
    with EmulatorServer(org, port=0, github_token=GH_TOKEN, github_rate_limit_per_hour=1) as srv:
        sleeps: list[float] = []
        slept = [0.0]

        def sleep(seconds: float) -> None:  # a clock that moves with the client's waits, without waiting
            sleeps.append(seconds)
            slept[0] += seconds

        client = GitHubClient(srv.github_url, GH_TOKEN, sleep=sleep, max_retries=2,
                              clock=lambda: time.monotonic() + slept[0], now=lambda: time.time() + slept[0])
        assert len(list(client.deployments_with_statuses("acme/payments-api"))) == 5  # the one point
        with pytest.raises(ApiError) as caught:
            list(client.deployments_with_statuses("acme/payments-api"))
        assert "failed after 3 attempts" in str(caught.value) and "RATE_LIMITED" in str(caught.value)
        # the first refusal waited until the budget's reset, an hour away (x-ratelimit-reset); the
        # emulator's window runs on the real clock, so it still refused after the (simulated) hour
        assert 3500 < sleeps[0] <= 3600
        assert client.stats["deployments"].throttled == 3 and client.stats["deployments"].retries == 2
        assert srv.stats()["by_route"][ROUTE]["requests"] == 4
        assert srv.stats()["by_route"][ROUTE]["by_status"] == {"200": 4}  # refusals are HTTP 200 + errors


def test_node_id_decoding_and_endpoint_derivation():
    # GitHub's documented pair: legacy "MDQ6VXNlcjM0MDczMDM=" and next "U_kgDOADP9xw" are user 3407303
    assert database_id_from_node_id("MDQ6VXNlcjM0MDczMDM=") == 3407303
    assert database_id_from_node_id("U_kgDOADP9xw") == 3407303
    assert database_id_from_node_id("MDE2OkRlcGxveW1lbnRTdGF0dXM1MDA1") == 5005  # unpadded, as the emulator sends
    for junk in ("", "not-an-id", "XX_!!!", None, 42):
        assert database_id_from_node_id(junk) is None
    assert surrogate_id("opaque") == surrogate_id("opaque") >= 1 << 60
    status = status_from_graphql({"id": "opaque", "state": "WAITING", "createdAt": "2026-01-01T00:00:00Z"},
                                 rest_base_url="https://api.github.com", repo="acme/x", deployment_id=7)
    assert status["id"] == surrogate_id("opaque") and status["state"] == "waiting"
    assert status["deployment_url"] == "https://api.github.com/repos/acme/x/deployments/7"
    assert graphql_url("https://api.github.com") == "https://api.github.com/graphql"
    assert graphql_url("https://ghe.example.com/api/v3/") == "https://ghe.example.com/api/graphql"
    with pytest.raises(ValueError, match="INCIDENT_METRICS_GITHUB_DEPLOYMENTS_API"):
        GitHubClient("https://api.github.com", "t0ken", deployments_api="soap")


def test_a_deployment_deleted_while_its_statuses_are_paged_keeps_what_came(serve, caplog):
    srv = serve(tiny_org())
    client = GitHubClient(srv.github_url, GH_TOKEN)
    # a node as the first page returned it (one status, more to come), for a deployment since deleted
    node = {"id": "MDEwOkRlcGxveW1lbnQ5OTk5",  # "010:Deployment9999": not (or no longer) there
            "statuses": {"pageInfo": {"hasNextPage": True, "endCursor": "Y3Vyc29yOnYyOlsiMjAyNi0wMS0wMVQwMDowMDowMFoiLCAxXQ=="},
                         "nodes": [{"id": "MDE2OkRlcGxveW1lbnRTdGF0dXM3Nzc", "state": "QUEUED",
                                    "createdAt": "2026-01-01T00:00:00Z"}]}}
    statuses = client._statuses_of(node, {"id": 9999}, "acme/payments-api", "repository 'acme/payments-api'")
    assert [(s["id"], s["state"]) for s in statuses] == [(777, "queued")]
    assert requests_to(srv) == 1 and client.stats["deployment_statuses"].requests == 1
    assert "deployment 9999 of repository 'acme/payments-api' disappeared" in caplog.text


def test_a_batch_reads_many_repos_in_one_request_and_pages_on_only_where_needed(serve):
    org = org_with(40)  # acme/payments-api: 40 deployments, one an hour
    org.repos.append(Repo(id=5151, full_name="acme/search-api"))
    for k in range(3):
        org.deployments.append(Deployment(id=20_000 + k, repo="acme/search-api", sha=f"{k:040x}", ref="main",
                                          environment="production", created_at=t("2025-06-01T05:00:00Z") + timedelta(hours=k)))
    srv = serve(org)
    client = GitHubClient(srv.github_url, GH_TOKEN)
    stop = t("2025-06-01T00:00:00Z") + timedelta(hours=25)  # the 15 newest of payments-api are at or after it
    got = client.deployments_with_statuses_batch(["acme/payments-api", "acme/search-api", "acme/secret-repo"],
                                                 stop_before={"acme/payments-api": stop}, first=10)
    # one query for the three repos; payments-api's 10 newest did not reach the stop: one page of its own
    assert requests_to(srv) == 2
    assert [d["id"] for d, _ in got["acme/payments-api"]] == [10_000 + k for k in reversed(range(25, 40))]
    assert [d["id"] for d, _ in got["acme/search-api"]] == [20_002, 20_001, 20_000]
    err = got["acme/secret-repo"]
    assert isinstance(err, ApiError) and err.status == 404
    assert "repository 'acme/secret-repo' does not exist, or GITHUB_TOKEN cannot see it" in str(err)
    # the same records as the repos read one by one, statuses included
    alone = list(client.deployments_with_statuses("acme/payments-api", stop_before=stop))
    assert got["acme/payments-api"] == alone
    # points: 3 x (1 + 10) = 33 connection requests -> 1 point; the follow-up page 1 point; the check above 1
    assert requests.get(srv.github_url + "/rate_limit", headers=GH_HEADERS, timeout=10).json()["resources"]["graphql"]["used"] == 3
