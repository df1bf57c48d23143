"""Every fault mode of the emulator against the whole pipeline (Dagster materialize into a real
DuckDB file, over real sockets): either the warehouse ends exactly as in a fault-free run, or the
run fails with a message that names what to fix and leaves nothing half-written.

Comparison: every table of raw, staging, marts and quarantine except raw.sync_runs, without the
columns that name the run (run_id, fetched_at, rejected_at; sync_state.updated_at).
"""

from __future__ import annotations

import copy
import re
import shutil
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from emulator.faults import FaultRule, Faults
from emulator.generator import GeneratorConfig, generate_organisation
from emulator.server import EmulatorServer

PD_TOKEN = "faults-pd-token-51c3"
GH_TOKEN = "faults-gh-token-a9e0"
SKIP_ASSETS = {"reports/baseline_report", "reports/analyst_snapshot"}  # not warehouse tables; slow to render
RUN_COLUMNS = {"run_id", "fetched_at", "rejected_at"}
CLIENT_TIMEOUT = 0.5  # seconds: the hang faults outlast it
PORT = re.compile(r"127\.0\.0\.1:\d+")
DEPLOYMENTS_ROUTE = "github POST /graphql"  # deployments and their statuses come through GraphQL


@pytest.fixture(scope="module")
def org():
    return generate_organisation(5, GeneratorConfig(n_teams=2, months=3, deploys_per_repo_week=1.0))


def _selection():
    from pipelines.definitions import all_assets

    keys = [k for a in all_assets for k in a.keys if k.to_user_string() not in SKIP_ASSETS]
    return all_assets, dg.AssetSelection.assets(*keys)


def serve(org, faults: Faults | None = None, **kw) -> EmulatorServer:
    return EmulatorServer(org, port=0, pagerduty_token=PD_TOKEN, github_token=GH_TOKEN, faults=faults,
                          github_rate_limit_per_hour=100_000, **kw).start()


def run(srv: EmulatorServer, data_dir: Path, org, *, github_concurrency: int = 4) -> dg.ExecuteInProcessResult:
    from pipelines.connectors.github.resource import GitHubResource
    from pipelines.connectors.gitlab.resource import GitLabResource
    from pipelines.connectors.pagerduty.resource import PagerDutyResource
    from pipelines.resources import OwnershipResource, WarehouseResource

    ownership = data_dir.parent / "ownership.yaml"
    if not ownership.exists():
        ownership.parent.mkdir(parents=True, exist_ok=True)
        ownership.write_text(org.ownership_yaml())
    assets, selection = _selection()
    return dg.materialize(
        assets,
        selection=selection,
        resources={
            "pagerduty": PagerDutyResource(api_url=srv.pagerduty_url, api_token=PD_TOKEN, timeout_seconds=CLIENT_TIMEOUT),
            "github": GitHubResource(api_url=srv.github_url, token=GH_TOKEN, timeout_seconds=CLIENT_TIMEOUT,
                                     concurrency=github_concurrency),
            "gitlab": GitLabResource(api_url=srv.gitlab_url),
            "ownership": OwnershipResource(path=str(ownership)),
            "warehouse": WarehouseResource(data_dir=str(data_dir), history_days=120),
        },
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def tables(data_dir: Path) -> dict[str, list]:
    con = duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)
    try:
        names = con.execute(
            "select schema_name, table_name from duckdb_tables() where schema_name in "
            "('raw', 'staging', 'intermediate', 'marts', 'quarantine') and table_name <> 'sync_runs' order by 1, 2").fetchall()
        out = {}
        for schema, table in names:
            cols = [c for (c,) in con.execute(
                "select column_name from duckdb_columns() where schema_name = ? and table_name = ? order by column_index",
                [schema, table]).fetchall()
                    if c not in RUN_COLUMNS and not (table == "sync_state" and c == "updated_at")]
            select = ", ".join(f'"{c}"' for c in cols)
            rows = con.execute(f"select {select} from {schema}.{table}").fetchall()
            # Links in the payloads carry the emulator's port, which differs between servers.
            out[f"{schema}.{table}"] = sorted(
                (tuple(PORT.sub("127.0.0.1:PORT", v) if isinstance(v, str) else v for v in row) for row in rows), key=repr)
        return out
    finally:
        con.close()


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    parts = []
    for event in result.all_events:
        if event.is_step_failure:
            err = event.event_specific_data.error
            while err is not None:
                parts.append(err.message)
                err = err.cause
    return "\n".join(parts)


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.event_specific_data.materialization.asset_key.to_user_string().replace("/", ".")
            for e in result.get_asset_materialization_events()}


