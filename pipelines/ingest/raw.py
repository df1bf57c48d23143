"""Writing ``raw.*``: the one upsert (through :class:`Staging`) and the quarantine.

A raw table holds each record as the API sent it: ``id``, ``payload`` (JSON), constant columns
(a git host's ``repo``), ``fetched_at`` and ``run_id``. A record is upserted by id; its row is rewritten
(new payload, ``fetched_at``, ``run_id``) only when the payload differs, so an unchanged re-read
changes nothing, and the last version of an id within one write wins.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pipelines import warehouse as wh

# Records are staged first, batch by batch, in a temporary table outside any transaction (each
# insert commits at once, and under STAGING_MEMORY_LIMIT DuckDB spills it to its temporary
# directory), then merged into raw in ONE transaction with the quarantine and the bookmarks. A crash
# before that commit leaves nothing of the run: the temporary table dies with the connection.
# Two things this avoids, both measured on the large benchmark organisation:
# - inside ONE DuckDB transaction every row written by many small inserts stays in memory until
#   the commit (DuckDB 2.0's transaction-local storage held about 3 KB per log entry: 4 GB for a
#   two-year backfill), whatever the batch size;
# - many small committed writes (one transaction per repo) make DuckDB checkpoint every
#   16 MB of WAL, and a checkpoint's cost grows with the table (about 8 s at 400k pull requests):
#   the pull-request load grew quadratically, 16 minutes for 582 repos. Staged, the same rows go
#   in with one bulk insert and one checkpoint.
STAGING_MEMORY_LIMIT = "1GB"


@dataclass
class UpsertResult:
    received: int = 0  # distinct records handed in
    changed: int = 0  # rows inserted or updated

    def __iadd__(self, other: "UpsertResult") -> "UpsertResult":
        self.received += other.received
        self.changed += other.changed
        return self


def payload_text(record: dict) -> str:
    """A record as stored: its JSON with sorted keys and no spaces (so equal records compare equal)."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Staging:
    """One raw table's records on their way to ``raw.<table>`` (see above). Use as a context
    manager; :meth:`merge` runs inside the caller's transaction and upserts what was staged.

    ``extra`` names the constant columns given per :meth:`add`; ``fields`` are columns computed
    from each record as it is staged (``contract.Field``), for a cross-record rule to read."""

    def __init__(self, con, table: str, *, extra: tuple[str, ...] = (), fields: tuple = ()) -> None:
        self.con, self.table = con, table
        self.name = f"staging_{table}"
        self.extra, self.fields = tuple(extra), tuple(fields)
        self.rows = 0
        self._limit = wh.memory_limit(con, STAGING_MEMORY_LIMIT)

    def __enter__(self) -> "Staging":
        self._limit.__enter__()
        self._create()
        return self

    def _create(self) -> None:
        columns = "".join(f", {c} varchar" for c in self.extra)
        columns += "".join(f", {f.name} {f.sql_type}" for f in self.fields)
        # payload as JSON: DuckDB parses it here, batch by batch while pages arrive, not in the merge
        self.con.execute(f"create or replace temp table {self.name} (seq bigint, id varchar, payload json{columns})")
        self.rows = 0

    def __exit__(self, *exc) -> None:
        try:
            self.con.execute(f"drop table if exists temp.{self.name}")
        finally:
            self._limit.__exit__(*exc)

    def clear(self) -> None:
        """Empty it for the next unit of work (a backfill merges unit by unit)."""
        self._create()

    def add(self, records: list[dict], **extra: str) -> None:
        if not records:
            return
        if sorted(extra) != sorted(self.extra):
            raise TypeError(f"staging {self.table} takes the columns {self.extra}, got {tuple(extra)}")
        import pandas as pd

        frame = pd.DataFrame({
            "seq": range(self.rows, self.rows + len(records)),
            "id": [str(r["id"]) for r in records],
            "payload": [payload_text(r) for r in records],
        })
        for column, value in extra.items():
            frame[column] = value
        for f in self.fields:
            values = [f.value(r) for r in records]
            frame[f.name] = pd.to_datetime(values, utc=True) if f.sql_type == "timestamptz" else values
        self.rows += len(records)
        wh.register(self.con, "incoming_staged", frame)
        try:
            self.con.execute(f"insert into temp.{self.name} by name select * from incoming_staged")
        finally:
            self.con.unregister("incoming_staged")

    def merge(self, *, run_id: str, fetched_at: datetime) -> UpsertResult:
        con, table = self.con, self.table
        if not self.rows:
            return UpsertResult()
        received = con.execute(f"select count(distinct id) from temp.{self.name}").fetchone()[0]
        # A reader yields each record once, so the ids are unique; if one came twice, its last
        # version wins (the window costs a sort of the whole stream, hence only then).
        columns = ["id", *self.extra, "payload"]
        latest = (f"temp.{self.name}" if received == self.rows else
                  f"(select {', '.join(columns)} from temp.{self.name} "
                  "qualify row_number() over (partition by id order by seq desc) = 1)")
        count = f"select count(*) from raw.{table} where run_id = ?"
        before = con.execute(count, [run_id]).fetchone()[0]
        con.execute(
            f"""
            update raw.{table} as t
            set payload = s.payload, fetched_at = ?, run_id = ?{''.join(f', {c} = s.{c}' for c in self.extra)}
            from {latest} as s
            where t.id = s.id and t.payload::varchar <> s.payload::varchar
            """,
            [fetched_at, run_id],
        )
        con.execute(
            f"""
            insert into raw.{table} ({', '.join(columns)}, fetched_at, run_id)
            select {', '.join(f's.{c}' for c in columns)}, ?, ? from {latest} as s
            where not exists (select 1 from raw.{table} as t where t.id = s.id)
            """,
            [fetched_at, run_id],
        )
        after = con.execute(count, [run_id]).fetchone()[0]
        return UpsertResult(received=int(received), changed=int(after - before))


def upsert_raw(con, table: str, records: list[dict], *, run_id: str, fetched_at: datetime,
               extra: dict[str, str] | None = None) -> UpsertResult:
    """Upsert ``records`` into ``raw.<table>`` by id (:class:`Staging`, staged and merged at once);
    ``extra`` adds constant columns (e.g. ``{"repo": "acme/api"}``). The caller owns the transaction."""
    extra = extra or {}
    with Staging(con, table, extra=tuple(extra)) as staging:
        staging.add(list(records), **extra)
        return staging.merge(run_id=run_id, fetched_at=fetched_at)


def quarantine(con, *, source: str, stream: str, record: Any, rule: str, reason: str, run_id: str) -> None:
    """Set a record aside in ``quarantine.rejected_records`` with the rule it broke and why. The
    same bad record seen again on a later run is not counted twice."""
    record_id = record.get("id") if isinstance(record, dict) else None
    payload = json.dumps(record, sort_keys=True, default=str)[:100_000]
    rid = None if record_id is None else str(record_id)
    con.execute(
        """
        insert into quarantine.rejected_records
        select ?, ?, ?, ?, ?, ?, ?, ?
        where not exists (
            select 1 from quarantine.rejected_records
            where source = ? and stream = ? and record_id is not distinct from ? and rule = ? and payload = ?)
        """,
        [source, stream, rid, rule, reason, payload, run_id, datetime.now(timezone.utc),
         source, stream, rid, rule, payload],
    )
