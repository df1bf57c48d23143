"""GitLab's request cost: a backfill against the minimum, and a night with no new data.

    .venv/bin/python benchmarks/gitlab.py [--sizes small,medium] [--latency-ms 20]

For each size an organisation with every repo on GitLab is served by the emulator (in this process,
``--latency-ms`` added to each request, gitlab.com's 2,000 requests a minute). The GitLab streams
run through the one ingest runner into a fresh DuckDB file: a backfill of all history (deployments
and merge requests, project by project) with the environments read in full, then a first night (it
sets the bookmarks), then a night with no new data. Prints the figures as a markdown table for
docs/benchmarks.md. The minimum: per project, one request per 100 deployments (at least one), one
per 100 merged merge requests (at least one), one for its environments.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulator.faults import Faults  # noqa: E402
from emulator.generator import GeneratorConfig, generate_organisation  # noqa: E402
from emulator.server import EmulatorServer  # noqa: E402
from pipelines import warehouse as wh  # noqa: E402
from pipelines.connectors import connector  # noqa: E402
from pipelines.connectors.gitlab.client import GitLabClient  # noqa: E402
from pipelines.ingest.runner import BackfillRange, SyncSettings, run_stream  # noqa: E402

TOKEN = "bench-gl-token"
SIZES = {
    "small": GeneratorConfig(n_teams=10, months=24, deploys_per_repo_week=2.0, gitlab_share=1.0),
    "medium": GeneratorConfig(n_teams=30, months=24, deploys_per_repo_week=4.0, gitlab_share=1.0),
}


def minimum(org) -> int:
    projects = [r.full_name for r in org.repos if r.host == "gitlab" and r.accessible]
    deployments = {p: 0 for p in projects}
    merged = {p: 0 for p in projects}
    for d in org.deployments:
        if d.repo in deployments and d.created_at <= org.now:
            deployments[d.repo] += 1
    for p in org.pulls:
        if p.repo in merged and p.merged_at is not None and p.merged_at <= org.now:
            merged[p.repo] += 1
    return sum(max(1, math.ceil(deployments[p] / 100)) + max(1, math.ceil(merged[p] / 100)) + 1 for p in projects)


def run(con, client, projects, now, backfill=None) -> int:
    before = sum(s.requests for s in client.stats.values())
    gitlab = connector("gitlab")
    for stream in gitlab.streams:
        rng = backfill if (backfill is not None and stream.ranged) else None
        run_stream(con, client, stream, run_id="bench", now=now, settings=SyncSettings(history_days=3650),
                   repos=projects, backfill=rng, echo=lambda line: None)
    return sum(s.requests for s in client.stats.values()) - before


def bench(name: str, cfg: GeneratorConfig, latency_ms: float) -> dict:
    org = generate_organisation(7, cfg)
    projects = sorted(r.full_name for r in org.repos if r.host == "gitlab" and r.accessible)
    with EmulatorServer(org, gitlab_token=TOKEN, faults=Faults(latency_ms=latency_ms)) as srv, \
            tempfile.TemporaryDirectory() as tmp:
        srv.start()
        con = wh.connect(Path(tmp) / "warehouse.duckdb")
        wh.ensure_schemas(con)
        client = GitLabClient(srv.gitlab_url, TOKEN)
        now = org.now
        t0 = time.perf_counter()
        backfill = run(con, client, projects, now, BackfillRange.parse("2000-01-01", None, now=now, window_days=7))
        seconds = time.perf_counter() - t0
        first_night = run(con, client, projects, now)
        quiet_night = run(con, client, projects, now)
        rows = {t: con.execute(f"select count(*) from raw.{t}").fetchone()[0]
                for t in ("gitlab_deployments", "gitlab_environments", "gitlab_merge_requests")}
        con.close()
    return {"size": name, "projects": len(projects), "rows": rows, "backfill": backfill, "minimum": minimum(org),
            "seconds": seconds, "first_night": first_night, "quiet_night": quiet_night}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="small,medium")
    p.add_argument("--latency-ms", type=float, default=20.0)
    args = p.parse_args(argv)
    results = [bench(s, SIZES[s], args.latency_ms) for s in args.sizes.split(",")]
    print("| size | projects | deployments / environments / merge requests | backfill requests / minimum (ratio) "
          "| backfill wall | night with no new data: requests (per project) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        rows = r["rows"]
        print(f"| {r['size']} | {r['projects']} | {rows['gitlab_deployments']:,} / {rows['gitlab_environments']:,} / "
              f"{rows['gitlab_merge_requests']:,} | {r['backfill']:,} / {r['minimum']:,} (**{r['backfill'] / r['minimum']:.3f}**) "
              f"| {r['seconds']:.1f} s | {r['quiet_night']:,} ({r['quiet_night'] / r['projects']:.1f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
