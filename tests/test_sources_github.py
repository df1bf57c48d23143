"""Unit tests of the GitHub client (pipelines/connectors/github/client.py) with `responses`."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from pipelines.connectors.github.client import GitHubClient
from pipelines.http import ApiError, AuthError

BASE = "https://gh.example.test/api/v3"
TOKEN = "ghp_SECRET0123456789"
DEPLOYS = f"{BASE}/repos/acme/web/deployments"


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as r:
        yield r


def client(**kw) -> GitHubClient:
    kw.setdefault("sleep", lambda s: None)
    kw.setdefault("jitter", lambda: 1.0)
    return GitHubClient(BASE, TOKEN, **kw)


def link(**rels: str) -> str:
    return ", ".join(f'<{url}>; rel="{rel}"' for rel, url in rels.items())


def query(call) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


def test_headers_and_first_request(rsps):
    rsps.get(DEPLOYS, json=[{"id": 1}])
    gh = client(api_version="2026-03-10")
    assert [d["id"] for d in gh.deployments("acme/web", environment="production")] == [1]
    (call,) = rsps.calls
    h = call.request.headers
    assert h["Authorization"] == f"Bearer {TOKEN}"
    assert h["Accept"] == "application/vnd.github+json"
    assert h["X-GitHub-Api-Version"] == "2026-03-10"
    assert h["User-Agent"] == "incident-metrics/0.1"
    assert "If-None-Match" not in h
    assert query(call) == {"environment": ["production"], "per_page": ["100"]}


def test_follows_link_next_with_rel_last(rsps):
    p2, p3 = f"{DEPLOYS}?per_page=100&page=2", f"{DEPLOYS}?per_page=100&page=3"
    rsps.get(DEPLOYS, json=[{"id": 9}, {"id": 8}], headers={"Link": link(next=p2, last=p3)},
             match=[responses.matchers.query_param_matcher({"per_page": "100"})])
    rsps.get(p2, json=[{"id": 7}], headers={"Link": link(prev=DEPLOYS, next=p3, last=p3, first=DEPLOYS)},
             match=[responses.matchers.query_param_matcher({"per_page": "100", "page": "2"})])
    rsps.get(p3, json=[{"id": 6}], headers={"Link": link(prev=p2, first=DEPLOYS)},
             match=[responses.matchers.query_param_matcher({"per_page": "100", "page": "3"})])
    gh = client()
    assert [d["id"] for d in gh.deployments("acme/web")] == [9, 8, 7, 6]
    assert [c.request.url for c in rsps.calls] == [f"{DEPLOYS}?per_page=100", p2, p3]
    assert gh.stats["deployments"].requests == 3 and gh.stats["deployments"].records == 4


def test_follows_link_next_without_rel_last_and_opaque_cursor(rsps):
    nxt = f"{DEPLOYS}?per_page=100&after=Y3Vyc29yOjE%3D"
    rsps.get(DEPLOYS, json=[{"id": 2}], headers={"Link": link(next=nxt)},
             match=[responses.matchers.query_param_matcher({"per_page": "100"})])
    rsps.get(nxt, json=[{"id": 1}], match=[responses.matchers.query_param_matcher(
        {"per_page": "100", "after": "Y3Vyc29yOjE="})])
    assert [d["id"] for d in client().deployments("acme/web")] == [2, 1]
    assert [c.request.url for c in rsps.calls] == [f"{DEPLOYS}?per_page=100", nxt]


def test_no_link_header_is_one_page(rsps):
    rsps.get(f"{BASE}/orgs/acme/repos", json=[{"full_name": "acme/a"}, {"full_name": "acme/b"}])
    gh = client()
    assert [r["full_name"] for r in gh.org_repos("acme")] == ["acme/a", "acme/b"]
    assert len(rsps.calls) == 1
    assert gh.stats["repos"].records == 2


def test_generator_is_lazy_and_caller_may_stop_early(rsps):
    p2 = f"{DEPLOYS}?per_page=100&page=2"
    rsps.get(DEPLOYS, json=[{"id": 3}, {"id": 2}], headers={"Link": link(next=p2)})
    gen = client().deployments("acme/web")
    assert len(rsps.calls) == 0  # nothing fetched before iteration
    assert next(gen)["id"] == 3
    assert next(gen)["id"] == 2
    gen.close()
    assert len(rsps.calls) == 1  # page 2 never requested


def test_204_is_an_empty_list(rsps):
    rsps.get(DEPLOYS, status=204)
    assert list(client().deployments("acme/web")) == []
    assert len(rsps.calls) == 1


def test_conditional_request_304_reuses_cached_body(rsps):
    etag = 'W/"abc123"'
    rsps.get(DEPLOYS, json=[{"id": 5}, {"id": 4}], headers={"ETag": etag})
    rsps.get(DEPLOYS, status=304, headers={"ETag": etag})
    gh = client()
    first = list(gh.deployments("acme/web"))
    first[0]["mutated"] = True  # callers may mutate records: the cache must not share them
    second = list(gh.deployments("acme/web"))
    assert second == [{"id": 5}, {"id": 4}]
    assert "If-None-Match" not in rsps.calls[0].request.headers
    assert rsps.calls[1].request.headers["If-None-Match"] == etag
    st = gh.stats["deployments"]
    assert (st.requests, st.not_modified, st.records) == (2, 1, 4)


def test_304_replays_the_cached_link_to_the_next_page(rsps):
    p2 = f"{DEPLOYS}?per_page=100&page=2"
    page1 = [responses.matchers.query_param_matcher({"per_page": "100"})]
    page2 = [responses.matchers.query_param_matcher({"per_page": "100", "page": "2"})]
    rsps.get(DEPLOYS, json=[{"id": 2}], headers={"ETag": '"e1"', "Link": link(next=p2)}, match=page1)
    rsps.get(DEPLOYS, json=[{"id": 1}], headers={"ETag": '"e2"'}, match=page2)
    gh = client()
    assert [d["id"] for d in gh.deployments("acme/web")] == [2, 1]
    sent = [c.request.headers.get("If-None-Match") for c in rsps.calls]
    rsps.reset()
    rsps.get(DEPLOYS, status=304, match=page1)  # a 304 without a Link header: the cached one is used
    rsps.get(DEPLOYS, status=304, match=page2)
    assert [d["id"] for d in gh.deployments("acme/web")] == [2, 1]
    sent += [c.request.headers.get("If-None-Match") for c in rsps.calls]
    assert sent == [None, None, '"e1"', '"e2"']
    assert gh.stats["deployments"].not_modified == 2


def test_pulls_sorted_by_updated_desc(rsps):
    rsps.get(f"{BASE}/repos/acme/web/pulls", json=[{"number": 7}])
    gh = client()
    assert [p["number"] for p in gh.pulls("acme/web")] == [7]
    assert query(rsps.calls[0]) == {"state": ["closed"], "sort": ["updated"], "direction": ["desc"], "per_page": ["100"]}
    assert gh.stats["pulls"].records == 1


def test_deployment_statuses_reads_all_pages(rsps):
    url = f"{DEPLOYS}/42/statuses"
    rsps.get(url, json=[{"id": 3, "state": "success"}], headers={"Link": link(next=f"{url}?per_page=100&page=2")},
             match=[responses.matchers.query_param_matcher({"per_page": "100"})])
    rsps.get(f"{url}?per_page=100&page=2", json=[{"id": 1, "state": "queued"}],
             match=[responses.matchers.query_param_matcher({"per_page": "100", "page": "2"})])
    gh = client()
    assert gh.deployment_statuses("acme/web", 42) == [{"id": 3, "state": "success"}, {"id": 1, "state": "queued"}]
    assert gh.stats["deployment_statuses"].requests == 2


def test_repo_404_says_missing_or_not_visible(rsps):
    rsps.get(f"{BASE}/repos/acme/secret", status=404, json={"message": "Not Found"},
             headers={"X-GitHub-Request-Id": "AB:CD"})
    with pytest.raises(ApiError) as err:
        client().repo("acme/secret")
    msg = str(err.value)
    assert msg.startswith("GitHub GET /repos/acme/secret answered 404: the repository 'acme/secret' does not exist, "
                          "or GITHUB_TOKEN cannot see it")
    assert "GITHUB_TOKEN needs read access" in msg and "AB:CD" in msg
    assert len(rsps.calls) == 1


def test_repo_returns_object_and_counts(rsps):
    rsps.get(f"{BASE}/repos/acme/web", json={"id": 1, "full_name": "acme/web"})
    gh = client()
    assert gh.repo("acme/web")["id"] == 1
    assert gh.stats["repos"].records == 1
    with pytest.raises(ValueError):
        gh.repo("not-a-full-name")


def test_422_pagination_limited_is_a_clear_error(rsps):
    p2 = f"{DEPLOYS}?per_page=100&page=2"
    rsps.get(DEPLOYS, json=[{"id": 2}], headers={"Link": link(next=p2)},
             match=[responses.matchers.query_param_matcher({"per_page": "100"})])
    rsps.get(p2, status=422, json={"message": "In order to keep the API fast for everyone, pagination is limited for "
                                              "this resource. Check the rel=last link relation in the Link response "
                                              "header to see how far back you can traverse."},
             match=[responses.matchers.query_param_matcher({"per_page": "100", "page": "2"})])
    gen = client().deployments("acme/web")
    assert next(gen)["id"] == 2
    with pytest.raises(ApiError) as err:
        next(gen)
    assert str(err.value).startswith(
        "GitHub GET /repos/acme/web/deployments answered 422 on page 2: pagination is limited for this resource")
    assert len(rsps.calls) == 2


def test_integration_403_not_retried_and_names_token(rsps, caplog):
    rsps.get(DEPLOYS, status=403, json={"message": "Resource not accessible by integration"},
             headers={"x-ratelimit-remaining": "4990", "X-Accepted-GitHub-Permissions": "deployments=read"})
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(AuthError) as err:
            list(client().deployments("acme/web"))
    assert len(rsps.calls) == 1
    msg = str(err.value)
    assert "HTTP 403" in msg and "Resource not accessible by integration" in msg
    assert "GITHUB_TOKEN" in msg and "deployments=read" in msg
    assert TOKEN not in msg and TOKEN not in caplog.text


def test_401_not_retried(rsps):
    rsps.get(DEPLOYS, status=401, json={"message": "Bad credentials"})
    with pytest.raises(AuthError) as err:
        list(client().deployments("acme/web"))
    assert len(rsps.calls) == 1
    assert str(err.value) == ("GitHub rejected the API token (HTTP 401) at /repos/acme/web/deployments: check "
                              "GITHUB_TOKEN (and GITHUB_API_URL: GitHub Enterprise Server uses https://HOST/api/v3).")


def test_secondary_rate_limit_403_with_retry_after_is_retried(rsps):
    sleeps: list[float] = []
    rsps.get(DEPLOYS, status=403, headers={"Retry-After": "75", "x-ratelimit-remaining": "4000"},
             json={"message": "You have exceeded a secondary rate limit."})
    rsps.get(DEPLOYS, json=[{"id": 1}])
    gh = client(sleep=sleeps.append)
    assert [d["id"] for d in gh.deployments("acme/web")] == [1]
    assert sleeps == [75.0]
    assert gh.stats["deployments"].throttled == 1


def test_next_link_to_another_host_is_refused(rsps):
    rsps.get(DEPLOYS, json=[{"id": 1}], headers={"Link": link(next="https://evil.example.test/page2")})
    gen = client().deployments("acme/web")
    assert next(gen)["id"] == 1
    with pytest.raises(ApiError, match="another host"):
        next(gen)
    assert len(rsps.calls) == 1


def test_statuses_of_many_deployments_report_deleted_ones_instead_of_failing(rsps):
    for i in (1, 3):
        rsps.get(f"{DEPLOYS}/{i}/statuses", json=[{"id": 10 + i, "state": "success"}])
    rsps.get(f"{DEPLOYS}/2/statuses", status=404, json={"message": "Not Found"})
    gh = client(concurrency=2)
    missing: list[int] = []
    statuses = gh.deployment_statuses_many("acme/web", [1, 2, 3], missing=missing)
    assert [s["id"] for s in statuses] == [11, 13]
    assert missing == [2]
    assert len(rsps.calls) == 3  # a 404 is not retried
    with pytest.raises(ApiError) as exc:  # without the list, a deleted deployment is an error
        gh.deployment_statuses_many("acme/web", [2, 3])
    assert exc.value.status == 404
