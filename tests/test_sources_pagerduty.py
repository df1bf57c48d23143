"""Unit tests of the PagerDuty client (pipelines/connectors/pagerduty/client.py) with `responses`."""

from __future__ import annotations

import bisect
import json
import logging
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from pipelines.connectors.pagerduty.client import PagerDutyClient
from pipelines.http import ApiError, AuthError

BASE = "https://pd.example.test"
TOKEN = "pd-T0KEN-abcdef"
UTC = timezone.utc
T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as r:
        yield r


def client(**kw) -> PagerDutyClient:
    kw.setdefault("rate_per_minute", None)
    kw.setdefault("sleep", lambda s: None)
    kw.setdefault("jitter", lambda: 1.0)
    return PagerDutyClient(BASE, TOKEN, **kw)


def query(call) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class FakePagerDuty:
    """A tiny PagerDuty list endpoint over in-memory records: since/until filter on created_at
    ([since, until)), offset/limit paging, the total probe, and the 10k offset cap as a 400."""

    def __init__(self, records: list[dict], key: str = "incidents", page_size: int | None = None):
        self.records = sorted(records, key=lambda r: (r["created_at"], r["id"]))
        self.created = [parse_ts(r["created_at"]) for r in self.records]
        self.key = key
        self.page_size = page_size  # serve fewer than `limit` per page, as the API may
        self.requests: list[dict] = []

    def __call__(self, request):
        q = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
        self.requests.append(q)
        offset, limit = int(q.get("offset", 0)), min(int(q.get("limit", 25)), 100)
        if offset + limit > 10_000:
            return 400, {}, json.dumps({"error": {"message": "Arguments Caused Error", "code": 2002,
                                                  "errors": ["Offset+limit exceeds maximum allowed value of 10000."]}})
        rows = self.records
        if "since" in q:
            since, until = parse_ts(q["since"]), parse_ts(q["until"])
            rows = rows[bisect.bisect_left(self.created, since): bisect.bisect_left(self.created, until)]
        served = self.page_size or limit
        page = rows[offset: offset + min(limit, served)]
        body = {self.key: page, "limit": limit, "offset": offset, "more": offset + len(page) < len(rows),
                "total": len(rows) if q.get("total") == "true" else None}
        return 200, {}, json.dumps(body)


def incidents_spread(n: int, start: datetime, seconds: float, prefix: str = "P") -> list[dict]:
    step = seconds / n
    return [{"id": f"{prefix}{i:06d}", "created_at": (start + timedelta(seconds=int(i * step))).strftime("%Y-%m-%dT%H:%M:%SZ")}
            for i in range(n)]


def test_pagination_230_records_offsets_0_100_200(rsps):
    fake = FakePagerDuty(incidents_spread(230, T0, 86_400))
    rsps.add_callback(responses.GET, f"{BASE}/incidents", callback=fake)
    pd = client()
    got = [r["id"] for r in pd.incidents(T0, T0 + timedelta(days=1))]
    assert got == [f"P{i:06d}" for i in range(230)]
    assert [(r["offset"], r["limit"], r.get("total")) for r in fake.requests] == [
        ("0", "100", "true"), ("100", "100", None), ("200", "100", None)]
    for r in fake.requests:
        assert (r["since"], r["until"], r["time_zone"]) == ("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", "UTC")
    assert pd.stats["incidents"].requests == 3
    assert pd.stats["incidents"].records == 230


def test_offset_advances_by_records_returned_not_limit(rsps):
    fake = FakePagerDuty(incidents_spread(150, T0, 3600), page_size=60)
    rsps.add_callback(responses.GET, f"{BASE}/incidents", callback=fake)
    got = list(client().incidents(T0, T0 + timedelta(hours=1)))
    assert len(got) == 150
    assert [r["offset"] for r in fake.requests] == ["0", "60", "120"]


