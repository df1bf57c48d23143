"""Fault injection: every mode, deterministic, scoped by route."""

from __future__ import annotations

import time

import pytest
import requests

from emulator.faults import FaultRule, Faults, parse_fault
from emulator.server import EmulatorServer
from tests.emulator_helpers import GH_HEADERS, GH_TOKEN, PD_HEADERS, PD_TOKEN, many_incidents_org, tiny_org

INTERNAL = {"error": {"message": "An internal error has occurred. Please try again later.", "code": 2000}}


def serve(*rules: FaultRule, org=None, **kw) -> EmulatorServer:
    faults = Faults(rules=list(rules), **kw)
    return EmulatorServer(org or tiny_org(), pagerduty_token=PD_TOKEN, github_token=GH_TOKEN, faults=faults).start()


def pd(srv: EmulatorServer, path: str, **kw) -> requests.Response:
    return requests.get(srv.pagerduty_url + path, headers=PD_HEADERS, **kw)


def gh(srv: EmulatorServer, path: str, **kw) -> requests.Response:
    return requests.get(srv.github_url + path, headers=GH_HEADERS, **kw)


def test_status_burst_scoped_to_a_route():
    srv = serve(FaultRule("status", route="/log_entries", status=503, start=2, count=2))
    try:
        codes = [pd(srv, "/log_entries").status_code for _ in range(5)]
        assert codes == [200, 503, 503, 200, 200]
        assert all(pd(srv, "/incidents").status_code == 200 for _ in range(3))  # other routes untouched
        r = pd(srv, "/incidents/PINC001/log_entries")  # the 6th matching request: healthy again
        assert r.status_code == 200
        assert srv.stats()["faults"] == {"status": 2}
    finally:
        srv.stop()
    srv = serve(FaultRule("status", status=502, count=1))
    try:
        r = pd(srv, "/teams")
        assert r.status_code == 502 and r.json() == INTERNAL and r.headers["X-Request-Id"]
        r = gh(srv, "/repos/acme/payments-api")
        assert r.status_code == 200  # count=1 was spent by the PagerDuty request
    finally:
        srv.stop()


def test_probability_is_deterministic_for_a_seed():
    def run() -> list[int]:
        srv = serve(FaultRule("status", status=500, probability=0.3), seed=42)
        try:
            return [pd(srv, "/teams").status_code for _ in range(40)]
        finally:
            srv.stop()

    a, b = run(), run()
    assert a == b
    assert 4 <= a.count(500) <= 20


def test_408_and_github_5xx_bodies():
    srv = serve(FaultRule("status", status=408, service="pagerduty"), FaultRule("status", status=504, service="github"))
    try:
        r = pd(srv, "/teams")
        assert r.status_code == 408 and r.json() == {"error": {"message": "The request took too long", "code": 2016}}
        r = gh(srv, "/repos/acme/payments-api")
        assert r.status_code == 504 and r.json()["message"] == "Server Error"
    finally:
        srv.stop()


def test_connection_reset_and_hang():
    srv = serve(FaultRule("reset", route="/teams", count=1), FaultRule("hang", route="/users", seconds=2.0, count=1))
    try:
        with pytest.raises(requests.exceptions.ConnectionError):
            pd(srv, "/teams")
        assert pd(srv, "/teams").status_code == 200
        t0 = time.monotonic()
        with pytest.raises(requests.exceptions.ReadTimeout):
            pd(srv, "/users", timeout=0.3)
        assert time.monotonic() - t0 < 1.5
        assert pd(srv, "/users", timeout=5).status_code == 200
        assert srv.stats()["by_route"]["pagerduty GET /teams"]["by_status"] == {"0": 1, "200": 1}
    finally:
        srv.stop()


def test_truncated_short_and_html_bodies():
    srv = serve(FaultRule("truncate", route="/teams", count=1), FaultRule("short_body", route="/users", count=1),
                FaultRule("html", route="/services", count=1))
    try:
        r = pd(srv, "/teams")
        assert r.status_code == 200
        with pytest.raises(ValueError):
            r.json()
        with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
            pd(srv, "/users").json()
        r = pd(srv, "/services")
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html") and "<html>" in r.text
        assert all(pd(srv, p).json() for p in ("/teams", "/users", "/services"))
    finally:
        srv.stop()


