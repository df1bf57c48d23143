"""Benchmarks: backfill, two incremental runs (a night, a week), marts + statistics, and the usual alternatives.

    .venv/bin/python benchmarks/run.py [--sizes small,medium,large] [--latency-ms 50] [--rate-limit 960]

For each size it generates an organisation, serves it from the emulator (in this process) with a
fixed latency per request and PagerDuty's rate limit, and runs every measured step in a child
process (``_pipeline_step.py``, ``_extract.py``) so that each peak RSS is the step's own. Writes
``docs/benchmarks.md`` (``--out``) and the raw numbers as JSON beside it (``--json``).

Not part of ``make test``: ``make bench`` runs it. The small size takes about two minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulator.faults import Faults  # noqa: E402
from emulator.generator import GeneratorConfig, generate_organisation  # noqa: E402
from emulator.server import EmulatorServer  # noqa: E402

PD_TOKEN = "bench-pd-token"
GH_TOKEN = "bench-gh-token"
OVERVIEW_DROPS = {"notify_log_entry", "annotate_log_entry"}
TAP_PYTHON = Path(os.environ.get("TAP_PAGERDUTY_PYTHON", "/tmp/tapvenv/bin/python"))
GITHUB_HOURLY = 5000  # GitHub's primary limit for a token; the emulator's is raised so runs finish


@dataclass
class Size:
    name: str
    config: GeneratorConfig
    rate_limit: int | None = None  # None = --rate-limit; large may raise it (the ratio to the floor counts)
    run_tap: bool = True
    target_slice_incidents: int = 150  # incidents in the slice the alternatives extract
    # Runs of each build from the same state (medians reported). The small size's builds take about
    # a second and meet no target: one run keeps `make bench` under two minutes.
    build_repeats: int = 3


def sizes(end: date) -> dict[str, Size]:
    common = dict(months=24, end=end, future_days=8, deploys_per_repo_week=0.5)
    return {
        "small": Size("small", GeneratorConfig(n_teams=10, incidents_per_team_month=12.5, **common), build_repeats=1),
        "medium": Size("medium", GeneratorConfig(n_teams=50, incidents_per_team_month=42, **common), run_tap=False),
        "large": Size("large", GeneratorConfig(n_teams=200, incidents_per_team_month=52,
                                               **{**common, "deploys_per_repo_week": 4.8}),
                      rate_limit=3000, run_tap=False),
    }


def child(args: list[str], out: Path, timeout: float | None = None, python: str | None = None) -> dict:
    cmd = [python or sys.executable, *args, str(out)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    elapsed = time.perf_counter() - started
    if not out.exists():
        return {"error": (proc.stderr or proc.stdout)[-800:], "wall_seconds": elapsed}
    data = json.loads(out.read_text())
    data["child_seconds"] = elapsed
    return data


def route_counts(stats: dict) -> dict[str, int]:
    return {k: v["requests"] for k, v in stats["by_route"].items()}


def windows(since: datetime, until: datetime, days: int = 180) -> list[tuple[datetime, datetime]]:
    out = []
    while since < until:
        out.append((since, min(since + timedelta(days=days), until)))
        since = out[-1][1]
    return out


def pages(times: list[datetime], plan) -> int:
    return sum(max(1, math.ceil(sum(1 for t in times if a <= t < b) / 100)) for a, b in plan)


def minimum_requests(org, meta: dict, *, graphql: bool) -> dict[str, int]:
    m = meta["raw/pagerduty_incidents"]
    since, until = datetime.fromisoformat(m["window_start"]), datetime.fromisoformat(m["window_end"])
    plan = windows(since, until)
    now = org.now
    incidents = sorted(i.created_at for i in org.incidents if i.created_at <= now)
    entries = sorted(e.created_at for i in org.incidents for e in i.log_entries
                     if e.type not in OVERVIEW_DROPS and e.created_at <= now)
    repos = sorted(r.full_name for r in org.repos if r.accessible)
    deps: dict[str, int] = {}
    for d in org.deployments:
        if since <= d.created_at <= now:
            deps[d.repo] = deps.get(d.repo, 0) + 1
    prs: dict[str, int] = {}
    for p in org.pulls:
        if p.closed_at is not None and p.closed_at <= now:
            prs[p.repo] = prs.get(p.repo, 0) + 1
    minimum = {
        "pagerduty GET /teams": max(1, math.ceil(len(org.teams) / 100)),
        "pagerduty GET /services": max(1, math.ceil(len(org.services) / 100)),
        "pagerduty GET /incidents": pages(incidents, plan),
        "pagerduty GET /log_entries": pages(entries, plan),
    }
    deployment_pages = sum(max(1, math.ceil(deps.get(r, 0) / 100)) for r in repos)
    if graphql:
        # GraphQL: 100 deployments a page, each with its statuses, one page per 100 a repo.
        minimum["github POST /graphql"] = deployment_pages
    else:
        # REST: the deployments pages, then one statuses request per deployment (no bulk endpoint).
        minimum["github GET /repos/{owner}/{repo}/deployments"] = deployment_pages
        minimum["github GET /repos/{owner}/{repo}/deployments/{deployment_id}/statuses"] = sum(deps.values())
    minimum["github GET /repos/{owner}/{repo}/pulls"] = sum(max(1, math.ceil(prs.get(r, 0) / 100)) for r in repos)
    return minimum


def bench_size(size: Size, args, work: Path) -> dict:
    out: dict = {"size": size.name}
    t0 = time.perf_counter()
    org = generate_organisation(args.seed, size.config)
    out["generate_seconds"] = time.perf_counter() - t0
    now = org.now
    visible = [i for i in org.incidents if i.created_at <= now]
    out["org"] = {
        "teams": len(org.teams), "repos": len(org.repos), "incidents": len(visible),
        "log_entries": sum(1 for i in visible for e in i.log_entries if e.created_at <= now),
        "overview_log_entries": sum(1 for i in visible for e in i.log_entries if e.created_at <= now and e.type not in OVERVIEW_DROPS),
        "deployments": sum(1 for d in org.deployments if d.created_at <= now),
        "pull_requests": sum(1 for p in org.pulls if p.created_at <= now),
    }
    print(f"[{size.name}] generated {out['org']} in {out['generate_seconds']:.1f} s", flush=True)
    rate = size.rate_limit or args.rate_limit
    out["emulator_rate_limit_per_minute"] = rate
    work.mkdir(parents=True, exist_ok=True)
    ownership = work / "ownership.yaml"
    ownership.write_text(org.ownership_yaml())
    faults = Faults(latency_ms=args.latency_ms)
    srv = EmulatorServer(org, port=0, pagerduty_token={PD_TOKEN, " " + PD_TOKEN}, github_token=GH_TOKEN,
                         rate_limit_per_minute=rate, github_rate_limit_per_hour=10_000_000, faults=faults).start()
    try:
        cfg = {"pd_url": srv.pagerduty_url, "gh_url": srv.github_url, "pd_token": PD_TOKEN, "gh_token": GH_TOKEN,
               "ownership": str(ownership), "data_dir": str(work / "data"),
               # The client's bucket stays below the server's limit (900 of 960, as in production).
               "client_rate_per_minute": int(rate * 900 / 960)}
        (work / "cfg.json").write_text(json.dumps(cfg))

        # 1. full backfill
        srv.reset_stats()
        backfill = child(["benchmarks/_pipeline_step.py", "ingest", str(work / "cfg.json")], work / "backfill.json")
        stats = srv.stats()
        out["backfill"] = summarise_run(backfill, stats, rate)
        if backfill.get("success"):
            served = route_counts(stats)
            minimum = minimum_requests(org, backfill["metadata"], graphql="github POST /graphql" in served)
            out["backfill"]["minimum"] = minimum
            out["backfill"]["served"] = served
            out["backfill"]["list_requests"] = sum(served.get(r, 0) for r in minimum)
            out["backfill"]["minimum_total"] = sum(minimum.values())
            out["backfill"]["per_stream_ratio"] = {r: served.get(r, 0) / m for r, m in minimum.items() if m}
            # Nothing hidden: every request outside the list routes above (single-record reads and so on).
            out["backfill"]["other_requests"] = {r: n for r, n in served.items() if r not in minimum}
        print(f"[{size.name}] backfill: {json.dumps({k: v for k, v in out['backfill'].items() if k not in ('served', 'minimum', 'steps')})}",
              flush=True)

        # 1b. the first build of staging, marts and statistics on the backfilled warehouse
        out["marts_first"] = build_step(work, "marts_first", args.marts_repeats or size.build_repeats)
        print(f"[{size.name}] build (first): {json.dumps(out['marts_first'].get('runs'))}", flush=True)

        # 2. incremental nights: the clock moves a day, then a week (the generator made that data
        # ahead of time), so the cost of a night can be set against the new records it brings.
        for key, days in (("night", 1), ("week", 7)):
            before = org.now
            srv.advance(timedelta(days=days))
            after = org.now
            srv.reset_stats()
            night = child(["benchmarks/_pipeline_step.py", "ingest", str(work / "cfg.json")], work / f"{key}.json")
            stats = srv.stats()
            out[key] = summarise_run(night, stats, rate)
            out[key]["days"] = days
            out[key]["new_records"] = {
                "incidents": sum(1 for i in org.incidents if before < i.created_at <= after),
                "overview_log_entries": sum(1 for i in org.incidents for e in i.log_entries
                                            if before < e.created_at <= after and e.type not in OVERVIEW_DROPS),
                "deployments": sum(1 for d in org.deployments if before < d.created_at <= after),
                "pull_requests": sum(1 for p in org.pulls if p.closed_at is not None and before < p.closed_at <= after),
            }
            out[key]["served"] = route_counts(stats)
            print(f"[{size.name}] {key}: {json.dumps({k: v for k, v in out[key].items() if k not in ('steps',)})}",
                  flush=True)

        # 3. marts and statistics alone on the warehouse, after the nights (staging re-parses only
        # what the nights changed: the nightly cost)
        out["marts"] = build_step(work, "marts", args.marts_repeats or size.build_repeats)
        print(f"[{size.name}] build (night): {json.dumps(out['marts'].get('runs'))}", flush=True)

        # 4. the same extraction the usual ways, on a slice of history
        out["alternatives"] = alternatives(size, org, srv, args, work, rate)
    finally:
        srv.stop()
    out["emulator_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return out


def build_step(work: Path, name: str, repeats: int = 1) -> dict:
    """The build after the raw tables changed, ``repeats`` times from the same state: staging (typing
    the raw rows) in one process, then the marts SQL and the statistics in another, so that each
    phase has its own wall time and peak RSS; "marts + statistics" is the second alone, as the
    issue words its target. Every run but the last works on a fresh copy of the warehouse, the last
    on the warehouse itself (which it moves on). Each phase's figures are those of its run with the
    median wall time, its peak RSS the highest of all runs; every run's times are kept. One run is
    one sample of a noisy machine: on the 2-core VM of docs/benchmarks.md the same build varies by
    +/-25 % from one hour to the next."""
    warehouse = work / "data" / "warehouse.duckdb"
    trial = work / "trial"
    runs = []
    for i in range(repeats):
        cfg_path = work / "cfg.json"
        if i < repeats - 1:
            shutil.rmtree(trial, ignore_errors=True)
            (trial / "data").mkdir(parents=True)
            for f in warehouse.parent.glob(warehouse.name + "*"):  # the file and a WAL beside it, if any
                shutil.copyfile(f, trial / "data" / f.name)
            cfg_path = trial / "cfg.json"
            cfg_path.write_text(json.dumps(json.loads((work / "cfg.json").read_text()) | {"data_dir": str(trial / "data")}))
        run = {"staging": child(["benchmarks/_pipeline_step.py", "staging", str(cfg_path)], work / f"{name}-{i + 1}-staging.json")}
        if run["staging"].get("success"):
            run["marts"] = child(["benchmarks/_pipeline_step.py", "marts", str(cfg_path)], work / f"{name}-{i + 1}-marts.json")
        runs.append(run)
        if not all(r.get("success") for r in run.values()):
            break
    shutil.rmtree(trial, ignore_errors=True)
    failed = [r for run in runs for r in run.values() if not r.get("success")]
    if failed:
        return {"success": False, "runs": [],
                "errors": failed[0].get("errors") or failed[0].get("error") or "failed without a message"}

    def median_run(phase: str) -> dict:
        return sorted((run[phase] for run in runs), key=lambda r: r["wall_seconds"])[(len(runs) - 1) // 2]

    staging, marts = median_run("staging"), median_run("marts")
    marts_sql, statistics = marts_split(marts["steps"])
    return {
        "success": True, "errors": None,
        "staging": {"wall_seconds": staging["wall_seconds"], "cpu_seconds": staging["cpu_seconds"],
                    "maxrss_mb": max(run["staging"]["maxrss_mb"] for run in runs), "steps": staging["steps"]},
        "marts": {"wall_seconds": marts["wall_seconds"], "cpu_seconds": marts["cpu_seconds"],
                  "maxrss_mb": max(run["marts"]["maxrss_mb"] for run in runs),
                  "marts_sql_seconds": marts_sql, "statistics_seconds": statistics, "steps": marts["steps"]},
        "runs": [{"staging_wall_seconds": run["staging"]["wall_seconds"], "marts_wall_seconds": run["marts"]["wall_seconds"],
                  "marts_cpu_seconds": run["marts"]["cpu_seconds"],
                  "staging_process_seconds": run["staging"]["process_seconds"],
                  "marts_process_seconds": run["marts"]["process_seconds"]} for run in runs],
    }


def marts_split(steps: dict[str, float]) -> tuple[float, float]:
    """Seconds of the marts phase's Dagster steps: the marts SQL, the statistics."""
    statistics = sum(v for k, v in steps.items() if "statistic" in k)
    return sum(steps.values()) - statistics, statistics


