"""The registry of connectors: the one place that names the sources.

Every part of the pipeline that depends on which sources exist reads this list: the raw assets and
their checks (``assets/raw.py``), the backfill job's targets, the resources of the code location,
the quarantine's sources and streams. A new source is a folder beside these (its client, streams,
record rules, resource and settings; docs/connectors.md), its SQL, and one line here.
"""

from __future__ import annotations

from pipelines.connectors import github, gitlab, pagerduty
from pipelines.ingest.contract import Connector, Stream

CONNECTORS: tuple[Connector, ...] = (
    pagerduty.CONNECTOR,
    github.CONNECTOR,
    gitlab.CONNECTOR,
)


def connector(name: str) -> Connector:
    for c in CONNECTORS:
        if c.name == name:
            return c
    raise KeyError(f"no connector {name!r}; known: {', '.join(c.name for c in CONNECTORS)}")


def streams() -> list[tuple[Connector, Stream]]:
    """Every stream of every connector, in registry order."""
    return [(c, s) for c in CONNECTORS for s in c.streams]
