"""The GitHub side of the emulator, over real sockets."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
import requests

from emulator.server import EmulatorServer
from tests.emulator_helpers import GH_HEADERS, GH_TOKEN, PD_TOKEN, generated_org, tiny_org


@pytest.fixture
def tiny():
    with EmulatorServer(tiny_org(), pagerduty_token=PD_TOKEN, github_token=[GH_TOKEN, "second"]) as srv:
        s = requests.Session()
        s.headers.update(GH_HEADERS)
        yield srv, s


def links(r: requests.Response) -> dict[str, str]:
    return {m.group(2): m.group(1) for m in re.finditer(r'<([^>]+)>; rel="(\w+)"', r.headers.get("Link", ""))}


def test_auth_and_headers(tiny):
    srv, s = tiny
    url = srv.github_url + "/repos/acme/payments-api/deployments"
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {GH_TOKEN}"}):
        r = requests.get(url, headers=headers)
        assert r.status_code == 401
        assert r.json()["message"] == "Bad credentials" and r.json()["documentation_url"].startswith("https://docs.github.com")
    assert requests.get(url, headers={"Authorization": f"token {GH_TOKEN}"}).status_code == 200
    r = s.get(url)
    assert r.status_code == 200 and r.headers["X-GitHub-Request-Id"]
    for h in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-used", "x-ratelimit-reset", "x-ratelimit-resource"):
        assert h in r.headers
    assert int(r.headers["x-ratelimit-reset"]) > time.time()
    assert s.get(url, headers={"User-Agent": ""}).status_code == 403
    assert s.get(url, headers={"X-GitHub-Api-Version": "1999-01-01"}).status_code == 400
    assert s.get(url, headers={"X-GitHub-Api-Version": "2026-03-10"}).status_code == 200


def test_inaccessible_and_unknown_repos_are_404(tiny):
    srv, s = tiny
    for name in ("acme/secret-repo", "acme/nope"):
        r = s.get(srv.github_url + f"/repos/{name}/deployments")
        assert r.status_code == 404 and r.json()["message"] == "Not Found"
        assert s.get(srv.github_url + f"/repos/{name}").status_code == 404
    repos = s.get(srv.github_url + "/orgs/acme/repos").json()
    assert [r["full_name"] for r in repos] == ["acme/payments-api"]
    assert s.get(srv.github_url + "/user").json()["login"] == "emulator-bot"
    assert [o["login"] for o in s.get(srv.github_url + "/user/orgs").json()] == ["acme"]


def test_deployments_newest_first_with_statuses_following_the_clock(tiny):
    srv, s = tiny
    base = srv.github_url + "/repos/acme/payments-api"
    deps = s.get(base + "/deployments").json()
    assert [d["id"] for d in deps] == [1002, 1001, 1000]
    assert "Link" not in s.get(base + "/deployments").headers  # one page
    d = deps[0]
    assert d["environment"] == "production" and d["production_environment"] is True and d["creator"]["login"] == "deploy-bot"
    assert d["statuses_url"] == base + "/deployments/1002/statuses" and d["url"] == base + "/deployments/1002"
    assert d["created_at"] == "2026-01-11T22:00:00Z" and d["updated_at"] == "2026-01-11T22:01:00Z"
    sts = s.get(d["statuses_url"]).json()
    assert [x["state"] for x in sts] == ["in_progress", "queued"]  # success comes at 01:00, after the clock
    assert sts[0]["deployment_url"] == d["url"] and sts[0]["environment"] == "production"
    srv.advance(timedelta(hours=2))
    assert [x["state"] for x in s.get(d["statuses_url"]).json()] == ["success", "in_progress", "queued"]
    assert s.get(base + "/deployments/1002").json()["updated_at"] == "2026-01-12T01:00:00Z"
    assert [x["id"] for x in s.get(base + "/deployments", params={"environment": "staging"}).json()] == [1001]
    assert s.get(base + "/deployments", params={"sha": f"{0:040x}"}).json()[0]["id"] == 1000
    assert s.get(base + "/deployments/9999/statuses").status_code == 404


def test_pull_requests_state_sort_and_clock(tiny):
    srv, s = tiny
    url = srv.github_url + "/repos/acme/payments-api/pulls"
    open_ = s.get(url).json()  # default state=open
    assert [p["number"] for p in open_] == [3]
    assert open_[0]["merged_at"] is None and open_[0]["closed_at"] is None and open_[0]["state"] == "open"
    closed = s.get(url, params={"state": "closed"}).json()
    assert [p["number"] for p in closed] == [2, 1]  # sort=created, direction defaults to desc
    assert closed[0]["merged_at"] is None and closed[1]["merged_at"] == "2026-01-09T09:29:00Z"
    assert closed[1]["merge_commit_sha"] == "a" * 40 and closed[1]["user"]["login"] == "aokafor"
    by_updated = s.get(url, params={"state": "all", "sort": "updated"}).json()  # direction defaults to asc
    assert [p["number"] for p in by_updated] == [1, 2, 3]
    desc = s.get(url, params={"state": "all", "sort": "updated", "direction": "desc"}).json()
    assert [p["number"] for p in desc] == [3, 2, 1]
    srv.advance(timedelta(hours=12))
    assert s.get(url).json() == []
    assert s.get(url, params={"state": "closed"}).json()[0]["merged_at"] == "2026-01-12T10:00:00Z"


def test_link_header_pagination_over_a_generated_repo():
    org = generated_org()
    with EmulatorServer(org, github_token=GH_TOKEN) as srv:
        s = requests.Session()
        s.headers.update(GH_HEADERS)
        repo = "acme/payments-api"
        expected = [d.id for d in sorted((d for d in org.deployments if d.repo == repo and d.created_at <= org.now),
                                         key=lambda d: (d.created_at, d.id), reverse=True)]
        assert len(expected) > 200
        url = srv.github_url + f"/repos/{repo}/deployments"
        r = s.get(url)
        assert len(r.json()) == 30  # per_page default
        got, pages, next_url = [], [], url + "?per_page=100"
        while next_url:
            r = s.get(next_url)
            got += [d["id"] for d in r.json()]
            pages.append(sorted(links(r)))
            next_url = links(r).get("next")
        assert got == expected
        last = -(-len(expected) // 100)
        assert pages[0] == ["last", "next"] and pages[-1] == ["first", "prev"]
        assert all(p == ["first", "last", "next", "prev"] for p in pages[1:-1])
        assert len(pages) == last
        assert links(s.get(url, params={"per_page": 100}))["last"].endswith(f"page={last}")
        assert len(s.get(url, params={"per_page": 500}).json()) == 100  # clamped


def test_etag_304_does_not_spend_quota(tiny):
    srv, s = tiny
    url = srv.github_url + "/repos/acme/payments-api/deployments"
    r1 = s.get(url)
    etag, remaining = r1.headers["ETag"], int(r1.headers["x-ratelimit-remaining"])
    assert remaining == 4999
    r2 = s.get(url, headers={"If-None-Match": etag})
    assert r2.status_code == 304 and r2.content == b""
    assert int(r2.headers["x-ratelimit-remaining"]) == remaining
    r3 = s.get(url)
    assert r3.status_code == 200 and int(r3.headers["x-ratelimit-remaining"]) == remaining - 1
    other = requests.get(url, headers={**GH_HEADERS, "Authorization": "Bearer second", "If-None-Match": etag})
    assert other.status_code == 200 and other.headers["ETag"] != etag  # ETags depend on the token
    srv.advance(timedelta(hours=2))  # a new status changes the body, hence the ETag
    assert s.get(url, headers={"If-None-Match": etag}).status_code == 200
    assert srv.stats()["not_modified"] == 1


def test_primary_rate_limit_exhaustion():
    for status in (403, 429):
        with EmulatorServer(tiny_org(), github_token=GH_TOKEN, github_rate_limit_per_hour=3, github_exhausted_status=status) as srv:
            s = requests.Session()
            s.headers.update(GH_HEADERS)
            url = srv.github_url + "/repos/acme/payments-api"
            assert [s.get(url).headers["x-ratelimit-remaining"] for _ in range(3)] == ["2", "1", "0"]
            r = s.get(url)
            assert r.status_code == status and r.headers["x-ratelimit-remaining"] == "0"
            assert "rate limit exceeded" in r.json()["message"]
            rl = s.get(srv.github_url + "/rate_limit")
            assert rl.status_code == 200 and rl.json()["resources"]["core"]["remaining"] == 0
            assert rl.json()["rate"]["limit"] == 3
