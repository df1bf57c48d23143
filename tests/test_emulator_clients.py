"""The official clients against the emulator over TLS: python-pagerduty and PyGithub."""

from __future__ import annotations

import ssl
from datetime import timedelta

import pagerduty
import pytest
import requests
from github import Auth, Github

from emulator.server import EmulatorServer
from tests.emulator_helpers import GH_TOKEN, PD_TOKEN, generated_org


@pytest.fixture(scope="module")
def tls_server():
    with EmulatorServer(generated_org(), pagerduty_token=PD_TOKEN, github_token=GH_TOKEN, tls=True,
                        rate_limit_per_minute=100_000) as srv:
        yield srv


def test_tls_setup(tls_server):
    srv = tls_server
    assert srv.base_url.startswith("https://127.0.0.1:") and srv.ca_file and open(srv.ca_file).read().startswith("-----BEGIN CERTIFICATE")
    assert requests.get(srv.base_url + "/__emulator/stats", verify=srv.ca_file).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(srv.base_url + "/__emulator/stats")  # the throwaway CA is not trusted by default


def test_official_pagerduty_client_reads_everything(tls_server):
    srv = tls_server
    org = srv.org
    client = pagerduty.RestApiV2Client(PD_TOKEN, base_url=srv.pagerduty_url,
                                       verify=ssl.create_default_context(cafile=srv.ca_file))
    srv.reset_stats()
    incidents = list(client.iter_all("/incidents", params={"date_range": "all", "time_zone": "UTC"}))
    visible = [i for i in org.incidents if i.created_at <= org.now]
    assert [i["id"] for i in incidents] == [i.id for i in visible]
    assert srv.stats()["by_route"]["pagerduty GET /incidents"]["requests"] == -(-len(visible) // 100)  # limit=100 pages
    since = org.now - timedelta(days=45)
    entries = list(client.iter_history("/log_entries", since, org.now, params={"time_zone": "UTC"}))
    expected = {e.id for i in org.incidents for e in i.log_entries if since <= e.created_at < org.now}
    assert {e["id"] for e in entries} == expected and len(entries) == len(expected)
    window = list(client.iter_history("/incidents", org.now - timedelta(days=150), org.now))
    assert len(window) == sum(1 for i in visible if i.created_at >= org.now - timedelta(days=150))
    rows = list(client.iter_analytics_raw_incidents({"created_at_start": "2020-01-01T00:00:00Z"}, limit=1000, time_zone="Etc/UTC"))
    assert len(rows) == len(visible) and len({r["id"] for r in rows}) == len(rows)


def test_pygithub_iterates_deployments_statuses_and_pulls(tls_server):
    srv = tls_server
    org = srv.org
    g = Github(base_url=srv.github_url, auth=Auth.Token(GH_TOKEN), verify=srv.ca_file, per_page=100)
    name = "acme/search-api"
    repo = g.get_repo(name)
    assert repo.full_name == name and repo.default_branch == "main"
    deployments = list(repo.get_deployments())
    truth = org.ground_truth["per_repo"][name]
    assert len(deployments) == truth["deployments"]
    assert [d.id for d in deployments] == sorted((d.id for d in org.deployments if d.repo == name), reverse=True)
    prod = list(repo.get_deployments(environment="production"))
    assert len(prod) == truth["production_deployments"]
    statuses = list(deployments[-1].get_statuses())
    assert statuses and statuses[-1].state == "queued"
    pulls = list(repo.get_pulls(state="all", sort="updated", direction="desc"))
    assert len(pulls) == truth["pulls"]
    assert sum(p.merged_at is not None for p in pulls) == truth["merged_pulls"]
    assert g.get_rate_limit().resources.core.limit == 5000
    with pytest.raises(Exception) as info:
        Github(base_url=srv.github_url, auth=Auth.Token("wrong"), verify=srv.ca_file).get_repo(name)
    assert "401" in str(info.value) or "Bad credentials" in str(info.value)
