"""The DuckDB warehouse: schemas, SQL files, table builds, sync bookmarks and the analyst snapshot.

Layout: ``sql/<schema>/<table>.sql``. Files under ``sql/raw`` and ``sql/quarantine`` are DDL
(``create table if not exists``); files under ``sql/staging`` and ``sql/marts`` are a single
``select`` (CTEs welcome) and this module materialises them as ``create or replace table
<schema>.<table> as <select>``. The leading ``--`` comment block of a file is the table's
description; ``-- column: text`` lines in it document columns (they become DuckDB comments).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
SCHEMAS = ("raw", "staging", "intermediate", "marts", "quarantine")
_REF = re.compile(r"\b(raw|staging|intermediate|marts|quarantine)\.([a-z_][a-z0-9_]*)\b")
_COLUMN_DOC = re.compile(r"^--\s+([a-z_][a-z0-9_]*):\s+(.+)$")
# "--! incremental: <staging key column> = <SQL of the raw id>": see IncrementalSource
# "--! union: <entity>": the union of every intermediate int_<source>__<entity> table (see SqlFile.text)
_UNION = re.compile(r"^--!\s*union:\s*([a-z_][a-z0-9_]*)\s*$")
_INCREMENTAL = re.compile(r"^--!\s*incremental:\s*([a-z_][a-z0-9_]*)\s*=\s*(.+?)\s*$")


# ----------------------------------------------------------------------------------- SQL files


@dataclass(frozen=True)
class SqlFile:
    schema: str
    table: str
    path: Path

    def _union_parts(self) -> list[Path] | None:
        """The ``int_<source>__<entity>`` files a ``--! union: <entity>`` file unites, else None."""
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("--"):
                break
            m = _UNION.match(line)
            if m:
                parts = sorted(self.path.parent.glob(f"int_*__{m.group(1)}.sql"))
                if not parts:
                    raise FileNotFoundError(f"{self.path}: no int_<source>__{m.group(1)}.sql beside it to unite")
                return parts
        return None

    @property
    def text(self) -> str:
        """The file's SQL. A ``--! union: <entity>`` file (an intermediate table of every source)
        is its header followed by the union, by column name, of every ``int_<source>__<entity>``
        file beside it: a new source adds its file and is in the union, no list to edit."""
        text = self.path.read_text(encoding="utf-8")
        parts = self._union_parts()
        if parts is None:
            return text
        union = "\nunion all by name\n".join(f"select * from {self.schema}.{p.stem}" for p in parts)
        return text.rstrip("\n") + "\n" + union + "\n"

    @property
    def description(self) -> str:
        """The leading comment block, without the column lines."""
        lines = []
        for line in self.text.splitlines():
            if not line.startswith("--"):
                break
            if not _COLUMN_DOC.match(line) and not line.startswith("--!"):
                lines.append(line[2:].strip())
        return "\n".join(lines).strip()

    @property
    def column_docs(self) -> dict[str, str]:
        """The ``-- column: text`` lines of the header (a union: its parts' lines, the first wins)."""
        parts = self._union_parts()
        if parts is not None:
            docs: dict[str, str] = {}
            for p in reversed(parts):
                docs.update(SqlFile(self.schema, p.stem, p).column_docs)
            return docs
        docs = {}
        for line in self.text.splitlines():
            if not line.startswith("--"):
                break
            m = _COLUMN_DOC.match(line)
            if m:
                docs[m.group(1)] = m.group(2).strip()
        return docs

    @property
    def incremental(self) -> "IncrementalSource | None":
        """How this staging table is built incrementally, from its ``--! incremental:`` line (None:
        built in full every time). Its one raw table is the one its SQL reads."""
        for line in self.text.splitlines():
            if not line.startswith("--"):
                break
            m = _INCREMENTAL.match(line)
            if m:
                raws = [t for schema, t in self.references if schema == "raw"]
                if len(raws) != 1 or len(self.references) != 1:
                    raise ValueError(f"sql/{self.schema}/{self.table}.sql: an incremental table reads exactly one "
                                     f"raw table, not {self.references}")
                return IncrementalSource(raws[0], m.group(1), m.group(2))
        return None

    @property
    def references(self) -> list[tuple[str, str]]:
        """Tables this file reads, in order of first mention (comments ignored)."""
        return table_references(self.text, exclude=(self.schema, self.table))


def table_references(sql: str, *, exclude: tuple[str, str] | None = None) -> list[tuple[str, str]]:
    """The ``(schema, table)`` pairs a SQL text names, in order of first mention (comments ignored):
    how the assets and checks find their upstream tables in their own SQL."""
    body = "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
    seen: list[tuple[str, str]] = []
    for schema, table in _REF.findall(body):
        if (schema, table) != exclude and (schema, table) not in seen:
            seen.append((schema, table))
    return seen


def sql_files(schema: str) -> list[SqlFile]:
    files = [SqlFile(schema, p.stem, p) for p in sorted((SQL_DIR / schema).glob("*.sql"))]
    if not files:
        # A non-editable install without the sql/ folder would otherwise "succeed" with no tables.
        raise FileNotFoundError(f"no SQL files under {SQL_DIR / schema}: run from a checkout (pip install -e .)")
    return files


def sql_file(schema: str, table: str) -> SqlFile:
    path = SQL_DIR / schema / f"{table}.sql"
    if not path.exists():
        raise FileNotFoundError(f"no SQL file for {schema}.{table} at {path}")
    return SqlFile(schema, table, path)


# ----------------------------------------------------------------------------------- connections


def connect(path: str | Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only)
    set_session(con)
    return con


def set_session(con: duckdb.DuckDBPyConnection) -> None:
    """Per-connection settings every query here assumes (a cursor does not inherit them)."""
    con.execute("set timezone = 'UTC'")


def release_cache(con: duckdb.DuckDBPyConnection) -> None:
    """Empty DuckDB's block cache, as closing the database would, without closing it: a moment
    under a tiny memory limit evicts the cached blocks (a temporary table still open spills to
    disk), then the limit is restored (:func:`memory_limit`). Best effort: should DuckDB refuse the
    tiny limit, the cache stays and the limit is the default."""
    try:
        with memory_limit(con, "1MB"):
            pass
    except duckdb.Error:
        pass


# DuckDB caches every block it reads up to its memory limit (80 % of RAM by default): the staging,
# marts and statistics steps, which read the whole warehouse, would hold gigabytes. Under this limit
# they run as fast (they stream, and the operating system still caches the file) and spill to a
# temporary file beside the warehouse should a step ever need more.
BUILD_MEMORY_LIMIT = "400MB"


@contextmanager
def memory_limit(con: duckdb.DuckDBPyConnection, limit: str = BUILD_MEMORY_LIMIT) -> Iterator[duckdb.DuckDBPyConnection]:
    """Cap DuckDB's memory (its buffer cache included) while the block runs, then restore the setting."""
    def setting() -> str:
        return con.execute("select current_setting('memory_limit')").fetchone()[0]

    previous = setting()
    con.execute("reset memory_limit")
    default = setting()
    con.execute(f"set memory_limit = {_quote(limit)}")
    try:
        yield con
    finally:
        con.execute("reset memory_limit" if previous == default else f"set memory_limit = {_quote(previous)}")


def ensure_schemas(con: duckdb.DuckDBPyConnection) -> None:
    """Create the schemas and the raw / quarantine tables (idempotent)."""
    for schema in SCHEMAS:
        con.execute(f"create schema if not exists {schema}")
    for schema in ("raw", "quarantine"):
        for f in sql_files(schema):
            con.execute(f.text)


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All or nothing: a crash or an exception inside leaves the warehouse as it was."""
    con.execute("begin transaction")
    try:
        yield con
    except BaseException:
        con.execute("rollback")
        raise
    else:
        con.execute("commit")


def build_table(con: duckdb.DuckDBPyConnection, f: SqlFile) -> int:
    """Materialise a staging/marts SQL file as a table, document it, and return its row count.

    The staging tables typed one-to-one from a raw JSON table (an ``--! incremental:`` line in
    their SQL) are brought up to date incrementally after their first build: only the raw rows
    written since the last build are parsed again (see :func:`build_staging_incremental`)."""
    incremental = f.incremental if f.schema == "staging" else None
    if incremental is not None:
        return build_staging_incremental(con, f, incremental)
    query = f.text.strip().rstrip(";")
    with transaction(con):
        con.execute(f"create or replace table {f.schema}.{f.table} as\n{query}")
        comment_table(con, f.schema, f.table, f.description, f.column_docs)
    return table_rows(con, f.schema, f.table)


# ----------------------------------------------------------------------------------- incremental staging


@dataclass(frozen=True)
class IncrementalSource:
    """A staging table whose SQL types each row of one raw JSON table into one row (no joins, no
    aggregation), keyed by a column computed from the raw id alone. Its SQL file says so in a line
    of its header: ``--! incremental: incident_id = id``."""

    raw_table: str  # raw.<raw_table>: id, payload, fetched_at, run_id (+ constant columns)
    key: str  # the staging column identifying a row
    key_of_id: str  # SQL expression of that column from the raw table's ``id``


BUILD_STATE = "build_state"  # bookkeeping of the incremental builds; not part of the analyst snapshot
INCREMENTAL_ID_LIST_MAX = 5_000  # up to this many raw rows re-typed, they are selected by a list of ids
STATE_LAYOUT = "versions-and-keys-1"  # part of the fingerprint: a new layout of the state rebuilds in full


def build_staging_incremental(con: duckdb.DuckDBPyConnection, f: SqlFile, src: IncrementalSource) -> int:
    """Bring ``staging.<table>`` up to date with ``raw.<src.raw_table>`` parsing only what changed.

    A raw row's version is its ``(fetched_at, run_id)``: the ingest rewrites both whenever the
    payload changes (``pipelines/ingest/raw.py``). ``build_state.<table>`` holds the version of every raw row the
    staging table was built from, and ``build_state.staging_builds`` a fingerprint of the SQL. When
    the table, its state or the fingerprint is missing or different, the table is built in full
    (as every other SQL table is); otherwise the staging rows of raw rows that are new, rewritten or
    gone are deleted by key, and the raw rows with those keys (and those whose key does not parse)
    are typed again by the same SQL. Either way the table holds exactly what a full build gives
    (as a set of rows; row order is not part of a table), in one transaction with its state.
    """
    table, state = f"{f.schema}.{f.table}", f"{BUILD_STATE}.{f.table}"
    raw = f"raw.{src.raw_table}"
    query = f.text.strip().rstrip(";")
    fingerprint = hashlib.sha256(f"{STATE_LAYOUT}\n{query}\n{src}".encode()).hexdigest()
    # The state keeps each row's key beside its id, unless the key is the id itself.
    state_key = "id" if src.key_of_id == "id" else "k"
    key_column = "" if state_key == "id" else f", {src.key_of_id} as k"
    con.execute(f"create schema if not exists {BUILD_STATE}")
    con.execute(f"create table if not exists {BUILD_STATE}.staging_builds "
                "(table_name varchar primary key, fingerprint varchar not null, built_at timestamptz not null)")
    previous = con.execute(f"select fingerprint from {BUILD_STATE}.staging_builds where table_name = ?",
                           [f.table]).fetchone()
    ready = previous is not None and previous[0] == fingerprint and con.execute(
        "select count(*) from duckdb_tables() where database_name = current_database() "
        "and ((schema_name = ? and table_name = ?) or (schema_name = ? and table_name = ?))",
        [f.schema, f.table, BUILD_STATE, f.table]).fetchone()[0] == 2
    with transaction(con):
        if not ready:
            con.execute(f"create or replace table {table} as\n{query}")
            con.execute(f"create or replace table {state} as select id, fetched_at, run_id{key_column} from {raw}")
        else:
            # The versions (run_id, fetched_at) whose row count differs between raw and the state:
            # the ones written since the last build, and the ones that lost rows since (rewritten by
            # a later run, or deleted from raw, e.g. quarantined). Only their rows are compared.
            con.execute(f"""
                create or replace temp table incremental_versions as
                with r as (select run_id, fetched_at, count(*) as n from {raw} group by all),
                     s as (select run_id, fetched_at, count(*) as n from {state} group by all)
                select run_id, fetched_at from (select * from r except select * from s)
                union
                select run_id, fetched_at from (select * from s except select * from r)
            """)
            con.execute(f"""
                create or replace temp table incremental_ids as
                with r as (select id, fetched_at, run_id from {raw}
                           semi join temp.incremental_versions using (run_id, fetched_at)),
                     s as (select id, fetched_at, run_id from {state}
                           semi join temp.incremental_versions using (run_id, fetched_at))
                select id from (select * from r except select * from s)  -- new or rewritten
                union all
                select id from (select id from s except select id from r)  -- gone from raw
            """)
            if con.execute("select count(*) from temp.incremental_ids").fetchone()[0]:
                con.execute(f"""
                    create or replace temp table incremental_keys as
                    select distinct {src.key_of_id} as k from temp.incremental_ids
                """)
                # The state follows raw first; then it names every raw row with an affected key.
                con.execute(f"delete from {state} where id in (select id from temp.incremental_ids)")
                con.execute(f"""
                    insert into {state}
                    select id, fetched_at, run_id{key_column}
                    from (select r.* from temp.incremental_ids as w inner join {raw} as r on r.id = w.id)
                """)
                # Every staging row with an affected key goes, and every raw row with such a key (or
                # with no key at all) is typed again: rows sharing a key stay consistent.
                con.execute(f"""
                    create or replace temp table incremental_rows as
                    select id from {state}
                    where {state_key} in (select k from temp.incremental_keys) or {state_key} is null
                """)
                con.execute(f"delete from {table} where {src.key} in (select k from temp.incremental_keys) "
                            f"or {src.key} is null")
                # The raw rows by id. A few thousand (a night): a filter on a bound list, which DuckDB
                # applies before it reads a payload; more (a backfill): a join on the ids.
                ids = [r[0] for r in con.execute("select id from temp.incremental_rows").fetchall()]
                if len(ids) <= INCREMENTAL_ID_LIST_MAX:
                    source, params = f"(select * from {raw} where list_contains($ids, id))", {"ids": ids}
                else:
                    source = f"(select r.* from temp.incremental_rows as w inner join {raw} as r on r.id = w.id)"
                    params = None
                con.execute(f"insert into {table}\n" + re.sub(rf"\b{re.escape(raw)}\b", source, query), params)
                con.execute("drop table temp.incremental_rows")
                con.execute("drop table temp.incremental_keys")
            con.execute("drop table temp.incremental_ids")
            con.execute("drop table temp.incremental_versions")
        con.execute(f"insert or replace into {BUILD_STATE}.staging_builds values (?, ?, ?)",
                    [f.table, fingerprint, datetime.now(timezone.utc)])
        comment_table(con, f.schema, f.table, f.description, f.column_docs)
    return table_rows(con, f.schema, f.table)


def comment_table(con, schema: str, table: str, description: str, column_docs: dict[str, str]) -> None:
    con.execute(f"comment on table {schema}.{table} is {_quote(description)}")
    columns = {r[0] for r in con.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
        [schema, table],
    ).fetchall()}
    for column, doc in column_docs.items():
        if column in columns:
            con.execute(f"comment on column {schema}.{table}.{column} is {_quote(doc)}")


def _quote(text: str) -> str:
    # COMMENT ON takes a literal, not a bound parameter; escape it as a SQL string.
    return "'" + text.replace("'", "''") + "'"


def table_rows(con, schema: str, table: str) -> int:
    return int(con.execute(f"select count(*) from {schema}.{table}").fetchone()[0])


def preview_markdown(con, schema: str, table: str, limit: int = 10) -> str:
    df = con.execute(f"select * from {schema}.{table} limit {int(limit)}").df()
    return frame_to_markdown(df)


def frame_to_markdown(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(no rows)_"
    cols = [str(c) for c in df.columns]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        cells = ["" if v is None or (isinstance(v, float) and v != v) else str(v) for v in row]
        out.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ")[:60] for c in cells) + " |")
    return "\n".join(out)


# ----------------------------------------------------------------------------------- raw upserts


def register(con: duckdb.DuckDBPyConnection, name: str, frame: pd.DataFrame) -> None:
    """Expose a DataFrame to SQL as ``name``. DuckDB 2 refuses while an earlier result is unread,
    so finish it first (the statements before this one were all writes)."""
    con.complete()
    con.register(name, frame)


def replace_frame(con: duckdb.DuckDBPyConnection, schema: str, table: str, frame: pd.DataFrame) -> int:
    """Replace the contents of an existing table with a DataFrame (caller owns the transaction)."""
    con.execute(f"delete from {schema}.{table}")
    if not frame.empty:
        register(con, "incoming_frame", frame)
        try:
            cols = ", ".join(frame.columns)
            con.execute(f"insert into {schema}.{table} ({cols}) select {cols} from incoming_frame")
        finally:
            con.unregister("incoming_frame")
    return len(frame)


def write_frame_table(con: duckdb.DuckDBPyConnection, schema: str, table: str, frame: pd.DataFrame,
                      description: str = "", column_docs: dict[str, str] | None = None) -> int:
    """Create or replace ``schema.table`` from a DataFrame computed in Python (e.g. statistics)."""
    register(con, "incoming_frame", frame)
    try:
        with transaction(con):
            con.execute(f"create or replace table {schema}.{table} as select * from incoming_frame")
            comment_table(con, schema, table, description, column_docs or {})
    finally:
        con.unregister("incoming_frame")
    return len(frame)


# ----------------------------------------------------------------------------------- sync state


def high_water_mark(con, source: str, stream: str) -> datetime | None:
    row = con.execute(
        "select high_water_mark from raw.sync_state where source = ? and stream = ?", [source, stream]
    ).fetchone()
    return row[0] if row else None


def set_high_water_mark(con, source: str, stream: str, value: datetime, run_id: str) -> None:
    """Move the bookmark of ``source``/``stream`` forward to ``value`` (never back: a late or
    historical read cannot make the next night re-read, or skip, what is already covered).
    Call it inside the transaction that writes the records it covers."""
    con.execute(
        """
        insert into raw.sync_state (source, stream, high_water_mark, updated_at, run_id)
        values (?, ?, ?, ?, ?)
        on conflict (source, stream) do update set
            high_water_mark = excluded.high_water_mark, updated_at = excluded.updated_at, run_id = excluded.run_id
        where excluded.high_water_mark > sync_state.high_water_mark
        """,
        [source, stream, value, datetime.now(timezone.utc), run_id],
    )


def record_sync_run(con, *, run_id: str, source: str, stream: str, stats: dict[str, int],
                    window: tuple[datetime | None, datetime | None] = (None, None)) -> None:
    con.execute(
        """
        insert or replace into raw.sync_runs
            (run_id, source, stream, window_start, window_end, requests, retries, throttled, bytes, records, finished_at)
        values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        [run_id, source, stream, window[0], window[1], stats.get("requests", 0), stats.get("retries", 0),
         stats.get("throttled", 0), stats.get("bytes", 0), stats.get("records", 0), datetime.now(timezone.utc)],
    )


