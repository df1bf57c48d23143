"""The leadership report (``reports/<date>/``): HTML, PDF, and every table as CSV and Parquet."""


import dagster as dg

from pipelines import metrics
from pipelines import warehouse as wh
from pipelines.config import WAREHOUSE_POOL
from pipelines.report.files import last_pdf_status, write_report
from pipelines.resources import WarehouseResource

MARTS = [dg.AssetKey(["marts", f.table]) for f in wh.sql_files("marts")]
STATISTICS = [dg.AssetKey(["marts", t]) for t in metrics.DESCRIPTIONS]

# The summary numbers shown as asset metadata (the rest are in report_summary.csv).
_METADATA_KEYS = ("org_ttr_ratio", "org_ttr_ci_low", "org_ttr_ci_high", "org_ttr_verdict", "teams_compared",
                  "teams_improved", "teams_worsened", "teams_cannot_tell", "incidents_analysed")


@dg.asset(pool=WAREHOUSE_POOL, key=["reports", "baseline_report"], group_name="reports", kinds={"html", "pdf", "csv", "parquet"},
          deps=[*MARTS, *STATISTICS])
def baseline_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The leadership report: ``reports/<date>/index.html`` (self-contained: inline SVG charts, no network),
    ``report.pdf`` (headless Chromium; skipped with a warning when it is not installed), and every table
    as CSV and Parquet; ``reports/latest`` points at it. Downstream of every mart, so a failing blocking
    data-quality check upstream stops it for that run."""
    from pipelines.report.data import summary_numbers

    with warehouse.connect() as con:
        out = write_report(con, warehouse.paths.reports, logger=context.log)
        summary = summary_numbers(con)
    context.log.info(f"report written to {out}")
    pdf = out / "report.pdf"
    metadata = {
        "path": dg.MetadataValue.path(str(out / "index.html")),
        "pdf": dg.MetadataValue.path(str(pdf)) if pdf.exists() else dg.MetadataValue.text(last_pdf_status(out)),
        "files": len([p for p in out.iterdir() if p.is_file()]),
    }
    for key in _METADATA_KEYS:
        value = summary.get(key)
        if value is not None:
            metadata[key] = value if isinstance(value, (int, float, str)) else str(value)
    return dg.MaterializeResult(metadata=metadata)
