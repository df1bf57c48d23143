"""Helpers for the report tests: a tiny Chrome DevTools Protocol client, the demo warehouse, a
warehouse whose names hold markup, and PDF text extraction.

The browser is Debian's ``chromium`` (``make test`` installs it: scripts/system-packages.sh), driven over ``--remote-debugging-pipe``:
DevTools messages are NUL-terminated JSON on file descriptors 3 (to the browser) and 4 (from it), so
no port is opened, nothing is downloaded and no extra package is needed.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pipelines.report.pdf import BASE_FLAGS, INSTALL_HINT, find_chromium

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "docs" / "screenshots"
UPDATE_SCREENSHOTS = os.environ.get("UPDATE_SCREENSHOTS", "") not in ("", "0", "false", "no")

XSS_TEAM = "<script>alert(1)</script>"
XSS_SERVICE = '"><img src=x onerror=alert(1)>'


def chromium_or_fail() -> str:
    binary = find_chromium()
    if binary is None:
        pytest.fail(f"the report browser tests need Chromium: {INSTALL_HINT}. `make test` installs it (scripts/system-packages.sh).",
                    pytrace=False)
    return binary


# --------------------------------------------------------------------------------------- CDP over a pipe


class CdpError(RuntimeError):
    pass


class Browser:
    """Headless Chromium with one page, driven over the DevTools pipe."""

    def __init__(self, binary: str, *, width: int = 1200, height: int = 900, timeout: float = 30.0):
        self.timeout = timeout
        self.events: list[dict] = []
        self._next_id = 0
        self._buffer = b""
        self._profile = tempfile.mkdtemp(prefix="im-cdp-")
        to_child_r, self._to_child_w = os.pipe()
        self._from_child_r, from_child_w = os.pipe()

        def wire_fds() -> None:  # in the child, before exec: the pipe ends become fds 3 and 4
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        cmd = [binary, *BASE_FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self._profile}",
               f"--window-size={width},{height}", "about:blank"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=wire_fds, pass_fds=(3, 4),
                                     env={**os.environ, "HOME": self._profile})
        os.close(to_child_r)
        os.close(from_child_w)
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=True)

    # protocol -----------------------------------------------------------------------------------
    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CdpError("timed out waiting for Chromium")
            ready, _, _ = select.select([self._from_child_r], [], [], left)
            if ready:
                chunk = os.read(self._from_child_r, 1 << 20)
                if not chunk:
                    raise CdpError("Chromium closed the DevTools pipe")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, *, session: bool = False) -> dict:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_child_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CdpError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self._on_event(reply)

    def _on_event(self, event: dict) -> None:
        self.events.append(event)
        if event["method"] == "Page.javascriptDialogOpening":  # an alert() must never block the page
            msg = {"id": 10**9 + len(self.events), "method": "Page.handleJavaScriptDialog",
                   "params": {"accept": True}, "sessionId": event.get("sessionId")}
            os.write(self._to_child_w, json.dumps(msg).encode() + b"\0")

    def wait_for(self, method: str, since: int = 0, timeout: float | None = None) -> dict:
        """The first event ``method`` at or after position ``since`` in ``self.events``."""
        deadline = time.monotonic() + (timeout or self.timeout)
        for e in self.events[since:]:
            if e["method"] == method:
                return e
        while True:
            msg = self._read_message(deadline)
            if "method" in msg:
                self._on_event(msg)
                if msg["method"] == method:
                    return msg

    # page ---------------------------------------------------------------------------------------
    def open(self, url: str) -> None:
        mark = len(self.events)
        self.call("Page.navigate", {"url": url}, session=True)
        self.wait_for("Page.loadEventFired", since=mark)
        self.evaluate("document.fonts ? document.fonts.ready.then(() => true) : true", await_promise=True)

    def evaluate(self, expression: str, *, await_promise: bool = False):
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": await_promise}, session=True)
        if "exceptionDetails" in res:
            raise CdpError(f"evaluate failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def screenshot(self, path: Path, clip: dict | None = None) -> Path:
        if clip is None:
            size = self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"]}
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                    "clip": {**clip, "scale": 1}}, session=True)["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def element_clip(self, selector: str, pad: int = 8) -> dict:
        box = self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
            " return {x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height}; })()")
        return {"x": max(0, box["x"] - pad), "y": max(0, box["y"] - pad), "width": box["width"] + 2 * pad,
                "height": box["height"] + 2 * pad}

    def flush(self) -> None:
        """Round-trip once so every event the page produced so far has been read."""
        self.evaluate("1")

    # what happened --------------------------------------------------------------------------------
    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]

    def console_errors(self) -> list[str]:
        out = []
        for e in self.events:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
            elif m == "Runtime.exceptionThrown":
                out.append("exception: " + json.dumps(p.get("exceptionDetails", {}))[:300])
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        return out

    def dialogs(self) -> list[str]:
        return [e["params"].get("message", "") for e in self.events if e["method"] == "Page.javascriptDialogOpening"]

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_child_w, self._from_child_r):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class PageVisit:
    url: str
    requests: list[str]
    console_errors: list[str]
    dialogs: list[str]
    summary: list[dict]              # every [data-summary] element: key, value, text
    text: str                        # document.body.innerText
    active_elements: int             # script, img, iframe, object, embed, link elements in the DOM
    screenshots: dict[str, Path] = field(default_factory=dict)


def visit_report(html_path: Path, shots_dir: Path, *, element_shots: dict[str, str] | None = None,
                 first_page_name: str | None = None, full_page_name: str = "report-full-page.png",
                 width: int = 1200) -> PageVisit:
    """Open the report in headless Chromium; record requests, console errors and dialogs; read the
    summary numbers; take a full-page screenshot (and the first screen and element screenshots)."""
    binary = chromium_or_fail()
    url = Path(html_path).resolve().as_uri()
    with Browser(binary, width=width, height=1500) as b:
        b.open(url)
        summary = b.evaluate(
            "[...document.querySelectorAll('[data-summary]')].map(e => ({key: e.dataset.summary, "
            "value: e.dataset.value ?? null, text: e.textContent}))")
        text = b.evaluate("document.body.innerText")
        active = b.evaluate("document.querySelectorAll('script, img, iframe, object, embed, link, video, audio').length")
        shots = {"full": b.screenshot(Path(shots_dir) / full_page_name)}
        if first_page_name:
            shots["first"] = b.screenshot(Path(shots_dir) / first_page_name,
                                          clip={"x": 0, "y": 0, "width": width, "height": 1500})
        for name, selector in (element_shots or {}).items():
            shots[name] = b.screenshot(Path(shots_dir) / name, clip=b.element_clip(selector))
        b.flush()
        return PageVisit(url=url, requests=b.requests(), console_errors=b.console_errors(), dialogs=b.dialogs(),
                         summary=summary, text=text, active_elements=active, screenshots=shots)


A4_CONTENT_WIDTH_PX = 710  # 210 mm - 2 x 11 mm of @page margin, at 96 CSS px per inch


def print_layout_overflow(html_path: Path, width: int = A4_CONTENT_WIDTH_PX) -> dict:
    """Lay the page out as printed (print media, A4 content width) and list every block that sticks
    out to the right: in the PDF it would be cut off."""
    with Browser(chromium_or_fail(), width=width, height=1100) as b:
        b.call("Emulation.setEmulatedMedia", {"media": "print"}, session=True)
        b.open(Path(html_path).resolve().as_uri())
        return b.evaluate("""(() => {
            const W = document.documentElement.clientWidth, bad = [];
            for (const e of document.querySelectorAll('table, figure, svg, p, ul, h1, h2, h3, .cards, .smalls')) {
              const r = e.getBoundingClientRect();
              if (r.right > W + 1) bad.push(`${e.tagName}.${e.className}: ${(e.textContent || '').slice(0, 60)}`);
            }
            return {width: W, scroll_width: document.documentElement.scrollWidth, overflowing: bad};
        })()""")


# --------------------------------------------------------------------------------------- PDF


def pdf_text(path: Path) -> str:
    """All text of a PDF with whitespace collapsed (line breaks inside a sentence become spaces)."""
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    text = "\n".join(page.extract_text() or "" for page in reader.pages)
    return normalise(text)


def normalise(text: str) -> str:
    text = text.replace("\u00a0", " ").replace("\u202f", " ").replace("\u2009", " ")
    return re.sub(r"\s+", " ", text).strip()


def pdf_pages(path: Path) -> int:
    from pypdf import PdfReader

    return len(PdfReader(str(path)).pages)


# --------------------------------------------------------------------------------------- warehouses


def expected_summary(con) -> dict:
    """The executive summary, by hand, with SQL on the marts (independent of pipelines.report)."""
    org = con.execute("select estimate, ci_low, ci_high, verdict, mde, placebo_p, n_treated_teams "
                      "from marts.org_effects where metric = 'time_to_resolve'").fetchone()
    verdicts = dict(con.execute("select verdict, count(*) from marts.team_comparisons "
                                "where metric = 'time_to_resolve' and variant = 'transition_excluded' "
                                "group by verdict").fetchall())
    total, adopted = con.execute("select count(*), count(adopted_on) from marts.dim_teams").fetchone()
    incidents = con.execute("select count(*) from marts.fct_incidents where not is_merged and team_key is not null"
                            ).fetchone()[0]
    return {
        "org_ttr_ratio": org[0], "org_ttr_ci_low": org[1], "org_ttr_ci_high": org[2], "org_ttr_verdict": org[3],
        "org_ttr_mde": org[4], "org_ttr_placebo_p": org[5], "org_ttr_n_treated_teams": org[6],
        "teams_improved": verdicts.get("improved", 0), "teams_worsened": verdicts.get("worsened", 0),
        "teams_equivalent": verdicts.get("equivalent", 0),
        "teams_cannot_tell": verdicts.get("inconclusive", 0) + verdicts.get("insufficient_data", 0),
        "teams_compared": sum(verdicts.values()), "teams_total": total, "teams_adopted": adopted,
        "teams_not_adopted": total - adopted, "incidents_analysed": incidents,
    }



_DEMO: dict = {}


def start_demo() -> None:
    """Start `incident-metrics demo` (seed 7) in a subprocess, once per test session, without waiting:
    it takes most of a minute, so the browser tests build their small warehouse meanwhile.

    The real command runs (emulator, nightly job, statistics marts, the report asset with its PDF);
    its environment changes stay in the subprocess."""
    if "proc" in _DEMO:
        return
    root = Path(tempfile.mkdtemp(prefix="im-report-demo-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAGERDUTY_", "GITHUB_", "INCIDENT_METRICS_"))}
    env["INCIDENT_METRICS_DATA_DIR"] = str(root)
    env.pop("DAGSTER_HOME", None)
    cli = Path(sys.executable).with_name("incident-metrics")
    cmd = [str(cli), "demo"] if cli.exists() else [sys.executable, "-m", "pipelines.cli", "demo"]
    log = open(root / "demo.log", "w+", encoding="utf-8")
    _DEMO.update(root=root, log=log, proc=subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log,
                                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
    atexit.register(_cleanup_demo)


def _cleanup_demo() -> None:
    proc = _DEMO.get("proc")
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()
    _DEMO["log"].close()
    shutil.rmtree(_DEMO["root"], ignore_errors=True)


def demo_data_dir(timeout: float = 600) -> Path:
    """The data folder of the demo run (started here if it was not yet); waits for it to finish."""
    start_demo()
    proc = _DEMO["proc"]
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    if code != 0:
        _DEMO["log"].seek(0)
        raise AssertionError(f"`incident-metrics demo` failed ({code}):\n{_DEMO['log'].read()[-4000:]}")
    return _DEMO["root"]


def markup_organisation():
    """A small organisation whose team and service names hold markup, with enough incidents for the
    statistics to run (two teams, one adopting)."""
    from datetime import date, datetime, timedelta, timezone

    import numpy as np

    from emulator.model import (
        Deployment,
        DeploymentStatus,
        Incident,
        LogEntry,
        Organisation,
        OwnershipPeriod,
        Repo,
        Service,
        Team,
    )

    rng = np.random.default_rng(5)
    teams = [Team("PTXSS01", "xss", XSS_TEAM, "Europe/Berlin", adopted_on=date(2025, 9, 1)),
             Team("PTPLN01", "plain", "Plain & Simple", "UTC")]
    services = [Service("PSVCX01", XSS_SERVICE, [OwnershipPeriod("xss")], repos=["acme/xss"]),
                Service("PSVCP01", "plain-svc", [OwnershipPeriod("plain")], repos=["acme/plain"])]
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    incidents, deployments = [], []
    number = 0
    for service in ("PSVCX01", "PSVCP01"):
        for k in range(220):
            number += 1
            created = start + timedelta(hours=float(k * 40 + rng.uniform(0, 30)))
            ack = created + timedelta(seconds=float(rng.lognormal(5.5, 0.8)))
            resolved = created + timedelta(seconds=float(rng.lognormal(8.0, 1.2)) + 300)
            iid = f"Q{number:04d}"
            entries = [LogEntry(f"L{iid}T", "trigger_log_entry", created, iid),
                       LogEntry(f"L{iid}A", "assign_log_entry", created, iid, assignees=["PU1"]),
                       LogEntry(f"L{iid}K", "acknowledge_log_entry", ack, iid, agent_type="user_reference",
                                agent_id="PU1", channel_type="website"),
                       LogEntry(f"L{iid}Z", "resolve_log_entry", resolved, iid, agent_type="user_reference",
                                channel_type="website")]
            incidents.append(Incident(id=iid, number=number, title=XSS_TEAM, service_id=service,
                                      created_at=created, acknowledged_at=ack, resolved_at=resolved,
                                      log_entries=entries))
    for k in range(60):
        for repo in ("acme/xss", "acme/plain"):
            created = start + timedelta(days=k * 6, hours=3)
            dep_id = 1000 + len(deployments)
            deployments.append(Deployment(dep_id, repo, f"{dep_id:040d}", "main", "production", created,
                                          statuses=[DeploymentStatus(dep_id * 10, "success",
                                                                     created + timedelta(minutes=5))]))
    return Organisation(teams=teams, services=services, incidents=incidents,
                        repos=[Repo(1, "acme/xss"), Repo(2, "acme/plain")], deployments=deployments,
                        github_org="acme")


def materialize_markup_warehouse(tmp: Path) -> Path:
    """Run every asset (ingest, marts, statistics, report) against the emulator serving
    ``markup_organisation``; returns the data folder."""
    import dagster as dg

    from assets.snapshot import analyst_snapshot
    from emulator.server import EmulatorServer
    from pipelines.connectors.github.resource import GitHubResource
    from pipelines.connectors.gitlab.resource import GitLabResource
    from pipelines.connectors.pagerduty.resource import PagerDutyResource
    from pipelines.definitions import all_assets
    from pipelines.resources import OwnershipResource, WarehouseResource

    org = markup_organisation()
    ownership = tmp / "ownership.yaml"
    ownership.write_text(org.ownership_yaml(), encoding="utf-8")
    pd_token, gh_token = "xss-pd-token", "xss-gh-token"
    srv = EmulatorServer(org, port=0, pagerduty_token=pd_token, github_token=gh_token).start()
    try:
        result = dg.materialize([a for a in all_assets if a is not analyst_snapshot], resources={
            "pagerduty": PagerDutyResource(api_url=srv.pagerduty_url, api_token=pd_token),
            "github": GitHubResource(api_url=srv.github_url, token=gh_token),
            "gitlab": GitLabResource(api_url=srv.gitlab_url),
            "ownership": OwnershipResource(path=str(ownership)),
            "warehouse": WarehouseResource(data_dir=str(tmp / "data"), history_days=1000),
        }, instance=dg.DagsterInstance.ephemeral())
    finally:
        srv.stop()
    assert result.success
    return tmp / "data"
