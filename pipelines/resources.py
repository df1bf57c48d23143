"""Dagster resources of the core: the warehouse and the ownership file (each connector has its own,
in ``pipelines/connectors/<name>/resource.py``).

Secrets come in through ``dg.EnvVar`` (resolved at run time, never shown in the UI); see
``definitions.py``. Each resource only builds a plain-Python object; the work happens in
``pipelines/ingest/`` and friends so tests can call it without Dagster.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Optional

import dagster as dg
import duckdb
from pydantic import PrivateAttr

from pipelines import warehouse as wh
from pipelines.config import DataPaths
from pipelines.ingest.runner import SyncSettings
from pipelines.ownership import Ownership, load_ownership


class OwnershipResource(dg.ConfigurableResource):
    """The ownership file (``INCIDENT_METRICS_OWNERSHIP``): ownership.yaml or Backstage catalog files."""

    path: str = "./ownership.yaml"

    def load(self) -> Ownership:
        return load_ownership(self.path)


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse under ``INCIDENT_METRICS_DATA_DIR`` (one writer: the pipeline)."""

    data_dir: str = "./data"
    production_environment: str = "production"
    sql_variables: dict[str, str] = {}  # the connectors' settings their SQL reads (getvariable)
    history_days: int = 730
    rewind_minutes: int = 60

    @property
    def paths(self) -> DataPaths:
        return DataPaths(Path(self.data_dir))

    @property
    def sync_settings(self) -> SyncSettings:
        return SyncSettings(
            history_days=self.history_days,
            rewind=timedelta(minutes=self.rewind_minutes),
            production_environment=self.production_environment,
        )

    # Within a run, the warehouse held open for the run's steps (see connect); None until the first use.
    _run_database: Optional[duckdb.DuckDBPyConnection] = PrivateAttr(default=None)
    _uses: int = PrivateAttr(default=0)  # connect() blocks open now (nested or other threads)
    _lock: Optional[threading.Lock] = PrivateAttr(default=None)  # set while in a run

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._lock = threading.Lock()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self._lock = None
        database, self._run_database = self._run_database, None
        if database is not None:
            database.close()

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the warehouse, schemas ensured.

        Within a Dagster run the warehouse stays open from the first use to the teardown of the
        run's resources (once per run with the nightly job's in-process executor, once per step
        process with the multiprocess one), and each use gets its own connection to it (a DuckDB
        cursor). As a connection of its own did before, it has its own transaction, temporary
        tables and variables, and closing it rolls back what it left open; nested uses and uses
        from other threads stay apart. When the last open use ends, DuckDB's block cache is
        emptied (``wh.release_cache``), as closing the database did, so one step's cache does not
        add to the next step's memory.

        Why: opening the large benchmark warehouse (3.4 GB) and closing it again cost every step
        50-100 ms, more after writing a big table (the close checkpoints it), and the nightly run
        has about 30 steps. Outside a run (tests, scripts) each use opens and closes the file."""
        lock = self._lock
        if lock is None:  # not in a run
            con = self._open()
            try:
                yield con
            finally:
                con.close()
            return
        with lock:
            if self._run_database is None:
                self._run_database = self._open()
            database = self._run_database
            con = database.cursor()
            self._uses += 1
        try:
            self._set_session(con)
            yield con
        finally:
            con.close()
            with lock:
                self._uses -= 1
                if self._uses == 0:
                    wh.release_cache(database)

    def _open(self) -> duckdb.DuckDBPyConnection:
        con = wh.connect(self.paths.warehouse)
        try:
            wh.ensure_schemas(con)
            self._set_session(con)
        except BaseException:
            con.close()
            raise
        return con

    def _set_session(self, con: duckdb.DuckDBPyConnection) -> None:
        wh.set_session(con)
        con.execute("set variable production_environment = ?", [self.production_environment])
        for name, value in self.sql_variables.items():
            con.execute(f"set variable {name} = ?", [value])
