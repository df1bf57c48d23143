"""The leadership report without a browser: formatting, charts, the files written, the executive-summary
numbers against SQL on the marts, `incident-metrics report`, the missing-Chromium path, and the
blocking-check gate. The demo warehouse is built once per session (tests/report_helpers.py)."""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest

from pipelines.report import charts
from pipelines.report.data import summary_numbers
from pipelines.report.files import MART_EXPORTS, write_report
from pipelines.report.format import (
    fmt_change,
    fmt_count,
    fmt_duration,
    fmt_mde,
    fmt_pct,
    fmt_rate,
    fmt_ratio,
    fmt_ratio_ci,
)
from tests.report_helpers import XSS_SERVICE, XSS_TEAM, demo_data_dir, expected_summary

SECTION_ORDER = ["summary", "baselines", "before-after", "event-study", "teams", "methods", "data-quality"]
ALLOWED_COLOURS = {c.lower() for c in charts.OKABE_ITO.values()} | {
    charts.GREY.lower(), charts.LIGHT_GREY.lower(), charts.INK.lower(), "#ffffff"}


# --------------------------------------------------------------------------------------- formatting


def test_numbers_carry_units():
    assert fmt_duration(45) == "45 s"
    assert fmt_duration(3600) == "60 min"
    assert fmt_duration(2820) == "47 min"
    assert fmt_duration(3.5 * 3600) == "3.5 h"
    assert fmt_duration(3 * 86400) == "3.0 d"
    assert fmt_duration(None) == fmt_duration(float("nan")) == "—"
    assert fmt_ratio_ci(0.74, 0.56, 0.95) == "×0.74 (95 % CI ×0.56 to ×0.95)"
    assert fmt_ratio_ci(0.74, None, None) == "×0.74 (no CI)"
    assert fmt_count(12, "incident") == "12 incidents" and fmt_count(1, "incident") == "1 incident"
    assert fmt_count(4804, "incident") == "4,804 incidents"
    assert fmt_change(0.75) == "25 % shorter" and fmt_change(1.3, "fewer", "more") == "30 % more"
    assert fmt_pct(0.234) == "23 %" and fmt_mde(0.38) == "38 %"
    assert fmt_rate(14.23) == "14.2 incidents / 30 days"
    assert fmt_ratio(12.4) == "×12"


# --------------------------------------------------------------------------------------- charts


def _svg_ok(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # well-formed XML
    assert root.tag.endswith("svg")
    assert "href" not in svg and "http://" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")
    colours = {c.lower() for c in re.findall(r"#[0-9a-fA-F]{6}", svg)}
    assert colours <= ALLOWED_COLOURS, colours - ALLOWED_COLOURS
    return root


def test_forest_plot_escapes_labels_and_uses_the_palette():
    rows = [
        charts.ForestRow(XSS_TEAM, 0.5, 0.3, 0.8, "improved", "×0.50 (×0.30 to ×0.80), improved"),
        charts.ForestRow(XSS_SERVICE, 1.6, 1.1, 40.0, "worsened", "worsened"),   # CI clipped: arrow
        charts.ForestRow("Tiny", float("nan"), float("nan"), float("nan"), "insufficient_data", "insufficient data"),
        charts.ForestRow("Organisation", 0.9, 0.7, 1.1, "inconclusive", "org", overall=True),
    ]
    svg = charts.forest_plot(rows, title="t <b>", axis_label="a & b")
    root = _svg_ok(svg)
    assert "<script" not in svg and "<img" not in svg and "<b>" not in svg
    texts = [t.text for t in root.iter() if t.tag.endswith("text")]
    assert any(t and t.startswith("<script>") for t in texts)  # shown as text, truncated if long
    assert any(t and t.startswith('">') for t in texts)
    assert "polyline" in svg  # the clipped CI end


def test_event_study_and_monthly_charts_are_well_formed():
    pts = [charts.EventPoint(m, 0.8 + 0.02 * m, 0.5, 1.4, pre=m < 0, n=100) for m in range(-6, 13)]
    _svg_ok(charts.event_study(pts, title="e"))
    stats = [charts.MonthStat(date(2025, m, 1), 3000.0, 2000.0, 4500.0, 15000.0 if m % 2 else None, 25)
             for m in range(1, 13)]
    _svg_ok(charts.monthly_bands(stats, title="m", adopted_on=date(2025, 6, 15)))
    _svg_ok(charts.monthly_bands([], title="empty"))
    _svg_ok(charts.small_series([(date(2025, m, 1), float(m)) for m in range(1, 7)], title="s",
                                y_format=lambda v: f"{v:g} min", adopted_on=date(2025, 3, 1), bars=True))
    _svg_ok(charts.small_series([], title="none", y_format=str))


# --------------------------------------------------------------------------------------- the demo report


@pytest.fixture(scope="module")
def demo():
    data = demo_data_dir()
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    yield {"dir": data, "con": con, "report": (data / "reports" / "latest").resolve()}
    con.close()


def test_summary_numbers_match_sql_on_the_marts(demo):
    got = summary_numbers(demo["con"])
    want = expected_summary(demo["con"])
    for key, value in want.items():
        if isinstance(value, float):
            assert math.isclose(got[key], value, rel_tol=1e-12), key
        else:
            assert got[key] == value, key
    assert want["teams_compared"] >= 5 and want["org_ttr_ratio"] is not None  # the demo is not vacuous


def test_report_folder_has_html_pdf_and_every_table_as_csv_and_parquet(demo):
    out = demo["report"]
    assert out.parent.name == "reports" and re.fullmatch(r"\d{4}-\d{2}-\d{2}", out.name)
    assert (out / "index.html").stat().st_size > 10_000
    if shutil.which("chromium"):
        assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"
    con = demo["con"]
    for table in MART_EXPORTS:
        csv, parquet = out / f"{table}.csv", out / f"{table}.parquet"
        assert csv.exists() and parquet.exists(), table
        n = con.execute(f"select count(*) from marts.{table}").fetchone()[0]
        assert pq.read_metadata(parquet).num_rows == n, table
    for extra in ("report_summary", "report_baselines", "report_data_freshness", "report_quarantine"):
        assert (out / f"{extra}.csv").exists() and (out / f"{extra}.parquet").exists()
    # team_baselines.csv keeps the mart's columns, in order
    header = (out / "team_baselines.csv").read_text().splitlines()[0].split(",")
    assert header == [r[0] for r in con.execute("select column_name from duckdb_columns() where schema_name = 'marts' "
                                                "and table_name = 'team_baselines' order by column_index").fetchall()]


def test_html_is_self_contained_ordered_and_print_safe(demo):
    page = (demo["report"] / "index.html").read_text(encoding="utf-8")
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    assert not re.search(r"\b(src|href)\s*=\s*[\"'](?!#)", page), "only in-page links are allowed"
    assert "url(" not in page
    assert 'http-equiv="Content-Security-Policy" content="default-src &#x27;none&#x27;' in page
    positions = [page.index(f'id="{s}"') for s in SECTION_ORDER]
    assert positions == sorted(positions)
    assert page.count('<section class="team"') == summary_numbers(demo["con"])["teams_total"]
    assert "break-inside: avoid" in page and re.search(r"tr, td, th \{ break-inside: avoid", page)
    assert re.search(r"figure \{[^}]*break-inside: avoid", page)
    for svg in re.findall(r"<svg.*?</svg>", page, flags=re.S):
        _svg_ok(svg)
    # the methods section explains the words the summary uses
    for phrase in ("Why not mean time to resolve", "insufficient data", "low power", "transition window",
                   "smallest detectable change"):
        assert phrase.lower() in page.lower(), phrase


def test_report_command_rerenders_without_syncing(demo, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo["dir"], data, symlinks=True, ignore=shutil.ignore_patterns("analytics.duckdb"))
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    runs_before = con.execute("select count(*), max(finished_at) from raw.sync_runs").fetchone()
    con.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAGERDUTY_", "GITHUB_", "INCIDENT_METRICS_"))}
    env.update(INCIDENT_METRICS_DATA_DIR=str(data), PAGERDUTY_API_URL="http://127.0.0.1:9",
               GITHUB_API_URL="http://127.0.0.1:9")  # nothing listens there: a sync would fail
    for entry in (data / "reports").iterdir():
        if entry.name != "latest":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "report"], env=env, capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    latest = data / "reports" / "latest"
    assert latest.is_symlink() and (latest / "index.html").exists() and (latest / "team_baselines.csv").exists()
    assert str(latest.resolve() / "index.html") in proc.stdout and "pdf" in proc.stdout.lower()
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    assert con.execute("select count(*), max(finished_at) from raw.sync_runs").fetchone() == runs_before
    con.close()


