"""The analyst snapshot: ``analytics.duckdb``, published at the end of a successful run."""

import dagster as dg

from pipelines import warehouse as wh
from pipelines.config import WAREHOUSE_POOL
from pipelines.resources import WarehouseResource

MARTS = [dg.AssetKey(["marts", f.table]) for f in wh.sql_files("marts")]


@dg.asset(pool=WAREHOUSE_POOL, key=["reports", "analyst_snapshot"], group_name="reports", kinds={"duckdb"},
          deps=[*MARTS, dg.AssetKey(["reports", "baseline_report"])])
def analyst_snapshot(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """A read-only copy of the staging and marts schemas in ``analytics.duckdb`` for analysts,
    written to a new file and renamed into place at the end of a successful run."""
    with warehouse.connect() as con:
        counts = wh.publish_snapshot(con, warehouse.paths.snapshot)
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(warehouse.paths.snapshot)),
        "tables": len(counts),
        "rows": dg.MetadataValue.json(counts),
    })
