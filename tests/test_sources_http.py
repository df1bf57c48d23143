"""Unit tests of the shared HTTP layer (pipelines/http.py) with `responses`."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest
import requests
import responses

from pipelines.http import (
    ApiError,
    AuthError,
    HttpClient,
    RetryBudgetExceeded,
    StreamStats,
    TokenBucket,
)

BASE = "https://pd.example.test"
TOKEN = "s3cr3t-TOKEN-value-123"
NOW = 1_700_000_000.0


class FakeClock:
    """A clock that only moves when the client sleeps."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.t += seconds


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as r:
        yield r


def make_client(sleeps: list | None = None, **kw) -> HttpClient:
    options = dict(
        auth_header=f"Token token={TOKEN}",
        source="PagerDuty",
        token_env_var="PAGERDUTY_API_TOKEN",
        url_env_var="PAGERDUTY_API_URL",
        auth_hint="EU accounts use https://api.eu.pagerduty.com",
        sleep=(sleeps.append if sleeps is not None else (lambda s: None)),
        jitter=lambda: 1.0,  # full jitter drawn at its ceiling: deterministic sleeps
        now=lambda: NOW,
    )
    options.update(kw)
    return HttpClient(BASE, **options)


OK = {"incidents": [], "more": False}


def test_stream_stats_as_metadata():
    s = StreamStats(requests=3, retries=1, throttled=1, not_modified=0, bytes=10, records=7)
    assert s.as_metadata() == {"requests": 3, "retries": 1, "throttled": 1, "not_modified": 0, "bytes": 10, "records": 7}


def test_session_is_pooled_with_timeout_user_agent_and_auth(rsps):
    rsps.get(f"{BASE}/incidents", json=OK)
    client = make_client(concurrency=6, timeout=12.5)
    adapter = client._session.get_adapter(BASE)
    assert adapter._pool_maxsize >= 6
    client.get("/incidents", {"a": "b"}, stream="incidents")
    client.get("/incidents", stream="incidents")
    assert len(rsps.calls) == 2
    for call in rsps.calls:
        assert call.request.req_kwargs["timeout"] == 12.5
        assert call.request.headers["Authorization"] == f"Token token={TOKEN}"
        assert call.request.headers["User-Agent"] == "incident-metrics/0.1"
    assert client.stats["incidents"].requests == 2
    assert client.stats["incidents"].bytes == 2 * len(json.dumps(OK))


