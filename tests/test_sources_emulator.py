"""Real-socket integration tests of the API clients against the bundled emulator.

Every test runs the clients over HTTP against ``emulator.server.EmulatorServer`` serving a
small generated organisation, and checks the records against what the organisation holds and the
request counts against what the emulator served (``srv.stats()``).
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timedelta, timezone

import pytest

from emulator.faults import FaultRule, Faults
from emulator.generator import GeneratorConfig, generate_organisation
from emulator.model import Incident, Organisation, OwnershipPeriod, Service, Team
from emulator.server import EmulatorServer
from pipelines.connectors.github.client import GitHubClient
from pipelines.connectors.pagerduty.client import PagerDutyClient
from pipelines.http import ApiError, AuthError, RetryBudgetExceeded

UTC = timezone.utc
PD_TOKEN = "pd-integration-T0KEN"
GH_TOKEN = "ghp_integrationT0KEN"
OVERVIEW_DROPS = {"notify_log_entry", "annotate_log_entry"}  # what is_overview=true leaves out


@pytest.fixture(scope="module")
def org() -> Organisation:
    return generate_organisation(11, GeneratorConfig(n_teams=3, months=6))


@pytest.fixture(scope="module")
def window(org):
    until = org.now + timedelta(days=1)
    return until - timedelta(days=200), until  # two windows of at most 180 days


@pytest.fixture(scope="module")
def expected(org, window):
    since, until = window
    inc = {i.id for i in org.incidents if since <= i.created_at < until and i.created_at <= org.now}
    entries = {e.id for i in org.incidents for e in i.log_entries
               if e.type not in OVERVIEW_DROPS and since <= e.created_at < until and e.created_at <= org.now}
    return {"incidents": inc, "log_entries": entries}


@pytest.fixture
def server(org):
    servers = []

    def start(**kw) -> EmulatorServer:
        kw.setdefault("rate_limit_per_minute", None)
        srv = EmulatorServer(org, port=0, pagerduty_token=PD_TOKEN, github_token=GH_TOKEN, **kw).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


def pd_client(srv, sleeps=None, **kw) -> PagerDutyClient:
    kw.setdefault("rate_per_minute", None)
    kw.setdefault("timeout", 5.0)
    return PagerDutyClient(srv.pagerduty_url, kw.pop("token", PD_TOKEN),
                           sleep=(sleeps.append if sleeps is not None else (lambda s: None)), **kw)


def gh_client(srv, sleeps=None, **kw) -> GitHubClient:
    kw.setdefault("timeout", 5.0)
    return GitHubClient(srv.github_url, kw.pop("token", GH_TOKEN),
                        sleep=(sleeps.append if sleeps is not None else (lambda s: None)), **kw)


def settled(srv) -> dict:
    """The emulator's stats once in-flight requests are recorded (it records after answering)."""
    last, stable_since = None, time.monotonic()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        stats = srv.stats()
        if stats["requests"] != last:
            last, stable_since = stats["requests"], time.monotonic()
        elif time.monotonic() - stable_since >= 0.05:
            return stats
        time.sleep(0.02)
    return srv.stats()


def route_requests(srv, route: str) -> int:
    return settled(srv)["by_route"].get(route, {}).get("requests", 0)


def chunk_counts(ts: list[datetime], since: datetime, until: datetime, days: int = 180) -> list[int]:
    out, a = [], since
    while a < until:
        b = min(a + timedelta(days=days), until)
        out.append(sum(1 for t in ts if a <= t < b))
        a = b
    return out


def min_requests(counts: list[int]) -> int:
    return sum(max(1, math.ceil(n / 100)) for n in counts)


def test_every_incident_and_log_entry_arrives_once_with_minimal_requests(server, org, window, expected):
    srv = server()
    since, until = window
    pd = pd_client(srv)
    incidents = [r["id"] for r in pd.incidents(since, until)]
    entries = [r["id"] for r in pd.log_entries(since, until)]
    assert len(incidents) == len(set(incidents)) and set(incidents) == expected["incidents"]
    assert len(entries) == len(set(entries)) and set(entries) == expected["log_entries"]
    # The first page of each window is the total probe: ceil(records/100) per window, nothing more.
    inc_times = [i.created_at for i in org.incidents if i.created_at <= org.now]
    ent_times = [e.created_at for i in org.incidents for e in i.log_entries
                 if e.type not in OVERVIEW_DROPS and e.created_at <= org.now]
    assert route_requests(srv, "pagerduty GET /incidents") == min_requests(chunk_counts(inc_times, since, until))
    assert route_requests(srv, "pagerduty GET /log_entries") == min_requests(chunk_counts(ent_times, since, until))
    assert pd.stats["incidents"].records == len(expected["incidents"])
    assert pd.stats["incidents"].requests == route_requests(srv, "pagerduty GET /incidents")
    assert pd.stats["log_entries"].retries == 0
    # log entries render in UTC because time_zone=UTC is sent
    assert all(r["created_at"].endswith("Z") for r in pd.log_entries(org.now - timedelta(days=3), org.now))


