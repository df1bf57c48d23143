"""Raw streams (``raw.<source>_*``): one asset per stream of every connector in the registry
(``pipelines/connectors/__init__.py``), a multi-asset where a stream writes several tables.

Each asset only wires its connector's resource and the warehouse to the one ingest runner
(``pipelines/ingest/runner.py``). Ranged streams take the backfill run config: empty (the default)
is the nightly incremental read; ``backfill_since`` set re-reads ``[since, until)`` instead.
"""


from datetime import datetime, timezone
from typing import Optional

import dagster as dg

from assets.ownership import VALIDATED_FIRST
from pipelines import warehouse as wh
from pipelines.config import WAREHOUSE_POOL
from pipelines.connectors import streams as registered_streams
from pipelines.ingest.contract import FULL, Connector, Stream
from pipelines.ingest.runner import BackfillRange, run_stream

KINDS = {"python", "duckdb"}


class BackfillConfig(dg.Config):
    """Run config of the ranged raw assets. Empty (the default): the nightly incremental sync.
    ``backfill_since`` set (YYYY-MM-DD or ISO 8601, UTC): re-read ``[since, until)`` instead."""

    backfill_since: Optional[str] = None
    backfill_until: Optional[str] = None  # default: now
    window_days: int = 7
    echo_progress: bool = False  # also print the progress lines on stdout (the CLI sets it)

    def range(self, now: datetime) -> BackfillRange | None:
        if not self.backfill_since:
            return None
        return BackfillRange.parse(self.backfill_since, self.backfill_until, now=now, window_days=self.window_days)


def _log_line(connector: Connector, stream: Stream, results) -> str:
    main = results[stream.tables[0].name]
    when = (f" {main.window_start:%Y-%m-%d %H:%M} to {main.window_end:%Y-%m-%d %H:%M}"
            if main.window_start and main.window_end else "")
    return (f"{connector.label} {stream.name.replace('_', ' ')}{when}: {sum(r.received for r in results.values())} "
            f"records, {sum(r.changed for r in results.values())} changed, {main.quarantined} quarantined")


def stream_asset(connector: Connector, stream: Stream) -> dg.AssetsDefinition:
    """The asset of one stream: its tables as asset specs, the runner as its body."""
    specs = [dg.AssetSpec(["raw", t.name], group_name="raw", kinds=KINDS, deps=VALIDATED_FIRST,
                          description=t.description or stream.description) for t in stream.tables]
    keys = {connector.name, "warehouse"} | ({"ownership"} if stream.reads_repos else set())

    def run(context: dg.AssetExecutionContext, rng: BackfillRange | None, echo):
        resource = getattr(context.resources, connector.name)
        warehouse = context.resources.warehouse
        if stream.enabled is not None and not stream.enabled(resource):
            context.log.info(f"{connector.label} {stream.name} is off")
            for t in stream.tables:
                metadata = {"skipped": True, **({stream.availability: 0} if stream.availability else {})}
                yield dg.MaterializeResult(asset_key=["raw", t.name], metadata=metadata)
            return
        repos = context.resources.ownership.load().repos_of(stream.source) if stream.reads_repos else []
        if stream.reads_repos and not repos:  # no repo on this host: nothing to read, no client (nor token) needed
            context.log.info(f"{connector.label} {stream.name}: the ownership file names no repo on {connector.label}")
            for t in stream.tables:
                yield dg.MaterializeResult(asset_key=["raw", t.name], metadata={"repos": 0, "skipped": True})
            return
        now = datetime.now(timezone.utc)
        with resource.client() as client, warehouse.connect() as con:
            results = run_stream(con, client, stream, run_id=context.run.run_id, now=now,
                                 settings=warehouse.sync_settings, repos=repos, backfill=rng, echo=echo)
            context.log.info(_log_line(connector, stream, results))
            if stream.availability and not results[stream.tables[0].name].api.get(stream.availability):
                context.log.warning(f"{connector.label} {stream.name} is not available to this account: "
                                    f"{results[stream.tables[0].name].api}")
            for i, t in enumerate(stream.tables):
                metadata = {**results[t.name].metadata(), "dagster/row_count": wh.table_rows(con, "raw", t.name)}
                if i == 0:
                    metadata.update({"repos": len(repos)} if stream.reads_repos else {})
                    metadata.update(getattr(client, "run_metadata", dict)())
                yield dg.MaterializeResult(asset_key=["raw", t.name], metadata=metadata)

    decorator = dg.multi_asset(name=stream.tables[0].name, specs=specs, pool=WAREHOUSE_POOL,
                               required_resource_keys=keys, description=stream.description)
    if stream.ranged:
        @decorator
        def _ranged(context: dg.AssetExecutionContext, config: BackfillConfig):
            echo = progress_echo(context, config)
            yield from run(context, config.range(datetime.now(timezone.utc)), echo)

        return _ranged

    @decorator
    def _nightly(context: dg.AssetExecutionContext):
        yield from run(context, None, context.log.info)

    return _nightly


def progress_echo(context: dg.AssetExecutionContext, config: BackfillConfig):
    """Progress lines go to the Dagster log (the UI), and to stdout when ``echo_progress``."""
    def echo(line: str) -> None:
        context.log.info(line)
        if config.echo_progress:
            print(line, flush=True)

    return echo


STREAM_ASSETS: dict[tuple[str, str], dg.AssetsDefinition] = {
    (c.name, s.name): stream_asset(c, s) for c, s in registered_streams()
}


def asset_of(source: str, stream: str) -> dg.AssetsDefinition:
    """The asset that reads ``stream`` of ``source`` (tests and scripts pick assets by it)."""
    return STREAM_ASSETS[(source, stream)]


raw_assets = list(STREAM_ASSETS.values())
ranged_assets = [STREAM_ASSETS[(c.name, s.name)] for c, s in registered_streams() if s.ranged]
# A backfill re-reads the ranged streams over its range; the FULL streams (teams, services) are
# read in full by every run; a stream with a bookmark but no range reader (an API that only reads
# on from a bookmark) reads on from its bookmark, which a backfill must not move, so it is nightly only.
nightly_only_assets = [STREAM_ASSETS[(c.name, s.name)] for c, s in registered_streams()
                       if not s.ranged and s.scope != FULL]
