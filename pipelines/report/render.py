"""The leadership report: ``<data>/reports/<date>/`` with index.html and a CSV per table.

Everything that came from an API or the ownership file is escaped before it reaches the HTML.
``<data>/reports/latest`` is a symlink to the newest folder, swapped atomically.
"""

from __future__ import annotations

import html
import os
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd

REPORT_TABLES = ("team_baselines", "team_monthly_metrics", "dim_teams", "fct_deployments")


def fmt_duration(seconds: float | None) -> str:
    """A duration for people: '42 min', '3.5 h', '2.1 d'; an em dash when unknown."""
    if seconds is None or pd.isna(seconds):
        return "—"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    hours = minutes / 60
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} d"


def _table_html(df: pd.DataFrame, columns: dict[str, str], formats: dict[str, callable]) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for label in columns.values())
    rows = []
    for record in df.to_dict("records"):
        cells = []
        for column in columns:
            value = record.get(column)
            text = formats[column](value) if column in formats else ("—" if value is None or pd.isna(value) else str(value))
            cells.append(f"<td>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def write_report(con: duckdb.DuckDBPyConnection, reports_dir: Path, run_date: date | None = None) -> Path:
    """Render the report from the marts into ``reports_dir/<date>/`` and point ``latest`` at it."""
    run_date = run_date or datetime.now(timezone.utc).date()
    out = Path(reports_dir) / run_date.isoformat()
    out.mkdir(parents=True, exist_ok=True)
    frames = {t: con.execute(f"select * from marts.{t}").df() for t in REPORT_TABLES}
    for table, frame in frames.items():
        frame.to_csv(out / f"{table}.csv", index=False)

    baselines = frames["team_baselines"].merge(
        frames["dim_teams"][["team_key", "team_name", "adopted_on"]], on="team_key", how="left"
    )
    as_of = con.execute("select max(data_as_of) from marts.fct_incidents").fetchone()[0]
    table = _table_html(
        baselines,
        {
            "team_name": "Team",
            "adopted_on": "Adopted service ownership",
            "period_kind": "Baseline window",
            "n_incidents": "Incidents",
            "n_open": "Still open",
            "median_seconds_to_resolve": "Median time to resolve",
            "p90_seconds_to_resolve": "p90 time to resolve",
            "median_seconds_to_acknowledge": "Median time to acknowledge",
        },
        {
            "median_seconds_to_resolve": fmt_duration,
            "p90_seconds_to_resolve": lambda v: "too few (<20)" if v is None or pd.isna(v) else fmt_duration(v),
            "median_seconds_to_acknowledge": fmt_duration,
            "period_kind": lambda v: {"pre_adoption_90d": "90 days before adoption",
                                      "trailing_90d": "last 90 days (not adopted)"}.get(v, str(v)),
            "adopted_on": lambda v: "not yet" if v is None or pd.isna(v) else str(v)[:10],
        },
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Incident baselines, {run_date.isoformat()}</title>
<style>
body {{ font-family: "DejaVu Sans", Arial, sans-serif; margin: 2em; color: #1a1a1a; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #bbb; padding: 4px 8px; text-align: left; }}
tr {{ page-break-inside: avoid; }}
</style></head><body>
<h1>Incident response baselines</h1>
<p>Data as of {html.escape(str(as_of)[:16] if as_of is not None else "—")} UTC. Time to resolve is PagerDuty's
triggered&nbsp;→&nbsp;resolved; merged-away incidents are excluded and incidents still open are counted, not dropped.
Medians, not means: incident durations are heavy-tailed, and a mean moves with a single long outage.</p>
<h2>Per-team baseline</h2>
{table}
<p>CSV files of every table are in this folder.</p>
</body></html>
"""
    (out / "index.html").write_text(page, encoding="utf-8")
    _point_latest(Path(reports_dir), out)
    return out


def _point_latest(reports_dir: Path, target: Path) -> None:
    link = reports_dir / "latest"
    tmp = reports_dir / f".latest-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target.name, tmp)
    os.replace(tmp, link)
