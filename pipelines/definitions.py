"""The one Dagster code location: assets, jobs, the nightly schedule, resources.

Load it with ``dagster dev -w workspace.yaml`` (or ``dg dev``). Configuration comes from the
environment (README.md, .env.example); tokens through ``dg.EnvVar`` so they are read at run time
and never shown in the UI.
"""

from __future__ import annotations

import os

import dagster as dg

from assets import checks, metrics, ownership, raw, reports, snapshot, warehouse
from pipelines import config
from pipelines.connectors import CONNECTORS
from pipelines.jobs import backfill_job, nightly_job, rebuild_job
from pipelines.logs import LOGGERS
from pipelines.resources import OwnershipResource, WarehouseResource


def build_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        **{c.name: c.resource() for c in CONNECTORS},  # one per source, configured from its settings
        "ownership": OwnershipResource(path=config.setting(config.ENV_OWNERSHIP, config.DEFAULT_OWNERSHIP)),
        "warehouse": WarehouseResource(
            data_dir=config.setting(config.ENV_DATA_DIR, config.DEFAULT_DATA_DIR),
            production_environment=config.env(config.ENV_PRODUCTION_ENVIRONMENT, config.DEFAULT_PRODUCTION_ENVIRONMENT),
            sql_variables={variable: os.environ[name] for c in CONNECTORS for variable, name in c.sql_variables
                           if os.environ.get(name, "").strip()},
            history_days=int(config.env(config.ENV_HISTORY_DAYS, str(config.DEFAULT_HISTORY_DAYS))),
        ),
    }


all_assets = [
    ownership.ownership_tables,
    *raw.raw_assets,
    *warehouse.staging_assets,
    *warehouse.intermediate_assets,
    *warehouse.marts_sql_assets,
    metrics.statistics_marts,
    reports.baseline_report,
    snapshot.analyst_snapshot,
]

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
