"""Test-session settings shared by every file."""

from __future__ import annotations

# Files whose time is mostly waiting on other processes (a cron minute, the Dagster daemon, restarts):
# collected first, so that under `make test` (pytest-xdist, one worker per core, a file per worker at
# a time) one worker waits on them while the other runs the CPU-bound files, instead of one worker
# waiting alone at the end.
FIRST = ("tests/test_deploy.py",)


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: 0 if item.nodeid.startswith(FIRST) else 1)