def test_headers_auth_accept_and_utc_parameters(rsps):
    rsps.get(f"{BASE}/incidents", json={"incidents": [], "more": False, "total": 0})
    since = datetime(2024, 3, 1, 9, 30, 15, 500_000, tzinfo=timezone(timedelta(hours=2)))
    list(client().incidents(since, since + timedelta(hours=1)))
    (call,) = rsps.calls
    h = call.request.headers
    assert h["Authorization"] == f"Token token={TOKEN}"
    assert h["Accept"] == "application/vnd.pagerduty+json;version=2"
    q = query(call)
    # +02:00 converted to UTC with an explicit Z; since floored and until ceiled to whole seconds
    assert q["since"] == ["2024-03-01T07:30:15Z"] and q["until"] == ["2024-03-01T08:30:16Z"]
    assert q["time_zone"] == ["UTC"] and q["limit"] == ["100"] and q["total"] == ["true"]


def test_oauth_uses_bearer(rsps):
    rsps.get(f"{BASE}/teams", json={"teams": [], "more": False})
    list(client(oauth=True).teams())
    assert rsps.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("method", ["incidents", "log_entries", "analytics_incidents"])
def test_naive_datetime_rejected_before_any_request(rsps, method):
    pd = client()
    with pytest.raises(ValueError, match="naive"):
        getattr(pd, method)(datetime(2024, 1, 1), datetime(2024, 2, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="naive"):
        getattr(pd, method)(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1))
    assert len(rsps.calls) == 0


def test_windows_are_at_most_max_window_days(rsps):
    fake = FakePagerDuty([])
    rsps.add_callback(responses.GET, f"{BASE}/incidents", callback=fake)
    list(client().incidents(T0, T0 + timedelta(days=400)))
    assert [(r["since"], r["until"]) for r in fake.requests] == [
        ("2024-01-01T00:00:00Z", "2024-06-29T00:00:00Z"),
        ("2024-06-29T00:00:00Z", "2024-12-26T00:00:00Z"),
        ("2024-12-26T00:00:00Z", "2025-02-04T00:00:00Z"),
    ]
    with pytest.raises(ValueError):
        client(max_window_days=200)


def test_window_with_25000_records_is_split_and_every_record_arrives_once(rsps):
    records = incidents_spread(25_000, T0, 30 * 86_400)
    fake = FakePagerDuty(records)
    rsps.add_callback(responses.GET, f"{BASE}/incidents", callback=fake)
    pd = client(concurrency=3)
    got = [r["id"] for r in pd.incidents(T0, T0 + timedelta(days=30))]
    assert len(got) == 25_000
    assert sorted(got) == [r["id"] for r in records]
    assert all(int(r["offset"]) + int(r["limit"]) <= 10_000 for r in fake.requests)
    # 30 days cut into 4 parts of 7.5 days (ceil(25,000 / 8,000); 6,250 records each): 1 probe of
    # the whole range, then 4 probes whose first pages are data, then 62 more pages each.
    probes = [r for r in fake.requests if r.get("total") == "true"]
    assert len(probes) == 1 + 4
    assert all(r["offset"] == "0" for r in probes)
    assert sorted((r["since"], r["until"]) for r in probes[1:]) == [
        ("2024-01-01T00:00:00Z", "2024-01-08T12:00:00Z"), ("2024-01-08T12:00:00Z", "2024-01-16T00:00:00Z"),
        ("2024-01-16T00:00:00Z", "2024-01-23T12:00:00Z"), ("2024-01-23T12:00:00Z", "2024-01-31T00:00:00Z")]
    assert len(fake.requests) == 1 + 4 * 63
    assert pd.stats["incidents"].records == 25_000
    assert pd.stats["incidents"].requests == len(fake.requests)


def test_one_second_window_over_the_cap_stops_at_the_cap_with_an_error_log(rsps, caplog):
    records = [{"id": f"Q{i:05d}", "created_at": "2024-01-01T00:00:00Z"} for i in range(10_050)]
    fake = FakePagerDuty(records)
    rsps.add_callback(responses.GET, f"{BASE}/incidents", callback=fake)
    with caplog.at_level(logging.WARNING, logger="incident_metrics.sources"):
        got = list(client().incidents(T0, T0 + timedelta(seconds=1)))
    assert len(got) == 10_000
    assert all(int(r["offset"]) + int(r["limit"]) <= 10_000 for r in fake.requests)
    assert "out of reach" in caplog.text