def summarise_run(run: dict, stats: dict, rate: int) -> dict:
    steps = run.get("steps", {})
    pd_seconds = sum(v for k, v in steps.items() if "pagerduty" in k)
    gh_seconds = sum(v for k, v in steps.items() if "github" in k)
    pd_requests = stats["by_service"].get("pagerduty", {}).get("requests", 0)
    gh_requests = stats["by_service"].get("github", {}).get("requests", 0)
    pd_floor = pd_requests / (rate / 60.0)
    gh_floor = max(0, gh_requests - GITHUB_HOURLY) / (GITHUB_HOURLY / 3600.0)
    records = sum(m.get("api_records", 0) for m in run.get("metadata", {}).values())
    return {
        "success": run.get("success"), "errors": run.get("errors") or run.get("error"),
        "wall_seconds": run.get("wall_seconds"), "maxrss_mb": run.get("maxrss_mb"),
        "requests": stats["requests"], "pd_requests": pd_requests, "gh_requests": gh_requests,
        "rate_limited": stats["rate_limited"],
        "pd_seconds": pd_seconds, "gh_seconds": gh_seconds,
        "pd_floor_seconds": pd_floor, "gh_floor_seconds": gh_floor,
        "floor_seconds": max(pd_floor, gh_floor),
        "records": records,
        "records_per_second": records / run["wall_seconds"] if run.get("wall_seconds") else None,
        "steps": steps,
    }


