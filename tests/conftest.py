"""Test-session settings shared by every file."""

from __future__ import annotations

# The longest files first (`make test` hands whole files to its two workers in this order, with
# --no-loadscope-reorder): test_deploy.py mostly waits on other processes (a cron minute, the Dagster
# daemon, restarts), so one worker waits on it while the other runs the CPU-bound files; then the
# slowest of those (durations measured with --durations), so that no long file starts last.
FIRST = ("tests/test_deploy.py", "tests/test_scorecard.py", "tests/test_crash_safety.py",
         "tests/test_github_graphql_pipeline.py", "tests/test_report.py", "tests/test_incremental.py",
         "tests/test_report_browser.py", "tests/test_jobs.py", "tests/test_backfill.py")


def _rank(nodeid: str) -> int:
    return next((i for i, f in enumerate(FIRST) if nodeid.startswith(f + "::")), len(FIRST))


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: _rank(item.nodeid))