@pytest.fixture(scope="module")
def baseline(org, tmp_path_factory):
    """The fault-free warehouse; one synced 30 days earlier (the state before a failing run); and that
    one after a fault-free night at the full clock (what a failing run's healthy assets must match)."""
    tmp = tmp_path_factory.mktemp("baseline")
    srv = serve(org)
    try:
        full = run(srv, tmp / "full" / "data", org)
        assert full.success, failure_text(full)
        now = srv.now()
        srv.set_now(now - timedelta(days=30))
        early = run(srv, tmp / "early" / "data", org)
        assert early.success, failure_text(early)
        srv.set_now(now)
        shutil.copytree(tmp / "early", tmp / "incremental")
        incremental = run(srv, tmp / "incremental" / "data", org)
        assert incremental.success, failure_text(incremental)
    finally:
        srv.stop()
    full_tables, early_tables = tables(tmp / "full" / "data"), tables(tmp / "early" / "data")
    incremental_tables = tables(tmp / "incremental" / "data")
    assert full_tables["raw.pagerduty_incidents"] and full_tables["raw.github_deployments"]
    assert len(early_tables["raw.pagerduty_incidents"]) < len(full_tables["raw.pagerduty_incidents"])
    assert full_tables["quarantine.rejected_records"] == []
    return {"full": full_tables, "early": early_tables, "incremental": incremental_tables,
            "early_dir": tmp / "early" / "data"}


def gh(**kw) -> FaultRule:
    return FaultRule(service="github", **kw)


# Groups of fault modes that run together (each on its own routes, so they do not mask one another):
# name -> a factory of the Faults that one run must get through. GitHub deployments and their
# statuses are read through POST /graphql, one request per repo here (6 repos, fewer than 100
# deployments each); faults on one route count that route's requests, retries included.
RECOVERABLE = {
    "latency+5xx-bursts+408": lambda: Faults(latency_ms=2, jitter_ms=10, seed=3, rules=[
        FaultRule("status", route="/incidents", status=503, count=3),
        FaultRule("status", route="/log_entries", status=408, start=2, count=1),
        FaultRule("status", route="/services", status=500, count=2),
        gh(kind="status", route="/graphql", status=502, start=2, count=3),
        gh(kind="status", route="/pulls", status=408, count=1)]),
    "connection-reset+hang-past-timeout": lambda: Faults(rules=[
        FaultRule("reset", route="/log_entries", start=2, count=2),
        FaultRule("hang", route="/incidents", count=1, seconds=1.5),
        gh(kind="reset", route="/graphql", start=3, count=1),
        gh(kind="hang", route="/graphql", start=4, count=1, seconds=1.5)]),  # the reset request's retry
    "truncated-json+html-200": lambda: Faults(rules=[
        FaultRule("truncate", route="/log_entries", start=3, count=1),
        FaultRule("short_body", route="/incidents", count=1),
        FaultRule("html", route="/teams", count=2),
        gh(kind="truncate", route="/pulls", start=2, count=1),
        gh(kind="html", route="/graphql", count=1)]),
    "duplicate-across-pages": lambda: Faults(rules=[
        FaultRule("duplicate", route="/log_entries"),
        FaultRule("duplicate", route="/incidents"),
        gh(kind="duplicate")]),
    "empty-page-more-true": lambda: Faults(rules=[
        FaultRule("empty_page", route="/log_entries", start=3, count=1),
        FaultRule("empty_page", route="/incidents", count=1)]),
    "429-with-and-without-headers+github-secondary-and-primary-limits": lambda: Faults(rules=[
        FaultRule("rate_limit", route="/log_entries", start=2, count=1, seconds=1),
        FaultRule("rate_limit_bare", route="/incidents", count=1),
        # GraphQL requests 2, 4, 6, 8 (each followed by its retry): 6 repos make 10 requests in all
        gh(kind="rate_limit", route="/graphql", start=2, count=1, seconds=1),
        gh(kind="rate_limit_bare", route="/pulls", start=3, count=1),
        gh(kind="gh_secondary", route="/graphql", start=4, count=1, seconds=1),             # with retry-after
        gh(kind="gh_secondary", route="/pulls", count=1, status=429),                       # without
        gh(kind="gh_primary", route="/graphql", start=6, count=1, seconds=1),               # 403
        gh(kind="gh_primary", route="/graphql", start=8, count=1, seconds=1, status=429)]),  # 429
}


