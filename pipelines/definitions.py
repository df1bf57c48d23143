"""The one Dagster code location: assets, jobs, the nightly schedule, resources.

Load it with ``dagster dev -w workspace.yaml`` (or ``dg dev``). Configuration comes from the
environment (README.md, .env.example); tokens through ``dg.EnvVar`` so they are read at run time
and never shown in the UI.
"""

from __future__ import annotations

import os

import dagster as dg

from assets import checks, ingest_github, ingest_pagerduty, metrics, ownership, reports, snapshot, warehouse
from pipelines import config
from pipelines.backfill import build_backfill_job
from pipelines.logs import LOGGERS
from pipelines.resources import GitHubResource, OwnershipResource, PagerDutyResource, WarehouseResource


def _setting(name: str, default: str):
    """A non-secret setting: read through EnvVar when set, else the documented default."""
    return dg.EnvVar(name) if os.environ.get(name, "").strip() else default


def build_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "pagerduty": PagerDutyResource(
            api_url=_setting(config.ENV_PAGERDUTY_URL, config.DEFAULT_PAGERDUTY_API_URL),
            api_token=dg.EnvVar(config.ENV_PAGERDUTY_TOKEN),
            use_analytics=config.env(config.ENV_PAGERDUTY_ANALYTICS, "false").lower() in ("1", "true", "yes"),
            ca_bundle=os.environ.get("REQUESTS_CA_BUNDLE") or None,
        ),
        "github": GitHubResource(
            api_url=_setting(config.ENV_GITHUB_URL, config.DEFAULT_GITHUB_API_URL),
            token=dg.EnvVar(config.ENV_GITHUB_TOKEN),
            ca_bundle=os.environ.get("REQUESTS_CA_BUNDLE") or None,
        ),
        "ownership": OwnershipResource(path=_setting(config.ENV_OWNERSHIP, config.DEFAULT_OWNERSHIP)),
        "warehouse": WarehouseResource(
            data_dir=_setting(config.ENV_DATA_DIR, config.DEFAULT_DATA_DIR),
            production_environment=config.env(config.ENV_PRODUCTION_ENVIRONMENT, config.DEFAULT_PRODUCTION_ENVIRONMENT),
            history_days=int(config.env(config.ENV_HISTORY_DAYS, str(config.DEFAULT_HISTORY_DAYS))),
        ),
    }


all_assets = [
    ownership.ownership_tables,
    ingest_pagerduty.pagerduty_teams,
    ingest_pagerduty.pagerduty_services,
    ingest_pagerduty.pagerduty_incidents,
    ingest_pagerduty.pagerduty_log_entries,
    ingest_pagerduty.pagerduty_analytics_incidents,
    ingest_github.github_deployments,
    ingest_github.github_pull_requests,
    *warehouse.staging_assets,
    *warehouse.marts_sql_assets,
    metrics.statistics_marts,
    reports.baseline_report,
    snapshot.analytics_snapshot,
]

# Raw assets that read an API. A backfill re-reads the ranged ones over its range; the directory
# streams (teams, services) are read in full by every run that has them; the Analytics stream
# reads on from its bookmark, which a backfill must not move, so it is nightly only.
RANGED_ASSETS = [ingest_pagerduty.pagerduty_incidents, ingest_pagerduty.pagerduty_log_entries,
                 ingest_github.github_deployments, ingest_github.github_pull_requests]
NIGHTLY_ONLY_ASSETS = [ingest_pagerduty.pagerduty_analytics_incidents]
API_ASSETS = [*RANGED_ASSETS, *NIGHTLY_ONLY_ASSETS,
              ingest_pagerduty.pagerduty_teams, ingest_pagerduty.pagerduty_services]


def _keys(assets: list[dg.AssetsDefinition]) -> dg.AssetSelection:
    return dg.AssetSelection.assets(*[key for a in assets for key in a.keys])


# DuckDB allows one writer at a time: each job runs its steps in one process, in order. Every job
# builds all that its tables and checks read (tests/test_jobs.py walks the graph to hold it so),
# so each works on a warehouse that has never had a run.
nightly_job = dg.define_asset_job(
    "nightly",
    selection=dg.AssetSelection.all(),
    executor_def=dg.in_process_executor,
    description="Sync PagerDuty and GitHub, rebuild staging and marts, write the report and the analyst snapshot.",
)

# Re-read a historical range (run config: since, until), then rebuild; see pipelines/backfill.py.
backfill_job = build_backfill_job(RANGED_ASSETS, selection=dg.AssetSelection.all() - _keys(NIGHTLY_ONLY_ASSETS))

rebuild_job = dg.define_asset_job(
    "rebuild",
    selection=dg.AssetSelection.all() - _keys(API_ASSETS),
    executor_def=dg.in_process_executor,
    description="No API calls: reload the ownership file, rebuild staging, marts and statistics from what raw "
                "holds, then write the report and the analyst snapshot (after an ownership change, say).",
)

nightly_schedule = dg.ScheduleDefinition(
    name="nightly_schedule",
    job=nightly_job,
    cron_schedule=config.schedule_cron(),
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Runs the nightly job (INCIDENT_METRICS_SCHEDULE, default 02:00 UTC).",
)

defs = dg.Definitions(
    assets=all_assets,
    asset_checks=checks.all_checks,  # data quality: docs/data-quality.md
    jobs=[nightly_job, backfill_job, rebuild_job],
    schedules=[nightly_schedule],
    resources=build_resources(),
    loggers=LOGGERS,  # progress on the terminal, stack traces to a file (pipelines/logs.py)
)
