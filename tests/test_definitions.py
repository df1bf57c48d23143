"""The Dagster code location loads, validates from the command line, and wires what it should."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parent.parent


def test_definitions_load_with_every_asset_described():
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"raw/pagerduty_incidents", "raw/pagerduty_log_entries", "raw/github_deployments",
            "staging/stg_pagerduty__incidents", "marts/fct_incidents", "marts/fct_deployments",
            "marts/team_baselines", "reports/baseline_report", "reports/analyst_snapshot"} <= keys
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description and len(node.description) > 20, key
    # every SQL file is one asset keyed [schema, table]
    for schema in ("staging", "intermediate", "marts"):
        for path in (ROOT / "sql" / schema).glob("*.sql"):
            assert f"{schema}/{path.stem}" in keys
    # lineage comes from the SQL: fct_incidents reads the tables it names
    deps = {k.to_user_string() for k in graph.get(dg.AssetKey(["marts", "fct_incidents"])).parent_keys}
    assert {"intermediate/int_incidents", "intermediate/int_incident_events",
            "staging/stg_ownership__service_owners"} <= deps
    # no mart reads a source's own tables: only the neutral intermediate layer and the ownership file
    for key in graph.get_all_asset_keys():
        if key.path[0] == "marts":
            for parent in graph.get(key).parent_keys:
                assert parent.path[0] in ("marts", "intermediate") or parent.path[1].startswith("stg_ownership__"), \
                    (key, parent)
    # each union reads every source's table of its entity
    unions = {k.path[1]: {p.to_user_string() for p in graph.get(k).parent_keys}
              for k in graph.get_all_asset_keys() if k.path[0] == "intermediate" and "__" not in k.path[1]}
    assert unions["int_incidents"] == {"intermediate/int_pagerduty__incidents"}
    assert unions["int_deployments"] == {"intermediate/int_github__deployments", "intermediate/int_gitlab__deployments"}
    assert unions["int_changes"] == {"intermediate/int_github__changes", "intermediate/int_gitlab__changes"}
    assert set(unions) == {"int_incidents", "int_incident_events", "int_services", "int_deployments", "int_changes"}


def test_nightly_job_and_schedule():
    from pipelines.definitions import defs

    job = defs.resolve_job_def("nightly")
    assert job.executor_def.name == "in_process"
    schedule = defs.resolve_schedule_def("nightly_schedule")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "UTC"


def test_every_step_of_every_job_is_in_the_one_warehouse_pool():
    # Each step opens the DuckDB file; with the pool at limit 1 (deploy/dagster.yaml) two runs queue
    # instead of fighting over the file lock. A step outside the pool would slip past that limit.
    from pipelines.config import WAREHOUSE_POOL
    from pipelines.definitions import defs

    for name in ("nightly", "backfill", "rebuild"):
        job = defs.resolve_job_def(name)
        pools = {node.name: node.definition.pool for node in job.graph.nodes}
        assert len(pools) >= 20 and set(pools.values()) == {WAREHOUSE_POOL}, (name, pools)


def test_dagster_definitions_validate_passes():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAGERDUTY", "GITHUB"))}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation successful" in proc.stdout + proc.stderr