@pytest.mark.parametrize("name", list(RECOVERABLE))
def test_recoverable_faults_end_in_the_fault_free_warehouse(name, org, baseline, tmp_path, monkeypatch):
    faults = RECOVERABLE[name]()
    sleeps: list[float] = []
    if "secondary" in name:
        # GitHub says "wait at least a minute" when a secondary limit gives no retry-after: record the
        # GitHub client's waits instead of sleeping through them.
        from pipelines.connectors.github.resource import GitHubResource

        real_client = GitHubResource.client

        def client(self):
            c = real_client(self)
            c.http._sleep = sleeps.append
            return c

        monkeypatch.setattr(GitHubResource, "client", client)
    srv = serve(org, faults)
    try:
        started = time.monotonic()
        result = run(srv, tmp_path / "data", org)
        elapsed = time.monotonic() - started
        fired = dict(srv.faults.fired)
    finally:
        srv.stop()
    assert result.success, failure_text(result)
    assert tables(tmp_path / "data") == baseline["full"]
    assert set(fired) == {r.kind for r in faults.rules}, fired  # every mode of the group fired
    assert sum(fired.values()) >= len(faults.rules)
    if "secondary" in name:
        assert 60.0 in sleeps and 1.0 in sleeps  # a minute without retry-after, else retry-after
    if "hang" in name:
        assert elapsed < 30  # the client timeout (0.5 s) cut the 3 s hangs short
    meta = {e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
            for e in result.get_asset_materialization_events()}
    retried = sum(m["api_retries"].value for m in meta.values() if "api_retries" in m)
    assert retried >= sum(1 for r in faults.rules if r.kind not in ("duplicate",)) if faults.rules else retried == 0


def _assert_nothing_half_written(result, data_dir: Path, baseline) -> dict[str, list]:
    """Each table equals the fault-free night's if its asset completed, else its state before the run."""
    after = tables(data_dir)
    done = materialized(result)
    for name, rows in after.items():
        if name in ("raw.sync_state", "quarantine.rejected_records"):
            continue
        expected = baseline["incremental"] if name in done else baseline["early"]
        assert rows == expected[name], name
    return after


