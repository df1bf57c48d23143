"""Outputs for people: the leadership report and the analyst snapshot."""


import dagster as dg

from pipelines import warehouse as wh
from pipelines.report.render import write_report
from pipelines.resources import WarehouseResource

MARTS = [dg.AssetKey(["marts", f.table]) for f in wh.sql_files("marts")]


@dg.asset(key=["reports", "baseline_report"], group_name="reports", kinds={"html", "csv"}, deps=MARTS)
def baseline_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The leadership report: ``reports/<date>/index.html`` and a CSV per table; ``reports/latest`` points at it."""
    with warehouse.connect() as con:
        out = write_report(con, warehouse.paths.reports)
    context.log.info(f"report written to {out}")
    return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(out / "index.html"))})


@dg.asset(key=["analytics", "snapshot"], group_name="reports", kinds={"duckdb"},
          deps=[*MARTS, dg.AssetKey(["reports", "baseline_report"])])
def analytics_snapshot(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """A read-only copy of the staging and marts schemas in ``analytics.duckdb`` for analysts,
    written to a new file and renamed into place at the end of a successful run."""
    with warehouse.connect() as con:
        counts = wh.publish_snapshot(con, warehouse.paths.analytics)
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(warehouse.paths.analytics)),
        "tables": len(counts),
        "rows": dg.MetadataValue.json(counts),
    })