def alternatives(size: Size, org, srv, args, work: Path, rate: int) -> dict:
    now = org.now
    visible = [i for i in org.incidents if i.created_at <= now]
    per_day = max(1e-9, len(visible) / (size.config.months * 30.4))
    days = max(1, round(size.target_slice_incidents / per_day))
    until = now.replace(hour=0, minute=0, second=0, microsecond=0)
    since = until - timedelta(days=days)
    expected = sum(1 for i in visible if since <= i.created_at < until)
    tls = EmulatorServer(org, port=0, pagerduty_token=PD_TOKEN, github_token=GH_TOKEN, tls=True,
                         rate_limit_per_minute=rate, faults=Faults(latency_ms=args.latency_ms)).start()
    out: dict = {"slice_days": days, "slice_incidents": expected}
    try:
        cfg = {"pd_url": srv.pagerduty_url, "pd_tls_url": tls.pagerduty_url, "ca_file": tls.ca_file,
               "pd_token": PD_TOKEN, "since": since.isoformat(), "until": until.isoformat()}
        (work / "slice.json").write_text(json.dumps(cfg))
        for mode in ("ours", "official", "tap"):
            if mode == "tap" and not size.run_tap:
                out[mode] = {"skipped": "run on the small size only (its N+1 cost is the same per incident)"}
                continue
            if mode == "tap" and not TAP_PYTHON.exists():
                out[mode] = {"skipped": f"no tap-pagerduty venv at {TAP_PYTHON}: python3 -m venv /tmp/tapvenv && "
                                        "/tmp/tapvenv/bin/pip install tap-pagerduty==0.3.0"}
                continue
            server = tls if mode == "official" else srv
            server.reset_stats()
            res = child(["benchmarks/_extract.py", mode, str(work / "slice.json")], work / f"extract_{mode}.json",
                        timeout=900, python=str(TAP_PYTHON) if mode == "tap" else None)
            st = server.stats()
            res["served_requests"] = st["by_service"].get("pagerduty", {}).get("requests", 0)
            res["served_routes"] = route_counts(st)
            res["rate_limited"] = st["rate_limited"]
            out[mode] = res
            print(f"[{size.name}] {mode}: {json.dumps({k: v for k, v in res.items() if k != 'served_routes'})}", flush=True)
    finally:
        tls.stop()
    return out


