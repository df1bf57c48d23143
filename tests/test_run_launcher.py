"""pipelines/run_launcher.py against real user-code servers on loopback: what the daemon's run
monitoring is told about a run in each case. (A run the server does execute is reported alive:
the daemon tests in tests/test_deploy.py poll every 5 s through whole runs and none is failed.)"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from dagster._core.launcher.base import WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun
from dagster._grpc.client import DagsterGrpcClient

from pipelines.run_launcher import MonitoredRunLauncher
from tests.process_helpers import BIN, free_port, wait_until_serving

ROOT = Path(__file__).resolve().parent.parent
RUN = DagsterRun(job_name="nightly", run_id="0f0e0d0c-0000-4000-8000-000000000001")



def _serve(*command: str):
    port = free_port()
    proc = subprocess.Popen([str(BIN / "dagster"), *command, "-h", "127.0.0.1", "-p", str(port),
                             "-m", "pipelines.definitions"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until_serving(proc, port)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc, port


def _launcher(port: int | None, grace: float = 60.0) -> MonitoredRunLauncher:
    launcher = MonitoredRunLauncher()
    launcher.grace_seconds = grace
    # The run's server as the launcher recorded it in the run's tags (instance storage not needed here).
    launcher._get_grpc_client_for_termination = (  # type: ignore[method-assign]
        lambda run_id: DagsterGrpcClient(port=port, host="127.0.0.1") if port else None)
    return launcher


@pytest.fixture(scope="module")
def grpc_server():
    proc, port = _serve("api", "grpc")
    yield port
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_a_run_the_server_does_not_have_is_a_dead_worker(grpc_server):
    # what a restarted server answers for a run its predecessor was executing
    result = _launcher(grpc_server).check_run_worker_health(RUN)
    assert result.status == WorkerStatus.FAILED
    assert f"127.0.0.1:{grpc_server} no longer runs it" in result.msg


def test_a_server_that_does_not_answer_is_given_the_grace_period_then_declared_dead():
    port = free_port()  # nothing listens there
    patient = _launcher(port, grace=60.0)
    assert patient.check_run_worker_health(RUN).status == WorkerStatus.RUNNING
    impatient = _launcher(port, grace=0.0)
    result = impatient.check_run_worker_health(RUN)
    assert result.status == WorkerStatus.FAILED and "has not answered for 0 s" in result.msg


def test_a_proxy_server_that_cannot_list_its_runs_never_fails_a_run():
    proc, port = _serve("code-server", "start")
    try:
        result = _launcher(port, grace=0.0).check_run_worker_health(RUN)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert result.status == WorkerStatus.RUNNING and "cannot list its runs" in result.msg


def test_a_run_not_yet_tagged_with_its_server_is_taken_as_alive():
    assert _launcher(None).check_run_worker_health(RUN).status == WorkerStatus.RUNNING