def test_duplicate_records_across_pages_lose_nothing():
    srv = serve(FaultRule("duplicate", route="/incidents"), org=many_incidents_org(230))
    try:
        ids, offset, firsts = [], 0, []
        while True:
            body = pd(srv, "/incidents", params={"date_range": "all", "limit": 100, "offset": offset}).json()
            firsts.append(body["incidents"][0]["id"])
            ids += [i["id"] for i in body["incidents"]]
            offset += len(body["incidents"])
            if not body["more"]:
                break
        assert firsts[1] == "PN00099" and ids.count("PN00099") == 2  # last of page 1 on top of page 2
        assert set(ids) == {f"PN{k:05d}" for k in range(230)}
    finally:
        srv.stop()
    srv = serve(FaultRule("duplicate", service="github"))
    try:
        p1 = gh(srv, "/repos/acme/payments-api/deployments", params={"per_page": 2}).json()
        p2 = gh(srv, "/repos/acme/payments-api/deployments", params={"per_page": 2, "page": 2}).json()
        assert p2[0]["id"] == p1[-1]["id"]
    finally:
        srv.stop()


def test_empty_page_with_more_true():
    srv = serve(FaultRule("empty_page", route="/incidents", start=2, count=1), org=many_incidents_org(150))
    try:
        first = pd(srv, "/incidents", params={"date_range": "all", "limit": 100}).json()
        empty = pd(srv, "/incidents", params={"date_range": "all", "limit": 100, "offset": 100}).json()
        assert len(first["incidents"]) == 100 and empty["incidents"] == [] and empty["more"] is True
        again = pd(srv, "/incidents", params={"date_range": "all", "limit": 100, "offset": 100}).json()
        assert len(again["incidents"]) == 50 and again["more"] is False
    finally:
        srv.stop()


def test_rate_limit_faults():
    srv = serve(FaultRule("rate_limit_bare", count=1, service="pagerduty"), FaultRule("rate_limit", start=2, count=1, seconds=7,
                                                                                       service="pagerduty"))
    try:
        r = pd(srv, "/teams")
        assert r.status_code == 429 and r.content == b"" and "ratelimit-reset" not in r.headers
        r = pd(srv, "/teams")
        assert r.status_code == 429 and r.headers["ratelimit-reset"] == "7" and r.json()["error"]["code"] == 2020
        assert pd(srv, "/teams").status_code == 200
        assert srv.stats()["rate_limited"] == 2
    finally:
        srv.stop()


def test_github_rate_limit_and_permission_faults():
    srv = serve(FaultRule("gh_secondary", count=1, seconds=3), FaultRule("gh_secondary", start=2, count=1, status=429),
                FaultRule("gh_primary", start=3, count=1, status=429, seconds=30), FaultRule("gh_not_accessible", start=4, count=1))
    try:
        url = "/repos/acme/payments-api/deployments"
        r = gh(srv, url)
        assert r.status_code == 403 and r.headers["retry-after"] == "3" and "secondary rate limit" in r.json()["message"]
        assert int(r.headers["x-ratelimit-remaining"]) > 0
        r = gh(srv, url)
        assert r.status_code == 429 and "retry-after" not in r.headers and int(r.headers["x-ratelimit-remaining"]) > 0
        r = gh(srv, url)
        assert r.status_code == 429 and r.headers["x-ratelimit-remaining"] == "0"
        assert 20 <= int(r.headers["x-ratelimit-reset"]) - time.time() <= 31
        r = gh(srv, url)
        assert r.status_code == 403 and r.json()["message"] == "Resource not accessible by integration"
        assert gh(srv, url).status_code == 200
        assert pd(srv, "/teams").status_code == 200  # gh_* kinds never touch PagerDuty
    finally:
        srv.stop()


def test_github_deep_pages_422_and_latency():
    srv = serve(github_max_page=1, latency_ms=1000, latency_route="/deployments")
    try:
        t0 = time.monotonic()
        assert gh(srv, "/repos/acme/payments-api/deployments", params={"per_page": 1}).status_code == 200
        assert time.monotonic() - t0 >= 1.0
        r = gh(srv, "/repos/acme/payments-api/deployments", params={"per_page": 1, "page": 2})
        assert r.status_code == 422 and "pagination is limited" in r.json()["message"]
        t0 = time.monotonic()
        assert gh(srv, "/repos/acme/payments-api").status_code == 200
        assert time.monotonic() - t0 < 1.0  # the latency applies to its route only
    finally:
        srv.stop()


def test_parse_fault_specs():
    rule = parse_fault("status:status=503,start=3,count=2,route=/log_entries,probability=0.5")
    assert rule == FaultRule("status", route="/log_entries", start=3, count=2, probability=0.5, status=503)
    assert parse_fault("hang:seconds=1.5").seconds == 1.5
    assert parse_fault("gh_secondary:seconds=none").seconds is None
    for bad in ("explode", "status:colour=red", "status:start=0", "status:probability=2"):
        with pytest.raises(ValueError):
            parse_fault(bad)
