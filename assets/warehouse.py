"""Staging, intermediate and marts tables built from ``sql/{staging,intermediate,marts}/*.sql``.

One asset per SQL file, keyed ``[schema, table]``; its upstream assets are the tables the SQL
reads, found in the SQL text itself, so adding a file is all it takes to add a table.
"""


import dagster as dg

from pipelines import warehouse as wh
from pipelines.config import WAREHOUSE_POOL
from pipelines.resources import WarehouseResource


def sql_table_asset(f: wh.SqlFile) -> dg.AssetsDefinition:
    @dg.asset(pool=WAREHOUSE_POOL,
        key=[f.schema, f.table],
        group_name=f.schema,
        kinds={"sql", "duckdb"},
        description=f.description + f"\n\nBuilt from `sql/{f.schema}/{f.table}.sql`.",
        deps=[dg.AssetKey([schema, table]) for schema, table in f.references],
        metadata={"sql_file": f"sql/{f.schema}/{f.table}.sql"},
    )
    def _asset(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        with warehouse.connect() as con, wh.memory_limit(con):
            rows = wh.build_table(con, f)
            preview = wh.preview_markdown(con, f.schema, f.table)
        return dg.MaterializeResult(metadata={
            "dagster/row_count": rows,
            "preview": dg.MetadataValue.md(preview),
        })

    return _asset


staging_assets = [sql_table_asset(f) for f in wh.sql_files("staging")]
intermediate_assets = [sql_table_asset(f) for f in wh.sql_files("intermediate")]
marts_sql_assets = [sql_table_asset(f) for f in wh.sql_files("marts")]
