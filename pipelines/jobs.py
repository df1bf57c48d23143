"""The jobs of the code location: ``nightly``, ``backfill`` and ``rebuild``.

DuckDB allows one writer at a time: each job runs its steps in one process, in order. Every job
builds all that its tables and checks read (tests/test_jobs.py walks the graph to hold it so), so
each works on a warehouse that has never had a run.
"""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg

from assets import raw
from pipelines.ingest.runner import BackfillRange

UTC = timezone.utc


def _keys(assets: list[dg.AssetsDefinition]) -> dg.AssetSelection:
    return dg.AssetSelection.assets(*[key for a in assets for key in a.keys])


def build_backfill_job(ranged_assets: list[dg.AssetsDefinition],
                       selection: dg.AssetSelection) -> dg.UnresolvedAssetJobDefinition:
    """The ``backfill`` job: ``selection`` (the assets it runs), of which ``ranged_assets`` run in
    backfill mode; the others run as they do every night (the ownership file and the streams
    read in full), so that a backfill into a warehouse that has never had a run builds
    all that the staging tables, the marts and their checks read.

    Run config (the whole of it)::

        since: "2025-01-01"      # required: YYYY-MM-DD or ISO 8601 (UTC)
        until: "2025-03-01"      # optional, default now
        window_days: 7           # optional, the size of a progress window
    """
    op_names = sorted({a.op.name for a in ranged_assets})

    @dg.config_mapping(config_schema={
        "since": dg.Field(str, description="start of the range, YYYY-MM-DD or ISO 8601 (UTC), inclusive"),
        "until": dg.Field(str, is_required=False, description="end of the range (exclusive); default now"),
        "window_days": dg.Field(int, default_value=7, description="days per progress window"),
        "echo_progress": dg.Field(bool, default_value=False, description="also print progress lines on stdout"),
        "log_level": dg.Field(str, default_value="INFO", description="console log level"),
        "log_file": dg.Field(dg.Noneable(str), default_value=None, description="also log everything to this file"),
    })
    def _config(values: dict) -> dict:
        BackfillRange.parse(values["since"], values.get("until"), now=datetime.now(UTC),
                            window_days=values["window_days"])  # fail early on a bad range
        op_config = {"backfill_since": values["since"], "window_days": values["window_days"],
                     "echo_progress": values["echo_progress"]}
        if values.get("until"):
            op_config["backfill_until"] = values["until"]
        return {"ops": {name: {"config": op_config} for name in op_names},
                "loggers": {"console": {"config": {"log_level": values["log_level"]}},
                            "file": {"config": {"path": values["log_file"]}}}}

    return dg.define_asset_job(
        "backfill",
        selection=selection,
        executor_def=dg.in_process_executor,
        config=_config,
        description="Re-read a historical range of every ranged stream (run config: since, until), with the ownership "
                    "file and the streams read in full as every run reads them, then rebuild staging, marts, report "
                    "and snapshot. Bookmarks are not moved.",
    )


nightly_job = dg.define_asset_job(
    "nightly",
    selection=dg.AssetSelection.all(),
    executor_def=dg.in_process_executor,
    description="Read every source, rebuild staging and marts, write the report and the analyst snapshot.",
)

# Re-read a historical range (run config: since, until), then rebuild.
backfill_job = build_backfill_job(raw.ranged_assets, selection=dg.AssetSelection.all() - _keys(raw.nightly_only_assets))

rebuild_job = dg.define_asset_job(
    "rebuild",
    selection=dg.AssetSelection.all() - _keys(raw.raw_assets),
    executor_def=dg.in_process_executor,
    description="No API calls: reload the ownership file, rebuild staging, marts and statistics from what raw "
                "holds, then write the report and the analyst snapshot (after an ownership change, say).",
)
