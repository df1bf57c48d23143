"""WarehouseResource.connect within a run: the warehouse opened once for the run's steps, each use
its own connection (transaction, temporary tables, variables) to it, DuckDB's block cache emptied
between steps, nothing left open after the run (another process can then open the file for writing).
Outside a run: a connection of its own per use."""

import subprocess
import sys

import dagster as dg
import duckdb
import pytest

from pipelines.resources import WarehouseResource

OPENED: list[str] = []


class CountingWarehouse(WarehouseResource):
    """Counts how often it opens the warehouse file (a module list: Dagster copies the resource)."""

    def _open(self) -> duckdb.DuckDBPyConnection:
        OPENED.append(str(self.paths.warehouse))
        return super()._open()


def _writable_by_another_process(path) -> bool:
    """DuckDB lets one process write a file: this fails while any connection here holds it."""
    code = "import duckdb, sys; duckdb.connect(sys.argv[1]).close()"
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True).returncode == 0


def _cached_mb(con) -> float:
    return con.execute("select sum(memory_usage_bytes) / 1e6 from duckdb_memory()").fetchone()[0]


@dg.asset
def first(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        con.execute("create or replace table main.steps (step varchar, environment varchar, timezone varchar)")
        con.execute("insert into main.steps select 'first', getvariable('production_environment'), "
                    "current_setting('timezone')")
        con.execute("create temp table left_behind as select 1 as x")  # dropped with its connection
        con.execute("set timezone = 'Asia/Tokyo'")  # this connection's own setting
    return dg.MaterializeResult()


@dg.asset(deps=[first])
def failing(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        con.execute("begin transaction")
        con.execute("insert into main.steps values ('failing', null, null)")
        raise RuntimeError("step failed half-way")


@dg.asset(deps=[first])
def third(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        seen = con.execute("select count(*) from duckdb_tables() where table_name = 'left_behind'").fetchone()[0]
        con.execute("insert into main.steps select 'third' || ?, getvariable('production_environment'), "
                    "current_setting('timezone')", [f" saw {seen} temp tables"])
    return dg.MaterializeResult()


@dg.asset_check(asset=third)
def steps_written(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        n = con.execute("select count(*) from main.steps").fetchone()[0]
    return dg.AssetCheckResult(passed=n == 2, metadata={"rows": n})


def test_a_run_opens_the_warehouse_once_and_keeps_its_steps_apart(tmp_path):
    OPENED.clear()
    resource = CountingWarehouse(data_dir=str(tmp_path / "data"), production_environment="live")
    result = dg.materialize([first, failing, third, steps_written], resources={"warehouse": resource},
                            raise_on_error=False)
    assert not result.success  # the failing step failed ...
    assert [e.step_key for e in result.get_step_failure_events()] == ["failing"]
    checks = result.get_asset_check_evaluations()
    assert [(c.check_name, c.passed, c.metadata["rows"].value) for c in checks] == [("steps_written", True, 2)]
    assert len(OPENED) == 1  # ... and did not close the warehouse for the others
    assert _writable_by_another_process(resource.paths.warehouse)  # closed at the end of the run
    con = duckdb.connect(str(resource.paths.warehouse), read_only=True)
    rows = con.execute("select * from main.steps order by step").fetchall()
    con.close()
    # the failed step's insert was rolled back; the temp table and the time zone stayed with their
    # connection; every connection gets the configured variable and UTC
    assert rows == [("first", "live", "UTC"), ("third saw 0 temp tables", "live", "UTC")]


def test_uses_within_a_run_empty_the_cache_when_the_last_one_ends(tmp_path):
    OPENED.clear()
    resource = CountingWarehouse(data_dir=str(tmp_path / "data"))
    context = dg.build_init_resource_context()
    resource.setup_for_execution(context)
    try:
        with resource.connect() as con:
            con.execute("create table main.big as select range as x, md5(range::varchar) || md5((range + 1)::varchar) as pad from range(2000000)")
        with resource.connect() as outer:
            outer.execute("select sum(length(pad)) from main.big").fetchall()
            assert _cached_mb(outer) > 50
            with resource.connect() as inner:  # a nested use: another connection, same database
                assert inner is not outer
                inner.execute("select 1").fetchall()
            assert _cached_mb(outer) > 50  # the outer use is still open: nothing released yet
            with pytest.raises(RuntimeError, match="inner failed"):
                with resource.connect() as inner:
                    raise RuntimeError("inner failed")
            assert outer.execute("select count(*) from main.big").fetchone()[0] == 2_000_000  # still usable
        with resource.connect() as after:
            assert _cached_mb(after) < 5  # emptied when the outer use ended
            assert after.execute("select current_setting('memory_limit')").fetchone()[0] != "0 bytes"
        for closed in (con, outer, inner):
            with pytest.raises(duckdb.ConnectionException):
                closed.execute("select 1")
        assert len(OPENED) == 1
        assert not _writable_by_another_process(resource.paths.warehouse)  # the run still holds it
    finally:
        resource.teardown_after_execution(context)
    assert _writable_by_another_process(resource.paths.warehouse)


def test_outside_a_run_each_use_opens_and_closes_its_own(tmp_path):
    OPENED.clear()
    resource = CountingWarehouse(data_dir=str(tmp_path / "data"))
    with resource.connect() as one:
        one.execute("create table main.t as select 1 as x")
    with resource.connect() as two:
        assert two.execute("select x from main.t").fetchone() == (1,)
    assert len(OPENED) == 2
    for con in (one, two):
        with pytest.raises(duckdb.ConnectionException):
            con.execute("select 1")
    assert _writable_by_another_process(resource.paths.warehouse)
