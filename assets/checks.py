"""Data-quality asset checks (docs/data-quality.md).

- ``gx_blocking`` on every staging table: its Great Expectations suite of rules whose failure would
  make the marts wrong. ``blocking=True``: when it fails, the marts, the report and the analyst
  snapshot downstream are not materialized in that run (the last good ones stay).
- ``gx_warnings`` on the staging tables that have softer rules: severity WARN, blocks nothing.
- ``rejected_records`` on every raw stream: the records this run sent to
  ``quarantine.rejected_records``, by rule, with example ids (severity WARN: the rest of the stream
  is fine and was written).

Each result carries counts of failing rows and up to five example ids, shown in the Dagster UI.
The rules themselves live in ``pipelines/quality.py`` (the ownership tables, and the machinery) and each
connector's ``quality.py`` (its staging tables): plain Python, tested without Dagster.
"""


from datetime import datetime, timezone

import dagster as dg

from pipelines import quality
from pipelines import warehouse as wh
from pipelines.config import WAREHOUSE_POOL
from pipelines.connectors import streams as registered_streams
from pipelines.resources import WarehouseResource


def _result(outcome: quality.Outcome, severity: dg.AssetCheckSeverity, asset_key: dg.AssetKey,
            check_name: str) -> dg.AssetCheckResult:
    meta = outcome.metadata()
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=check_name,
        passed=outcome.passed,
        severity=severity,
        description=outcome.description(),
        metadata={
            "rows_checked": meta["rows_checked"],
            "rules_evaluated": meta["rules_evaluated"],
            "rules_failed": meta["rules_failed"],
            "failing_rows": meta["failing_rows"],
            "failures": dg.MetadataValue.md(outcome.markdown()),
            "details": dg.MetadataValue.json(meta["failures"]),
        },
    )


def _rule_list(spec: quality.TableQuality, severity: str) -> str:
    return "\n".join(f"- {r.name}" for r in spec.rules_of(severity))


BLOCKING_INTRO = ("Great Expectations suite, blocking: a failure would make the marts wrong, so the marts, the "
                  "report and the snapshot downstream are not built in this run (the last good ones stay).")
WARNING_INTRO = "Great Expectations suite, a warning: worth a look, but the marts stay right."


def gx_checks(spec: quality.TableQuality) -> dg.AssetChecksDefinition:
    """``gx_blocking`` (and ``gx_warnings`` where the table has softer rules) on one staging table,
    computed in one step with one validation run."""
    key = dg.AssetKey(["staging", spec.table])
    deps = [dg.AssetKey([schema, table]) for schema, table in spec.reads]
    specs = [dg.AssetCheckSpec("gx_blocking", asset=key, blocking=True, additional_deps=deps,
                               description=f"{BLOCKING_INTRO}\n\n{_rule_list(spec, quality.BLOCKING)}")]
    if spec.rules_of(quality.WARNING):
        specs.append(dg.AssetCheckSpec("gx_warnings", asset=key, additional_deps=deps,
                                       description=f"{WARNING_INTRO}\n\n{_rule_list(spec, quality.WARNING)}"))

    @dg.multi_asset_check(pool=WAREHOUSE_POOL, specs=specs, name=f"{spec.table}_quality",
                          description=f"Data-quality rules of staging.{spec.table} (pipelines/quality.py).")
    def _check(warehouse: WarehouseResource):
        settings = quality.Settings(now=datetime.now(timezone.utc),
                                    production_environment=warehouse.production_environment)
        with warehouse.connect() as con:
            frame = quality.load_frame(con, spec.table)
        outcomes = quality.check_frame_all(frame, spec.table, settings)
        yield _result(outcomes[quality.BLOCKING], dg.AssetCheckSeverity.ERROR, key, "gx_blocking")
        if len(specs) > 1:
            yield _result(outcomes[quality.WARNING], dg.AssetCheckSeverity.WARN, key, "gx_warnings")

    return _check


def rejected_records_check(table: str, source: str, stream: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        pool=WAREHOUSE_POOL,
        asset=dg.AssetKey(["raw", table]),
        name="rejected_records",
        description=f"Records of {source} {stream} this run sent to quarantine.rejected_records instead of raw "
                    "(failed parsing or a blocking rule), by rule with example ids. A warning: the rest of the "
                    "stream was written; a clean run rejects nothing.",
    )
    def _check(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        run_id = context.run.run_id
        with warehouse.connect() as con:
            rows = con.execute(
                """
                select rule, count(*) as n,
                       list(coalesce(record_id, '(no id)') order by rejected_at, record_id)[1:5] as examples
                from quarantine.rejected_records
                where source = ? and stream = ? and run_id = ?
                group by rule order by n desc, rule
                """,
                [source, stream, run_id],
            ).fetchall()
            total = con.execute("select count(*) from quarantine.rejected_records where source = ? and stream = ?",
                                [source, stream]).fetchone()[0]
        rejected = sum(n for _, n, _ in rows)
        table_md = "_nothing rejected_" if not rows else "\n".join(
            ["| rule | records | example ids |", "|---|---|---|"]
            + [f"| {rule} | {n} | {', '.join(str(e) for e in examples)} |" for rule, n, examples in rows])
        return dg.AssetCheckResult(
            passed=rejected == 0,
            severity=dg.AssetCheckSeverity.WARN,
            description=(f"{rejected} records rejected this run" if rejected else "no record rejected this run"),
            metadata={
                "rejected_this_run": rejected,
                "rejected_all_runs": int(total),
                "by_rule": dg.MetadataValue.md(table_md),
                "details": dg.MetadataValue.json(
                    [{"rule": rule, "records": n, "examples": list(examples)} for rule, n, examples in rows]),
            },
        )

    return _check


def _build() -> list[dg.AssetChecksDefinition]:
    checks = []
    staging = {f.table for f in wh.sql_files("staging")}
    for table in sorted(staging):
        spec = quality.tables().get(table)
        if spec is None:  # tests/test_quality.py requires rules for every staging table
            continue
        checks.append(gx_checks(spec))
    for _, stream in registered_streams():  # on each stream's own table (a stream's other tables' rejects too)
        checks.append(rejected_records_check(stream.tables[0].name, stream.source, stream.name))
    return checks


all_checks = _build()