def test_without_chromium_the_pdf_is_skipped_with_a_warning(demo, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.delenv("INCIDENT_METRICS_CHROMIUM", raising=False)
    with caplog.at_level(logging.WARNING):
        out = write_report(demo["con"], tmp_path / "reports", run_date=date(2030, 1, 2))
    assert (out / "index.html").exists() and (out / "team_baselines.parquet").exists()
    assert not (out / "report.pdf").exists()
    assert any("PDF skipped" in r.message and "apt-get install chromium" in r.message for r in caplog.records)


def test_latest_points_at_the_newest_and_a_rerun_replaces_the_folder(demo, tmp_path):
    reports = tmp_path / "reports"
    first = write_report(demo["con"], reports, run_date=date(2030, 1, 1), pdf=False)
    (first / "stale.txt").write_text("from an earlier render")
    second = write_report(demo["con"], reports, run_date=date(2030, 1, 2), pdf=False)
    assert os.readlink(reports / "latest") == "2030-01-02" and second.name == "2030-01-02"
    again = write_report(demo["con"], reports, run_date=date(2030, 1, 1), pdf=False)
    assert not (again / "stale.txt").exists()  # replaced as a whole, not merged
    assert sorted(p.name for p in reports.iterdir()) == ["2030-01-01", "2030-01-02", "latest"]


# --------------------------------------------------------------------------------------- the asset


def test_a_failing_blocking_check_upstream_stops_the_report(tmp_path):
    from assets.reports import baseline_report
    from pipelines.resources import WarehouseResource

    key = dg.AssetKey(["marts", "fct_incidents"])

    @dg.asset(key=key, check_specs=[dg.AssetCheckSpec("no_duplicate_incidents", asset=key, blocking=True)])
    def fct_incidents_stub():
        yield dg.MaterializeResult()
        yield dg.AssetCheckResult(check_name="no_duplicate_incidents", passed=False)

    result = dg.materialize([fct_incidents_stub, baseline_report],
                            resources={"warehouse": WarehouseResource(data_dir=str(tmp_path))},
                            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert not result.success
    keys = {e.asset_key for e in result.get_asset_materialization_events()}
    assert dg.AssetKey(["reports", "baseline_report"]) not in keys
    assert not (tmp_path / "reports").exists()


def test_report_asset_runs_after_every_mart():
    from assets.reports import baseline_report
    from pipelines import metrics
    from pipelines import warehouse as wh

    deps = {k.to_user_string() for k in baseline_report.asset_deps[dg.AssetKey(["reports", "baseline_report"])]}
    assert {f"marts/{f.table}" for f in wh.sql_files("marts")} <= deps
    assert {f"marts/{t}" for t in metrics.DESCRIPTIONS} <= deps
