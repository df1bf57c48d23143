"""The report in a real browser (Debian's headless Chromium, over the DevTools pipe) and its PDF.

* The demo report: no network request besides the page itself, no console error, a full-page
  screenshot, and the executive-summary numbers on the page equal to SQL on the marts.
* The PDF carries the same summary numbers as the HTML, the first page holds the whole summary,
  and nothing sticks out of the printed page.
* Team and service names holding markup show as text in the HTML, the browser and the PDF.

Screenshots go to a temporary folder; with UPDATE_SCREENSHOTS=1 the first page and one team section
are also written to docs/screenshots/ (they are shown in the README).
"""

from __future__ import annotations

import html
import math
import shutil
import struct

import duckdb
import pytest

from tests.report_helpers import (
    SCREENSHOTS,
    UPDATE_SCREENSHOTS,
    XSS_SERVICE,
    XSS_TEAM,
    chromium_or_fail,
    demo_data_dir,
    expected_summary,
    materialize_markup_warehouse,
    normalise,
    pdf_text,
    print_layout_overflow,
    start_demo,
    visit_report,
)

REQUIRED_SUMMARY_KEYS = ("org_ttr_ratio", "org_ttr_ci_low", "org_ttr_ci_high", "teams_improved", "teams_worsened",
                         "teams_cannot_tell", "teams_compared", "teams_total", "teams_adopted", "incidents_analysed",
                         "as_of")


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", data[16:24])


# --------------------------------------------------------------------------------------- markup in names
# First in this file: the demo (about a minute) keeps running in a subprocess while this builds its own
# small warehouse.


@pytest.fixture(scope="module")
def markup(tmp_path_factory):
    chromium_or_fail()
    start_demo()
    data = materialize_markup_warehouse(tmp_path_factory.mktemp("markup"))
    report = (data / "reports" / "latest").resolve()
    visit = visit_report(report / "index.html", tmp_path_factory.mktemp("markup-shots"))
    return {"report": report, "visit": visit}


def test_markup_in_names_is_escaped_in_the_html(markup):
    page = (markup["report"] / "index.html").read_text(encoding="utf-8")
    assert html.escape(XSS_TEAM) in page and html.escape(XSS_SERVICE) in page
    assert "&amp;" in page and "Plain &amp; Simple" in page
    assert "<script" not in page and "<img" not in page and "onerror=alert(1)>" not in page


def test_markup_in_names_shows_as_text_in_the_browser(markup):
    visit = markup["visit"]
    assert visit.dialogs == [], "an alert() ran"
    assert visit.console_errors == []
    assert visit.requests == [visit.url], "the page loaded something besides itself"
    assert visit.active_elements == 0
    text = normalise(visit.text)
    assert XSS_TEAM in text and XSS_SERVICE in text and "Plain & Simple" in text


def test_markup_in_names_shows_as_text_in_the_pdf(markup):
    text = pdf_text(markup["report"] / "report.pdf")
    assert XSS_TEAM in text
    # the long service name may wrap inside the line (a line break extracts as a space)
    assert XSS_SERVICE.replace(" ", "") in text.replace(" ", "")


# --------------------------------------------------------------------------------------- the demo report


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    chromium_or_fail()
    data = demo_data_dir()
    report = (data / "reports" / "latest").resolve()
    visit = visit_report(report / "index.html", tmp_path_factory.mktemp("shots"),
                         first_page_name="report-first-page.png", element_shots={"report-team-section.png": "#team-1"})
    if UPDATE_SCREENSHOTS:  # the two shown in the README
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for key in ("first", "report-team-section.png"):
            shutil.copyfile(visit.screenshots[key], SCREENSHOTS / visit.screenshots[key].name)
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    yield {"report": report, "visit": visit, "expected": expected_summary(con)}
    con.close()


def test_demo_report_loads_nothing_and_logs_no_error(demo):
    visit = demo["visit"]
    assert visit.requests == [visit.url], [u for u in visit.requests if u != visit.url]
    assert visit.console_errors == []
    assert visit.dialogs == []
    assert visit.active_elements == 0


