"""The PagerDuty side of the emulator, over real sockets."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests

from emulator.model import Incident
from emulator.server import EmulatorServer
from tests.emulator_helpers import (
    PD_HEADERS,
    PD_TOKEN,
    generated_org,
    many_incidents_org,
    t,
    tiny_org,
    validate_pd_response,
)

OFFSET_BODY = {"error": {"message": "Arguments Caused Error", "code": 2002, "errors": [
    "Offset+limit exceeds maximum allowed value of 10000. Please try to refine your search to reduce the returned set "
    "of records below this number, like adding a date range."]}}


@pytest.fixture
def tiny():
    with EmulatorServer(tiny_org(), pagerduty_token=PD_TOKEN) as srv:
        s = requests.Session()
        s.headers.update(PD_HEADERS)
        yield srv, s


@pytest.fixture(scope="module")
def big():
    with EmulatorServer(generated_org(), pagerduty_token=PD_TOKEN, rate_limit_per_minute=100_000) as srv:
        s = requests.Session()
        s.headers.update(PD_HEADERS)
        yield srv, s


def ref(base: str, kind: str, id_: str, summary: str | None, api: str | None, html: str | None) -> dict:
    return {"id": id_, "type": f"{kind}_reference", "summary": summary, "self": base + api if api else None,
            "html_url": "https://acme.pagerduty.com" + html if html else None}


def test_incident_json_exact_fields(tiny):
    srv, s = tiny
    r = s.get(srv.pagerduty_url + "/incidents", params={"date_range": "all"})
    assert r.status_code == 200
    body = r.json()
    assert [i["id"] for i in body["incidents"]] == ["PINC001", "PINC002", "PINC003"]
    assert (body["limit"], body["offset"], body["more"], body["total"]) == (25, 0, False, None)
    b = srv.pagerduty_url
    ada = ref(b, "user", "PUSER01", "Ada Okafor", "/users/PUSER01", "/users/PUSER01")
    assert body["incidents"][0] == {
        "id": "PINC001", "type": "incident", "summary": "[#1] High error rate on payments-api",
        "self": b + "/incidents/PINC001", "html_url": "https://acme.pagerduty.com/incidents/PINC001",
        "incident_number": 1, "title": "High error rate on payments-api", "description": "High error rate on payments-api",
        "created_at": "2026-01-10T10:00:00Z", "updated_at": "2026-01-10T11:00:00Z", "status": "resolved",
        "incident_key": "key-1",
        "service": ref(b, "service", "PSVC001", "payments-api", "/services/PSVC001", "/service-directory/PSVC001"),
        "assignments": [], "assigned_via": "escalation_policy",
        "last_status_change_at": "2026-01-10T11:00:00Z", "last_status_change_by": ada,
        "resolved_at": "2026-01-10T11:00:00Z",
        "first_trigger_log_entry": ref(b, "trigger_log_entry", "RLOG0000000001", "Triggered through the API.",
                                       "/log_entries/RLOG0000000001?incident_id=PINC001",
                                       "/incidents/PINC001/log_entries/RLOG0000000001"),
        "alert_counts": {"all": 1, "triggered": 0, "resolved": 1}, "is_mergeable": True,
        "incident_type": {"name": "incident_default"},
        "escalation_policy": ref(b, "escalation_policy", "PEPAY01", "Payments Escalation Policy",
                                 "/escalation_policies/PEPAY01", "/escalation_policies/PEPAY01"),
        "teams": [ref(b, "team", "PTEAM01", "Payments", "/teams/PTEAM01", "/teams/PTEAM01")],
        "pending_actions": [], "acknowledgements": [], "alert_grouping": None, "priority": None,
        "resolve_reason": None, "urgency": "high", "incidents_responders": [], "responder_requests": [],
    }
    acked = body["incidents"][1]
    ben = ref(b, "user", "PUSER02", "Ben Schmidt", "/users/PUSER02", "/users/PUSER02")
    assert acked["status"] == "acknowledged" and acked["resolved_at"] is None and acked["urgency"] == "low"
    assert acked["acknowledgements"] == [{"at": "2026-01-11T12:03:00Z", "acknowledger": ben}]
    assert acked["assignments"] == [{"at": "2026-01-11T12:00:00Z", "assignee": ben}]
    assert acked["priority"]["type"] == "priority_reference" and acked["priority"]["summary"] == "P2"
    assert acked["alert_counts"] == {"all": 1, "triggered": 1, "resolved": 0}
    triggered = body["incidents"][2]  # hand-made without log entries
    assert (triggered["status"], triggered["first_trigger_log_entry"], triggered["acknowledgements"]) == ("triggered", None, [])
    for inc in body["incidents"]:
        validate_pd_schema_ok(inc)


def validate_pd_schema_ok(incident: dict) -> None:
    validate_pd_response("/incidents/{id}", "get", {"incident": incident})


def test_incident_by_id_or_number_and_404(tiny):
    srv, s = tiny
    assert s.get(srv.pagerduty_url + "/incidents/2").json()["incident"]["id"] == "PINC002"
    r = s.get(srv.pagerduty_url + "/incidents/PNOPE00")
    assert r.status_code == 404 and r.json() == {"error": {"message": "Not Found", "code": 2100}}


def test_teams_are_the_service_owner_at_creation(tiny):
    srv, s = tiny
    srv.org.incidents.append(Incident(id="PINC000", number=4, title="Old one", service_id="PSVC001",
                                      created_at=t("2025-12-20T10:00:00Z"), resolved_at=t("2025-12-20T11:00:00Z")))
    srv.reindex()
    inc = s.get(srv.pagerduty_url + "/incidents/PINC000").json()["incident"]
    assert [x["summary"] for x in inc["teams"]] == ["Search"]  # owned by search until 2026-01-01
    svc = s.get(srv.pagerduty_url + "/services").json()["services"][0]
    assert [x["summary"] for x in svc["teams"]] == ["Payments"]  # the current owner
    r = s.get(srv.pagerduty_url + "/incidents", params={"date_range": "all", "team_ids[]": "PTEAM02"})
    assert [i["id"] for i in r.json()["incidents"]] == ["PINC000"]


def test_pagination_230_records():
    with EmulatorServer(many_incidents_org(230), pagerduty_token=PD_TOKEN) as srv:
        s = requests.Session()
        s.headers.update(PD_HEADERS)
        seen, pages, offset = [], [], 0
        while True:
            body = s.get(srv.pagerduty_url + "/incidents", params={"date_range": "all", "limit": 100, "offset": offset}).json()
            pages.append((len(body["incidents"]), body["more"], body["total"], body["limit"], body["offset"]))
            seen += [i["id"] for i in body["incidents"]]
            offset += len(body["incidents"])
            if not body["more"]:
                break
        assert pages == [(100, True, None, 100, 0), (100, True, None, 100, 100), (30, False, None, 100, 200)]
        assert seen == [f"PN{k:05d}" for k in range(230)]
        body = s.get(srv.pagerduty_url + "/incidents", params={"date_range": "all", "limit": 500, "total": "true"}).json()
        assert (len(body["incidents"]), body["limit"], body["total"]) == (100, 100, 230)  # clamped and echoed
        body = s.get(srv.pagerduty_url + "/incidents", params={"date_range": "all"}).json()
        assert (len(body["incidents"]), body["limit"], body["more"]) == (25, 25, True)


def test_authentication(tiny):
    srv, _ = tiny
    url = srv.pagerduty_url + "/incidents"
    for headers in ({}, {"Authorization": "Token token=wrong"}, {"Authorization": f"Token {PD_TOKEN}"},
                    {"Authorization": f"token token={PD_TOKEN}"}, {"Authorization": f"Basic {PD_TOKEN}"}):
        r = requests.get(url, headers=headers)
        assert r.status_code == 401
        assert r.json() == {"error": {"message": "Authentication failed", "code": 2006}}
        assert r.headers["X-Request-Id"]
    for headers in ({"Authorization": f"Token token={PD_TOKEN}"}, {"Authorization": f"Bearer {PD_TOKEN}"}):
        r = requests.get(url, headers=headers)
        assert r.status_code == 200 and r.headers["X-Request-Id"]
    ids = {requests.get(url, headers=PD_HEADERS).headers["X-Request-Id"] for _ in range(3)}
    assert len(ids) == 3


def test_offset_cap(tiny):
    srv, s = tiny
    r = s.get(srv.pagerduty_url + "/incidents", params={"date_range": "all", "offset": 9901, "limit": 100})
    assert r.status_code == 400 and r.json() == OFFSET_BODY
    r = s.get(srv.pagerduty_url + "/log_entries", params={"offset": 9950, "limit": 100})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "Offset must be less than 10001."
    r = s.get(srv.pagerduty_url + "/incidents", params={"date_range": "all", "offset": 9900, "limit": 100})
    assert r.status_code == 200 and r.json()["incidents"] == [] and r.json()["more"] is False


def test_since_until_windows(tiny):
    srv, s = tiny
    url = srv.pagerduty_url + "/incidents"
    r = s.get(url, params={"since": "2025-01-01T00:00:00Z", "until": "2025-08-01T00:00:00Z"})
    assert r.status_code == 400
    assert r.json() == {"error": {"message": "Invalid Input Provided", "code": 2001, "errors": [" is invalid."]}}
    assert s.get(url, params={"since": "2025-07-12T00:00:00Z", "until": "2026-01-12T00:00:00Z"}).status_code == 200
    r = s.get(url, params={"since": "2026-01-11", "until": "2026-01-10"})
    assert r.status_code == 400 and r.json()["error"]["code"] == 2005
    assert s.get(url, params={"since": "yesterday"}).json()["error"]["code"] == 2004
    # default: the last month before the clock; one bound: a month from it
    assert [i["id"] for i in s.get(url).json()["incidents"]] == ["PINC001", "PINC002", "PINC003"]
    srv.set_now(t("2026-03-01T00:00:00Z"))
    assert s.get(url).json()["incidents"] == []
    assert len(s.get(url, params={"date_range": "all"}).json()["incidents"]) == 3
    assert [i["id"] for i in s.get(url, params={"since": "2026-01-11T00:00:00Z"}).json()["incidents"]] == ["PINC002", "PINC003"]
    assert [i["id"] for i in s.get(url, params={"until": "2026-01-11T00:00:00Z"}).json()["incidents"]] == ["PINC001"]


def test_time_zones_for_incidents(tiny):
    srv, s = tiny
    url = srv.pagerduty_url + "/incidents"
    inc = s.get(url + "/PINC001", params={"time_zone": "America/New_York"}).json()["incident"]
    assert inc["created_at"] == "2026-01-10T05:00:00-05:00" and inc["resolved_at"] == "2026-01-10T06:00:00-05:00"
    assert s.get(url + "/PINC001").json()["incident"]["created_at"] == "2026-01-10T10:00:00Z"
    # naive since/until are read in the account zone (America/Los_Angeles: 10:00Z = 02:00 PST) ...
    ids = lambda params: [i["id"] for i in s.get(url, params=params).json()["incidents"]]  # noqa: E731
    assert ids({"since": "2026-01-10T02:00:00", "until": "2026-01-10T03:00:00"}) == ["PINC001"]
    assert ids({"since": "2026-01-10T02:00:01", "until": "2026-01-10T03:00:00"}) == []
    # ... unless time_zone says otherwise; explicit offsets always win
    assert ids({"since": "2026-01-10T10:00:00", "until": "2026-01-10T11:00:00", "time_zone": "UTC"}) == ["PINC001"]
    assert ids({"since": "2026-01-10T10:00:00+00:00", "until": "2026-01-10T11:00:00Z"}) == ["PINC001"]
    assert s.get(url, params={"time_zone": "Mars/Olympus"}).status_code == 400


def test_log_entries_render_in_the_account_zone_newest_first(tiny):
    srv, s = tiny
    body = s.get(srv.pagerduty_url + "/log_entries").json()
    ids = [e["id"] for e in body["log_entries"]]
    assert ids == ["RLOG0000000008", "RLOG0000000007", "RLOG0000000006", "RLOG0000000005", "RLOG0000000004",
                   "RLOG0000000003", "RLOG0000000002", "RLOG0000000001"]  # 09 is after the clock
    first = body["log_entries"][-1]
    assert first["created_at"] == "2026-01-10T02:00:00-08:00"  # America/Los_Angeles
    assert first["type"] == "trigger_log_entry" and first["channel"]["type"] == "api"
    assert first["incident"]["type"] == "incident_reference" and first["incident"]["id"] == "PINC001"
    utc = s.get(srv.pagerduty_url + "/log_entries", params={"time_zone": "UTC"}).json()["log_entries"]
    assert utc[-1]["created_at"] == "2026-01-10T10:00:00Z"
    ov = s.get(srv.pagerduty_url + "/log_entries", params={"is_overview": "true"}).json()["log_entries"]
    assert "RLOG0000000003" not in [e["id"] for e in ov] and len(ov) == 7
    win = s.get(srv.pagerduty_url + "/log_entries", params={"since": "2026-01-10T10:05:00Z", "until": "2026-01-11T00:00:00Z"}).json()
    assert [e["id"] for e in win["log_entries"]] == ["RLOG0000000005", "RLOG0000000004"]
    inc = s.get(srv.pagerduty_url + "/incidents/PINC001/log_entries", params={"include[]": "incidents", "time_zone": "UTC"}).json()
    assert len(inc["log_entries"]) == 5
    assert inc["log_entries"][0]["incident"]["type"] == "incident"
    assert inc["log_entries"][0]["incident"]["status"] == "resolved"
    ack = next(e for e in inc["log_entries"] if e["type"] == "acknowledge_log_entry")
    assert ack["agent"]["id"] == "PUSER01" and ack["agent"]["type"] == "user_reference"
    assign = next(e for e in inc["log_entries"] if e["type"] == "assign_log_entry")
    assert [a["id"] for a in assign["assignees"]] == ["PUSER01"]


def test_the_clock_drives_status_and_visibility(tiny):
    srv, s = tiny
    url = srv.pagerduty_url + "/incidents"
    assert s.get(url + "/PINC002").json()["incident"]["status"] == "acknowledged"
    srv.advance(timedelta(hours=7))
    inc = s.get(url + "/PINC002").json()["incident"]
    assert (inc["status"], inc["resolved_at"], inc["acknowledgements"], inc["assignments"]) == \
        ("resolved", "2026-01-12T06:00:00Z", [], [])
    assert inc["updated_at"] == "2026-01-12T06:00:00Z"
    srv.set_now(t("2026-01-11T23:00:00Z"))
    assert s.get(url + "/PINC003").status_code == 404
    assert [i["id"] for i in s.get(url, params={"date_range": "all"}).json()["incidents"]] == ["PINC001", "PINC002"]


def test_filters_and_sorting(tiny):
    srv, s = tiny
    url = srv.pagerduty_url + "/incidents"
    ids = lambda **p: [i["id"] for i in s.get(url, params={"date_range": "all", **p}).json()["incidents"]]  # noqa: E731
    assert ids(**{"statuses[]": ["triggered", "acknowledged"]}) == ["PINC002", "PINC003"]
    assert ids(**{"statuses[]": "resolved"}) == ["PINC001"]
    assert ids(**{"urgencies[]": "low"}) == ["PINC002"]
    assert ids(**{"service_ids[]": "PSVC001", "statuses[]": "triggered"}) == ["PINC003"]
    assert ids(**{"service_ids[]": "POTHER1"}) == []
    assert ids(sort_by="incident_number:desc") == ["PINC003", "PINC002", "PINC001"]
    assert ids(**{"user_ids[]": "PUSER02"}) == ["PINC002"]
    assert s.get(url, params={"statuses[]": "sleeping"}).status_code == 400
    inc = s.get(url + "/PINC002", params={"include[]": ["services", "teams", "priorities"]}).json()["incident"]
    assert inc["service"]["type"] == "service" and inc["service"]["name"] == "payments-api"
    assert inc["teams"][0]["type"] == "team" and inc["priority"]["type"] == "priority" and inc["priority"]["name"] == "P2"


def test_rate_limit_per_token():
    org = tiny_org()
    with EmulatorServer(org, pagerduty_token=[PD_TOKEN, "other"], rate_limit_per_minute=5) as srv:
        url = srv.pagerduty_url + "/teams"
        remaining = []
        for _ in range(5):
            r = requests.get(url, headers=PD_HEADERS)
            assert r.status_code == 200 and r.headers["ratelimit-limit"] == "5"
            remaining.append(int(r.headers["ratelimit-remaining"]))
        assert remaining == [4, 3, 2, 1, 0]
        r = requests.get(url, headers=PD_HEADERS)
        assert r.status_code == 429
        assert r.json() == {"error": {"message": "Rate Limit Exceeded", "code": 2020}}
        assert r.headers["ratelimit-remaining"] == "0" and int(r.headers["ratelimit-reset"]) >= 1
        assert requests.get(url, headers={"Authorization": "Token token=other"}).status_code == 200
        stats = srv.stats()
        assert stats["rate_limited"] == 1
        assert stats["by_route"]["pagerduty GET /teams"]["by_status"] == {"200": 6, "429": 1}


def test_stats_endpoint(tiny):
    srv, s = tiny
    srv.reset_stats()
    s.get(srv.pagerduty_url + "/incidents/PINC001")
    s.get(srv.pagerduty_url + "/incidents/PINC002")
    s.get(srv.pagerduty_url + "/incidents/PINC001/log_entries")
    requests.get(srv.pagerduty_url + "/incidents")  # 401
    s.get(srv.pagerduty_url + "/nope")
    stats = requests.get(srv.base_url + "/__emulator/stats").json()
    assert stats == srv.stats()
    assert stats["requests"] == 5
    assert stats["by_route"]["pagerduty GET /incidents/{id}"] == {"requests": 2, "bytes": stats["by_route"]["pagerduty GET /incidents/{id}"]["bytes"], "by_status": {"200": 2}}
    assert stats["by_route"]["pagerduty GET /incidents/{id}/log_entries"]["requests"] == 1
    assert stats["by_route"]["pagerduty GET /incidents"]["by_status"] == {"401": 1}
    assert stats["by_route"]["pagerduty GET (unmatched)"]["by_status"] == {"404": 1}
    assert stats["bytes"] == sum(r["bytes"] for r in stats["routes"]) > 1000
    assert stats["by_service"]["pagerduty"]["requests"] == 5
    srv.reset_stats()
    assert srv.stats()["requests"] == 0


def test_analytics_raw_incidents(tiny):
    srv, s = tiny
    url = srv.pagerduty_url + "/analytics/raw/incidents"
    body = {"filters": {"created_at_start": "2026-01-01T00:00:00Z"}, "limit": 2, "order": "asc", "time_zone": "America/New_York"}
    page1 = s.post(url, json=body).json()
    assert [r["id"] for r in page1["data"]] == ["PINC001", "PINC002"]
    assert (page1["first"], page1["last"], page1["more"], page1["time_zone"]) == ("PINC001", "PINC002", True, "America/New_York")
    row = page1["data"][0]
    assert (row["created_at"], row["resolved_at"]) == ("2026-01-10T05:00:00", "2026-01-10T06:00:00")  # naive, in the zone
    assert (row["seconds_to_first_ack"], row["seconds_to_resolve"], row["status"]) == (300, 3600, "resolved")
    assert (row["team_id"], row["service_name"], row["assigned_user_ids"]) == ("PTEAM01", "payments-api", ["PUSER01"])
    page2 = s.post(url, json={**body, "starting_after": page1["last"]}).json()
    assert [r["id"] for r in page2["data"]] == ["PINC003"] and page2["more"] is False
    validate_pd_response("/analytics/raw/incidents", "post", page1)
    assert s.post(url, json={**body, "limit": 1001}).status_code == 400
    assert s.post(url, json={"filters": {}}).json()["data"][0]["id"] == "PINC003"  # default order desc


def test_analytics_lag_hides_recent_incidents():
    with EmulatorServer(tiny_org(), pagerduty_token=PD_TOKEN, analytics_lag=timedelta(hours=1)) as srv:
        rows = requests.post(srv.pagerduty_url + "/analytics/raw/incidents", headers=PD_HEADERS, json={"filters": {}}).json()["data"]
        assert [r["id"] for r in rows] == ["PINC002", "PINC001"]  # PINC003 (23:30Z) not yet ingested


def test_generated_org_responses_fit_the_openapi_spec(big):
    srv, s = big
    b = srv.pagerduty_url
    incs = s.get(b + "/incidents", params={"limit": 20, "include[]": ["services", "teams", "priorities", "escalation_policies",
                                                                         "first_trigger_log_entries", "assignees"]}).json()
    validate_pd_response("/incidents", "get", incs)
    open_ones = s.get(b + "/incidents", params={"date_range": "all", "statuses[]": ["triggered", "acknowledged"]}).json()
    validate_pd_response("/incidents", "get", open_ones)
    assert open_ones["incidents"]
    org = srv.org
    merged = next(i for i in org.incidents if i.resolve_reason)
    one = s.get(b + f"/incidents/{merged.id}").json()
    validate_pd_response("/incidents/{id}", "get", one)
    assert one["incident"]["resolve_reason"]["type"] == "merge_resolve_reason"
    assert one["incident"]["resolve_reason"]["incident"]["id"] == merged.merged_into
    # a window of log entries holding every type we emit
    since = (org.now - timedelta(days=20)).isoformat()
    les = s.get(b + "/log_entries", params={"limit": 100, "since": since, "time_zone": "UTC"}).json()
    validate_pd_response("/log_entries", "get", les)
    auto = next(i for i in org.incidents if i.auto_resolved)
    les = s.get(b + f"/incidents/{auto.id}/log_entries").json()
    validate_pd_response("/incidents/{id}/log_entries", "get", les)
    resolve = next(e for e in les["log_entries"] if e["type"] == "resolve_log_entry")
    assert resolve["agent"]["type"] == "service_reference" and resolve["channel"]["type"] == "timeout"
    for path in ("/services", "/teams", "/users"):
        validate_pd_response(path, "get", s.get(b + path, params={"limit": 100}).json())
    analytics = s.post(b + "/analytics/raw/incidents", json={"filters": {}, "limit": 50}).json()
    validate_pd_response("/analytics/raw/incidents", "post", analytics)


def test_generated_org_resolved_incidents_have_empty_lists_and_counts_match(big):
    srv, s = big
    body = s.get(srv.pagerduty_url + "/incidents", params={"date_range": "all", "statuses[]": "resolved", "limit": 100,
                                                            "total": "true"}).json()
    assert all(i["assignments"] == [] and i["acknowledgements"] == [] for i in body["incidents"])
    visible = [i for i in srv.org.incidents if i.created_at <= srv.org.now]
    resolved = [i for i in visible if i.resolved_at is not None and i.resolved_at <= srv.org.now]
    assert body["total"] == len(resolved)
    all_body = s.get(srv.pagerduty_url + "/incidents", params={"date_range": "all", "limit": 1, "total": "true"}).json()
    assert all_body["total"] == len(visible) == srv.org.ground_truth["totals"]["incidents_visible"]


class _SliceCounter(list):
    """A list that remembers the longest slice taken from it."""

    longest = 0

    def __getitem__(self, key):
        item = super().__getitem__(key)
        if isinstance(key, slice):
            type(self).longest = max(type(self).longest, len(item))
        return item


@pytest.mark.parametrize("path, sort", [("/incidents", "created_at:asc"), ("/incidents", "created_at:desc"),
                                        ("/log_entries", None)])
def test_a_page_costs_the_page_not_the_window(big, path, sort):
    """Pages of a time window come from bisecting the sorted times and slicing the page alone: the
    emulator never copies or scans the window (a large organisation's window holds 70,000 incidents)."""
    srv, s = big
    api = srv.pagerduty
    attr = "incidents" if path == "/incidents" else "overview_entries"
    original = getattr(api, attr)
    _SliceCounter.longest = 0
    setattr(api, attr, _SliceCounter(original))
    try:
        params = {"since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z", "date_range": "all",
                  "limit": 100, "offset": 300, "total": "true", "time_zone": "UTC"}
        if path == "/log_entries":
            params = {k: v for k, v in params.items() if k not in ("date_range", "since", "until")}
            params["is_overview"] = "true"
        if sort:
            params["sort_by"] = sort
        body = s.get(srv.pagerduty_url + path, params=params).json()
    finally:
        setattr(api, attr, original)
    key = path.strip("/")
    assert body["total"] > 1_000 and len(body[key]) == 100
    assert _SliceCounter.longest <= 100
    # ... and the page is the right one: the 301st to 400th records of the window in the asked order
    window = [r for r in original if r.created_at <= srv.now()]
    if sort == "created_at:desc" or path == "/log_entries":
        window = window[::-1]
    assert [r["id"] for r in body[key]] == [r.id for r in window[300:400]]