# ----------------------------------------------------------------------------------- analyst snapshot

SNAPSHOT_SCHEMAS = ("staging", "intermediate", "marts")
SNAPSHOT_STORAGE_VERSION = "v1.5.0"
SNAPSHOT_ALIAS = "analyst_snapshot_tmp"

# Documented extras of the snapshot (beyond the copied tables): name -> (kind, SQL, description, column docs).
SNAPSHOT_EXTRAS: dict[str, tuple[str, str, str, dict[str, str]]] = {
    "main.data_dictionary": (
        "view",
        """
        select
            c.schema_name,
            c.table_name,
            c.column_name,
            c.column_index,
            c.data_type,
            c.comment as column_description,
            coalesce(t.comment, v.comment) as table_description
        from duckdb_columns() as c
        left join duckdb_tables() as t
            on t.database_name = c.database_name and t.schema_name = c.schema_name and t.table_name = c.table_name
        left join duckdb_views() as v
            on v.database_name = c.database_name and v.schema_name = c.schema_name and v.view_name = c.table_name
        where c.database_name = current_database() and c.schema_name in ('staging', 'intermediate', 'marts', 'main')
        order by c.schema_name, c.table_name, c.column_index
        """,
        "Every table and column of this snapshot with its description: "
        "select * from data_dictionary where column_name ilike '%resolve%'.",
        {
            "schema_name": "staging (typed API records), intermediate (every source in neutral columns) or marts (the metrics tables)",
            "table_name": "table name",
            "column_name": "column name",
            "column_index": "position of the column in its table (1 = first)",
            "data_type": "DuckDB type of the column",
            "column_description": "what the column means (its COMMENT)",
            "table_description": "what the table holds, one row per what (its COMMENT)",
        },
    ),
    "main.snapshot_info": (
        "table",
        "",
        "When this snapshot was published and how fresh its data is (one row).",
        {
            "published_at": "when the pipeline published this file (UTC); reconnect to see a newer one",
            "data_as_of": "the newest record time in the paging data (UTC): the censoring time of open incidents",
            "n_tables": "number of staging and marts tables in this snapshot",
        },
    ),
}


