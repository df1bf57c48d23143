"""Fill a warehouse's ``raw.*`` tables from a generated organisation without HTTP.

    .venv/bin/python benchmarks/seed_warehouse.py --size large --out /tmp/large_wh [--seed 7]
    .venv/bin/python benchmarks/seed_warehouse.py --size large --out /tmp/large_wh --night 1

writes ``OUT/data/warehouse.duckdb``, ``OUT/ownership.yaml`` and ``OUT/cfg.json`` (the config
``benchmarks/_pipeline_step.py build OUT/cfg.json OUT/build.json`` reads), so the staging, marts
and statistics steps can be profiled on the large organisation without an emulator (about 9
minutes and 8 GB for the large size; its backfill through the emulator takes about 13 minutes and
the emulator holds 2.3 GB). ``--night 1``
then adds the next night's records to the same warehouse (the sizes generate one day past the
clock), as the nightly ingest would read them.

The records are rendered by the emulator's own renderers (``PagerDutyApi.render_incident``,
``render_entry``, ``service_obj``, ``team_obj``; ``GitHubApi.deployment_obj``, ``status_obj``,
``pull_obj``) with the same query the pipeline's clients send (``time_zone=UTC``, the overview
log-entry feed, closed pull requests), filtered to the same windows a first run reads (``now``
minus ``history_days``, records visible at the emulator clock), validated by the same rules
(``split_valid``, ``quarantine_inconsistent``) and written by the same functions
(``set_high_water_mark``, ``record_sync_run``, ``load_ownership_tables``) and the same upsert rule
(``upsert_raw`` here, one transaction per stream or repo; the ingest stages its history streams and
merges each once, ``pipelines/ingest/raw.py``, to the same rows). The
result is the warehouse a first nightly run against the emulator would leave, except for what only
HTTP produces: the host in the payloads' ``self``/``url`` links (``base_url``), the request counts
in ``raw.sync_runs`` (zero here) and the reason text of a repo the token cannot see (quarantined as
``repo_unreadable`` like the ingest does, with a reason of its own).

GitHub deployments are seeded in the REST shapes (``/deployments``, ``/statuses``): the raw tables
keep those shapes whatever API reads them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from emulator.github_api import GitHubApi  # noqa: E402
from emulator.http_common import Request, zone  # noqa: E402
from emulator.model import Organisation  # noqa: E402
from emulator.pagerduty_api import OVERVIEW_DROPS, PagerDutyApi  # noqa: E402
from pipelines import warehouse as wh  # noqa: E402
from pipelines.config import DataPaths  # noqa: E402
from pipelines.connectors.github import records as github_rules  # noqa: E402
from pipelines.connectors.pagerduty import records as pagerduty_rules  # noqa: E402
from pipelines.ingest.fetch import batches  # noqa: E402
from pipelines.ingest.raw import quarantine, upsert_raw  # noqa: E402
from pipelines.ownership import load_ownership, load_ownership_tables  # noqa: E402
from pipelines.records import parse_time, split_valid  # noqa: E402

UTC = timezone.utc
DEFAULT_BASE_URL = "http://emulator.invalid"
PAGERDUTY, GITHUB = "pagerduty", "github"
quarantine_inconsistent = pagerduty_rules.quarantine_inconsistent


def _request(base_url: str, prefix: str, path: str, query: dict[str, list[str]] | None = None) -> Request:
    """The request object the renderers read (only its base URL and query matter to them)."""
    return Request(method="GET", path=path, full_path=prefix + path, query=query or {}, headers={}, body=b"",
                   base_url=base_url.rstrip("/") + prefix)


def _floor_second(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(microsecond=0)


FINAL_DEPLOYMENT_STATES = ("success", "failure", "error", "inactive")


def _window(con, source: str, stream: str, now: datetime, history_days: int,
            rewind: timedelta) -> tuple[datetime, datetime | None]:
    """(since, bookmark) of a stream, as the ingest reads it: the bookmark minus the rewind, or
    ``history_days`` back from ``now`` on the first run."""
    hwm = wh.high_water_mark(con, source, stream)
    return ((hwm - rewind) if hwm else now - timedelta(days=history_days)), hwm


def _unfinished_deployments(con, repo: str, created_since: datetime) -> dict[str, datetime]:
    """Deployments of ``repo`` created since ``created_since`` with no final status in raw yet."""
    rows = con.execute(
        """
        select d.id, cast(d.payload ->> 'created_at' as timestamptz)
        from raw.github_deployments as d
        where d.repo = ? and cast(d.payload ->> 'created_at' as timestamptz) >= ?
          and not exists (
            select 1 from raw.github_deployment_statuses as s
            where s.repo = d.repo
              and regexp_extract(s.payload ->> 'deployment_url', '/deployments/([0-9]+)$', 1) = d.id
              and s.payload ->> 'state' in ('success', 'failure', 'error', 'inactive'))
        """,
        [repo, created_since],
    ).fetchall()
    return {str(r[0]): r[1] for r in rows}


def seed(org: Organisation, data_dir: str | Path, *, now: datetime | None = None, history_days: int = 730,
         ownership_path: str | Path | None = None, run_id: str | None = None, base_url: str = DEFAULT_BASE_URL,
         rewind: timedelta = timedelta(hours=1), unfinished_window: timedelta = timedelta(days=7),
         batch_size: int = 20_000, echo: Callable[[str], None] | None = None) -> dict[str, int]:
    """Write what a nightly run's raw steps would write for ``org`` into ``data_dir``'s warehouse.

    On an empty warehouse that is the first run: ``history_days`` back from ``now``. On a seeded one
    it is the next night (advance ``org.now`` first): each stream from its bookmark minus
    ``rewind``, incidents still open re-read, deployments without a final status re-read for
    ``unfinished_window`` after their creation, as the GitHub connector reads them; unchanged
    records keep their rows (``upsert_raw``). ``now`` is the pipeline's wall clock (default: now;
    after the emulator clock ``org.now``, as in production). The ownership file is
    ``ownership_path`` (written from ``org.ownership_yaml()`` beside ``data_dir`` when not given).
    Returns the row count of each raw table.
    """
    now = now or datetime.now(UTC)
    clock = org.now if org.now is not None else now
    run_id = run_id or f"seed-{uuid.uuid4()}"
    data_dir = Path(data_dir)
    if ownership_path is None:
        ownership_path = data_dir.parent / "ownership.yaml"
        Path(ownership_path).parent.mkdir(parents=True, exist_ok=True)
        Path(ownership_path).write_text(org.ownership_yaml(), encoding="utf-8")
    ownership = load_ownership(ownership_path)
    say = echo or (lambda _msg: None)
    pd_api = PagerDutyApi(org, lambda: clock)
    gh_api = GitHubApi(org, lambda: clock)
    utc_zone = zone("UTC")

    con = wh.connect(DataPaths(data_dir).warehouse)
    try:
        # One checkpoint at the end instead of one per 16 MB of WAL (each rewrites the id indexes
        # of the tables written so far: hours for the large organisation).
        con.execute("set checkpoint_threshold = '64GB'")
        wh.ensure_schemas(con)
        started = time.perf_counter()
        load_ownership_tables(con, ownership)

        # ---------------------------------------------------------------- PagerDuty directories
        req = _request(base_url, "/pagerduty", "/teams")
        teams = [pd_api.team_obj(t, req) for t in sorted(org.teams, key=lambda t: t.name.lower())]
        req = _request(base_url, "/pagerduty", "/services")
        services = [pd_api.service_obj(s, req, None, set(), clock)
                    for s in sorted((s for s in org.services if s.created_at is None or s.created_at <= clock),
                                    key=lambda s: s.name.lower())]
        for stream, records in (("teams", teams), ("services", services)):
            with wh.transaction(con):
                upsert_raw(con, f"pagerduty_{stream}", records, run_id=run_id, fetched_at=now)
                wh.record_sync_run(con, run_id=run_id, source=PAGERDUTY, stream=stream,
                                   stats={"records": len(records)})

        # ---------------------------------------------------------------- PagerDuty incidents
        # The clients send since floored to a whole second; the emulator shows records up to its clock.
        since, hwm = _window(con, PAGERDUTY, "incidents", now, history_days, rewind)
        since = _floor_second(since)
        req = _request(base_url, "/pagerduty", "/incidents", {"time_zone": ["UTC"]})
        listed = [i for i in pd_api.incidents if since <= i.created_at <= clock]
        listed_ids = {i.id for i in listed}
        still_open = [pd_api.inc_by_id[r[0]] for r in con.execute(
            "select id from raw.pagerduty_incidents where payload ->> 'status' <> 'resolved' "
            "and cast(payload ->> 'created_at' as timestamptz) < ? order by id", [since]).fetchall()
            if r[0] not in listed_ids and r[0] in pd_api.inc_by_id]
        n_incidents = 0
        with wh.transaction(con):
            for batch in batches(listed + still_open, batch_size):
                good, bad = split_valid([pd_api.render_incident(i, req, clock, utc_zone, set()) for i in batch],
                                        pagerduty_rules.INCIDENT)
                for r, rule, reason in bad:
                    quarantine(con, source=PAGERDUTY, stream="incidents", record=r, rule=rule, reason=reason,
                                      run_id=run_id)
                upsert_raw(con, "pagerduty_incidents", good, run_id=run_id, fetched_at=now)
                hwm = max([hwm] * (hwm is not None) + [parse_time(r["created_at"]) for r in good], default=None)
                n_incidents += len(batch)
            quarantine_inconsistent(con, run_id=run_id)
            if hwm is not None:
                wh.set_high_water_mark(con, PAGERDUTY, "incidents", hwm, run_id)
            wh.record_sync_run(con, run_id=run_id, source=PAGERDUTY, stream="incidents",
                               stats={"records": n_incidents}, window=(since, now))
        say(f"incidents: {n_incidents} in {time.perf_counter() - started:.0f} s")

        # ---------------------------------------------------------------- PagerDuty log entries
        since, hwm = _window(con, PAGERDUTY, "log_entries", now, history_days, rewind)
        since = _floor_second(since)
        req = _request(base_url, "/pagerduty", "/log_entries", {"time_zone": ["UTC"], "is_overview": ["true"]})
        entries = [e for e, t in zip(pd_api.overview_entries, pd_api.overview_times) if since <= t <= clock]
        assert all(e.type not in OVERVIEW_DROPS for e in entries)
        n_entries = 0
        with wh.transaction(con):
            for batch in batches(entries, batch_size):
                rendered = [pd_api.render_entry(e, req, clock, utc_zone, set()) for e in batch]
                good, bad = split_valid(rendered, pagerduty_rules.LOG_ENTRY)
                for r, rule, reason in bad:
                    quarantine(con, source=PAGERDUTY, stream="log_entries", record=r, rule=rule,
                                      reason=reason, run_id=run_id)
                upsert_raw(con, "pagerduty_log_entries", good, run_id=run_id, fetched_at=now)
                hwm = max([hwm] * (hwm is not None) + [parse_time(r["created_at"]) for r in good], default=None)
                n_entries += len(batch)
            quarantine_inconsistent(con, run_id=run_id)
            if hwm is not None:
                wh.set_high_water_mark(con, PAGERDUTY, "log_entries", hwm, run_id)
            wh.record_sync_run(con, run_id=run_id, source=PAGERDUTY, stream="log_entries",
                               stats={"records": n_entries}, window=(since, now))
        say(f"log entries: {n_entries} in {time.perf_counter() - started:.0f} s")

        # ---------------------------------------------------------------- GitHub
        n_deployments = n_statuses = n_pulls = 0
        for full_name in ownership.repos_of("github"):
            repo = gh_api.repos.get(full_name.lower())
            owner, name = full_name.split("/", 1)
            if repo is None or not repo.accessible:
                # The ingest quarantines a repo it cannot read (404) and loads the others.
                with wh.transaction(con):
                    for stream in ("deployments", "pull_requests"):
                        quarantine(con, source=GITHUB, stream=stream, record={"repo": full_name},
                                          rule="repo_unreadable",
                                          reason=f"GitHub repository {full_name!r}: 404 Not Found (seeded)",
                                          run_id=run_id)
                continue
            # Deployments newest first down to the window's start (or the oldest deployment still
            # without a final status), then every status of the new and the unfinished ones.
            stream = f"deployments:{full_name}"
            since, hwm = _window(con, GITHUB, stream, now, history_days, rewind)
            unfinished = _unfinished_deployments(con, full_name, hwm - unfinished_window) if hwm else {}
            scan_since = min([since, *unfinished.values()])
            req = _request(base_url, "/github", f"/repos/{owner}/{name}/deployments")
            deps = [d for d in gh_api.deployments.get(full_name.lower(), [])
                    if scan_since <= d.created_at <= clock and (d.created_at >= since or str(d.id) in unfinished)]
            good, bad = split_valid([gh_api.deployment_obj(d, req, clock) for d in deps], github_rules.DEPLOYMENT)
            wanted = {int(d["id"]) for d in good} | {int(i) for i in unfinished}
            statuses = []
            for d in sorted((d for d in gh_api.deployments.get(full_name.lower(), []) if d.id in wanted),
                            key=lambda d: d.id):
                sreq = _request(base_url, "/github", f"/repos/{owner}/{name}/deployments/{d.id}/statuses")
                visible_s = sorted(gh_api.visible_statuses(d, clock), key=lambda s: (s.created_at, s.id), reverse=True)
                statuses.extend(gh_api.status_obj(d, s, sreq) for s in visible_s)
            good_s, bad_s = split_valid(statuses, github_rules.DEPLOYMENT_STATUS)
            hwm = max([hwm] * (hwm is not None) + [parse_time(d["created_at"]) for d in good], default=None)
            with wh.transaction(con):
                for r, rule, reason in bad + bad_s:
                    quarantine(con, source=GITHUB, stream="deployments", record=r, rule=rule, reason=reason,
                                      run_id=run_id)
                upsert_raw(con, "github_deployments", good, run_id=run_id, fetched_at=now, extra={"repo": full_name})
                upsert_raw(con, "github_deployment_statuses", good_s, run_id=run_id, fetched_at=now,
                              extra={"repo": full_name})
                if hwm is not None:
                    wh.set_high_water_mark(con, GITHUB, stream, hwm, run_id)
            n_deployments += len(good)
            n_statuses += len(good_s)
            # Closed pull requests, most recently updated first, down to the window's start.
            stream = f"pull_requests:{full_name}"
            since, hwm = _window(con, GITHUB, stream, now, history_days, rewind)
            req = _request(base_url, "/github", f"/repos/{owner}/{name}/pulls")
            pulls = []
            for p in gh_api.pulls.get(full_name.lower(), []):
                if p.created_at > clock:
                    continue
                view = gh_api.pull_view(p, clock)
                if view["state"] == "closed" and view["updated_at"] >= since:
                    pulls.append(gh_api.pull_obj(p, req, clock))
            good, bad = split_valid(pulls, github_rules.PULL_REQUEST)
            hwm = max([hwm] * (hwm is not None) + [parse_time(p["updated_at"]) for p in good], default=None)
            with wh.transaction(con):
                for r, rule, reason in bad:
                    quarantine(con, source=GITHUB, stream="pull_requests", record=r, rule=rule, reason=reason,
                                      run_id=run_id)
                upsert_raw(con, "github_pull_requests", good, run_id=run_id, fetched_at=now,
                              extra={"repo": full_name})
                if hwm is not None:
                    wh.set_high_water_mark(con, GITHUB, stream, hwm, run_id)
            n_pulls += len(good)
        with wh.transaction(con):
            wh.record_sync_run(con, run_id=run_id, source=GITHUB, stream="deployments",
                               stats={"records": n_deployments})
            wh.record_sync_run(con, run_id=run_id, source=GITHUB, stream="deployment_statuses",
                               stats={"records": n_statuses})
            wh.record_sync_run(con, run_id=run_id, source=GITHUB, stream="pull_requests", stats={"records": n_pulls})
        say(f"github: {n_deployments} deployments, {n_statuses} statuses, {n_pulls} pull requests "
            f"in {time.perf_counter() - started:.0f} s")
        con.execute("checkpoint")
        return {t: wh.table_rows(con, "raw", t) for t in (
            "pagerduty_teams", "pagerduty_services", "pagerduty_incidents", "pagerduty_log_entries",
            "github_deployments", "github_deployment_statuses", "github_pull_requests", "ownership_teams",
            "ownership_service_owners", "ownership_service_repos")}
    finally:
        con.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="small", help="a size of benchmarks/run.py: small, medium, large")
    parser.add_argument("--out", required=True, help="folder for data/warehouse.duckdb, ownership.yaml, cfg.json")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--history-days", type=int, default=730)
    parser.add_argument("--night", type=int, default=0, metavar="DAYS",
                        help="on a seeded OUT: move the clock DAYS days on and seed that night's ingest")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import sizes  # benchmarks/run.py: the same organisations the benchmark backfills

    from emulator.generator import generate_organisation

    out = Path(args.out)
    exists = (out / "data" / "warehouse.duckdb").exists()
    if exists != bool(args.night):
        print(f"{out / 'data' / 'warehouse.duckdb'} {'exists: remove it first' if exists else 'missing: seed it first'}"
              + ("" if exists else " (without --night)"), file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    size = sizes(date.today() - timedelta(days=1))[args.size]
    org = generate_organisation(args.seed, size.config)
    print(f"generated {args.size} in {time.perf_counter() - t0:.0f} s", flush=True)
    ownership = out / "ownership.yaml"
    if args.night:
        org.now += timedelta(days=args.night)
    else:
        ownership.write_text(org.ownership_yaml(), encoding="utf-8")
    counts = seed(org, out / "data", ownership_path=ownership, history_days=args.history_days,
                  echo=lambda m: print(m, flush=True))
    (out / "cfg.json").write_text(json.dumps({
        "pd_url": "http://127.0.0.1:9/pagerduty", "gh_url": "http://127.0.0.1:9/github",
        "pd_token": "unused", "gh_token": "unused", "ownership": str(ownership), "data_dir": str(out / "data"),
        "history_days": args.history_days}, indent=1))
    print(json.dumps(counts, indent=1))
    print(f"seeded in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
