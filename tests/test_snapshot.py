"""The analyst snapshot and the data dictionary.

* A second process opens ``analytics.duckdb`` read-only and holds the connection through a whole
  nightly run: the run is not blocked, the held connection keeps seeing the old night (queried
  before and after the run), a new connection sees the new night.
* The snapshot holds staging and marts (no raw), comments included, plus ``data_dictionary`` and
  ``snapshot_info``; the file is read-only.
* Every marts table and every column of the SQL-built marts carries a comment in DuckDB, and the
  committed docs/warehouse.md is what ``python -m pipelines.dictionary`` generates.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from pipelines import warehouse as wh
from tests.incremental_helpers import PYTHON, ROOT, materialize_all, small_org, start_emulator, write_ownership

ANALYST = r"""
import duckdb, json, sys
con = duckdb.connect(sys.argv[1], read_only=True)
def state():
    n = con.execute("select count(*) from marts.fct_incidents").fetchone()[0]
    published = con.execute("select published_at from snapshot_info").fetchone()[0]
    return {"incidents": n, "published_at": str(published)}
print(json.dumps(state()), flush=True)
for line in sys.stdin:  # one query per line the test sends, on the same connection
    print(json.dumps(state()), flush=True)
"""


def _state(path: Path) -> dict:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {"incidents": con.execute("select count(*) from marts.fct_incidents").fetchone()[0],
                "published_at": str(con.execute("select published_at from snapshot_info").fetchone()[0])}
    finally:
        con.close()


@pytest.fixture(scope="module")
def two_nights(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("snapshot")
    org = small_org(seed=3, months=4, future_days=3)
    srv = start_emulator(org)
    ownership = write_ownership(org, tmp)
    data = tmp / "data"
    try:
        materialize_all(srv, data, ownership)
        snapshot = data / "analytics.duckdb"
        analyst = subprocess.Popen([PYTHON, "-c", ANALYST, str(snapshot)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        try:
            held_before = json.loads(analyst.stdout.readline())
            srv.advance(timedelta(days=2))
            started = time.monotonic()
            materialize_all(srv, data, ownership)  # the analyst holds its connection all along
            run_seconds = time.monotonic() - started
            analyst.stdin.write("again\n")
            analyst.stdin.flush()
            held_after = json.loads(analyst.stdout.readline())
            assert analyst.poll() is None  # still connected
        finally:
            analyst.stdin.close()
            analyst.wait(timeout=30)
        yield {"held_before": held_before, "held_after": held_after, "fresh": _state(snapshot),
               "snapshot": snapshot, "data": data, "run_seconds": run_seconds}
    finally:
        srv.stop()


def test_a_held_analyst_connection_neither_blocks_the_run_nor_sees_it(two_nights):
    before, after, fresh = two_nights["held_before"], two_nights["held_after"], two_nights["fresh"]
    assert before["incidents"] > 0
    assert after == before  # the held connection reads the old file, whole
    assert fresh["incidents"] > before["incidents"]  # a new connection sees the new night
    assert fresh["published_at"] > before["published_at"]
    assert not [p for p in two_nights["data"].iterdir() if p.name.startswith(".analytics")]


def test_snapshot_contents_and_permissions(two_nights):
    snapshot = two_nights["snapshot"]
    assert not stat.S_IMODE(snapshot.stat().st_mode) & 0o222  # read-only file
    assert not Path(str(snapshot) + ".wal").exists()
    con = duckdb.connect(str(snapshot), read_only=True)
    try:
        schemas = {r[0] for r in con.execute("select schema_name from duckdb_tables() "
                                             "where database_name = current_database()").fetchall()}
        assert schemas == {"staging", "intermediate", "marts", "main"}
        info = con.execute("select published_at, data_as_of, n_tables from snapshot_info").fetchall()
        assert len(info) == 1 and info[0][1] is not None and info[0][2] >= 16
        # an analyst finds what a column means from inside DuckDB
        doc = con.execute("select column_description, table_description from data_dictionary "
                          "where table_name = 'fct_incidents' and column_name = 'seconds_to_resolve'").fetchone()
        assert "seconds" in doc[0] and "One row per incident" in doc[1]
        undocumented = con.execute(
            "select table_name, column_name from data_dictionary where schema_name = 'main' and column_description is null"
        ).fetchall()
        assert undocumented == []
        # the neutral layer is documented column by column, as the marts are
        undocumented = con.execute(
            "select table_name, column_name from data_dictionary where schema_name = 'intermediate' "
            "and column_description is null").fetchall()
        assert undocumented == []
    finally:
        con.close()


def test_every_marts_table_and_column_is_commented(two_nights):
    con = duckdb.connect(str(two_nights["snapshot"]), read_only=True)
    try:
        tables = dict(con.execute("select table_name, comment from duckdb_tables() "
                                  "where database_name = current_database() and schema_name = 'marts'").fetchall())
        sql_tables = {f.table for f in wh.sql_files("marts")}
        assert sql_tables <= set(tables)
        assert all(comment and comment.strip() for comment in tables.values()), tables
        missing = con.execute(
            "select table_name, column_name from duckdb_columns() where database_name = current_database() "
            "and schema_name = 'marts' and (comment is null or trim(comment) = '') order by all").fetchall()
        # Marts built by SQL files are documented by their `-- column: text` lines. (Marts computed
        # in Python document theirs through write_frame_table(column_docs=...).)
        assert [m for m in missing if m[0] in sql_tables] == []
    finally:
        con.close()


def test_the_readme_analyst_cli_commands_work_as_written(two_nights, tmp_path):
    # Run from a directory laid out like a fresh clone after `make demo`: .venv (this venv) and
    # data/analytics.duckdb. The shell is the pinned duckdb-cli (DuckDB 1.5): it must read the snapshot.
    block = re.search(r"DuckDB CLI.*?```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    commands = [line for line in block.splitlines() if line.strip()]
    assert len(commands) == 2 and all(c.startswith(".venv/bin/duckdb -readonly data/analytics.duckdb ") for c in commands)
    os.symlink(sys.prefix, tmp_path / ".venv")
    (tmp_path / "data").mkdir()
    os.symlink(two_nights["snapshot"], tmp_path / "data" / "analytics.duckdb")
    version = subprocess.run([str(tmp_path / ".venv/bin/duckdb"), "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("v1.5."), version
    outputs = []
    for command in commands:
        done = subprocess.run(shlex.split(command), cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and not done.stderr, done
        outputs.append(done.stdout)
    teams = duckdb.connect(str(two_nights["snapshot"]), read_only=True).execute(
        "select team_key from marts.team_baselines").fetchall()
    assert teams and all(t in outputs[0] for (t,) in teams)  # every team's row is printed
    assert "seconds_to_resolve" in outputs[1] and "fct_incidents" in outputs[1]


def test_docs_warehouse_md_is_up_to_date():
    from pipelines import dictionary

    committed = (ROOT / "docs" / "warehouse.md").read_text(encoding="utf-8")
    assert committed == dictionary.render(), "docs/warehouse.md is stale: run `python -m pipelines.dictionary`"


def test_every_sql_column_is_in_the_dictionary():
    from pipelines import dictionary

    doc = dictionary.render()
    for f in wh.sql_files("marts"):
        assert f"### marts.{f.table}" in doc
        for column in f.column_docs:
            assert f"| `{column}` |" in doc, (f.table, column)