def snapshot_temp_path(target: str | Path) -> Path:
    """Where the next snapshot is written before it is renamed onto ``target`` (same directory,
    so the rename is atomic; a hidden name so nobody opens it by mistake)."""
    target = Path(target)
    return target.with_name(f".{target.name}.tmp")


def _remove_db_file(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".wal")):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_snapshot(con: duckdb.DuckDBPyConnection, target: str | Path) -> dict[str, int]:
    """Write a read-only analyst copy (staging + marts) to a new file and rename it into place.

    The copy is built in a temporary file next to ``target`` (left-overs of a killed run are
    removed first), checkpointed so it needs no WAL, made read-only (mode 0444) and renamed onto
    ``target`` with ``os.replace``: an analyst holding the old file open keeps reading the old file
    undisturbed (and never blocks this), new connections see the new one, nobody ever sees a
    half-written file. Tables keep their comments; ``main.data_dictionary`` (a view) and
    ``main.snapshot_info`` are added. Returns the row count of each copied table.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = snapshot_temp_path(target)
    _remove_db_file(tmp)
    alias = SNAPSHOT_ALIAS
    # The oldest storage format that holds everything the snapshot needs, so that DuckDB 1.5 readers
    # (the pinned `duckdb` CLI, BI drivers that lag behind) open it as well as DuckDB 2.
    con.execute(f"attach {_quote(str(tmp))} as {alias} (storage_version {_quote(SNAPSHOT_STORAGE_VERSION)})")
    counts: dict[str, int] = {}
    try:
        tables = con.execute(
            "select schema_name, table_name, comment from duckdb_tables() "
            f"where database_name = current_database() and schema_name in {SNAPSHOT_SCHEMAS} order by 1, 2"
        ).fetchall()
        for schema in SNAPSHOT_SCHEMAS:
            con.execute(f"create schema if not exists {alias}.{schema}")
        for schema, table, comment in tables:
            con.execute(f"create table {alias}.{schema}.{table} as select * from {schema}.{table}")
            if comment:
                con.execute(f"comment on table {alias}.{schema}.{table} is {_quote(comment)}")
            for column, ccomment in con.execute(
                "select column_name, comment from duckdb_columns() where database_name = current_database() "
                "and schema_name = ? and table_name = ? and comment is not null", [schema, table]
            ).fetchall():
                con.execute(f'comment on column {alias}.{schema}.{table}."{column}" is {_quote(ccomment)}')
            counts[f"{schema}.{table}"] = table_rows(con, f"{alias}.{schema}", table)
        _write_snapshot_extras(con, alias, n_tables=len(tables))
        con.execute(f"checkpoint {alias}")
    finally:
        con.execute(f"detach {alias}")
    if tmp.with_name(tmp.name + ".wal").exists():  # pragma: no cover - DuckDB checkpoints on detach
        raise RuntimeError(f"the snapshot {tmp} still has a WAL after checkpoint; not publishing it")
    _fsync(tmp)
    os.chmod(tmp, 0o444)
    os.replace(tmp, target)
    try:
        _fsync(target.parent)  # make the rename itself durable
    except OSError:  # pragma: no cover - some filesystems cannot fsync a directory
        pass
    return counts


def _write_snapshot_extras(con: duckdb.DuckDBPyConnection, alias: str, *, n_tables: int) -> None:
    has_fct = con.execute(
        "select count(*) from duckdb_columns() where database_name = current_database() "
        "and schema_name = 'marts' and table_name = 'fct_incidents' and column_name = 'data_as_of'"
    ).fetchone()[0]
    data_as_of = con.execute("select max(data_as_of) from marts.fct_incidents").fetchone()[0] if has_fct else None
    for name, (kind, sql, description, column_docs) in SNAPSHOT_EXTRAS.items():
        if kind == "view":
            con.execute(f"create view {alias}.{name} as {sql}")
            con.execute(f"comment on view {alias}.{name} is {_quote(description)}")
        else:  # main.snapshot_info
            con.execute(
                f"create table {alias}.{name} as select cast(? as timestamptz) as published_at, "
                "cast(? as timestamptz) as data_as_of, cast(? as integer) as n_tables",
                [datetime.now(timezone.utc), data_as_of, n_tables],
            )
            con.execute(f"comment on table {alias}.{name} is {_quote(description)}")
        for column, doc in column_docs.items():
            con.execute(f"comment on column {alias}.{name}.{column} is {_quote(doc)}")


BUILT_SCHEMAS = ("staging", "intermediate", "marts")  # the schemas of SELECT files, built in this order


def build_order(schemas: tuple[str, ...] = BUILT_SCHEMAS) -> list[SqlFile]:
    """The SQL files of ``schemas`` in an order where every table comes after the tables it reads."""
    files = {(f.schema, f.table): f for schema in schemas for f in sql_files(schema)}
    ordered: list[SqlFile] = []
    done: set[tuple[str, str]] = set()

    def visit(key: tuple[str, str], path: tuple[tuple[str, str], ...]) -> None:
        if key in done or key not in files:
            return
        if key in path:
            raise ValueError(f"SQL dependency cycle: {' -> '.join('.'.join(k) for k in (*path, key))}")
        for ref in files[key].references:
            visit(ref, (*path, key))
        done.add(key)
        ordered.append(files[key])

    for key in files:
        visit(key, ())
    return ordered


def build_all(con: duckdb.DuckDBPyConnection, schemas: tuple[str, ...] = BUILT_SCHEMAS) -> dict[str, int]:
    """Build every staging and marts table in dependency order (what the Dagster assets do, one by one)."""
    return {f"{f.schema}.{f.table}": build_table(con, f) for f in build_order(schemas)}
