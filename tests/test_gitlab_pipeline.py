"""GitLab through the whole pipeline, on a mixed organisation (40 % of its repos on GitLab, in a
nested group): the delivery metrics of GitLab-hosted repos against the generator's ground truth,
held to the same tolerance as GitHub's; what a night costs; a backfill; SIGKILL mid-stream."""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from pipelines import warehouse as wh
from pipelines.connectors import connector
from pipelines.connectors.gitlab.client import GitLabClient
from pipelines.ingest.runner import BackfillRange, SyncSettings, run_stream
from tests.incremental_helpers import (
    GL_TOKEN,
    diff_states,
    materialize_all,
    small_org,
    start_emulator,
    warehouse_state,
    write_ownership,
)
from tests.test_crash_safety import Child, _bookmarks, _check_consistent, _rows

UTC = timezone.utc
# change failure rate, measured against the definition applied to the generated records: the marts
# fold re-triggers (a re-trigger's incident is not counted apart), the plain list here does not
TOLERANCE = 0.02


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    org = small_org(seed=13, n_teams=3, months=6, future_days=4, deploys_per_repo_week=2.0, gitlab_share=0.4)
    srv = start_emulator(org)
    tmp = tmp_path_factory.mktemp("gitlab")
    ownership = write_ownership(org, tmp)
    srv.reset_stats()
    materialize_all(srv, tmp / "data", ownership)
    first = srv.stats()
    yield srv, org, tmp, ownership, first
    srv.stop()


def _projects(org) -> list[str]:
    return sorted(r.full_name for r in org.repos if r.host == "gitlab")


def _truth(org, now: datetime) -> dict[tuple[str, str], dict[str, float]]:
    """Per (host, team), from the generated organisation itself (each repo deploys one service; the
    team is its owner on the deploy day): successful production deployments, the share followed by
    an incident on the service within 24 hours (the change failure rate's definition), and the median
    merge-to-production time of merged pull / merge requests."""
    host = {r.full_name: r.host for r in org.repos}
    service_of = {name: s for s in org.services for name in s.repos}
    incidents: dict[str, list[datetime]] = {}
    for i in org.incidents:
        if i.created_at <= now and i.resolve_reason != "merge_resolve_reason":
            incidents.setdefault(i.service_id, []).append(i.created_at)
    out: dict[tuple[str, str], dict[str, list]] = {}
    succeeded: dict[str, list[tuple[datetime, str]]] = {}
    for d in org.deployments:
        success = next((s.created_at for s in d.statuses if s.state == "success" and s.created_at <= now), None)
        if d.environment != "production" or success is None or d.created_at > now:
            continue
        team = service_of[d.repo].owner_on(d.created_at.date())
        row = out.setdefault((host[d.repo], team), {"deployments": [], "caused": [], "lead": []})
        row["deployments"].append(d.id)
        # a failed change: an incident on the repo's service within 24 hours of the success
        row["caused"].append(any(success <= t < success + timedelta(hours=24)
                                 for t in incidents.get(service_of[d.repo].id, [])))
        succeeded.setdefault(d.repo, []).append((success, team))
    for p in org.pulls:
        if p.merged_at is None or p.merged_at > now:
            continue
        later = sorted(x for x in succeeded.get(p.repo, []) if x[0] >= p.merged_at)
        if later:
            out[(host[p.repo], later[0][1])]["lead"].append((later[0][0] - p.merged_at).total_seconds())
    return {k: {"deployments": len(v["deployments"]), "cfr": sum(v["caused"]) / len(v["caused"]),
                "lead": statistics.median(v["lead"]) if v["lead"] else None} for k, v in out.items()}