def test_server_ignoring_sub_window_bounds_does_not_split_forever(rsps, caplog):
    # A server that answers every window with the whole day (date-only since/until).
    def day_only(request):
        q = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
        return 200, {}, json.dumps({"incidents": [{"id": f"D{int(q['offset'])}"}], "more": False,
                                    "total": 12_000 if q.get("total") == "true" else None})

    rsps.add_callback(responses.GET, f"{BASE}/incidents", callback=day_only)
    with caplog.at_level(logging.WARNING, logger="incident_metrics.sources"):
        got = list(client().incidents(T0, T0 + timedelta(days=1)))
    assert got == [{"id": "D0"}]
    assert len(rsps.calls) == 3  # the whole window and its two halves, then no further splitting
    assert "ignores the finer since/until" in caplog.text


def test_empty_page_with_more_true_is_asked_again(rsps, caplog):
    rsps.get(f"{BASE}/incidents", json={"incidents": [{"id": "A"}, {"id": "B"}], "more": True, "total": 3})
    rsps.get(f"{BASE}/incidents", json={"incidents": [], "more": True, "total": None})
    rsps.get(f"{BASE}/incidents", json={"incidents": [{"id": "C"}], "more": False})
    pd = client()
    with caplog.at_level(logging.WARNING, logger="incident_metrics.sources"):
        got = [r["id"] for r in pd.incidents(T0, T0 + timedelta(days=1))]
    assert got == ["A", "B", "C"]
    assert [query(c)["offset"] for c in rsps.calls] == [["0"], ["2"], ["2"]]
    assert "empty page with more=true at offset 2" in caplog.text
    assert pd.stats["incidents"].retries == 1


def test_persistent_empty_page_with_more_true_fails_clearly(rsps):
    rsps.get(f"{BASE}/incidents", json={"incidents": [{"id": "A"}, {"id": "B"}], "more": True, "total": 5})
    rsps.get(f"{BASE}/incidents", json={"incidents": [], "more": True, "total": None})
    with pytest.raises(ApiError, match=r"GET /incidents answered an empty page with more=true at offset 2 .* 3 times"):
        list(client().incidents(T0, T0 + timedelta(days=1)))
    assert len(rsps.calls) == 4  # the first page, then the empty one three times


def test_missing_more_field_is_treated_as_last_page(rsps):
    rsps.get(f"{BASE}/teams", json={"teams": [{"id": "T1"}]})
    assert [t["id"] for t in client().teams()] == ["T1"]
    assert len(rsps.calls) == 1


def test_duplicate_ids_across_pages_yielded_once(rsps):
    page1 = [{"id": f"I{i}"} for i in range(100)]
    page2 = [{"id": f"I{i}"} for i in range(95, 150)]  # 5 repeats: a record shifted between requests
    rsps.get(f"{BASE}/incidents", json={"incidents": page1, "more": True, "total": 150})
    rsps.get(f"{BASE}/incidents", json={"incidents": page2, "more": False})
    pd = client()
    got = [r["id"] for r in pd.incidents(T0, T0 + timedelta(days=1))]
    assert got == [f"I{i}" for i in range(150)]
    assert pd.stats["incidents"].records == 150
    assert [query(c)["offset"] for c in rsps.calls] == [["0"], ["100"]]


def test_log_entries_use_account_feed_with_overview_and_utc(rsps):
    fake = FakePagerDuty(incidents_spread(120, T0, 3600, prefix="L"), key="log_entries")
    rsps.add_callback(responses.GET, f"{BASE}/log_entries", callback=fake)
    pd = client()
    got = list(pd.log_entries(T0, T0 + timedelta(hours=1)))
    assert len(got) == 120
    assert [(r["offset"], r.get("total"), r["is_overview"], r["time_zone"]) for r in fake.requests] == [
        ("0", "true", "true", "UTC"), ("100", None, "true", "UTC")]
    assert pd.stats["log_entries"].records == 120


def test_directory_lists_page_by_offset(rsps):
    fake = FakePagerDuty([{"id": f"U{i:03d}", "created_at": "2024-01-01T00:00:00Z"} for i in range(205)], key="users")

    rsps.add_callback(responses.GET, f"{BASE}/users", callback=fake)
    pd = client()
    got = [u["id"] for u in pd.users()]
    assert got == [f"U{i:03d}" for i in range(205)]
    assert [r["offset"] for r in fake.requests] == ["0", "100", "200"]
    assert not any("since" in r or "total" in r for r in fake.requests)
    assert pd.stats["users"].records == 205


