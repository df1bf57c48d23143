"""The emulator's GitLab API, the official python-gitlab client and ours (GitLabClient) against it:
keyset and offset pages, the 50,000 offset cap, RateLimit headers, 429 storms, 5xx, cut bodies,
environments with and without a tier, a rejected token."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import gitlab
import pytest
import requests

from emulator.faults import FaultRule, Faults
from emulator.generator import GeneratorConfig, generate_organisation
from emulator.server import EmulatorServer
from pipelines.connectors.gitlab.client import GitLabClient
from pipelines.http import ApiError, AuthError

GL_TOKEN = "gl-test-token"
HEADERS = {"PRIVATE-TOKEN": GL_TOKEN}


@pytest.fixture(scope="module")
def org():
    return generate_organisation(7, GeneratorConfig(n_teams=4, months=6, deploys_per_repo_week=2.0, gitlab_share=0.5,
                                                    gitlab_share_without_tier=0.5))


@pytest.fixture()
def srv(org):
    with EmulatorServer(org, gitlab_token=GL_TOKEN, rate_limit_per_minute=None, gitlab_rate_limit_per_minute=None) as s:
        s.start()
        yield s


def _gitlab_repos(org):
    return [r for r in org.repos if r.host == "gitlab"]


def _busiest(org) -> str:
    counts = {r.full_name: sum(d.repo == r.full_name for d in org.deployments) for r in _gitlab_repos(org)}
    return max(counts, key=counts.get)


def _client(srv, **options) -> GitLabClient:
    return GitLabClient(srv.gitlab_url, GL_TOKEN, sleep=lambda s: None, **options)


def test_the_generator_puts_a_share_of_repos_on_gitlab_and_the_ownership_file_names_the_host(org):
    on_gitlab = _gitlab_repos(org)
    accessible = [r for r in org.repos if r.accessible]
    assert len(on_gitlab) == round(0.5 * len(accessible)) and all("/platform/" in r.full_name for r in on_gitlab)
    assert {r.environment_tier_missing for r in on_gitlab} == {True, False}
    repos = [entry for s in org.ownership_document()["services"] for entry in s["repos"]]
    assert sorted(e["gitlab"] for e in repos if isinstance(e, dict)) == sorted(r.full_name for r in on_gitlab)
    assert all(isinstance(e, str) for e in repos if not isinstance(e, dict))  # GitHub's stay bare owner/name


def test_python_gitlab_pages_through_deployments_and_merge_requests(srv, org):
    name = _busiest(org)
    g = gitlab.Gitlab(srv.base_url + "/gitlab", private_token=GL_TOKEN)
    project = g.projects.get(name)
    assert project.path_with_namespace == name
    srv.reset_stats()
    deployments = list(project.deployments.list(iterator=True, per_page=20))
    truth = [d for d in org.deployments if d.repo == name and d.created_at <= org.now]
    assert sorted(d.id for d in deployments) == sorted(d.id for d in truth) and len(truth) > 20
    assert srv.stats()["by_route"]["gitlab GET /projects/{project}/deployments"]["requests"] == -(-len(truth) // 20)
    merged = list(project.mergerequests.list(iterator=True, per_page=20, state="merged"))
    assert len(merged) == sum(1 for p in org.pulls if p.repo == name and p.merged_at and p.merged_at <= org.now) > 20
    assert {m.state for m in merged} == {"merged"}
    # by numeric id too, and the same deployments through python-gitlab's keyset mode
    by_id = g.projects.get(project.id)
    keyset = list(by_id.deployments.list(iterator=True, pagination="keyset", order_by="id", per_page=20))
    assert [d.id for d in keyset] == sorted(d.id for d in truth)


def test_our_client_reads_what_changed_by_offset_pages(srv, org):
    """GitLab filters on updated_at only with order_by=updated_at (else 400, also with keyset), so a
    window of deployments is read by offset pages; environments too."""
    name = _busiest(org)
    since = org.now - timedelta(days=60)
    expected = {d.id for d in org.deployments if d.repo == name and d.created_at <= org.now
                and srv.gitlab.deployment_view(d, org.now)["updated_at"] >= since}
    client = _client(srv, per_page=7)
    got = [d["id"] for d in client.deployments(name, updated_after=since)]
    assert sorted(got) == sorted(expected) and len(set(got)) == len(got) and len(expected) > 7
    assert client.stats["deployments"].requests == -(-len(expected) // 7)  # a page of 7 a request
    assert sorted(e["name"] for e in _client(srv, per_page=1).environments(name)) == ["production", "staging"]
    r = requests.get(f"{srv.gitlab_url}/projects/{requests.utils.quote(name, safe='')}/deployments", headers=HEADERS,
                     params={"updated_after": "2026-01-01T00:00:00Z", "pagination": "keyset", "order_by": "id"})
    assert r.status_code == 400 and "`updated_at` filter requires `updated_at` sort" in r.json()["message"]


def test_an_empty_page_that_says_more_is_asked_again_then_fails_the_read(org):
    name = _busiest(org)
    truth = sorted(d.id for d in org.deployments if d.repo == name and d.created_at <= org.now)
    once = Faults(rules=[FaultRule("empty_page", service="gitlab", route="/deployments", start=2, count=1)])
    with EmulatorServer(org, gitlab_token=GL_TOKEN, faults=once) as s:
        s.start()
        client = _client(s, per_page=10)
        assert sorted(d["id"] for d in client.deployments(name)) == truth
        assert client.stats["deployments"].requests == -(-len(truth) // 10) + 1  # the empty page once more
    twice = Faults(rules=[FaultRule("empty_page", service="gitlab", route="/deployments", start=2, count=2)])
    with EmulatorServer(org, gitlab_token=GL_TOKEN, faults=twice) as s:
        s.start()
        with pytest.raises(ApiError, match="came back empty twice"):
            list(_client(s, per_page=10).deployments(name))


def test_offset_reads_never_pass_the_cap(srv, org):
    """With a cap of 10 records (GitLab's is 50,000) and 4 a page, the client restarts from the last
    updated_at before the third page: every merged merge request once, no page beyond offset 8."""
    name = _busiest(org)
    expected = sorted(srv.gitlab.merge_request_obj(r, p, org.now)["id"] for r in _gitlab_repos(org) if r.full_name == name
                      for p in org.pulls if p.repo == name and p.merged_at and p.merged_at <= org.now)
    client = _client(srv, per_page=4, max_offset=10)
    srv.reset_stats()
    got = [m["id"] for m in client.merge_requests(name)]
    assert sorted(set(got)) == expected  # the second of each restart may repeat: the raw upsert keeps one
    queries = [parse_qs(urlsplit(q).query) for q in srv.gitlab.seen_queries if "merge_requests" in q]
    assert max(int(q["page"][0]) for q in queries) <= 2 and len(expected) > 10
    # each restart starts a second before the last updated_at read, ordered by updated_at
    restarts = [q["updated_after"][0] for q in queries if "updated_after" in q and q["page"] == ["1"]]
    assert restarts and all(q["order_by"] == ["updated_at"] for q in queries)
    assert restarts == sorted(restarts) and len(set(restarts)) == len(restarts)


def test_the_emulator_refuses_deep_offsets_and_keyset_where_gitlab_has_none(srv, org):
    base = f"{srv.gitlab_url}/projects/{requests.utils.quote(_busiest(org), safe='')}"
    r = requests.get(base + "/deployments", params={"page": 501, "per_page": 100}, headers=HEADERS)
    assert r.status_code == 405 and "maximum allowed offset of 50000" in r.json()["error"]
    r = requests.get(base + "/merge_requests", params={"pagination": "keyset", "order_by": "id"}, headers=HEADERS)
    assert r.status_code == 405 and r.json() == {"error": "Keyset pagination is not yet available for this type of request"}
    r = requests.get(base + "/deployments", params={"finished_after": "2026-01-01T00:00:00Z"}, headers=HEADERS)
    assert r.status_code == 400  # needs order_by=finished_at and status=success
    r = requests.get(base + "/deployments", params={"per_page": 5}, headers=HEADERS)
    assert r.headers["x-next-page"] == "2" and r.headers["x-total"] and 'rel="next"' in r.headers["Link"]
    assert requests.get(base + "/deployments", headers={"PRIVATE-TOKEN": "wrong"}).status_code == 401


def test_totals_are_left_out_above_ten_thousand_records(srv):
    from emulator.http_common import Request

    req = Request("GET", "/projects/1/deployments", "/gitlab/api/v4/projects/1/deployments", {"per_page": ["100"]},
                  {}, b"", srv.gitlab_url)
    few = srv.gitlab.paginate(req, list(range(10_000)), lambda x: {"id": x})
    many = srv.gitlab.paginate(req, list(range(10_001)), lambda x: {"id": x})
    assert dict(few.headers)["x-total"] == "10000" and 'rel="last"' in dict(few.headers)["Link"]
    assert "x-total" not in dict(many.headers) and 'rel="last"' not in dict(many.headers)["Link"]
    assert dict(many.headers)["x-next-page"] == "2"


def test_environments_carry_a_tier_except_on_an_old_gitlab(srv, org):
    client = _client(srv)
    with_tier = next(r for r in _gitlab_repos(org) if not r.environment_tier_missing)
    without = next(r for r in _gitlab_repos(org) if r.environment_tier_missing)
    assert {e["name"]: e["tier"] for e in client.environments(with_tier.full_name)}["production"] == "production"
    assert all("tier" not in e for e in client.environments(without.full_name))


def test_rate_limit_headers_429_storms_5xx_and_cut_bodies_are_survived(org):
    faults = Faults(rules=[FaultRule("rate_limit", service="gitlab", start=1, count=3, seconds=1),
                           FaultRule("status", service="gitlab", status=502, start=5, count=1),
                           FaultRule("truncate", service="gitlab", start=7, count=1)])
    name = _busiest(org)
    with EmulatorServer(org, gitlab_token=GL_TOKEN, faults=faults, gitlab_rate_limit_per_minute=2000) as srv:
        srv.start()
        waits: list[float] = []
        client = GitLabClient(srv.gitlab_url, GL_TOKEN, per_page=10, sleep=waits.append)
        got = list(client.deployments(name))
        ok = requests.get(f"{srv.gitlab_url}/projects/{requests.utils.quote(name, safe='')}", headers=HEADERS)
    assert sorted(d["id"] for d in got) == sorted(d.id for d in org.deployments if d.repo == name and d.created_at <= org.now)
    stats = client.stats["deployments"]
    assert stats.throttled == 3 and stats.retries == 5  # three 429s, one 502, one cut body
    assert waits[:3] == [1.0, 1.0, 1.0]  # Retry-After honoured
    assert ok.headers["RateLimit-Limit"] == "2000" and int(ok.headers["RateLimit-Remaining"]) < 2000
    assert ok.headers["RateLimit-Name"] == "throttle_authenticated_api" and ok.headers["RateLimit-ResetTime"].endswith("GMT")


def test_a_rejected_token_names_the_variable_and_is_never_shown(srv, org):
    client = GitLabClient(srv.gitlab_url, "glpat-not-the-token")
    with pytest.raises(AuthError) as info:
        list(client.deployments(_busiest(org)))
    assert "GITLAB_TOKEN" in str(info.value) and "glpat-not-the-token" not in str(info.value)
    with pytest.raises(ApiError) as missing:
        list(_client(srv).deployments("acme/platform/no-such-project"))
    assert missing.value.status == 404


def test_a_self_managed_gitlab_over_tls_with_its_own_ca(org):
    """A self-managed GitLab behind a private CA: the client trusts the CA bundle it is given."""
    with EmulatorServer(org, gitlab_token=GL_TOKEN, tls=True) as tls:
        tls.start()
        name = _busiest(org)
        with pytest.raises(ApiError):  # the throwaway CA is not trusted by default
            GitLabClient(tls.gitlab_url, GL_TOKEN, max_retries=0, sleep=lambda s: None).project(name)
        client = GitLabClient(tls.gitlab_url, GL_TOKEN, ca_bundle=tls.ca_file)
        assert tls.gitlab_url.startswith("https://") and client.project(name)["path_with_namespace"] == name
        assert len(list(client.merge_requests(name))) > 0
