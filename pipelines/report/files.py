"""The leadership report on disk: ``<data>/reports/<date>/`` with index.html (``render.py``),
report.pdf (``pdf.py``) and every table as CSV and Parquet; ``<data>/reports/latest`` points at the
newest folder (a symlink swapped atomically)."""

from __future__ import annotations

import logging
import os
import shutil
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.report.data import ReportData, has_table, load
from pipelines.report.format import missing
from pipelines.report.pdf import PdfResult, print_pdf
from pipelines.report.render import render_html

log = logging.getLogger(__name__)

# The marts written next to the report, as they are (CSV with pandas, Parquet with Arrow types).
MART_EXPORTS = ("team_baselines", "team_monthly_metrics", "dim_teams", "dim_services", "fct_deployments",
                "team_period_metrics", "team_comparisons", "org_effects", "org_event_study")


def _export_tables(con: duckdb.DuckDBPyConnection, data: ReportData, out: Path) -> list[str]:
    """Every table the report draws from, as CSV and Parquet. Returns the file names written."""

    written = []

    def write(name: str, frame: pd.DataFrame, arrow: pa.Table | None = None) -> None:
        frame.to_csv(out / f"{name}.csv", index=False)
        table_ = arrow if arrow is not None else pa.Table.from_pandas(_parquet_safe(frame), preserve_index=False)
        pq.write_table(table_, out / f"{name}.parquet")
        written.extend([f"{name}.csv", f"{name}.parquet"])

    for name in MART_EXPORTS:
        if has_table(con, "marts", name):
            arrow = con.sql(f"select * from marts.{name}").to_arrow_table()
            write(name, con.execute(f"select * from marts.{name}").df(), arrow)
    write("report_summary", pd.DataFrame(
        [{"key": k, "value": None if v is None else str(v)} for k, v in data.summary.items()]))
    write("report_baselines", data.baselines.drop(columns=[c for c in ("adopted_on",) if c in data.baselines]))
    cfr = data.comparisons[data.comparisons["metric"] == "change_failure_rate"] if not data.comparisons.empty else None
    if cfr is not None and len(cfr):
        write("report_change_failure_rate", cfr.dropna(axis=1, how="all"))
    write("report_deployments_monthly", data.deploys_monthly)
    write("report_data_freshness", data.freshness)
    write("report_last_sync_run", data.last_runs)
    write("report_quarantine", data.quarantine)
    return written


def _parquet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns of mixed Python types become strings so Arrow can type them."""
    out = frame.copy()
    for c in out.columns:
        if out[c].dtype == object:
            kinds = {type(v) for v in out[c].dropna()}
            if len(kinds) > 1 or (kinds and not kinds <= {str, date, datetime, pd.Timestamp, bool, int, float}):
                out[c] = out[c].map(lambda v: None if missing(v) else str(v))
    return out


def write_report(con: duckdb.DuckDBPyConnection, reports_dir: Path, run_date: date | None = None, *,
                 pdf: bool = True, chromium: str | None = None,
                 logger: logging.Logger | None = None) -> Path:
    """Render the report from the marts into ``reports_dir/<date>/`` and point ``latest`` at it.

    The folder is built under a temporary name and renamed into place, so ``latest`` never shows half
    a report. Without Chromium the PDF is skipped with a warning; everything else is written.
    """
    logger = logger or log
    generated_at = datetime.now(timezone.utc)
    run_date = run_date or generated_at.date()
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    final = reports_dir / run_date.isoformat()
    tmp = reports_dir / f".{run_date.isoformat()}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        data = load(con, generated_at)
        exported = _export_tables(con, data, tmp)
        (tmp / "index.html").write_text(render_html(data, exported), encoding="utf-8")
        result = print_pdf(tmp / "index.html", tmp / "report.pdf", chromium=chromium) if pdf else \
            PdfResult(None, "PDF skipped: disabled")
        if result.ok:
            logger.info(result.message)
        else:
            logger.warning(result.message)
        (tmp / "pdf_status.txt").write_text(result.message + "\n", encoding="utf-8")
        _swap_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _point_latest(reports_dir, final)
    return final


def last_pdf_status(out: Path) -> str:
    p = Path(out) / "pdf_status.txt"
    return p.read_text(encoding="utf-8").strip() if p.exists() else ""


def _swap_into_place(tmp: Path, final: Path) -> None:
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _point_latest(reports_dir: Path, target: Path) -> None:
    link = reports_dir / "latest"
    tmp = reports_dir / f".latest-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target.name, tmp)
    os.replace(tmp, link)
