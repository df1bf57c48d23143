"""Print a digest of a warehouse: per staging, intermediate and marts table, its rows and an order-free hash of its
data columns (bookkeeping columns aside), so two builds can be compared table by table.

    .venv/bin/python scripts/warehouse_digest.py data/demo/warehouse.duckdb [--json out.json]

Bookkeeping columns (when a row was fetched or built, by which run) differ between any two runs and
are left out; everything else must match for two warehouses to hold the same data.
"""

from __future__ import annotations

import argparse
import json
import sys

import duckdb

BOOKKEEPING = {"fetched_at", "run_id", "built_at", "published_at", "computed_at", "generated_at"}


def digest(path: str) -> dict[str, dict[str, object]]:
    con = duckdb.connect(path, read_only=True)
    try:
        tables = con.execute(
            "select schema_name, table_name from duckdb_tables() where database_name = current_database() "
            "and schema_name in ('staging', 'intermediate', 'marts') order by 1, 2").fetchall()
        out: dict[str, dict[str, object]] = {}
        for schema, table in tables:
            columns = [c for (c,) in con.execute(
                "select column_name from duckdb_columns() where database_name = current_database() "
                "and schema_name = ? and table_name = ? order by column_index", [schema, table]).fetchall()
                if c not in BOOKKEEPING]
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
    args = parser.parse_args(argv)
    d = digest(args.warehouse)
    for name, v in d.items():
        print(f"{name:50s} {v['rows']:>9} rows  {v['hash']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(d, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
