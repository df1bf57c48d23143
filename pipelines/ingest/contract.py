"""The connector contract: what a source declares so that the one ingest runner (``runner.py``) can
read it into ``raw.*``, night after night and over a backfill range.

A **connector** (``pipelines/connectors/<name>/``) is a client, its streams, its record rules, its
Dagster resource and its settings. A **stream** names its raw tables, how each table's records are
judged (``RecordRules``), which field is its bookmark, and how it reads: ``read`` for a night (from
the bookmark), ``read_range`` for one unit of a backfill (a time window, or one repo). A reader only
talks to its API: it yields ``Part``s (records per raw table), and the runner does everything else:
validation, quarantine, staging, the merge into raw, the bookmarks and ``raw.sync_runs``, in one
transaction (docs/connectors.md walks through it with a real connector as the example).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pipelines import warehouse as wh
from pipelines.records import RecordRules, parse_time, split_valid

# How a stream is bookmarked, which also says what a backfill unit is.
FULL = "full"  # small lists without a change filter (teams, services): read in full every run, no bookmark
ACCOUNT = "account"  # one bookmark for the whole account; a backfill reads its range window by window
PER_REPO = "repo"  # one bookmark per repo (``<stream>:<repo>``); a backfill reads its range repo by repo

Reject = tuple[Any, str, str]  # (record, rule, reason)
BATCH_SIZE = 5_000  # records a reader hands over at a time, so memory stays bounded on a long read


@dataclass(frozen=True)
class Field:
    """A column computed from each record as it is staged, for a cross-record rule to read without
    parsing this run's JSON again (say, an event's type, incident and time)."""

    name: str
    sql_type: str
    value: Callable[[dict], Any]


@dataclass(frozen=True)
class RawTable:
    """One ``raw.<name>`` table a stream writes: ``id``, the record as sent (``payload``), the
    stream's constant columns (``extra``, e.g. a git host's ``repo``), ``fetched_at`` and ``run_id``."""

    name: str
    rules: RecordRules  # how each record is judged before it may enter raw (pipelines/records.py)
    api_stream: str  # the client's request-accounting key for this table's requests
    cursor: str | None = None  # the field whose newest value is the bookmark (a stream's first table)
    parse_cursor: Callable[[Any], datetime | None] = parse_time
    extra: tuple[str, ...] = ()
    fields: tuple[Field, ...] = ()
    description: str = ""

    @property
    def sync_stream(self) -> str:
        """Its name in ``raw.sync_runs``: the table name without the source prefix."""
        return self.name.split("_", 1)[1]

    def cursor_of(self, record: dict) -> datetime | None:
        return self.parse_cursor(record.get(self.cursor)) if self.cursor else None


@dataclass
class Part:
    """What a reader yields: records as the API sent them, by raw table, and what goes with them."""

    records: dict[str, list] = field(default_factory=dict)
    bookmark: str | None = None  # the bookmark the first table's records in this part move
    extra: dict[str, str] = field(default_factory=dict)  # constant columns of every row of this part
    rejects: list[Reject] = field(default_factory=list)  # what the reader refused itself (a repo it cannot read)
    checked: bool = False  # the records were judged already (``Read.split``): the runner does not judge again


class StreamUnavailable(Exception):
    """Raised by a reader when the account cannot use this stream (an API its plan does not
    include): the runner writes nothing, moves no bookmark and reports ``metadata``."""

    def __init__(self, message: str, metadata: dict[str, int]) -> None:
        super().__init__(message)
        self.metadata = metadata


@dataclass
class Read:
    """What a reader gets: its client, the run's clock and settings, the repos (git sources), the
    window of an ACCOUNT stream on a night, or the range of a backfill. A reader may read the
    warehouse (``con``) before it asks the API, never write it."""

    con: Any
    client: Any
    stream: "Stream"
    now: datetime
    settings: Any  # pipelines.ingest.runner.SyncSettings
    repos: list[str] = field(default_factory=list)
    since: datetime | None = None  # ACCOUNT on a night: the bookmark minus the rewind (or the history start)
    high_water_mark: datetime | None = None
    until: datetime | None = None  # a backfill unit's end (exclusive); a night reads up to ``now``
    batch_size: int = field(default_factory=lambda: BATCH_SIZE)

    def window(self, bookmark: str) -> tuple[datetime, datetime | None]:
        """``(since, bookmark)`` of one bookmark: read from ``since``, the bookmark minus the rewind,
        or ``settings.history_days`` back on a first load."""
        hwm = wh.high_water_mark(self.con, self.stream.source, bookmark)
        rewind = self.stream.rewind if self.stream.rewind is not None else self.settings.rewind
        since = (hwm - rewind) if hwm else self.now - timedelta(days=self.settings.history_days)
        return since, hwm

    def split(self, table: str, records: list) -> tuple[list[dict], list[Reject]]:
        """The records of ``table`` that pass its rules, and the rejects: for a reader that must know
        which records are good before it reads more (say, the statuses of good deployments only)."""
        return split_valid(records, self.stream.table(table).rules, now=self.now)


@dataclass(frozen=True)
class Stream:
    source: str  # the connector's name: the ``source`` of raw.sync_state, sync_runs and the quarantine
    name: str  # e.g. "incidents": its bookmark (ACCOUNT) or bookmark prefix (PER_REPO), its quarantine stream
    tables: tuple[RawTable, ...]  # tables[0] is the stream's own: its cursor moves the bookmark
    read: Callable[[Read], Iterator[Part]]  # a night
    read_range: Callable[[Read, Any], Iterator[Part]] | None = None  # one backfill unit: (start, end) or a repo
    scope: str = ACCOUNT
    rewind: timedelta | None = None  # re-read this much before the bookmark; None: the settings' rewind
    # Cross-record rules run on raw inside the run's transaction after the merge:
    # (con, run_id, {table: name of this run's staged rows}) -> how many records it quarantined.
    after_merge: Callable[[Any, str, dict[str, str]], int] | None = None
    enabled: Callable[[Any], bool] | None = None  # given the Dagster resource; None: always on
    # Where the account may lack the stream (``StreamUnavailable``): the request-accounting key that
    # says whether it was there (1) or not (0, with the reader's reason).
    availability: str | None = None
    reads_repos: bool = False  # takes the repos of its source from the ownership file
    description: str = ""

    @property
    def ranged(self) -> bool:
        """A backfill re-reads it over its range (``read_range``)."""
        return self.read_range is not None

    def table(self, name: str) -> RawTable:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(f"{self.source} stream {self.name} has no raw table {name}")


@dataclass(frozen=True)
class OwnershipNames:
    """How the ownership file and Backstage catalogs name this source's ids (docs/ownership.md).

    Every paging source's service and team ids are written ``ids: {<source>: <id>}`` and every git
    host's repos ``{<source>: <path>}``; these are the source's own extra spellings."""

    service_alias: str | None = None  # a service key that means ``ids: {<source>: ...}`` (files written before ids)
    team_alias: str | None = None  # the same for a team's id
    backstage_annotation: str | None = None  # paging: a Component's service-id annotation; git: its repo slug
    plain_repos: bool = False  # git: a repo written as a bare path is on this host
    repo_pattern: str = r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"  # git: how a repo path looks
    repo_example: str = "owner/name"


@dataclass(frozen=True)
class Connector:
    """A source: its streams, its Dagster resource (key ``name``) and how the resource is built
    from the environment (``settings()``, read when the code location loads)."""

    name: str  # lower case: the resource key, the source column and the folder name
    label: str  # how people write it, in messages and the report
    kind: str  # "paging" (incidents) or "git" (deployments and changes)
    streams: tuple[Stream, ...]
    resource: Callable[[], Any]  # the configured Dagster resource, from the environment
    settings: tuple[str, ...] = ()  # the environment variables it reads (README, .env.example)
    quality: tuple = ()  # pipelines.quality.TableQuality of each of its staging tables (the asset checks)
    ownership: OwnershipNames = OwnershipNames()
    # (DuckDB variable, environment variable): settings its SQL reads with getvariable(), set on
    # the warehouse's sessions when the environment variable is (a name pattern, a threshold)
    sql_variables: tuple[tuple[str, str], ...] = ()

    def stream(self, name: str) -> Stream:
        for s in self.streams:
            if s.name == name:
                return s
        raise KeyError(f"{self.label} has no stream {name}")
