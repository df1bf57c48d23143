"""Raw GitHub streams: deployments with their statuses, closed pull requests (``raw.github_*``)."""


from datetime import datetime, timezone

import dagster as dg

from pipelines import backfill, ingest
from pipelines import warehouse as wh
from pipelines.backfill import BackfillConfig
from pipelines.config import WAREHOUSE_POOL
from pipelines.resources import GitHubResource, OwnershipResource, WarehouseResource

KINDS = {"python", "duckdb"}


@dg.multi_asset(
    pool=WAREHOUSE_POOL,
    specs=[
        dg.AssetSpec(["raw", "github_deployments"], group_name="raw", kinds=KINDS,
                     description="GitHub deployments of the repos named in the ownership file, newest first "
                                 "until the bookmark (GraphQL: 100 with their statuses a request; "
                                 "INCIDENT_METRICS_GITHUB_DEPLOYMENTS_API=rest for REST)."),
        dg.AssetSpec(["raw", "github_deployment_statuses"], group_name="raw", kinds=KINDS,
                     description="Statuses of new deployments and of deployments not final at the last run, "
                                 "in REST's shape whichever API read them."),
    ],
)
def github_deployments(context: dg.AssetExecutionContext, config: BackfillConfig, github: GitHubResource,
                       ownership: OwnershipResource, warehouse: WarehouseResource):
    repos = ownership.load().repos
    now = datetime.now(timezone.utc)
    rng = config.range(now)
    with github.client() as client, warehouse.connect() as con:
        if rng is not None:  # the backfill job: deployments created in the range, bookmarks untouched
            # through GraphQL (statuses with their deployments) unless the setting says rest
            reader = ingest.DeploymentsThroughGraphQL(client) if client.deployments_api == "graphql" else client
            deployments, statuses = backfill.backfill_github_deployments(
                con, reader, repos, rng, run_id=context.run.run_id, now=now, echo=backfill.progress_echo(context, config))
        else:
            deployments, statuses = ingest.sync_github_deployments(
                con, client, repos, run_id=context.run.run_id, now=now, settings=warehouse.sync_settings
            )
        yield dg.MaterializeResult(asset_key=["raw", "github_deployments"], metadata={
            **deployments.metadata(), "repos": len(repos),
            "deployments_api": client.deployments_api,
            "dagster/row_count": wh.table_rows(con, "raw", "github_deployments")})
        yield dg.MaterializeResult(asset_key=["raw", "github_deployment_statuses"], metadata={
            **statuses.metadata(), "dagster/row_count": wh.table_rows(con, "raw", "github_deployment_statuses")})


@dg.asset(pool=WAREHOUSE_POOL, key=["raw", "github_pull_requests"], group_name="raw", kinds=KINDS)
def github_pull_requests(context: dg.AssetExecutionContext, config: BackfillConfig, github: GitHubResource,
                         ownership: OwnershipResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Closed pull requests of the repos in the ownership file (for lead time), most recently
    updated first until the bookmark (the backfill job: those updated in its range)."""
    repos = ownership.load().repos
    now = datetime.now(timezone.utc)
    rng = config.range(now)
    with github.client() as client, warehouse.connect() as con:
        if rng is not None:
            result = backfill.backfill_github_pull_requests(
                con, client, repos, rng, run_id=context.run.run_id, now=now, echo=backfill.progress_echo(context, config))
        else:
            result = ingest.sync_github_pull_requests(
                con, client, repos, run_id=context.run.run_id, now=now, settings=warehouse.sync_settings
            )
        return dg.MaterializeResult(metadata={
            **result.metadata(), "dagster/row_count": wh.table_rows(con, "raw", "github_pull_requests")})
