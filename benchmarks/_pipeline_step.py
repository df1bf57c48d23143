"""One pipeline step of the benchmark, in its own process (so its peak RSS is its own).

    python benchmarks/_pipeline_step.py ingest|staging|marts|build CONFIG.json OUT.json

``ingest`` materializes the raw assets (the API syncs); ``staging`` the staging assets (typing the
raw JSON: the first time in full, later only the raw rows written since, ``build_state``);
``marts`` the marts assets (the SQL marts and the statistics) on the staging tables as they are;
``build`` both, staging then marts, in one run as the nightly job does. Writes
the wall time of the materialization (from the call to its end: the process start-up, imports and
the Dagster instance, is in ``process_seconds``), Dagster step durations, asset metadata, CPU
seconds and the peak RSS to OUT.json.

A seeded warehouse (``benchmarks/seed_warehouse.py``) needs no emulator: its CONFIG has the paths.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). Not ``ru_maxrss``: Linux carries that across exec, so a
    child of the 2 GB benchmark process would report at least the parent's size at the fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> int:
    mode, config_path, out_path = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    cfg = json.loads(config_path.read_text())
    started = time.perf_counter()
    import dagster as dg

    from pipelines.connectors.github.resource import GitHubResource
    from pipelines.connectors.gitlab.resource import GitLabResource
    from pipelines.connectors.pagerduty.resource import PagerDutyResource
    from pipelines.definitions import all_assets
    from pipelines.resources import OwnershipResource, WarehouseResource

    schemas = {"ingest": {"raw"}, "staging": {"staging"}, "marts": {"marts"}, "build": {"staging", "marts"}}[mode]
    keys = [k for a in all_assets for k in a.keys if k.path[0] in schemas]
    # The Dagster instance is process start-up, as the imports are: creating the first one imports
    # Dagster's storage modules (about 0.65 s here). Each run's process pays it (Dagster's default
    # run launcher starts one per run), a fixed cost that does not grow with the data; it is in
    # process_seconds, with the imports, not in wall_seconds.
    instance = dg.DagsterInstance.ephemeral()
    imported = time.perf_counter()
    result = dg.materialize(
        all_assets,
        selection=dg.AssetSelection.assets(*keys),
        resources={
            "pagerduty": PagerDutyResource(api_url=cfg["pd_url"], api_token=cfg["pd_token"],
                                           rate_per_minute=cfg.get("client_rate_per_minute", 900)),
            "github": GitHubResource(api_url=cfg["gh_url"], token=cfg["gh_token"]),
            "gitlab": GitLabResource(api_url=cfg.get("gl_url", "http://127.0.0.1:9/gitlab/api/v4")),
            "ownership": OwnershipResource(path=cfg["ownership"]),
            "warehouse": WarehouseResource(data_dir=cfg["data_dir"], history_days=cfg.get("history_days", 730)),
        },
        instance=instance,
        raise_on_error=False,
    )
    finished = time.perf_counter()
    steps: dict[str, float] = {}
    errors: list[str] = []
    for event in result.all_events:
        if event.is_step_success:
            steps[event.step_key] = event.event_specific_data.duration_ms / 1000.0
        elif event.is_step_failure:
            errors.append(f"{event.step_key}: {event.event_specific_data.error.message[:500]}")
    meta = {}
    for e in result.get_asset_materialization_events():
        m = e.event_specific_data.materialization
        meta[m.asset_key.to_user_string()] = {k: v.value for k, v in m.metadata.items()
                                               if isinstance(v.value, (int, float, str))}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out_path.write_text(json.dumps({
        "success": result.success, "errors": errors, "wall_seconds": finished - imported,
        "process_seconds": finished - started, "steps": steps, "metadata": meta,
        "maxrss_mb": peak_rss_mb(),
        # CPU time of the whole process (all threads, imports and instance included, unlike
        # wall_seconds): less sensitive than wall time to other work on the machine.
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
    }, indent=1))
    return 0 if result.success else 1


if __name__ == "__main__":
    raise SystemExit(main())