def test_ca_bundle_is_sent_as_verify(rsps, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("dummy")
    rsps.get(f"{BASE}/incidents", json=OK)
    make_client(ca_bundle=str(bundle)).get("/incidents", stream="incidents")
    assert rsps.calls[0].request.req_kwargs["verify"] == str(bundle)


def test_5xx_retried_with_exponential_backoff_then_success(rsps):
    rsps.get(f"{BASE}/incidents", status=503, json={"error": {"message": "boom", "code": 2000}})
    rsps.get(f"{BASE}/incidents", status=502, body="bad gateway")
    rsps.get(f"{BASE}/incidents", json=OK)
    sleeps: list[float] = []
    client = make_client(sleeps)
    resp = client.get("/incidents", stream="incidents")
    assert resp.json() == OK
    assert len(rsps.calls) == 3
    assert sleeps == [0.5, 1.0]
    st = client.stats["incidents"]
    assert (st.requests, st.retries, st.throttled) == (3, 2, 0)


def test_full_jitter_scales_the_capped_ceiling(rsps):
    rsps.get(f"{BASE}/x", status=500)
    sleeps: list[float] = []
    client = make_client(sleeps, jitter=lambda: 0.25, backoff_base=1.0, backoff_cap=4.0, max_retries=5)
    with pytest.raises(ApiError) as err:
        client.get("/x", stream="s")
    # ceilings 1, 2, 4, 4, 4 (capped), each times the jitter draw 0.25
    assert sleeps == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert len(rsps.calls) == 6
    assert "failed after 6 attempts" in str(err.value) and "HTTP 500" in str(err.value)
    assert not isinstance(err.value, RetryBudgetExceeded)


def test_408_retried(rsps):
    rsps.get(f"{BASE}/x", status=408)
    rsps.get(f"{BASE}/x", json=OK)
    sleeps: list[float] = []
    make_client(sleeps).get("/x", stream="s")
    assert len(rsps.calls) == 2 and sleeps == [0.5]


def test_429_honours_pagerduty_ratelimit_reset(rsps):
    rsps.get(
        f"{BASE}/incidents", status=429,
        headers={"ratelimit-limit": "960", "ratelimit-remaining": "0", "ratelimit-reset": "20"},
        json={"error": {"message": "Rate Limit Exceeded", "code": 2020}},
    )
    rsps.get(f"{BASE}/incidents", json=OK)
    sleeps: list[float] = []
    client = make_client(sleeps)
    client.get("/incidents", stream="incidents")
    assert sleeps == [20.0]
    assert len(rsps.calls) == 2
    assert client.stats["incidents"].throttled == 1
    assert client.stats["incidents"].retries == 1


def test_429_without_headers_falls_back_to_backoff(rsps):
    rsps.get(f"{BASE}/x", status=429, body="")
    rsps.get(f"{BASE}/x", json=OK)
    sleeps: list[float] = []
    make_client(sleeps).get("/x", stream="s")
    assert sleeps == [0.5]


def test_retry_after_seconds_honoured(rsps):
    rsps.get(f"{BASE}/x", status=503, headers={"Retry-After": "7"})
    rsps.get(f"{BASE}/x", json=OK)
    sleeps: list[float] = []
    make_client(sleeps).get("/x", stream="s")
    assert sleeps == [7.0]


def test_retry_after_http_date_honoured(rsps):
    when = datetime.fromtimestamp(NOW + 90, tz=timezone.utc)
    rsps.get(f"{BASE}/x", status=429, headers={"Retry-After": format_datetime(when, usegmt=True)})
    rsps.get(f"{BASE}/x", json=OK)
    sleeps: list[float] = []
    make_client(sleeps).get("/x", stream="s")
    assert sleeps == [90.0]


def test_github_primary_rate_limit_403_waits_until_epoch_reset(rsps):
    rsps.get(
        f"{BASE}/repos/a/b", status=403,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-limit": "5000", "x-ratelimit-reset": str(int(NOW + 42))},
        json={"message": "API rate limit exceeded for installation ID 1."},
    )
    rsps.get(f"{BASE}/repos/a/b", json={"id": 1}, headers={"x-ratelimit-remaining": "4999",
                                                            "x-ratelimit-reset": str(int(NOW + 3600))})
    sleeps: list[float] = []
    client = make_client(sleeps, source="GitHub", token_env_var="GITHUB_TOKEN", url_env_var="GITHUB_API_URL")
    assert client.get("/repos/a/b", stream="repos").json() == {"id": 1}
    assert sleeps == [42.0]
    assert client.stats["repos"].throttled == 1


def test_github_secondary_rate_limit_without_retry_after_waits_a_minute(rsps):
    rsps.get(f"{BASE}/x", status=403, headers={"x-ratelimit-remaining": "4000"},
             json={"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."})
    rsps.get(f"{BASE}/x", status=429, headers={"Retry-After": "3"},
             json={"message": "You have exceeded a secondary rate limit."})
    rsps.get(f"{BASE}/x", json=[])
    sleeps: list[float] = []
    client = make_client(sleeps)
    client.get("/x", stream="s")
    assert sleeps == [60.0, 3.0]  # a minute when the secondary limit says nothing, else its Retry-After
    assert client.stats["s"].throttled == 2


def test_wait_longer_than_allowed_fails_clearly(rsps):
    rsps.get(f"{BASE}/x", status=429, headers={"Retry-After": "7200"})
    with pytest.raises(ApiError, match=r"asks to wait 7200s"):
        make_client([], max_rate_limit_wait=600).get("/x", stream="s")


def test_html_200_retried_then_success(rsps):
    rsps.get(f"{BASE}/incidents", body="<!DOCTYPE html><html><body>502 proxy</body></html>",
             content_type="text/html")
    rsps.get(f"{BASE}/incidents", json=OK)
    sleeps: list[float] = []
    client = make_client(sleeps)
    assert client.get("/incidents", stream="incidents").json() == OK
    assert len(rsps.calls) == 2 and sleeps == [0.5]


def test_truncated_json_retried_then_success(rsps):
    rsps.get(f"{BASE}/incidents", body='{"incidents": [{"id": "P1"', content_type="application/json")
    rsps.get(f"{BASE}/incidents", json=OK)
    sleeps: list[float] = []
    make_client(sleeps).get("/incidents", stream="incidents")
    assert len(rsps.calls) == 2 and sleeps == [0.5]


def test_html_200_forever_fails_with_clear_message(rsps):
    rsps.get(f"{BASE}/incidents", body="<html>maintenance</html>", content_type="text/html")
    with pytest.raises(ApiError) as err:
        make_client([], max_retries=2).get("/incidents", {"since": "x"}, stream="incidents")
    msg = str(err.value)
    assert msg.startswith("PagerDuty GET /incidents failed after 3 attempts")
    assert "HTML page" in msg and "since" not in msg
    assert len(rsps.calls) == 3


@pytest.mark.parametrize("exc", [requests.ConnectionError("reset by peer"), requests.exceptions.ReadTimeout("slow"),
                                 requests.exceptions.ChunkedEncodingError("cut")])
def test_transport_errors_retried(rsps, exc):
    rsps.get(f"{BASE}/x", body=exc)
    rsps.get(f"{BASE}/x", json=OK)
    sleeps: list[float] = []
    client = make_client(sleeps)
    client.get("/x", stream="s")
    assert len(rsps.calls) == 2 and sleeps == [0.5]
    assert client.stats["s"].requests == 2 and client.stats["s"].retries == 1


def test_retry_budget_exhaustion_names_endpoint_and_failure(rsps):
    rsps.get(f"{BASE}/incidents", status=503)
    client = make_client([], retry_budget=3, max_retries=10)
    with pytest.raises(RetryBudgetExceeded) as err:
        client.get("/incidents", {"offset": 0}, stream="incidents")
    msg = str(err.value)
    assert "retry budget of 3 retries" in msg
    assert "GET /incidents kept failing (last: HTTP 503)" in msg
    assert "/incidents: 4x HTTP 503" in msg
    assert len(rsps.calls) == 4  # first try + 3 retries
    assert err.value.endpoint == "/incidents"


def test_retry_budget_is_shared_across_calls(rsps):
    rsps.get(f"{BASE}/a", status=500)
    rsps.get(f"{BASE}/a", json=OK)
    rsps.get(f"{BASE}/b", status=500)
    client = make_client([], retry_budget=2)
    client.get("/a", stream="s")  # one retry used
    with pytest.raises(RetryBudgetExceeded, match=r"GET /b kept failing"):
        client.get("/b", stream="s")
    # /a spent one retry, /b the second; its next failure finds the budget empty
    assert [c.request.url for c in rsps.calls] == [f"{BASE}/a", f"{BASE}/a", f"{BASE}/b", f"{BASE}/b"]


def test_401_not_retried_and_names_env_vars(rsps):
    rsps.get(f"{BASE}/incidents", status=401, json={"error": {"message": "Authentication failed", "code": 2006}})
    with pytest.raises(AuthError) as err:
        make_client([]).get("/incidents", {"limit": 100}, stream="incidents")
    assert len(rsps.calls) == 1
    assert str(err.value) == (
        "PagerDuty rejected the API token (HTTP 401) at /incidents: check PAGERDUTY_API_TOKEN "
        "(and PAGERDUTY_API_URL: EU accounts use https://api.eu.pagerduty.com)."
    )
    assert err.value.status == 401


def test_non_rate_limit_403_not_retried(rsps):
    rsps.get(f"{BASE}/services", status=403, json={"error": {"message": "Access Denied", "code": 2010}},
             headers={"X-Request-Id": "req-77"})
    with pytest.raises(AuthError) as err:
        make_client([]).get("/services", stream="services")
    assert len(rsps.calls) == 1
    assert "HTTP 403" in str(err.value) and "PAGERDUTY_API_TOKEN" in str(err.value) and "req-77" in str(err.value)


def test_other_4xx_raise_api_error_with_server_detail(rsps):
    rsps.get(f"{BASE}/incidents", status=400, json={"error": {
        "message": "Arguments Caused Error", "code": 2002,
        "errors": ["Offset+limit exceeds maximum allowed value of 10000."]}})
    with pytest.raises(ApiError) as err:
        make_client([]).get("/incidents", {"offset": 9950}, stream="incidents")
    assert len(rsps.calls) == 1
    assert str(err.value) == ("PagerDuty GET /incidents failed with HTTP 400: Arguments Caused Error: code 2002: "
                              "Offset+limit exceeds maximum allowed value of 10000.")
    assert not isinstance(err.value, AuthError)


def test_retry_warning_logs_request_id(rsps, caplog):
    rsps.get(f"{BASE}/x", status=500, headers={"X-Request-Id": "abc-123"})
    rsps.get(f"{BASE}/x", json=OK)
    with caplog.at_level(logging.WARNING, logger="incident_metrics.sources"):
        make_client([]).get("/x", stream="s")
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage() == "PagerDuty GET /x: HTTP 500 [request id abc-123]; retry 1/6 in 0.50s"


def test_following_a_url_on_another_host_is_refused(rsps):
    with pytest.raises(ApiError, match="another host"):
        make_client([]).get("https://evil.example.test/steal", stream="s")
    assert len(rsps.calls) == 0


def _echo_token_body():
    return json.dumps({"error": {"message": f"bad token {TOKEN}", "errors": [f"Token token={TOKEN}"]}})


ERROR_PATHS = {
    "401": dict(status=401, body=_echo_token_body()),
    "403": dict(status=403, body=_echo_token_body()),
    "400": dict(status=400, body=_echo_token_body()),
    "500-forever": dict(status=500, body=_echo_token_body()),
    "html-forever": dict(status=200, body=f"<html>{TOKEN}</html>"),
    "reset-forever": dict(body=requests.ConnectionError(f"reset with {TOKEN}")),
    "timeout-forever": dict(body=requests.exceptions.ReadTimeout("read timed out")),
    "budget": dict(status=503, body=_echo_token_body()),
}


@pytest.mark.parametrize("case", sorted(ERROR_PATHS))
def test_token_absent_from_errors_logs_and_reprs(rsps, caplog, case):
    rsps.get(f"{BASE}/incidents", **ERROR_PATHS[case])
    client = make_client([], max_retries=2, retry_budget=1 if case == "budget" else 50)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(ApiError) as err:
            client.get("/incidents", {"since": "2024-01-01T00:00:00Z"}, stream="incidents")
    texts = [str(err.value), repr(err.value), caplog.text, repr(client), repr(client._session.auth)]
    texts += [r.getMessage() for r in caplog.records]
    for text in texts:
        assert TOKEN not in text
    if case == "budget":
        assert isinstance(err.value, RetryBudgetExceeded)
    if case in ("401", "403"):
        assert isinstance(err.value, AuthError) and len(rsps.calls) == 1


def test_api_error_pickles():
    import pickle

    e = AuthError("m", source="GitHub", endpoint="/x", status=403, request_id="r")
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is AuthError and str(e2) == "m" and (e2.endpoint, e2.status, e2.request_id) == ("/x", 403, "r")


def test_token_bucket_paces_requests_with_fake_clock():
    clock = FakeClock()
    bucket = TokenBucket(120, clock=clock, sleep=clock.sleep)  # 2/s, burst of 2
    for _ in range(6):
        bucket.acquire()
    assert clock.sleeps == [0.5, 0.5, 0.5, 0.5]
    clock.t += 10  # idle: the bucket refills only up to its burst
    clock.sleeps.clear()
    for _ in range(3):
        bucket.acquire()
    assert clock.sleeps == [0.5]


def test_client_rate_limit_holds_60_second_window_below_limit(rsps):
    rsps.get(f"{BASE}/x", json=OK)
    clock = FakeClock()
    client = make_client(rate_per_minute=900, clock=clock, sleep=clock.sleep)
    stamps = []
    for _ in range(1000):
        client.get("/x", stream="s")
        stamps.append(clock.t)
    in_first_minute = sum(1 for t in stamps if t - stamps[0] < 60)
    assert in_first_minute <= 900 + 15  # at most the rate plus one second of burst
    assert all(s == pytest.approx(1 / 15, abs=1e-5) for s in clock.sleeps)
    assert len(clock.sleeps) == 1000 - 15


def test_github_low_remaining_paces_requests_to_the_reset(rsps):
    clock = FakeClock()
    reset = NOW + 100
    rsps.get(f"{BASE}/x", json=[], headers={"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4",
                                           "x-ratelimit-reset": str(int(reset))})
    client = make_client(clock=clock, sleep=clock.sleep)
    for _ in range(4):
        client.get("/x", stream="s")
    # after the first answer, 100 s remain for 4 requests: one every 25 s
    assert clock.sleeps == [25.0, 25.0, 25.0]


def test_github_remaining_zero_on_200_waits_for_reset(rsps):
    clock = FakeClock()
    rsps.get(f"{BASE}/x", json=[], headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW + 30))})
    rsps.get(f"{BASE}/x", json=[], headers={"x-ratelimit-remaining": "5000", "x-ratelimit-reset": str(int(NOW + 3600))})
    client = make_client(clock=clock, sleep=clock.sleep)
    client.get("/x", stream="s")
    client.get("/x", stream="s")
    client.get("/x", stream="s")
    assert clock.sleeps == [30.0]