def test_demo_report_full_page_screenshot(demo):
    shots = demo["visit"].screenshots
    width, height = png_size(shots["full"])
    assert width == 1200 and height > 8000  # the whole page, not one screen
    assert png_size(shots["first"]) == (1200, 1500)
    team_w, team_h = png_size(shots["report-team-section.png"])
    assert team_w > 900 and team_h > 800


def test_summary_numbers_on_the_page_equal_the_marts(demo):
    want = demo["expected"]
    found = {}
    for el in demo["visit"].summary:
        found.setdefault(el["key"], []).append(el)
    missing = [k for k in REQUIRED_SUMMARY_KEYS if k not in found]
    assert not missing, missing
    for key, elements in found.items():
        for el in elements:
            if key in ("org_ttr_ratio", "org_ttr_ci_low", "org_ttr_ci_high"):
                assert math.isclose(float(el["value"]), want[key], rel_tol=1e-12), key
                assert el["text"] == f"×{want[key]:.2f}", (key, el["text"])
            elif key == "org_ttr_mde":
                assert math.isclose(float(el["value"]), want[key], rel_tol=1e-12)
                assert el["text"] == f"{want[key] * 100:.0f} %"
            elif key in ("teams_improved", "teams_worsened", "teams_cannot_tell"):
                assert int(el["value"]) == want[key], key
                assert el["text"] == f"{want[key]} of {want['teams_compared']}", (key, el["text"])
            elif key in ("teams_total", "teams_compared", "teams_adopted", "teams_not_adopted", "teams_equivalent",
                         "incidents_analysed", "org_ttr_n_treated_teams"):
                assert int(el["value"]) == want[key], key
                assert el["text"].replace(",", "").split()[0] == str(want[key]), (key, el["text"])
            elif key == "as_of":
                assert el["text"].startswith(el["value"][:10]) and el["text"].endswith("UTC")
    # the headline sentence, as a leader reads it
    text = normalise(demo["visit"].text)
    ratio, lo, hi = want["org_ttr_ratio"], want["org_ttr_ci_low"], want["org_ttr_ci_high"]
    assert f"×{ratio:.2f} (95 % CI ×{lo:.2f} to ×{hi:.2f})" in text
    assert f"{want['teams_improved']} teams improved" in text or f"{want['teams_improved']} team improved" in text


def test_pdf_carries_the_same_summary_numbers(demo):
    pdf = demo["report"] / "report.pdf"
    assert pdf.exists(), (demo["report"] / "pdf_status.txt").read_text()
    text = pdf_text(pdf)
    for el in demo["visit"].summary:
        assert normalise(el["text"]) in text, el
    want = demo["expected"]
    headline = (f"×{want['org_ttr_ratio']:.2f} (95 % CI ×{want['org_ttr_ci_low']:.2f} to "
                f"×{want['org_ttr_ci_high']:.2f})")
    assert headline in text


def test_pdf_first_page_is_the_whole_summary_and_each_team_has_its_page(demo):
    from pypdf import PdfReader

    pages = [normalise(p.extract_text() or "") for p in PdfReader(str(demo["report"] / "report.pdf")).pages]
    want = demo["expected"]
    first = pages[0]
    assert first.startswith("Incident response and service ownership") and "Executive summary" in first
    assert f"×{want['org_ttr_ratio']:.2f}" in first
    for key in ("teams_improved", "teams_worsened", "teams_cannot_tell"):
        assert f"{want[key]} of {want['teams_compared']}" in first
    assert "Per-team baseline" not in first  # the summary has the first page to itself
    # one team per page: each team page starts with its name and holds all of its charts
    team_pages = [p for p in pages if "Small charts, per calendar month" in p]
    assert len(team_pages) == want["teams_total"]
    for p in team_pages:
        for chart_title in ("Median time to acknowledge", "After-hours share of incidents", "Handoffs per incident",
                            "Production deployments per month", "Change failure rate"):
            assert chart_title in p


def test_nothing_sticks_out_of_the_printed_page(demo):
    layout = print_layout_overflow(demo["report"] / "index.html")
    assert layout["overflowing"] == [] and layout["scroll_width"] <= layout["width"], layout
