"""Configuration read from the environment (documented in README.md and .env.example).

Dagster resources read secrets through ``dg.EnvVar`` (see ``resources.py``); this module serves the
plain-Python entry points (CLI, tests) and holds the defaults in one place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA_DIR = "./data"
DEFAULT_OWNERSHIP = "./ownership.yaml"
DEFAULT_SCHEDULE = "0 2 * * *"  # 02:00 UTC every night
DEFAULT_PRODUCTION_ENVIRONMENT = "production"
DEFAULT_HISTORY_DAYS = 730  # the first full load reads two years back
# Every asset and check opens the one DuckDB file, which takes one writer. On a Dagster instance with
# this pool at limit 1 and granularity "run" (deploy/dagster.yaml), a second run waits in the queue
# until the first ends instead of failing on the file lock.
WAREHOUSE_POOL = "incident_metrics_warehouse"

ENV_OWNERSHIP = "INCIDENT_METRICS_OWNERSHIP"
ENV_DATA_DIR = "INCIDENT_METRICS_DATA_DIR"
ENV_SCHEDULE = "INCIDENT_METRICS_SCHEDULE"
ENV_PRODUCTION_ENVIRONMENT = "INCIDENT_METRICS_PRODUCTION_ENVIRONMENT"
ENV_HISTORY_DAYS = "INCIDENT_METRICS_HISTORY_DAYS"


def env(name: str, default: str) -> str:
    """An environment variable, treating an empty value as unset."""
    value = os.environ.get(name, "")
    return value if value.strip() else default


def setting(name: str, default: str):
    """A non-secret setting of a Dagster resource: read through ``dg.EnvVar`` when set (so the UI
    shows where it came from), else the documented default."""
    import dagster as dg

    return dg.EnvVar(name) if os.environ.get(name, "").strip() else default


@dataclass(frozen=True)
class DataPaths:
    """Where the pipeline writes. Everything lives under one data directory."""

    root: Path

    @classmethod
    def from_env(cls) -> "DataPaths":
        return cls(Path(env(ENV_DATA_DIR, DEFAULT_DATA_DIR)))

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def snapshot(self) -> Path:
        return self.root / "analytics.duckdb"

    @property
    def reports(self) -> Path:
        return self.root / "reports"


def schedule_cron() -> str:
    return env(ENV_SCHEDULE, DEFAULT_SCHEDULE)