def test_resource_not_accessible_is_not_retried_and_fails_naming_the_token(org, baseline, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(baseline["early_dir"], data)
    srv = serve(org, Faults(rules=[gh(kind="gh_not_accessible", route="/graphql")]))
    try:
        # one repo at a time, so the count below is exact (four in flight would each get one 403)
        result = run(srv, data, org, github_concurrency=1)
        stats = srv.stats()
    finally:
        srv.stop()
    assert not result.success
    message = failure_text(result)
    assert "GitHub refused access (HTTP 403) at /graphql" in message
    assert "Resource not accessible by integration" in message and "GITHUB_TOKEN" in message
    assert GH_TOKEN not in message
    assert stats["by_route"][DEPLOYMENTS_ROUTE]["requests"] == 1  # never retried
    after = _assert_nothing_half_written(result, data, baseline)
    assert "raw.github_deployments" not in materialized(result)
    assert "raw.pagerduty_incidents" in materialized(result)  # the other sources still synced
    gh_state = [r for r in after["raw.sync_state"] if r[1].startswith("deployments:")]
    assert gh_state == [r for r in baseline["early"]["raw.sync_state"] if r[1].startswith("deployments:")]


def test_private_repo_404_is_quarantined_with_the_token_named_and_the_rest_loads(org, baseline, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(baseline["early_dir"], data)
    hidden_org = copy.deepcopy(org)
    hidden = sorted(r.full_name for r in hidden_org.repos)[0]
    next(r for r in hidden_org.repos if r.full_name == hidden).accessible = False
    srv = serve(hidden_org)
    try:
        result = run(srv, data, hidden_org)
    finally:
        srv.stop()
    assert result.success, failure_text(result)
    after = tables(data)
    reasons = {r[1]: r[4] for r in after["quarantine.rejected_records"] if r[3] == "repo_unreadable"}
    assert set(reasons) == {"deployments", "pull_requests"}
    assert f"GitHub GET /repos/{hidden}/pulls answered 404" in reasons["pull_requests"]
    assert "GITHUB_TOKEN cannot see it" in reasons["pull_requests"]
    # GraphQL answers a repository it cannot show with HTTP 200 and a NOT_FOUND error: the same 404 to us
    assert reasons["deployments"].startswith(
        f"GitHub POST /graphql: the repository '{hidden}' does not exist, or GITHUB_TOKEN cannot see it (GraphQL "
        f"NOT_FOUND: Could not resolve to a Repository with the name '{hidden}'.)")
    for table in ("raw.github_deployments", "raw.github_pull_requests"):
        assert [r for r in after[table] if r[1] != hidden] == [r for r in baseline["incremental"][table] if r[1] != hidden]
        assert [r for r in after[table] if r[1] == hidden] == [r for r in baseline["early"][table] if r[1] == hidden]


def test_deep_pages_422_are_quarantined_clearly_and_write_nothing(org, baseline, tmp_path):
    """REST's page-number lists answer 422 beyond a depth (here: from page 1): the pull requests of
    every repo are quarantined and nothing of them is written. Deployments come through GraphQL,
    whose cursor pagination has no such limit: they load as in a fault-free night."""
    data = tmp_path / "data"
    shutil.copytree(baseline["early_dir"], data)
    srv = serve(org, Faults(github_max_page=0))
    try:
        result = run(srv, data, org)
    finally:
        srv.stop()
    assert result.success, failure_text(result)
    after = tables(data)
    reasons = [r for r in after["quarantine.rejected_records"] if r[3] == "repo_unreadable"]
    assert len(reasons) == len(org.repos) and {r[1] for r in reasons} == {"pull_requests"}
    assert all("answered 422 on page 1: pagination is limited" in r[4] and "GET /repos/acme/" in r[4] for r in reasons)
    assert after["raw.github_pull_requests"] == baseline["early"]["raw.github_pull_requests"]
    for table in ("raw.github_deployments", "raw.github_deployment_statuses"):
        assert after[table] == baseline["incremental"][table], table
    assert after["raw.pagerduty_incidents"] == baseline["incremental"]["raw.pagerduty_incidents"]


def test_more_than_10000_incidents_in_one_window_arrive_once(tmp_path):
    """A pipeline-level check of the window split: 10,500 incidents within ten days."""
    from datetime import datetime, timezone

    from emulator.model import Incident, Organisation, OwnershipPeriod, Service, Team

    now = datetime.now(timezone.utc).replace(microsecond=0)
    start = now - timedelta(days=12)
    n = 10_500
    incidents = [Incident(id=f"PX{k:06d}", number=k + 1, title=f"storm {k}", service_id="PSVCX01",
                          created_at=start + timedelta(seconds=int(k * 10 * 86_400 / n))) for k in range(n)]
    big = Organisation(teams=[Team(id="PTEAMX1", key="core", name="Core")],
                       services=[Service(id="PSVCX01", name="core-api", owners=[OwnershipPeriod("core")])],
                       incidents=incidents, now=now)
    from assets.raw import asset_of
    pagerduty_incidents = asset_of("pagerduty", "incidents")
    from pipelines.connectors.pagerduty.resource import PagerDutyResource
    from pipelines.resources import WarehouseResource

    with EmulatorServer(big, port=0, pagerduty_token=PD_TOKEN, rate_limit_per_minute=None) as srv:
        result = dg.materialize(
            [pagerduty_incidents],
            resources={"pagerduty": PagerDutyResource(api_url=srv.pagerduty_url, api_token=PD_TOKEN, rate_per_minute=100_000),
                       "warehouse": WarehouseResource(data_dir=str(tmp_path / "data"), history_days=30)},
            instance=dg.DagsterInstance.ephemeral())
        stats = srv.stats()
    assert result.success
    con = duckdb.connect(str(tmp_path / "data" / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute("select count(*), count(distinct id) from raw.pagerduty_incidents").fetchone() == (n, n)
    finally:
        con.close()
    served = stats["by_route"]["pagerduty GET /incidents"]["by_status"]
    assert list(served) == ["200"]  # never a 400 from the offset cap
    meta = result.get_asset_materialization_events()[0].event_specific_data.materialization.metadata
    assert meta["api_records"].value == n and meta["api_requests"].value == served["200"]
    assert served["200"] <= -(-n // 100) + 1 + 2 * 3  # the pages, plus the probes of at most three splits
