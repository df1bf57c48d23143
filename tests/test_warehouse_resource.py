"""WarehouseResource.connect: one connection shared by a run's steps, a fresh one after a step fails,
none left open after the run (another process can then open the file for writing)."""

import subprocess
import sys

import dagster as dg
import duckdb
import pytest

from pipelines.resources import WarehouseResource

OPENED: list[int] = []


class CountingWarehouse(WarehouseResource):
    """Counts the connections it opens (a class attribute: Dagster may copy the resource)."""

    def _open(self) -> duckdb.DuckDBPyConnection:
        con = super()._open()
        OPENED.append(id(con))
        return con


def _writable_by_another_process(path) -> bool:
    """DuckDB lets one process write a file: this fails while any connection here holds it."""
    code = "import duckdb, sys; duckdb.connect(sys.argv[1]).close()"
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True).returncode == 0


@dg.asset
def first(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        con.execute("create or replace table main.steps (step varchar, connection bigint)")
        con.execute("insert into main.steps values ('first', ?)", [id(con)])
    return dg.MaterializeResult()


@dg.asset(deps=[first])
def second(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        con.execute("insert into main.steps values ('second', ?)", [id(con)])
    with warehouse.connect() as con:  # a second use in the same step: still the same connection
        con.execute("insert into main.steps values ('second again', ?)", [id(con)])
    return dg.MaterializeResult()


def test_a_run_opens_the_warehouse_once_and_closes_it_at_the_end(tmp_path):
    OPENED.clear()
    resource = CountingWarehouse(data_dir=str(tmp_path / "data"))
    result = dg.materialize([first, second], resources={"warehouse": resource})
    assert result.success
    assert len(OPENED) == 1
    assert _writable_by_another_process(resource.paths.warehouse)
    con = duckdb.connect(str(resource.paths.warehouse), read_only=True)
    rows = con.execute("select step, connection from main.steps order by step").fetchall()
    con.close()
    assert [step for step, _ in rows] == ["first", "second", "second again"]
    assert {c for _, c in rows} == {OPENED[0]}


def test_a_step_that_raises_closes_the_connection_and_rolls_back(tmp_path):
    OPENED.clear()
    resource = CountingWarehouse(data_dir=str(tmp_path / "data"))
    context = dg.build_init_resource_context()
    resource.setup_for_execution(context)
    with resource.connect() as con:
        con.execute("create table main.t (x integer)")
        con.execute("insert into main.t values (1)")
    with pytest.raises(RuntimeError, match="step failed"):
        with resource.connect() as failing:
            assert failing is con
            failing.execute("begin transaction")
            failing.execute("insert into main.t values (2)")
            raise RuntimeError("step failed")
    with pytest.raises(duckdb.ConnectionException):
        con.execute("select 1")  # closed with the failure
    with resource.connect() as fresh:
        assert fresh.execute("select list(x) from main.t").fetchone()[0] == [1]  # the failed step's row rolled back
    assert len(OPENED) == 2
    assert not _writable_by_another_process(resource.paths.warehouse)  # the run still holds it
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
