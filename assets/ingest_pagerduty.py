"""Raw PagerDuty streams: teams, services, incidents, log entries, Analytics (``raw.pagerduty_*``)."""

from datetime import datetime, timezone

import dagster as dg

from assets.ownership import VALIDATED_FIRST
from pipelines import analytics_sync, backfill, ingest
from pipelines import warehouse as wh
from pipelines.backfill import BackfillConfig
from pipelines.config import WAREHOUSE_POOL
from pipelines.resources import PagerDutyResource, WarehouseResource

GROUP = "raw"
KINDS = {"python", "duckdb"}


def _materialize(result: ingest.StreamResult, con, table: str) -> dg.MaterializeResult:

    return dg.MaterializeResult(
        metadata={
            **result.metadata(),
            "dagster/row_count": wh.table_rows(con, "raw", table),
        }
    )


def _directory_asset(stream: str, description: str):
    @dg.asset(pool=WAREHOUSE_POOL, key=["raw", f"pagerduty_{stream}"], group_name=GROUP, kinds=KINDS, deps=VALIDATED_FIRST, description=description)
    def _asset(context: dg.AssetExecutionContext, pagerduty: PagerDutyResource,
               warehouse: WarehouseResource) -> dg.MaterializeResult:
        with pagerduty.client() as client, warehouse.connect() as con:
            result = ingest.sync_pagerduty_directory(
                con, client, stream=stream, run_id=context.run.run_id, now=datetime.now(timezone.utc)
            )
            context.log.info(f"PagerDuty {stream}: {result.received} records, {result.changed} changed")
            return _materialize(result, con, f"pagerduty_{stream}")

    return _asset


pagerduty_teams = _directory_asset("teams", "PagerDuty teams as sent by GET /teams, read in full every run.")
pagerduty_services = _directory_asset("services", "PagerDuty services as sent by GET /services, read in full every run.")


@dg.asset(pool=WAREHOUSE_POOL, key=["raw", "pagerduty_incidents"], group_name=GROUP, kinds=KINDS, deps=VALIDATED_FIRST)
def pagerduty_incidents(context: dg.AssetExecutionContext, config: BackfillConfig, pagerduty: PagerDutyResource,
                        warehouse: WarehouseResource) -> dg.MaterializeResult:
    """PagerDuty incidents as sent by GET /incidents, read by creation-time windows of at most
    six months from the bookmark (minus a one-hour rewind), plus every incident still open.
    With ``backfill_since`` in the run config (the ``backfill`` job): the incidents created in
    that range instead, the bookmark untouched."""
    now = datetime.now(timezone.utc)
    rng = config.range(now)
    with pagerduty.client() as client, warehouse.connect() as con:
        if rng is not None:
            result = backfill.backfill_pagerduty(con, client, "incidents", rng, run_id=context.run.run_id, now=now,
                                                 echo=backfill.progress_echo(context, config))
        else:
            result = ingest.sync_pagerduty_incidents(
                con, client, run_id=context.run.run_id, now=now, settings=warehouse.sync_settings
            )
        context.log.info(f"PagerDuty incidents {result.window_start:%Y-%m-%d %H:%M} to {result.window_end:%Y-%m-%d %H:%M}: "
                         f"{result.received} records, {result.changed} changed, {result.quarantined} quarantined")
        return _materialize(result, con, "pagerduty_incidents")


@dg.asset(pool=WAREHOUSE_POOL, key=["raw", "pagerduty_log_entries"], group_name=GROUP, kinds=KINDS, deps=VALIDATED_FIRST)
def pagerduty_log_entries(context: dg.AssetExecutionContext, config: BackfillConfig, pagerduty: PagerDutyResource,
                          warehouse: WarehouseResource) -> dg.MaterializeResult:
    """PagerDuty log entries from the account-wide GET /log_entries feed by time window
    (acknowledgements, reassignments, escalations, resolves): never one request per incident.
    With ``backfill_since`` in the run config: the entries created in that range."""
    now = datetime.now(timezone.utc)
    rng = config.range(now)
    with pagerduty.client() as client, warehouse.connect() as con:
        if rng is not None:
            result = backfill.backfill_pagerduty(con, client, "log_entries", rng, run_id=context.run.run_id, now=now,
                                                 echo=backfill.progress_echo(context, config))
        else:
            result = ingest.sync_pagerduty_log_entries(
                con, client, run_id=context.run.run_id, now=now, settings=warehouse.sync_settings
            )
        context.log.info(f"PagerDuty log entries: {result.received} records, {result.changed} changed")
        return _materialize(result, con, "pagerduty_log_entries")


@dg.asset(pool=WAREHOUSE_POOL, key=["raw", analytics_sync.TABLE], group_name="raw", kinds={"python", "duckdb"}, deps=VALIDATED_FIRST)
def pagerduty_analytics_incidents(context: dg.AssetExecutionContext, pagerduty: PagerDutyResource,
                                  warehouse: WarehouseResource) -> dg.MaterializeResult:
    """PagerDuty Analytics per-incident metrics (POST /analytics/raw/incidents, 1,000 a page) where the
    account has Analytics and PagerDutyResource.use_analytics is on; otherwise (or on 402/403/404) it
    writes nothing and the marts rely on incidents plus log entries, as always."""
    if not pagerduty.use_analytics:
        context.log.info("PagerDuty Analytics fast path is off (use_analytics=False)")
        return dg.MaterializeResult(metadata={"analytics_available": 0, "skipped": True})
    with pagerduty.client() as client, warehouse.connect() as con:
        result = analytics_sync.sync_pagerduty_analytics(
            con, client, run_id=context.run.run_id, now=datetime.now(timezone.utc), settings=warehouse.sync_settings
        )
        if not result.api.get("analytics_available"):
            context.log.warning(f"PagerDuty Analytics answered HTTP {result.api.get('fallback_status')}: falling back "
                                "to incidents plus log entries")
        return dg.MaterializeResult(
            metadata={**result.metadata(), "dagster/row_count": wh.table_rows(con, "raw", analytics_sync.TABLE)}
        )
