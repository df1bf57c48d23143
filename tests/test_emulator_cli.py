"""The `emulator` subcommand: prints URLs, never an environment token, stops on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]


def start(args: list[str], env_extra: dict[str, str]) -> tuple[subprocess.Popen, dict[str, str], list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMULATOR_")}
    env.update(env_extra, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "emulator.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    values: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("#"):  # the summary line ends the banner
            break
        k, _, v = line.strip().partition("=")
        values[k] = v
    return proc, values, lines


def stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    return proc.returncode, out


def test_cli_serves_and_hides_environment_tokens(tmp_path):
    proc, values, lines = start(
        ["--port", "0", "--seed", "3", "--teams", "2", "--months", "3", "--end", "2026-06-01",
         "--ownership-out", str(tmp_path / "ownership.yaml"), "--ground-truth-out", str(tmp_path / "truth.json"),
         "--fault", "status:status=503,count=1,route=/teams"],
        {"EMULATOR_PAGERDUTY_TOKEN": "secret-pd-123", "EMULATOR_GITHUB_TOKEN": "secret-gh-456"},
    )
    try:
        assert values["PAGERDUTY_API_URL"].startswith("http://127.0.0.1:") and values["PAGERDUTY_API_URL"].endswith("/pagerduty")
        assert values["GITHUB_API_URL"].endswith("/github")
        text = "\n".join(lines)
        assert "secret-pd-123" not in text and "secret-gh-456" not in text
        url = values["PAGERDUTY_API_URL"]
        headers = {"Authorization": "Token token=secret-pd-123"}
        assert requests.get(url + "/teams", headers=headers).status_code == 503  # the injected fault
        teams = requests.get(url + "/teams", headers=headers).json()["teams"]
        assert len(teams) == 2
        assert requests.get(url + "/teams", headers={"Authorization": "Token token=pd-demo-token"}).status_code == 401
        truth = json.loads((tmp_path / "truth.json").read_text())
        assert truth["seed"] == 3 and truth["config"]["n_teams"] == 2
        assert len(yaml.safe_load((tmp_path / "ownership.yaml").read_text())["teams"]) == 2
    finally:
        code, rest = stop(proc)
    assert code == 0 and "secret" not in rest


def test_cli_demo_defaults_and_tls():
    proc, values, _ = start(["--port", "0", "--teams", "2", "--months", "2", "--tls", "--end", "2026-06-01"], {})
    try:
        assert values["PAGERDUTY_API_TOKEN"] == "pd-demo-token" and values["GITHUB_TOKEN"] == "gh-demo-token"
        assert values["PAGERDUTY_API_URL"].startswith("https://")
        ca = values["EMULATOR_CA_FILE"]
        r = requests.get(values["GITHUB_API_URL"] + "/user", headers={"Authorization": "Bearer gh-demo-token"}, verify=ca)
        assert r.status_code == 200
    finally:
        code, _ = stop(proc)
    assert code == 0
    assert not Path(ca).exists()  # the throwaway CA is removed on stop
