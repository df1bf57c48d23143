"""The leadership report (``reports/<date>/``)."""


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