def test_concurrency_is_bounded_by_the_semaphore(rsps):
    state = {"now": 0, "max": 0}
    lock = threading.Lock()

    def slow(request):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.02)
        with lock:
            state["now"] -= 1
        return 200, {}, json.dumps(OK)

    rsps.add_callback(responses.GET, f"{BASE}/x", callback=slow)
    client = make_client(concurrency=2)
    threads = [threading.Thread(target=client.get, args=("/x",), kwargs={"stream": "s"}) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(rsps.calls) == 8
    assert state["max"] == 2
    assert client.stats["s"].requests == 8


# GitLab: RateLimit-Remaining / RateLimit-Reset, where -Reset is an epoch (PagerDuty's is seconds)

def test_ratelimit_quota_headers_429_without_retry_after_waits_until_the_epoch_reset(rsps):
    rsps.get(f"{BASE}/x", status=429, body="Retry later\n",
             headers={"RateLimit-Limit": "2000", "RateLimit-Remaining": "0", "RateLimit-Reset": str(int(NOW + 42))})
    rsps.get(f"{BASE}/x", json=[], headers={"RateLimit-Limit": "2000", "RateLimit-Remaining": "1999",
                                           "RateLimit-Reset": str(int(NOW + 60))})
    sleeps: list[float] = []
    client = make_client(sleeps, quota_headers="ratelimit", delta_reset_header=None)
    client.get("/x", stream="s")
    assert sleeps == [42.0] and client.stats["s"].throttled == 1


def test_ratelimit_quota_headers_are_not_read_as_seconds_and_pace_when_low(rsps):
    clock = FakeClock()
    # remaining > 0 on a 429 without Retry-After: an epoch reset is not "wait 1.7 billion seconds"
    rsps.get(f"{BASE}/y", status=429, body="Retry later\n",
             headers={"RateLimit-Remaining": "5", "RateLimit-Reset": str(int(NOW + 60))})
    rsps.get(f"{BASE}/y", json=[])
    client = make_client(clock=clock, sleep=clock.sleep, quota_headers="ratelimit", delta_reset_header=None)
    client.get("/y", stream="s")
    assert clock.sleeps == [0.5]  # the first backoff step, as for a 429 that says nothing
    # low remaining quota paces the next requests to the epoch reset: 4 left for 100 s
    rsps.get(f"{BASE}/z", json=[], headers={"RateLimit-Limit": "2000", "RateLimit-Remaining": "4",
                                           "RateLimit-Reset": str(int(NOW + 100))})
    clock.sleeps.clear()
    for _ in range(4):
        client.get("/z", stream="s")
    assert clock.sleeps == [25.0, 25.0, 25.0]
    # and PagerDuty's client still reads its ratelimit-reset as seconds on a 429
    assert make_client()._server_wait(type("R", (), {"headers": {"ratelimit-reset": "20"}, "status_code": 429})()) == 20.0