# ------------------------------------------------------------------------------------------ report


def fmt(x, digits=1) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return f"{x:,}"


def render(run: dict) -> str:
    """The results page of one benchmark run: ``run`` as ``main`` writes it to the JSON file."""
    results, started, elapsed = run["sizes"], datetime.fromisoformat(run["started"]), run["elapsed_seconds"]
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    lines = [
        "# Benchmarks",
        "",
        "Regenerated by `make bench` (= `.venv/bin/python benchmarks/run.py`); do not edit by hand.",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC; total benchmark time {elapsed / 60:.1f} min",
        f"- command: `{run['command']}`",
        f"- machine: {cpu}, {os.cpu_count()} cores, {mem_gb:.0f} GB RAM, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}",
        f"- emulator: in the benchmark's process, {run['latency_ms']:g} ms added to every request, PagerDuty rate limit "
        f"{run['rate_limit']}/min per token unless the size says otherwise (the client's token bucket is set to 900/960 "
        "of it); GitHub's hourly quota raised so runs finish (the GitHub floor below uses the real 5,000/h).",
        f"- the emulator and the pipeline share the machine's {os.cpu_count()} cores: every number includes the "
        "emulator's own CPU time (rendering JSON for each page).",
        "- each step runs in its own process; peak RSS is that process's own VmHWM.",
        "- GitLab's request cost (backfill against the minimum, a night with no new data): the last section, "
        "written by `benchmarks/gitlab.py`.",
    ]
    repeats = sorted({len(r[key]["runs"]) for r in results for key in ("marts_first", "marts")
                      if isinstance(r.get(key), dict) and r[key].get("runs")})
    if repeats:
        times = " or ".join("once" if n == 1 else f"{n} times" for n in repeats)
        lines.append(f"- each build (staging, then marts + statistics, in two processes) runs {times} from the same "
                     "state, all runs but the last on a copy of the warehouse (see the runs rows): the table shows each "
                     "phase's run with the median wall time and the highest peak RSS. Wall times leave out the process "
                     "start-up (imports and the Dagster instance, 3-4 s).")
    lines.append("")
    lines += ["## Results", "",
              "| | " + " | ".join(r["size"] for r in results) + " |",
              "|---|" + "---|" * len(results)]

    def row(label, f):
        vals = []
        for r in results:
            try:
                vals.append(f(r))
            except (KeyError, TypeError, ZeroDivisionError):
                vals.append("n/a")
        lines.append(f"| {label} | " + " | ".join(vals) + " |")

    row("teams / repos", lambda r: f"{r['org']['teams']} / {r['org']['repos']}")
    row("incidents / log entries (overview)", lambda r: f"{fmt(r['org']['incidents'])} / {fmt(r['org']['log_entries'])} "
        f"({fmt(r['org']['overview_log_entries'])})")
    row("deployments / pull requests", lambda r: f"{fmt(r['org']['deployments'])} / {fmt(r['org']['pull_requests'])}")
    row("emulator PagerDuty limit (req/min)", lambda r: fmt(r["emulator_rate_limit_per_minute"]))
    row("**backfill** list requests / minimum (ratio)", lambda r: f"{fmt(r['backfill']['list_requests'])} / "
        f"{fmt(r['backfill']['minimum_total'])} (**{r['backfill']['list_requests'] / r['backfill']['minimum_total']:.3f}**)")
    row("worst stream ratio", lambda r: "{:.3f} ({})".format(*max((v, k.split(' ', 2)[-1]) for k, v in r['backfill']['per_stream_ratio'].items())))
    row("other requests (single records)", lambda r: fmt(sum(r["backfill"]["other_requests"].values())))
    row("backfill wall time (all streams)", lambda r: f"{fmt(r['backfill']['wall_seconds'])} s")
    row("PagerDuty: requests / wall / floor (ratio)", lambda r: f"{fmt(r['backfill']['pd_requests'])} / "
        f"{fmt(r['backfill']['pd_seconds'])} s / {fmt(r['backfill']['pd_floor_seconds'])} s "
        f"(**{r['backfill']['pd_seconds'] / r['backfill']['pd_floor_seconds']:.2f}**)")
    row("GitHub: requests / wall / floor at 5,000/h", lambda r: f"{fmt(r['backfill']['gh_requests'])} / "
        f"{fmt(r['backfill']['gh_seconds'])} s / {fmt(r['backfill']['gh_floor_seconds'])} s")
    row("429s served during the backfill", lambda r: fmt(r["backfill"]["rate_limited"]))
    row("records per second (backfill)", lambda r: fmt(r["backfill"]["records_per_second"], 0))
    row("backfill peak RSS", lambda r: f"{fmt(r['backfill']['maxrss_mb'], 0)} MB")
    row("**night**: new incidents / log entries / deployments", lambda r: " / ".join(
        fmt(r["night"]["new_records"][k]) for k in ("incidents", "overview_log_entries", "deployments")))
    row("night: PagerDuty / GitHub requests", lambda r: f"{fmt(r['night']['pd_requests'])} / {fmt(r['night']['gh_requests'])}")
    row("night: wall time", lambda r: f"{fmt(r['night']['wall_seconds'])} s")
    row("**a week at once**: new incidents / log entries / deployments", lambda r: " / ".join(
        fmt(r["week"]["new_records"][k]) for k in ("incidents", "overview_log_entries", "deployments")))
    row("week: PagerDuty / GitHub requests", lambda r: f"{fmt(r['week']['pd_requests'])} / {fmt(r['week']['gh_requests'])}")
    row("week: wall time", lambda r: f"{fmt(r['week']['wall_seconds'])} s")
    for key, label in (("marts_first", "first build (after the backfill)"), ("marts", "nightly (after the week)")):
        row(f"{label}: staging, typing the raw rows (wall, peak RSS)", lambda r, key=key: f"{fmt(r[key]['staging']['wall_seconds'])} s, "
            f"{fmt(r[key]['staging']['maxrss_mb'], 0)} MB")
        row(f"{label}: **marts + statistics** alone: wall (marts SQL / statistics steps)", lambda r, key=key:
            f"**{fmt(r[key]['marts']['wall_seconds'])} s** ({fmt(r[key]['marts']['marts_sql_seconds'])} / "
            f"{fmt(r[key]['marts']['statistics_seconds'])} s)")
        row(f"{label}: marts + statistics: peak RSS", lambda r, key=key: f"{fmt(r[key]['marts']['maxrss_mb'], 0)} MB")
        row(f"{label}: each run, staging + marts wall seconds", lambda r, key=key: ", ".join(
            f"{fmt(x['staging_wall_seconds'])} + {fmt(x['marts_wall_seconds'])}" for x in r[key]["runs"]))
    row("**alternatives** on a slice: days / incidents", lambda r: f"{r['alternatives']['slice_days']} / "
        f"{fmt(r['alternatives']['slice_incidents'])}")

    def alt(r, mode):
        a = r["alternatives"][mode]
        if "skipped" in a:
            return "skipped"
        if a.get("error"):
            return f"failed: {a['error'][:80]}"
        return f"{fmt(a['served_requests'])} req, {fmt(a['wall_seconds'])} s, {fmt(a.get('incidents'))} incidents"

    row("ours (incidents + log-entry feed)", lambda r: alt(r, "ours"))
    row("official `pagerduty` client, sequential, N+1", lambda r: alt(r, "official"))
    row("tap-pagerduty 0.3.0", lambda r: alt(r, "tap"))
    row("**speed-up** ours vs official (wall / requests)", lambda r: "{:.1f}x / {:.1f}x".format(
        r["alternatives"]["official"]["wall_seconds"] / r["alternatives"]["ours"]["wall_seconds"],
        r["alternatives"]["official"]["served_requests"] / r["alternatives"]["ours"]["served_requests"]))
    row("speed-up ours vs tap (wall / requests)", lambda r: "{:.1f}x / {:.1f}x".format(
        r["alternatives"]["tap"]["wall_seconds"] / r["alternatives"]["ours"]["wall_seconds"],
        r["alternatives"]["tap"]["served_requests"] / r["alternatives"]["ours"]["served_requests"]))
    row("generation / emulator peak RSS", lambda r: f"{fmt(r['generate_seconds'])} s / {fmt(r['emulator_maxrss_mb'], 0)} MB")
    failures = "; ".join(f"{r['size']} {part}: {r[part].get('errors')}" for r in results
                         for part in ("backfill", "marts_first", "night", "week", "marts") if isinstance(r.get(part), dict) and r[part].get("errors"))
    lines += ["", f"Failures: {failures or 'none'}.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="small")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--rate-limit", type=int, default=960)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--marts-repeats", type=int, default=None,
                        help="runs of each staging + marts + statistics build, from the same state (medians "
                             "reported); default: 1 for the small size, 3 for the others")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--json", default=None, help="raw results (default: benchmarks/results.json)")
    parser.add_argument("--notes", default=str(ROOT / "benchmarks" / "notes.md"),
                        help="hand-written analysis appended to the generated page")
    parser.add_argument("--render-only", action="store_true",
                        help="re-render --out from the JSON results of an earlier run (no measurement)")
    args = parser.parse_args()
    json_path = Path(args.json or ROOT / "benchmarks" / "results.json")
    if args.render_only:
        write_page(render(json.loads(json_path.read_text())), args)
        return 0
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    run = {"started": started.isoformat(), "elapsed_seconds": None,
           "command": " ".join([".venv/bin/python", "benchmarks/run.py", *sys.argv[1:]]),
           "latency_ms": args.latency_ms, "rate_limit": args.rate_limit, "sizes": []}
    # History ends 8 days ago; the 8 generated days after it are the two incremental runs (a night,
    # then a week), which must not run past the real clock the pipeline reads.
    end = date.today() - timedelta(days=8)
    table = sizes(end)
    with tempfile.TemporaryDirectory(prefix="incident-metrics-bench-") as tmp:
        for name in args.sizes.split(","):
            run["sizes"].append(bench_size(table[name.strip()], args, Path(tmp) / name.strip()))
            run["elapsed_seconds"] = time.perf_counter() - t0
            json_path.write_text(json.dumps(run, indent=1, default=str))
    write_page(render(run), args)
    return 0


GITLAB_BEGIN, GITLAB_END = "<!-- benchmarks/gitlab.py: begin -->", "<!-- benchmarks/gitlab.py: end -->"


def write_page(text: str, args) -> None:
    notes = Path(args.notes)
    if notes.exists():
        text += "\n" + notes.read_text()
    out = Path(args.out)
    old = out.read_text() if out.exists() else ""
    if GITLAB_BEGIN in old and GITLAB_END in old:  # benchmarks/gitlab.py's section is its own: kept
        text += "\n" + old[old.index(GITLAB_BEGIN):old.index(GITLAB_END) + len(GITLAB_END)] + "\n"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    raise SystemExit(main())
