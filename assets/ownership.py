"""The ownership file loaded into ``raw.ownership_*`` (validated first: a bad file stops the run)."""


import dagster as dg

from pipelines.config import WAREHOUSE_POOL
from pipelines.ownership import load_ownership_tables
from pipelines.resources import OwnershipResource, WarehouseResource

TABLES = {
    "ownership_teams": "Teams from the ownership file: time zone, business hours, adoption date.",
    "ownership_service_owners": "Dated ownership of each paging service.",
    "ownership_service_repos": "The repos deploying each service.",
}

# Raw streams that do not read the ownership file still run after it: a bad file then stops the
# run before it spends any API request (the git streams read their repos from it anyway).
VALIDATED_FIRST = [dg.AssetKey(["raw", t]) for t in TABLES]


@dg.multi_asset(
    pool=WAREHOUSE_POOL,
    specs=[dg.AssetSpec(["raw", t], group_name="raw", kinds={"python", "duckdb"}, description=d)
           for t, d in TABLES.items()],
)
def ownership_tables(context: dg.AssetExecutionContext, ownership: OwnershipResource, warehouse: WarehouseResource):
    owners = ownership.load()
    with warehouse.connect() as con:
        counts = load_ownership_tables(con, owners)
    context.log.info(f"ownership from {owners.source}: {len(owners.teams)} teams, {len(owners.services)} services")
    for table, rows in counts.items():
        yield dg.MaterializeResult(asset_key=["raw", table],
                                   metadata={"dagster/row_count": rows, "source": owners.source})
