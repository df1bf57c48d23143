"""index.html -> report.pdf with headless Chromium (Debian's ``chromium``, which `make demo` and `make test` install).

Chromium runs without network features (background networking, component updates, sync off) and
with a throw-away profile. When no Chromium is installed the report is still written (HTML, CSV,
Parquet) and the caller logs that the PDF was skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipelines.connectors import CONNECTORS

ENV_CHROMIUM = "INCIDENT_METRICS_CHROMIUM"
# Every source's secret settings (tokens, keys, passwords), from the registry of connectors.
SECRET_VARIABLES = frozenset(name for c in CONNECTORS for name in c.settings
                             if any(word in name for word in ("TOKEN", "KEY", "SECRET", "PASSWORD")))
CANDIDATES = ("chromium", "chromium-browser", "google-chrome-stable", "google-chrome")
INSTALL_HINT = "install Debian's chromium (apt-get install chromium) or set INCIDENT_METRICS_CHROMIUM to a Chromium binary"

# Flags shared by the PDF printer and the browser test: headless, no sandbox (containers, root), no GPU,
# nothing that phones home.
BASE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--metrics-recording-only",
    "--mute-audio",
    "--hide-scrollbars",
)


def find_chromium() -> str | None:
    """The Chromium binary: $INCIDENT_METRICS_CHROMIUM, else the first of CANDIDATES on PATH."""
    configured = os.environ.get(ENV_CHROMIUM, "").strip()
    if configured:
        return configured if (Path(configured).exists() or shutil.which(configured)) else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass(frozen=True)
class PdfResult:
    path: Path | None
    message: str

    @property
    def ok(self) -> bool:
        return self.path is not None


def print_pdf(html_path: Path, pdf_path: Path, *, chromium: str | None = None, timeout: float = 120.0) -> PdfResult:
    """Print ``html_path`` to ``pdf_path``. Never raises for a missing or failing browser: the
    result says what happened so the caller can log it."""
    binary = chromium or find_chromium()
    if binary is None:
        return PdfResult(None, f"PDF skipped: no Chromium found ({INSTALL_HINT})")
    html_path, pdf_path = Path(html_path).resolve(), Path(pdf_path).resolve()
    with tempfile.TemporaryDirectory(prefix="im-chromium-") as profile:
        cmd = [binary, *BASE_FLAGS, f"--user-data-dir={profile}", f"--print-to-pdf={pdf_path}",
               "--no-pdf-header-footer", html_path.as_uri()]
        # Chromium writes caches under $HOME; it needs none of our settings, least of all the tokens.
        env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
        env["HOME"] = profile
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return PdfResult(None, f"PDF skipped: {binary} did not finish within {timeout:.0f} s")
        except OSError as exc:
            return PdfResult(None, f"PDF skipped: could not start {binary}: {exc}")
    if proc.returncode != 0 or not pdf_path.exists() or pdf_path.stat().st_size == 0:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        return PdfResult(None, f"PDF skipped: {binary} exited with {proc.returncode}: {' | '.join(tail)}")
    return PdfResult(pdf_path, f"PDF written with {binary}")