def test_directory_streams(server, org):
    srv = server()
    pd = pd_client(srv)
    assert {t["id"] for t in pd.teams()} == {t.id for t in org.teams}
    assert {s["id"] for s in pd.services()} >= {s.id for s in org.services if s.created_at is None or s.created_at <= org.now}
    assert {u["id"] for u in pd.users()} == {u.id for u in org.users}


def test_analytics_cursor_returns_every_incident_once(server, org, window, expected):
    srv = server()
    pd = pd_client(srv)
    got = [r["id"] for r in pd.analytics_incidents(*window)]
    assert len(got) == len(set(got))
    assert set(got) == expected["incidents"]


def _big_org(n: int, days: int) -> Organisation:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    step = days * 86_400 / n
    incidents = [Incident(id=f"PB{k:06d}", number=k + 1, title=f"load {k}", service_id="PSVC001",
                          created_at=start + timedelta(seconds=int(k * step))) for k in range(n)]
    return Organisation(
        teams=[Team(id="PTEAM01", key="core", name="Core")],
        services=[Service(id="PSVC001", name="core-api", owners=[OwnershipPeriod("core")])],
        incidents=incidents,
        now=start + timedelta(days=days + 1),
    )


def test_window_over_10000_is_split_and_never_hits_the_offset_cap():
    big = _big_org(10_200, 10)
    with EmulatorServer(big, port=0, pagerduty_token=PD_TOKEN, rate_limit_per_minute=None) as srv:
        pd = pd_client(srv, concurrency=2)
        start = datetime(2024, 1, 1, tzinfo=UTC)
        got = [r["id"] for r in pd.incidents(start, start + timedelta(days=10))]
        stats = settled(srv)
    assert len(got) == 10_200 and set(got) == {i.id for i in big.incidents}
    by_status = stats["by_route"]["pagerduty GET /incidents"]["by_status"]
    assert by_status == {"200": 1 + 2 * 51}  # the whole-window probe, then two halves of 5,100: 51 pages each


def test_auth_failures_stop_at_once_with_the_env_var_and_no_token(server, window, caplog):
    srv = server()
    wrong = "pd-wrong-secret-123"
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(AuthError) as err:
            list(pd_client(srv, token=wrong).incidents(*window))
    assert "PAGERDUTY_API_TOKEN" in str(err.value) and "PAGERDUTY_API_URL" in str(err.value)
    assert wrong not in str(err.value) and wrong not in caplog.text
    assert settled(srv)["requests"] == 1

    with pytest.raises(AuthError) as err:
        list(gh_client(srv, token="ghp_wrong_secret_456").deployments("acme/whatever"))
    assert "GITHUB_TOKEN" in str(err.value) and "ghp_wrong_secret_456" not in str(err.value)
    assert settled(srv)["requests"] == 2


FAULTS = {
    "5xx-burst": FaultRule("status", route="/incidents", status=503, start=2, count=3),
    "408": FaultRule("status", route="/incidents", status=408, start=1, count=1),
    "reset": FaultRule("reset", route="/incidents", start=2, count=2),
    "truncated-json": FaultRule("truncate", route="/incidents", start=3, count=1),
    "short-body": FaultRule("short_body", route="/incidents", start=2, count=1),
    "html-200": FaultRule("html", route="/incidents", start=2, count=2),
    # hung for 4 s against a 1 s client timeout: one retry, while an ordinary answer (well under a
    # second even on a busy machine) never times out
    "hang": FaultRule("hang", route="/incidents", start=2, count=1, seconds=4.0),
    "429": FaultRule("rate_limit", route="/incidents", start=2, count=1, seconds=7),
    "429-bare": FaultRule("rate_limit_bare", route="/incidents", start=1, count=1),
}


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_modes_end_in_the_same_records(server, window, expected, name):
    rule = FAULTS[name]
    srv = server(faults=Faults(rules=[rule]))
    sleeps: list[float] = []
    pd = pd_client(srv, sleeps, timeout=1.0 if name == "hang" else 5.0)
    got = [r["id"] for r in pd.incidents(*window)]
    assert len(got) == len(set(got)) and set(got) == expected["incidents"]
    assert srv.faults.fired == {rule.kind: rule.count}
    assert pd.stats["incidents"].retries == rule.count
    if name == "hang":  # the hung request is recorded once its handler wakes up
        deadline = time.monotonic() + 10
        while route_requests(srv, "pagerduty GET /incidents") < pd.stats["incidents"].requests and time.monotonic() < deadline:
            time.sleep(0.05)
    assert pd.stats["incidents"].requests == route_requests(srv, "pagerduty GET /incidents")
    if name == "429":
        assert sleeps == [7.0]  # ratelimit-reset honoured
        assert pd.stats["incidents"].throttled == 1


def test_persistent_5xx_ends_in_a_clear_error(server, window):
    srv = server(faults=Faults(rules=[FaultRule("status", route="/incidents", status=502)]))
    pd = pd_client(srv, max_retries=3)
    with pytest.raises(ApiError) as err:
        list(pd.incidents(*window))
    assert str(err.value).startswith("PagerDuty GET /incidents failed after 4 attempts; last error: HTTP 502")
    assert PD_TOKEN not in str(err.value)
    assert settled(srv)["requests"] == 4


