"""Statistics marts computed in Python (``pipelines/metrics.py`` on ``pipelines/stats/``)."""

import dagster as dg

from pipelines import metrics
from pipelines import warehouse as wh
from pipelines.config import WAREHOUSE_POOL
from pipelines.resources import WarehouseResource

TABLES = tuple(metrics.DESCRIPTIONS)
INPUTS = [dg.AssetKey(["marts", t]) for t in ("fct_incidents", "fct_deployments", "dim_teams")]


@dg.multi_asset(
    pool=WAREHOUSE_POOL,
    specs=[
        dg.AssetSpec(["marts", t], group_name="marts", kinds={"python", "duckdb"}, description=metrics.DESCRIPTIONS[t],
                     deps=INPUTS)
        for t in TABLES
    ],
)
def statistics_marts(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    with warehouse.connect() as con, wh.memory_limit(con):
        incidents, adoptions, deployments, as_of = metrics.load_inputs(con)
        tables = metrics.compute(incidents, adoptions, deployments, as_of)
        counts = metrics.write(con, tables)
        headline = metrics.headline(tables)
        context.log.info(f"statistics on {len(incidents)} incidents as of {as_of}: {headline}")
        for name in TABLES:
            yield dg.MaterializeResult(
                asset_key=["marts", name],
                metadata={"dagster/row_count": counts[name],
                          "preview": dg.MetadataValue.md(wh.preview_markdown(con, "marts", name)),
                          **(headline if name == "team_comparisons" else {})},
            )
