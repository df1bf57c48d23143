"""A run launcher for the user-code-server layout of deploy/ that lets the daemon notice a dead run.

Dagster's ``DefaultRunLauncher`` starts each run as a process of the user-code server, but cannot
tell the daemon whether that process still lives: when the server's container is killed (an OOM
kill, a redeploy, a lost host), the run stays "started" for ever and holds the warehouse pool, so
no later night runs. This launcher answers the run monitor's question by asking the server that
started the run which runs it is executing (the gRPC ``GetCurrentRuns`` call): a run it no longer
has, or a server that has not answered for UNREACHABLE_GRACE_SECONDS (a network blip is not a
death), is a dead worker. The daemon then marks the run failed with that reason and, with
``run_retries`` on, retries it from the steps that had not finished; each step commits in its own
transaction, so the warehouse is as of the last committed step in between.

It needs the user-code server to be ``dagster api grpc`` (as deploy/ runs it and the Helm chart does):
the proxy of ``dagster code-server start`` does not answer ``GetCurrentRuns``, and a run there is
taken as alive (then only run monitoring's ``max_runtime_seconds``, 12 hours in deploy/dagster.yaml,
ends a dead one). A server cut off by the network for longer than the grace period is taken as dead
while its run may still be writing: the retry then fails on the DuckDB file lock, with that error.

Configured in deploy/dagster.yaml (``run_launcher``); tests/test_deploy.py kills the server mid-run,
tests/test_run_launcher.py asks real servers.
"""

from __future__ import annotations

import time

from dagster import DefaultRunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun
from dagster._serdes import deserialize_value

UNREACHABLE_GRACE_SECONDS = 60.0


def _unimplemented(error: Exception) -> bool:
    import grpc

    cause = error.__cause__
    return isinstance(cause, grpc.RpcError) and cause.code() == grpc.StatusCode.UNIMPLEMENTED


class MonitoredRunLauncher(DefaultRunLauncher):
    """``DefaultRunLauncher`` plus ``check_run_worker_health`` for the daemon's run monitoring."""

    grace_seconds = UNREACHABLE_GRACE_SECONDS

    def __init__(self, inst_data=None):
        super().__init__(inst_data=inst_data)
        self._unreachable_since: dict[str, float] = {}

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        from dagster._core.errors import DagsterUserCodeUnreachableError
        from dagster._grpc.types import GetCurrentRunsResult

        client = self._get_grpc_client_for_termination(run.run_id)
        if client is None:  # finished meanwhile, or not yet tagged with its server: cannot tell, so alive
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no user-code server recorded for the run yet")
        try:
            result = deserialize_value(client.get_current_runs(), GetCurrentRunsResult)
        except DagsterUserCodeUnreachableError as e:
            if _unimplemented(e):  # a server that cannot list its runs (`dagster code-server start`'s proxy)
                return CheckRunHealthResult(WorkerStatus.RUNNING, "this user-code server cannot list its runs")
            since = self._unreachable_since.setdefault(run.run_id, time.monotonic())
            if time.monotonic() - since < self.grace_seconds:
                return CheckRunHealthResult(WorkerStatus.RUNNING, "user-code server not answering; waiting")
            del self._unreachable_since[run.run_id]  # the run is about to be failed
            return CheckRunHealthResult(
                WorkerStatus.FAILED,
                f"the user-code server that ran it ({client.host}:{client.port}) has not answered for "
                f"{self.grace_seconds:.0f} s: it was stopped or killed, and the run's process with it",
            )
        self._unreachable_since.pop(run.run_id, None)
        if run.run_id in result.current_runs:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"the user-code server at {client.host}:{client.port} no longer runs it: the server was "
            "restarted while the run was in progress",
        )