def test_persistent_html_ends_in_retry_budget_error(server, window):
    srv = server(faults=Faults(rules=[FaultRule("html", route="/log_entries")]))
    pd = pd_client(srv, retry_budget=5)
    with pytest.raises(RetryBudgetExceeded) as err:
        list(pd.log_entries(*window))
    msg = str(err.value)
    assert "GET /log_entries kept failing (last: HTTP 200 with an HTML page" in msg
    assert settled(srv)["requests"] == 6


def test_github_deployments_statuses_pulls_and_conditional_requests(server, org):
    srv = server()
    gh = gh_client(srv)
    repos = sorted(r.full_name for r in org.repos if r.accessible)
    assert sorted(r["full_name"] for r in gh.org_repos(org.github_org)) == repos
    for name in repos:
        visible = [d for d in org.deployments if d.repo == name and d.created_at <= org.now]
        newest_first = [d.id for d in sorted(visible, key=lambda d: (d.created_at, d.id), reverse=True)]
        assert [d["id"] for d in gh.deployments(name)] == newest_first
    deps = [d for d in org.deployments if d.repo == repos[0] and d.created_at <= org.now]
    one = max(deps, key=lambda d: len(d.statuses))
    statuses = gh.deployment_statuses(repos[0], one.id)
    assert {s["id"] for s in statuses} <= {s.id for s in one.statuses}
    pulls = list(gh.pulls(repos[0]))
    assert [p["updated_at"] for p in pulls] == sorted((p["updated_at"] for p in pulls), reverse=True)

    # A second pass over the deployments: every page answers 304 and the records are the same.
    before = settled(srv)["not_modified"]
    first_pass = {name: [d["id"] for d in gh.deployments(name)] for name in repos}
    pages = gh.stats["deployments"].not_modified
    assert settled(srv)["not_modified"] - before == pages > 0
    again = {name: [d["id"] for d in gh.deployments(name)] for name in repos}
    assert again == first_pass
    assert gh.stats["deployments"].not_modified == 2 * pages


def test_github_lazy_paging_stops_at_the_caller(server, org):
    srv = server()
    name = max({d.repo for d in org.deployments}, key=lambda r: sum(d.repo == r for d in org.deployments))
    gen = gh_client(srv).deployments(name)
    newest = next(gen)
    gen.close()
    assert newest["id"] == max((d for d in org.deployments if d.repo == name and d.created_at <= org.now),
                               key=lambda d: (d.created_at, d.id)).id
    assert route_requests(srv, "github GET /repos/{owner}/{repo}/deployments") == 1


def test_github_faults(server, org, caplog):
    name = sorted(r.full_name for r in org.repos if r.accessible)[0]
    srv = server(faults=Faults(rules=[FaultRule("gh_secondary", route="/deployments", start=1, count=1, seconds=5),
                                      FaultRule("gh_primary", route="/deployments", start=2, count=1, status=429, seconds=30),
                                      FaultRule("reset", route="/deployments", start=3, count=1)]))
    sleeps: list[float] = []
    gh = gh_client(srv, sleeps)
    got = [d["id"] for d in gh.deployments(name)]
    assert sorted(got) == sorted(d.id for d in org.deployments if d.repo == name and d.created_at <= org.now)
    assert sleeps[0] == 5.0  # secondary limit: its retry-after (a minute only when it gives none)
    assert 28.0 <= sleeps[1] <= 31.0  # primary limit: until x-ratelimit-reset (epoch, wall clock)
    assert gh.stats["deployments"].throttled == 2 and gh.stats["deployments"].retries == 3

    srv2 = server(faults=Faults(rules=[FaultRule("gh_not_accessible", route="/deployments")]))
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(AuthError) as err:
            list(gh_client(srv2).deployments(name))
    assert "Resource not accessible by integration" in str(err.value) and "GITHUB_TOKEN" in str(err.value)
    assert GH_TOKEN not in str(err.value) and GH_TOKEN not in caplog.text
    assert settled(srv2)["requests"] == 1


def test_github_missing_repo_and_pagination_limit(server, org):
    srv = server(faults=Faults(github_max_page=0))
    gh = gh_client(srv)
    with pytest.raises(ApiError, match="does not exist, or GITHUB_TOKEN cannot see it"):
        gh.repo(f"{org.github_org}/no-such-repo")
    name = sorted(r.full_name for r in org.repos if r.accessible)[0]
    with pytest.raises(ApiError, match="answered 422 on page 1: pagination is limited"):
        list(gh.deployments(name))


def test_tls_with_the_emulator_ca(server, window, expected):
    srv = server(tls=True)
    assert srv.pagerduty_url.startswith("https://")
    got = {r["id"] for r in pd_client(srv, ca_bundle=srv.ca_file).incidents(*window)}
    assert got == expected["incidents"]
    with pytest.raises(ApiError, match="TLS verification failed") as err:
        list(pd_client(srv).incidents(*window))
    assert not isinstance(err.value, AuthError)
