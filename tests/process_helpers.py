"""Processes the production tests start: a free loopback port, and a Dagster gRPC user-code server
started on it and waited for until it answers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(proc: subprocess.Popen, port: int, *, env: dict[str, str] | None = None,
                       timeout: float = 120.0, log=lambda: "") -> None:
    """Poll ``dagster api grpc-health-check`` until the server on ``port`` answers; fail if it exits."""
    deadline = time.monotonic() + timeout
    while subprocess.run([str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(port)],
                         env=env, capture_output=True).returncode:
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the user-code server on port {port} did not start (rc {proc.poll()}):\n{log()}")
        time.sleep(0.5)
