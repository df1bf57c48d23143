"""The emulator's GitHub GraphQL endpoint (POST /github/graphql) over real sockets: the same records
as REST, cursor pagination, aliases, GitHub-shaped errors, authentication, the points budget with
GitHub's cost formula, and the emulator clock."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
import requests

from emulator.faults import FaultRule, Faults
from emulator.model import Deployment, DeploymentStatus
from emulator.server import EmulatorServer
from pipelines.connectors.github.client import database_id_from_node_id
from tests.emulator_helpers import GH_HEADERS, GH_TOKEN, t, tiny_org

DEPLOYMENT_FIELDS = """
  databaseId id commitOid environment originalEnvironment task description createdAt updatedAt
  ref { name prefix } creator { __typename login } state
  latestStatus { id state }
  statuses(first: 100) { totalCount nodes { id state createdAt updatedAt description environment logUrl environmentUrl
                                            creator { login } } }
"""


def big_org(n: int = 23):
    """tiny_org plus ``n`` production deployments of acme/payments-api, one an hour from 2025-12-01."""
    org = tiny_org()
    base = t("2025-12-01T00:00:00Z")
    for k in range(n):
        created = base + timedelta(hours=k)
        org.deployments.append(Deployment(id=2000 + k, repo="acme/payments-api", sha=f"{k:040x}", ref="main",
                                          environment="production" if k % 3 else "staging", created_at=created,
                                          statuses=[DeploymentStatus(9000 + k, "success", created + timedelta(minutes=5))]))
    return org


@pytest.fixture()
def serve():
    servers: list[EmulatorServer] = []

    def start(org=None, **kw) -> EmulatorServer:
        srv = EmulatorServer(org or tiny_org(), port=0, github_token=GH_TOKEN, **kw).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


def gql(srv, query: str, variables: dict | None = None, headers: dict | None = None) -> requests.Response:
    return requests.post(srv.github_url + "/graphql", json={"query": query, "variables": variables or {}},
                         headers={**GH_HEADERS, **(headers or {})}, timeout=10)


def rest(srv, path: str, **params) -> list | dict:
    r = requests.get(srv.github_url + path, params={"per_page": 100, **params}, headers=GH_HEADERS, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_fields_equal_the_rest_records_of_the_same_deployments(serve):
    srv = serve()
    body = gql(srv, "{ repository(owner: \"acme\", name: \"payments-api\") { nameWithOwner "
                    "deployments(first: 10, orderBy: {field: CREATED_AT, direction: DESC}) { totalCount nodes {"
                    + DEPLOYMENT_FIELDS + "} } } }").json()
    assert "errors" not in body, body
    nodes = body["data"]["repository"]["deployments"]["nodes"]
    listed = rest(srv, "/repos/acme/payments-api/deployments")
    assert [n["databaseId"] for n in nodes] == [d["id"] for d in listed] == [1002, 1001, 1000]
    assert body["data"]["repository"]["deployments"]["totalCount"] == 3
    for node, d in zip(nodes, listed):
        assert (node["id"], node["commitOid"], node["ref"]["name"], node["environment"], node["originalEnvironment"],
                node["task"], node["description"], node["createdAt"], node["updatedAt"], node["creator"]["login"]) == \
               (d["node_id"], d["sha"], d["ref"], d["environment"], d["original_environment"], d["task"],
                d["description"], d["created_at"], d["updated_at"], d["creator"]["login"])
        assert node["creator"]["__typename"] == d["creator"]["type"] == "Bot"
        statuses = rest(srv, f"/repos/acme/payments-api/deployments/{d['id']}/statuses")
        got = node["statuses"]["nodes"]
        assert node["statuses"]["totalCount"] == len(got) == len(statuses)
        for s, r in zip(got, statuses):  # both newest first
            assert (s["id"], s["state"].lower(), s["createdAt"], s["updatedAt"], s["description"], s["environment"],
                    s["creator"]["login"]) == \
                   (r["node_id"], r["state"], r["created_at"], r["updated_at"], r["description"], r["environment"],
                    r["creator"]["login"])
            assert database_id_from_node_id(s["id"]) == r["id"]  # REST's id, inside the node id
            assert s["logUrl"] is None and r["log_url"] == ""  # an unset URI is null in GraphQL, "" in REST
        assert node["latestStatus"] == {"id": got[0]["id"], "state": got[0]["state"]}
    # 1002's success comes after the clock: two statuses, in progress
    assert [s["state"] for s in nodes[0]["statuses"]["nodes"]] == ["IN_PROGRESS", "QUEUED"]
    assert nodes[0]["state"] == "IN_PROGRESS" and nodes[1]["state"] == "ACTIVE"


def test_cursor_pagination_both_directions_and_environment_filter(serve):
    srv = serve(big_org(23))
    everything = [d["id"] for d in rest(srv, "/repos/acme/payments-api/deployments")]
    assert len(everything) == 26
    query = """query($after: String, $dir: OrderDirection!) { repository(owner: "acme", name: "payments-api") {
      deployments(first: 7, after: $after, orderBy: {field: CREATED_AT, direction: $dir}) {
        totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
        edges { cursor node { databaseId } } } } }"""
    for direction, expected in (("DESC", everything), ("ASC", everything[::-1])):
        seen, after, pages = [], None, 0
        while True:
            conn = gql(srv, query, {"after": after, "dir": direction}).json()["data"]["repository"]["deployments"]
            pages += 1
            assert conn["totalCount"] == 26
            seen += [e["node"]["databaseId"] for e in conn["edges"]]
            assert conn["pageInfo"]["startCursor"] == conn["edges"][0]["cursor"]
            assert conn["pageInfo"]["endCursor"] == conn["edges"][-1]["cursor"]
            assert conn["pageInfo"]["hasPreviousPage"] == (pages > 1)
            if not conn["pageInfo"]["hasNextPage"]:
                break
            after = conn["pageInfo"]["endCursor"]
        assert seen == expected and pages == 4  # 7 + 7 + 7 + 5
    # last/before: the three deployments just newer than the 10th newest, newest first
    page = gql(srv, """{ repository(owner: "acme", name: "payments-api") { deployments(first: 10,
        orderBy: {field: CREATED_AT, direction: DESC}) { edges { cursor } } } }""").json()
    tenth = page["data"]["repository"]["deployments"]["edges"][9]["cursor"]
    back = gql(srv, """query($c: String) { repository(owner: "acme", name: "payments-api") { deployments(last: 3,
        before: $c, orderBy: {field: CREATED_AT, direction: DESC}) { nodes { databaseId } } } }""", {"c": tenth}).json()
    assert [n["databaseId"] for n in back["data"]["repository"]["deployments"]["nodes"]] == everything[6:9]
    staging = gql(srv, """{ repository(owner: "acme", name: "payments-api") { deployments(first: 100,
        environments: ["staging"], orderBy: {field: CREATED_AT, direction: DESC}) { totalCount nodes { databaseId } } } }""")
    conn = staging.json()["data"]["repository"]["deployments"]
    expected = [d["id"] for d in rest(srv, "/repos/acme/payments-api/deployments", environment="staging")]
    assert [n["databaseId"] for n in conn["nodes"]] == expected and conn["totalCount"] == len(expected) == 9
    bad = gql(srv, """{ repository(owner: "acme", name: "payments-api") { deployments(first: 1, after: "nope") {
        totalCount } } }""").json()
    assert bad["data"]["repository"] is None
    assert bad["errors"][0]["type"] == "INVALID_CURSOR_ARGUMENTS"
    assert bad["errors"][0]["message"] == "`nope` does not appear to be a valid cursor."


def test_aliases_fragments_and_variables_in_one_query(serve):
    org = tiny_org()
    org.repos.append(copy.deepcopy(org.repos[0]))
    org.repos[-1].id, org.repos[-1].full_name = 4444, "acme/search-api"
    org.deployments.append(Deployment(id=3000, repo="acme/search-api", sha="c" * 40, ref="v1.2", environment="production",
                                      created_at=t("2026-01-05T00:00:00Z")))
    srv = serve(org)
    body = gql(srv, """query Two($a: String!) {
        pay: repository(owner: "acme", name: $a) { ...r }
        search: repository(owner: "ACME", name: "Search-API") { ...r }
        limits: rateLimit { cost }
      }
      fragment r on Repository { nameWithOwner deployments(first: 2) { totalCount nodes { databaseId ref { name } statuses(first: 1) { totalCount } } } }""",
               {"a": "payments-api"}).json()
    assert "errors" not in body, body
    data = body["data"]
    assert data["pay"]["nameWithOwner"] == "acme/payments-api" and data["search"]["nameWithOwner"] == "acme/search-api"
    assert data["pay"]["deployments"]["totalCount"] == 3
    assert [n["databaseId"] for n in data["pay"]["deployments"]["nodes"]] == [1000, 1001]  # default order: ASC
    assert data["search"]["deployments"]["nodes"] == [{"databaseId": 3000, "ref": {"name": "v1.2"},
                                                       "statuses": {"totalCount": 0}}]
    assert data["limits"] == {"cost": 1}


def test_unknown_fields_and_arguments_are_github_validation_errors(serve):
    srv = serve()
    r = gql(srv, '{ repository(owner: "acme", name: "payments-api") { deployments(first: 1) { nodes { sha } } } }')
    assert r.status_code == 200
    assert r.json() == {"errors": [{"message": "Field 'sha' doesn't exist on type 'Deployment'",
                                    "locations": [{"line": 1, "column": 85}],
                                    "extensions": {"code": "undefinedField", "typeName": "Deployment", "fieldName": "sha"}}]}
    r = gql(srv, '{ repository(owner: "acme", name: "payments-api") { deployments(first: 1, state: ACTIVE) { totalCount } } }')
    [err] = r.json()["errors"]
    assert err["message"] == "Field 'deployments' doesn't accept argument 'state'"
    assert err["extensions"]["code"] == "argumentNotAccepted" and "data" not in r.json()
    r = gql(srv, '{ repository(name: "payments-api") { id } }')
    assert r.json()["errors"][0]["message"] == "Field 'repository' is missing required arguments: owner"
    r = gql(srv, "{ repository(owner: ")
    assert r.status_code == 200 and r.json()["errors"][0]["message"].startswith("Parse error")
    r = gql(srv, '{ repository(owner: "acme", name: "payments-api") { deployments { totalCount } } }')
    assert r.json()["errors"][0]["type"] == "MISSING_PAGINATION_BOUNDARIES"
    r = gql(srv, '{ repository(owner: "acme", name: "payments-api") { deployments(first: 101) { totalCount } } }')
    assert r.json()["errors"][0] == {
        "type": "EXCESSIVE_PAGINATION", "path": ["query", "repository", "deployments"],
        "locations": [{"line": 1, "column": 53}],
        "message": "Requesting 101 records on the `deployments` connection exceeds the `first` limit of 100 records."}
    r = requests.post(srv.github_url + "/graphql", data=b"{not json", headers=GH_HEADERS, timeout=10)
    assert r.status_code == 400 and r.json()["message"] == "Problems parsing JSON"
    # none of these was charged: the points budget is untouched
    assert rest(srv, "/rate_limit")["resources"]["graphql"]["used"] == 0


def test_a_private_repository_is_not_found_in_errors_with_data_null(serve):
    srv = serve()
    r = gql(srv, '{ secret: repository(owner: "acme", name: "secret-repo") { id } '
                 'pay: repository(owner: "acme", name: "payments-api") { databaseId } }')
    assert r.status_code == 200
    body = r.json()
    assert body["data"] == {"secret": None, "pay": {"databaseId": 4242}}
    assert body["errors"] == [{"type": "NOT_FOUND", "path": ["secret"], "locations": [{"line": 1, "column": 3}],
                               "message": "Could not resolve to a Repository with the name 'acme/secret-repo'."}]
    missing = gql(srv, '{ repository(owner: "acme", name: "nope") { id } }').json()
    assert missing["data"] == {"repository": None} and missing["errors"][0]["type"] == "NOT_FOUND"


def test_a_bad_token_is_401_and_counted_on_the_graphql_route(serve):
    srv = serve()
    r = requests.post(srv.github_url + "/graphql", json={"query": "{ viewer { login } }"},
                      headers={"Authorization": "Bearer wrong-token"}, timeout=10)
    assert r.status_code == 401 and r.json()["message"] == "Bad credentials"
    r = requests.post(srv.github_url + "/graphql", json={"query": "{ viewer { login } }"}, timeout=10)
    assert r.status_code == 401
    assert gql(srv, "{ viewer { login } }").json() == {"data": {"viewer": {"login": "emulator-bot"}}}
    route = srv.stats()["by_route"]["github POST /graphql"]
    assert route["requests"] == 3 and route["by_status"] == {"200": 1, "401": 2}


def test_cost_and_rate_limit_follow_githubs_formula(serve):
    srv = serve(github_rate_limit_per_hour=20)
    # 1 deployments connection + 100 statuses connections (one per deployment) = 101 requests -> 1 point;
    # nodes: 100 deployments + 100 x 10 statuses = 1,100
    one = gql(srv, """{ repository(owner: "acme", name: "payments-api") { deployments(first: 100) { nodes {
        statuses(first: 10) { totalCount } } } } rateLimit { cost nodeCount limit remaining used resetAt } }""")
    rl = one.json()["data"]["rateLimit"]
    assert (rl["cost"], rl["nodeCount"], rl["limit"], rl["remaining"], rl["used"]) == (1, 1100, 20, 19, 1)
    assert one.headers["x-ratelimit-resource"] == "graphql"
    assert (one.headers["x-ratelimit-limit"], one.headers["x-ratelimit-remaining"], one.headers["x-ratelimit-used"]) == \
           ("20", "19", "1")
    assert rl["resetAt"].endswith("Z") and int(one.headers["x-ratelimit-reset"]) > 0
    # three aliases of (1 + 49) requests = 150 -> 1.5 -> rounds to 2 points; nodes 3 x (49 + 49 x 100)
    alias = "r{k}: repository(owner: \"acme\", name: \"payments-api\") {{ deployments(first: 49) {{ nodes {{ " \
            "statuses(first: 100) {{ totalCount }} }} }} }}"
    three = gql(srv, "{ " + " ".join(alias.format(k=k) for k in range(3)) + " rateLimit { cost nodeCount remaining } }")
    assert three.json()["data"]["rateLimit"] == {"cost": 2, "nodeCount": 3 * (49 + 49 * 100), "remaining": 17}
    two = gql(srv, "{ " + " ".join(alias.format(k=k) for k in range(2)) + " rateLimit { cost } }")  # 100 -> 1
    assert two.json()["data"]["rateLimit"] == {"cost": 1}
    # a dry run reports the cost, evaluates nothing and charges nothing
    dry = gql(srv, "{ " + " ".join(alias.format(k=k) for k in range(3)) + " rateLimit(dryRun: true) { cost remaining } }")
    assert dry.json()["data"] == {"r0": None, "r1": None, "r2": None, "rateLimit": {"cost": 2, "remaining": 16}}
    # 500,000 nodes at most: 50 x (100 + 100 x 100) = 505,000
    huge = "{ " + " ".join(alias.replace("49", "100").format(k=k) for k in range(50)) + " }"
    [err] = gql(srv, huge).json()["errors"]
    assert err["type"] == "MAX_NODE_LIMIT_EXCEEDED"
    assert err["message"] == "This query requests up to 505,000 possible nodes which exceeds the maximum limit of 500,000."
    # REST's core budget is separate and untouched
    limits = rest(srv, "/rate_limit")["resources"]
    assert limits["graphql"]["used"] == 4 and limits["core"]["used"] == 0
    # spend down to 1 point left, then a 2-point query is refused (HTTP 200, RATE_LIMITED) and not charged
    for _ in range(15):
        assert "errors" not in gql(srv, "{ viewer { login } }").json()
    refused = gql(srv, "{ " + " ".join(alias.format(k=k) for k in range(3)) + " }")
    assert refused.status_code == 200
    assert refused.json() == {"errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded for user ID 1."}]}
    assert refused.headers["x-ratelimit-remaining"] == "1"
    assert gql(srv, "{ viewer { login } }").headers["x-ratelimit-remaining"] == "0"


def test_the_clock_hides_what_has_not_happened_yet(serve):
    org = tiny_org()
    org.deployments.append(Deployment(id=1003, repo="acme/payments-api", sha="d" * 40, ref="main", environment="production",
                                      created_at=t("2026-01-12T06:00:00Z")))  # after the clock
    srv = serve(org)
    query = """{ repository(owner: "acme", name: "payments-api") { deployments(first: 10,
        orderBy: {field: CREATED_AT, direction: DESC}) { totalCount nodes { databaseId updatedAt latestStatus { state }
        statuses(first: 10) { totalCount } } } } }"""
    conn = gql(srv, query).json()["data"]["repository"]["deployments"]
    assert conn["totalCount"] == 3 and conn["nodes"][0]["databaseId"] == 1002
    assert conn["nodes"][0]["statuses"]["totalCount"] == 2 and conn["nodes"][0]["updatedAt"] == "2026-01-11T22:01:00Z"
    srv.advance(timedelta(hours=7))  # 07:00: 1002's success (01:00) and deployment 1003 (06:00) have happened
    conn = gql(srv, query).json()["data"]["repository"]["deployments"]
    assert [n["databaseId"] for n in conn["nodes"]] == [1003, 1002, 1001, 1000] and conn["totalCount"] == 4
    assert conn["nodes"][1]["statuses"]["totalCount"] == 3 and conn["nodes"][1]["latestStatus"] == {"state": "SUCCESS"}
    assert conn["nodes"][1]["updatedAt"] == "2026-01-12T01:00:00Z"
    assert conn["nodes"][1]["updatedAt"] == rest(srv, "/repos/acme/payments-api/deployments/1002")["updated_at"]


def test_node_lookup_and_next_format_ids(serve):
    srv = serve()
    query = """query($id: ID!) { node(id: $id) { __typename id ... on Deployment { databaseId
        statuses(first: 1) { nodes { id } } } } }"""
    legacy = rest(srv, "/repos/acme/payments-api/deployments/1001")["node_id"]
    found = gql(srv, query, {"id": legacy}).json()["data"]["node"]
    assert found["__typename"] == "Deployment" and found["databaseId"] == 1001 and found["id"] == legacy
    nxt = gql(srv, query, {"id": legacy}, headers={"X-Github-Next-Global-ID": "1"}).json()["data"]["node"]
    assert nxt["id"].startswith("DE_") and nxt["statuses"]["nodes"][0]["id"].startswith("DES_")
    assert database_id_from_node_id(nxt["id"]) == 1001
    assert database_id_from_node_id(nxt["statuses"]["nodes"][0]["id"]) == 5005  # the newest of 1001's statuses
    again = gql(srv, query, {"id": nxt["id"]}, headers={"X-Github-Next-Global-ID": "1"}).json()["data"]["node"]
    assert again == nxt
    gone = gql(srv, query, {"id": "MDEwOkRlcGxveW1lbnQ5OTk5"}).json()  # "010:Deployment9999"
    assert gone["data"] == {"node": None} and gone["errors"][0]["type"] == "NOT_FOUND"


def test_faults_apply_to_the_graphql_route(serve):
    srv = serve(faults=Faults(rules=[FaultRule("status", route="/graphql", status=502, count=1),
                                     FaultRule("gh_secondary", route="/graphql", start=2, count=1, seconds=3)]))
    assert gql(srv, "{ viewer { login } }").status_code == 502
    second = gql(srv, "{ viewer { login } }")
    assert second.status_code == 403 and second.headers["retry-after"] == "3"
    assert "secondary rate limit" in second.json()["message"]
    assert gql(srv, "{ viewer { login } }").status_code == 200
    assert srv.stats()["by_route"]["github POST /graphql"]["by_status"] == {"200": 1, "403": 1, "502": 1}


def test_in_process_execution_answers_as_the_endpoint_without_spending_points(serve):
    from pipelines.connectors.github.client import DEPLOYMENTS_QUERY, STATUSES_PER_DEPLOYMENT

    srv = serve(big_org(5))
    variables = {"owner": "acme", "name": "payments-api", "first": 100, "after": None,
                 "statuses": STATUSES_PER_DEPLOYMENT}
    over_http = gql(srv, DEPLOYMENTS_QUERY, variables).json()
    assert "errors" not in over_http and len(over_http["data"]["repository"]["deployments"]["nodes"]) == 8
    assert srv.github.graphql.execute(DEPLOYMENTS_QUERY, variables) == over_http
    assert rest(srv, "/rate_limit")["resources"]["graphql"]["used"] == 1  # the HTTP request only
