"""Print a digest of a warehouse: per staging, intermediate and marts table, its rows and an order-free hash of its
data columns (bookkeeping columns aside), so two builds can be compared table by table.

    .venv/bin/python scripts/warehouse_digest.py data/demo/warehouse.duckdb [--json out.json]
    .venv/bin/python scripts/warehouse_digest.py NEW.duckdb --compare OLD.duckdb

With ``--compare``, each table is hashed over the columns both warehouses have, and the columns one
of them lacks are listed: a change that adds a column can still show that it changed no value.

Bookkeeping columns (when a row was fetched or built, by which run) differ between any two runs and
are left out; everything else must match for two warehouses to hold the same data.
"""

from __future__ import annotations

import argparse
import json
import sys

import duckdb

BOOKKEEPING = {"fetched_at", "run_id", "built_at", "published_at", "computed_at", "generated_at"}


def columns_of(path: str) -> dict[str, list[str]]:
    con = duckdb.connect(path, read_only=True)
    try:
        out: dict[str, list[str]] = {}
        for schema, table, column in con.execute(
                "select schema_name, table_name, column_name from duckdb_columns() where database_name = current_database() "
                "and schema_name in ('staging', 'intermediate', 'marts') order by schema_name, table_name, column_index"
        ).fetchall():
            if column not in BOOKKEEPING:
                out.setdefault(f"{schema}.{table}", []).append(column)
        return out
    finally:
        con.close()


def digest(path: str, only: dict[str, list[str]] | None = None) -> dict[str, dict[str, object]]:
    """Rows and hash of every table; with ``only``, of those tables over those columns."""
    con = duckdb.connect(path, read_only=True)
    try:
        tables = con.execute(
            "select schema_name, table_name from duckdb_tables() where database_name = current_database() "
            "and schema_name in ('staging', 'intermediate', 'marts') order by 1, 2").fetchall()
        out: dict[str, dict[str, object]] = {}
        for schema, table in tables:
            if only is not None and f"{schema}.{table}" not in only:
                continue
            columns = [c for (c,) in con.execute(
                "select column_name from duckdb_columns() where database_name = current_database() "
                "and schema_name = ? and table_name = ? order by column_index", [schema, table]).fetchall()
                if c not in BOOKKEEPING and (only is None or c in only[f"{schema}.{table}"])]
            row = ", ".join(f'"{c}"' for c in columns)
            rows, h = con.execute(
                f"select count(*), coalesce(sum(hash(({row}))::hugeint), 0)::varchar from {schema}.{table}").fetchone()
            out[f"{schema}.{table}"] = {"rows": int(rows), "hash": h, "columns": len(columns)}
        return out
    finally:
        con.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("warehouse")
    parser.add_argument("--json", help="also write the digest to this file")
    parser.add_argument("--compare", metavar="OTHER", help="compare with another warehouse over the common columns")
    args = parser.parse_args(argv)
    if args.compare:
        return compare(args.warehouse, args.compare)
    d = digest(args.warehouse)
    for name, v in d.items():
        print(f"{name:50s} {v['rows']:>9} rows  {v['hash']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(d, f, indent=1, sort_keys=True)
    return 0


def compare(new: str, old: str) -> int:
    """Print each table's rows and hash in both, over their common columns; 1 when any differs."""
    a, b = columns_of(new), columns_of(old)
    common = {t: [c for c in a[t] if c in b[t]] for t in a if t in b}
    da, db = digest(new, common), digest(old, common)
    differ = 0
    for t in sorted(set(a) | set(b)):
        if t not in common:
            print(f"{t:50s} only in {'the first' if t in a else 'the second'}")
            differ += 1
            continue
        same = da[t] == db[t]
        differ += not same
        extra = [c for c in a[t] if c not in b[t]]
        gone = [c for c in b[t] if c not in a[t]]
        note = (f"  +{', +'.join(extra)}" if extra else "") + (f"  -{', -'.join(gone)}" if gone else "")
        print(f"{t:50s} {da[t]['rows']:>9} rows  {'same' if same else 'DIFFERENT (' + str(db[t]['rows']) + ' rows before)'}{note}")
    print(f"{len(common)} tables compared, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