def test_analytics_cursor_pages_with_starting_after(rsps):
    rows = [{"id": f"A{i:04d}"} for i in range(2_300)]
    bodies = []

    def analytics(request):
        body = json.loads(request.body)
        bodies.append(body)
        start = 0
        if "starting_after" in body:
            start = next(i for i, r in enumerate(rows) if r["id"] == body["starting_after"]) + 1
        page = rows[start: start + body["limit"]]
        return 200, {}, json.dumps({"data": page, "first": page[0]["id"], "last": page[-1]["id"],
                                    "more": start + len(page) < len(rows), "limit": body["limit"]})

    rsps.add_callback(responses.POST, f"{BASE}/analytics/raw/incidents", callback=analytics)
    pd = client()
    got = [r["id"] for r in pd.analytics_incidents(T0, T0 + timedelta(days=10))]
    assert got == [r["id"] for r in rows]
    assert [b.get("starting_after") for b in bodies] == [None, "A0999", "A1999"]
    assert bodies[0]["filters"] == {"created_at_start": "2024-01-01T00:00:00Z", "created_at_end": "2024-01-11T00:00:00Z"}
    assert (bodies[0]["limit"], bodies[0]["time_zone"]) == (1000, "Etc/UTC")
    assert rsps.calls[0].request.headers["Content-Type"] == "application/json"
    assert pd.stats["analytics"].requests == 3 and pd.stats["analytics"].records == 2_300


def test_429_with_ratelimit_reset_is_waited_out(rsps):
    sleeps: list[float] = []
    rsps.get(f"{BASE}/incidents", status=429,
             headers={"ratelimit-limit": "960", "ratelimit-remaining": "0", "ratelimit-reset": "12"},
             json={"error": {"message": "Rate Limit Exceeded", "code": 2020}})
    rsps.get(f"{BASE}/incidents", json={"incidents": [{"id": "X"}], "more": False, "total": 1})
    pd = client(sleep=sleeps.append)
    assert [r["id"] for r in pd.incidents(T0, T0 + timedelta(days=1))] == ["X"]
    assert sleeps == [12.0]
    assert pd.stats["incidents"].throttled == 1


def test_401_stops_at_once_naming_env_vars_without_token(rsps):
    rsps.get(f"{BASE}/incidents", status=401, json={"error": {"message": "Authentication failed", "code": 2006}})
    with pytest.raises(AuthError) as err:
        list(client().incidents(T0, T0 + timedelta(days=1)))
    assert len(rsps.calls) == 1
    assert str(err.value) == ("PagerDuty rejected the API token (HTTP 401) at /incidents: check PAGERDUTY_API_TOKEN "
                              "(and PAGERDUTY_API_URL: EU accounts use https://api.eu.pagerduty.com).")
    assert TOKEN not in repr(client())


def test_default_rate_limit_is_below_pagerdutys(rsps):
    pd = PagerDutyClient(BASE, TOKEN)
    assert pd.http._bucket is not None and pd.http._bucket.rate_per_second * 60 == 900


def test_shifted_page_is_reread_so_nothing_is_skipped(rsps):
    """The list shifts by one between requests (the last record of page 1 reappears at the top of
    page 2, pushing one record past its end): the next offset accounts for the repeat."""
    ids = [f"S{i:03d}" for i in range(250)]
    rsps.get(f"{BASE}/incidents", json={"incidents": [{"id": i} for i in ids[0:100]], "more": True, "total": 250})
    rsps.get(f"{BASE}/incidents", json={"incidents": [{"id": i} for i in ids[99:199]], "more": True})
    rsps.get(f"{BASE}/incidents", json={"incidents": [{"id": i} for i in ids[199:250]], "more": False})
    got = [r["id"] for r in client().incidents(T0, T0 + timedelta(days=1))]
    assert got == ids
    assert [query(c)["offset"] for c in rsps.calls] == [["0"], ["100"], ["199"]]