def _measured(db) -> dict[tuple[str, str], dict[str, float]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        deployments = con.execute("""
            select source, team_key, count(*), avg(caused_incident::int) from marts.fct_deployments
            where is_production and is_successful and team_key is not null group by all""").fetchall()
        lead = dict(((s, t), m) for s, t, m in con.execute("""
            select source, team_key, median(seconds_lead_time) from marts.fct_pull_requests
            where seconds_lead_time is not null and team_key is not null group by all""").fetchall())
    finally:
        con.close()
    return {(s, t): {"deployments": n, "cfr": cfr, "lead": lead.get((s, t))} for s, t, n, cfr in deployments}


def test_gitlab_hosted_teams_have_the_ground_truths_delivery_metrics_as_github_hosted_ones_do(mixed):
    srv, org, tmp, _, _ = mixed
    truth, measured = _truth(org, org.now), _measured(tmp / "data" / "warehouse.duckdb")
    assert {s for s, _ in truth} == {"github", "gitlab"} and set(measured) == set(truth)
    for key, t in truth.items():
        m = measured[key]
        assert m["deployments"] == t["deployments"], key  # deploy frequency: exact
        assert m["cfr"] == pytest.approx(t["cfr"], abs=TOLERANCE), (key, m, t)
        assert m["lead"] == pytest.approx(t["lead"], abs=1.0), key  # merge to production: the median
    # (one tolerance for both hosts: GitLab's records give the metrics GitHub's give)


def test_the_report_shows_the_source_mix(mixed):
    from pipelines.report import data as report_data
    from pipelines.report.render import render_html

    srv, org, tmp, _, _ = mixed
    con = duckdb.connect(str(tmp / "data" / "warehouse.duckdb"), read_only=True)
    try:
        loaded = report_data.load(con, datetime.now(UTC))
        counts = dict(((s, w), n) for s, w, n in con.execute("""
            select source, 'production deployments', count(*) from marts.fct_deployments
            where is_production and is_successful group by 1""").fetchall())
    finally:
        con.close()
    mix = {(r.source, r.what): (r.label, r.records) for r in loaded.sources.itertuples()}
    assert mix[("gitlab", "production deployments")] == ("GitLab", counts[("gitlab", "production deployments")])
    assert mix[("github", "production deployments")] == ("GitHub", counts[("github", "production deployments")])
    assert {what for _, what in mix} == {"incidents", "production deployments", "merged changes"}
    page = render_html(loaded)
    n = counts[("gitlab", "production deployments")]
    assert f'data-summary="source_gitlab_production_deployments" data-value="{n}">{n:,}</span>' in page
    assert "<h3>Sources</h3>" in page and "GitLab" in page


def test_gitlab_records_land_in_raw_with_their_projects(mixed):
    srv, org, tmp, _, first = mixed
    db = tmp / "data" / "warehouse.duckdb"
    projects = _projects(org)
    rows = _rows(db, "raw.gitlab_deployments")
    visible = [d for d in org.deployments if d.repo in projects and d.created_at <= org.now]
    assert sorted(int(r[0]) for r in rows) == sorted(d.id for d in visible)
    assert {r[1] for r in rows} == set(projects)
    assert {r[1] for r in _rows(db, "raw.gitlab_environments")} == set(projects)
    merged = [p for p in org.pulls if p.repo in projects and p.merged_at and p.merged_at <= org.now]
    assert len(_rows(db, "raw.gitlab_merge_requests")) == len(merged)
    routes = first["by_route"]
    # a first load: a page of 100 a request, per project and stream
    assert routes["gitlab GET /projects/{project}/environments"]["requests"] == len(projects)
    pages = sum(-(-sum(d.repo == p for d in visible) // 100) or 1 for p in projects)
    assert routes["gitlab GET /projects/{project}/deployments"]["requests"] == pages
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("select count(*) from marts.fct_deployments where source = 'gitlab'").fetchone()[0] == len(visible)
        sync = con.execute("select stream, sum(requests) from raw.sync_runs where source = 'gitlab' group by 1 order by 1").fetchall()
    finally:
        con.close()
    assert [s for s, _ in sync] == ["deployments", "environments", "merge_requests"]


def test_a_backfill_reads_each_project_in_its_range_into_the_same_rows(mixed, tmp_path):
    srv, org, tmp, _, _ = mixed
    projects, now = _projects(org), org.now
    con = wh.connect(tmp_path / "warehouse.duckdb")
    wh.ensure_schemas(con)
    client = GitLabClient(srv.gitlab_url, GL_TOKEN)
    rng = BackfillRange.parse("2000-01-01", None, now=now, window_days=7)
    for name in ("deployments", "merge_requests"):
        results = run_stream(con, client, connector("gitlab").stream(name), run_id="backfill", now=now,
                             settings=SyncSettings(), repos=projects, backfill=rng, echo=lambda line: None)
        assert results[f"gitlab_{name}"].quarantined == 0
    assert con.execute("select count(*) from raw.sync_state where source = 'gitlab'").fetchone() == (0,)  # no bookmark moved
    night = duckdb.connect(str(tmp / "data" / "warehouse.duckdb"), read_only=True)
    try:
        for table in ("gitlab_deployments", "gitlab_merge_requests"):
            ours = con.execute(f"select id, repo, payload::varchar from raw.{table} order by 1").fetchall()
            ids = [r[0] for r in ours]
            nights = night.execute(f"select id, repo, payload::varchar from raw.{table} where id in "
                                   f"(select unnest(?::varchar[])) order by 1", [ids]).fetchall()
            assert ours == nights and len(ours) == night.execute(f"select count(*) from raw.{table}").fetchone()[0]
    finally:
        night.close()
        con.close()
    assert client.stats["deployments"].requests == sum(-(-sum(d.repo == p and d.created_at <= now for d in org.deployments)
                                                            // 100) or 1 for p in projects)


def test_a_night_without_new_data_costs_one_request_per_project_per_stream_then_a_night_reads_the_new(mixed):
    srv, org, tmp, ownership, _ = mixed
    db = tmp / "data" / "warehouse.duckdb"
    projects = _projects(org)
    tables = ("raw.gitlab_deployments", "raw.gitlab_environments", "raw.gitlab_merge_requests", "marts.fct_deployments")
    before_night = {t: _rows(db, t) for t in tables}
    srv.reset_stats()
    materialize_all(srv, tmp / "data", ownership)
    assert {t: _rows(db, t) for t in tables} == before_night  # nothing new: not a row rewritten
    routes = srv.stats()["by_route"]
    for stream in ("deployments", "environments", "merge_requests"):
        assert routes[f"gitlab GET /projects/{{project}}/{stream}"]["requests"] == len(projects), stream
    before = len(_rows(db, "raw.gitlab_deployments"))
    srv.advance(timedelta(days=4))  # the generator's future days come into view
    try:
        materialize_all(srv, tmp / "data", ownership)
        visible = [d for d in org.deployments if d.repo in projects and d.created_at <= org.now]
        assert len(visible) > before
        assert sorted(int(r[0]) for r in _rows(db, "raw.gitlab_deployments")) == sorted(d.id for d in visible)
        statuses = {int(r[0]): r[2] for r in _rows(db, "raw.gitlab_deployments")}
        assert all(srv.gitlab.deployment_view(d, org.now)["status"] in str(statuses[d.id]) for d in visible)
    finally:
        srv.advance(timedelta(days=-4))


def test_sigkill_in_a_gitlab_stream_leaves_nothing_and_the_rerun_equals_a_clean_run(mixed, tmp_path):
    srv, org, _, ownership, _ = mixed
    data = tmp_path / "killed"
    db = data / "warehouse.duckdb"
    child = Child(srv, data, ownership, tmp_path, pause="stage:gitlab_deployments#2")
    child.wait_for(child.ready.exists, "the second GitLab project's deployments")
    child.kill()
    _check_consistent(db)
    assert _rows(db, "raw.gitlab_deployments") == []
    assert not [k for k in _bookmarks(db) if k[0] == "gitlab"]
    child = Child(srv, data, ownership, tmp_path, pause="upsert:gitlab_merge_requests")
    child.wait_for(child.ready.exists, "the GitLab merge requests transaction")
    child.kill()
    _check_consistent(db)
    assert _rows(db, "raw.gitlab_merge_requests") == []
    assert not [k for k in _bookmarks(db) if k[0] == "gitlab" and k[1].startswith("merge_requests:")]
    materialize_all(srv, data, ownership)
    materialize_all(srv, tmp_path / "clean", ownership)
    killed, clean = warehouse_state(db), warehouse_state(tmp_path / "clean" / "warehouse.duckdb")
    assert diff_states(killed, clean) == {}
    assert killed["raw.gitlab_deployments"] and killed["marts.fct_deployments"]


class _Listed:
    """A client whose deployments are a fixed list (what a GitLab might send), for the record rules."""

    concurrency = 1
    stats: dict = {}

    def __init__(self, records):
        self.records = records

    def deployments(self, project, updated_after=None, updated_before=None):
        return list(self.records)


def test_bad_gitlab_records_are_quarantined_with_their_reason(tmp_path):
    good = {"id": 1, "iid": 1, "status": "success", "created_at": "2026-01-01T10:00:00Z",
            "updated_at": "2026-01-01T10:05:00Z", "environment": {"id": 5, "name": "production"},
            "deployable": {"id": 10, "finished_at": "2026-01-01T10:05:00Z"}}
    no_env = {**good, "id": 2, "environment": None}
    odd_status = {**good, "id": 3, "status": "exploded"}
    naive_time = {**good, "id": 4, "created_at": "2026-01-01T10:00:00"}
    con = wh.connect(tmp_path / "warehouse.duckdb")
    wh.ensure_schemas(con)
    now = datetime(2026, 2, 1, tzinfo=UTC)
    results = run_stream(con, _Listed([good, no_env, odd_status, naive_time]), connector("gitlab").stream("deployments"),
                         run_id="r1", now=now, settings=SyncSettings(), repos=["acme/platform/api"])
    assert results["gitlab_deployments"].quarantined == 3
    assert con.execute("select id, repo from raw.gitlab_deployments").fetchall() == [("1", "acme/platform/api")]
    rejected = con.execute("select source, stream, rule, reason from quarantine.rejected_records order by rule").fetchall()
    assert [(s, st, rule) for s, st, rule, _ in rejected] == [
        ("gitlab", "deployments", "missing_field"), ("gitlab", "deployments", "naive_timestamp"),
        ("gitlab", "deployments", "unknown_value")]
    assert "environment.name is missing" in rejected[0][3] and "'exploded'" in rejected[2][3]
    assert con.execute("select high_water_mark from raw.sync_state where source = 'gitlab'").fetchall() == [
        (datetime(2026, 1, 1, 10, 5, tzinfo=UTC),)]  # the good record's updated_at
    con.close()