def test_client_holds_a_bounded_number_of_pages_whatever_the_consumer(rsps):
    """25,000 records in four windows paged by three threads into a buffer of four pages, read by a
    consumer that stops after every page: the client never holds more than the buffer, one page per
    thread and the page being read, and the requests are those of a fast consumer."""
    import time as _time

    fake = FakePagerDuty(incidents_spread(25_000, T0, 30 * 86_400))
    rsps.add_callback(responses.GET, f"{BASE}/incidents", callback=fake)
    pd = client(concurrency=3, max_buffered_pages=4)
    got = []
    for n, r in enumerate(pd.incidents(T0, T0 + timedelta(days=30)), start=1):
        got.append(r["id"])
        if n % 100 == 0:
            _time.sleep(0.002)  # a slow consumer: the threads fill the buffer and wait
    assert len(got) == len(set(got)) == 25_000
    assert len(fake.requests) == 1 + 4 * 63  # as without backpressure
    assert 4 <= pd.buffered_pages_peak["incidents"] <= 4 + 3 + 1


def test_abandoned_iteration_stops_the_threads_and_the_requests(rsps):
    import threading

    fake = FakePagerDuty(incidents_spread(25_000, T0, 30 * 86_400))
    rsps.add_callback(responses.GET, f"{BASE}/incidents", callback=fake)
    before = threading.active_count()
    it = client(concurrency=3, max_buffered_pages=2).incidents(T0, T0 + timedelta(days=30))
    first = [next(it)["id"] for _ in range(150)]
    it.close()
    assert len(set(first)) == 150
    assert threading.active_count() == before
    # the probes, the pages read, the buffer and at most one page per thread: not the 253 of the range
    assert len(fake.requests) <= 1 + 4 + 2 + 2 + 3


def test_records_at_window_ends_come_once_when_the_server_includes_both_ends(rsps):
    """Whether since/until are inclusive is undocumented: a server returning the records at
    ``until`` in both neighbouring windows still gives every record once."""

    class Inclusive(FakePagerDuty):
        def __call__(self, request):
            q = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
            self.requests.append(q)
            offset, limit = int(q.get("offset", 0)), min(int(q.get("limit", 25)), 100)
            lo = bisect.bisect_left(self.created, parse_ts(q["since"]))
            hi = bisect.bisect_right(self.created, parse_ts(q["until"]))  # until included
            rows = self.records[lo:hi]
            page = rows[offset: offset + limit]
            return 200, {}, json.dumps({self.key: page, "more": offset + len(page) < len(rows),
                                        "total": len(rows) if q.get("total") == "true" else None})

    # 25,000 records, one every 100 s from T0: the part boundaries (every 7.5 days) each hold one
    records = [{"id": f"E{i:05d}", "created_at": (T0 + timedelta(seconds=100 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")}
               for i in range(25_000)]
    fake = Inclusive(records)
    rsps.add_callback(responses.GET, f"{BASE}/incidents", callback=fake)
    pd = client(concurrency=3)
    got = [r["id"] for r in pd.incidents(T0, T0 + timedelta(days=30))]
    assert sorted(got) == [r["id"] for r in records]
    assert pd.stats["incidents"].records == 25_000


def test_a_failing_page_in_a_thread_fails_the_iteration(rsps):
    fake = FakePagerDuty(incidents_spread(25_000, T0, 30 * 86_400))

    def flaky(request):
        if "offset=3000&" in request.url + "&":
            return 400, {}, json.dumps({"error": {"message": "Invalid Input Provided", "code": 2001}})
        return fake(request)

    rsps.add_callback(responses.GET, f"{BASE}/incidents", callback=flaky)
    with pytest.raises(ApiError, match="HTTP 400"):
        list(client(concurrency=3).incidents(T0, T0 + timedelta(days=30)))


def test_default_concurrency_follows_the_rate():
    from pipelines.connectors.pagerduty.client import default_concurrency

    assert PagerDutyClient(BASE, TOKEN).concurrency == 4  # PagerDuty's own limit (900 of 960 a minute)
    assert default_concurrency(None) == 4
    assert default_concurrency(900) == 4
    assert default_concurrency(2_812) == 12  # 46.9 a second, 0.25 s each
    assert default_concurrency(1_000_000) == 32
    assert PagerDutyClient(BASE, TOKEN, concurrency=2).concurrency == 2
