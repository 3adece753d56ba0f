"""Range-partitioned tables from the contract: partitions made ahead of now and before the batch that needs
them, rows in the right partition, concurrent loads, merge, and the config rules."""

from __future__ import annotations

import copy
import datetime as dt
import threading
from typing import Any

import pytest

from pgmill.config.spec import PartitionSpec
from pgmill.db import partition
from pgmill.errors import ConfigError, ContractError
from pgmill.ingest.runner import run_pipelines
from pgmill.project import open_project
from tests.helpers import ORDERS_CONTRACT, ProjectDir, orders_csv, run_one, table_checksum

ROWS = [
    (1, 10, "F", "10.00", "2031-01-15", "2031-01-15T10:00:00Z"),
    (2, 11, "O", "20.00", "2031-02-01", "2031-02-01T00:00:00Z"),
    (3, 12, "P", "30.00", "2031-02-28", None),
    (4, 13, "F", "40.00", "2031-04-30", "2031-04-30T23:59:59Z"),
    (5, 14, "O", "50.00", "2030-12-31", None),
]


def partitioned(interval: str = "month", by: str = "ordered_at", premake: int = 2) -> dict[str, Any]:
    doc = copy.deepcopy(ORDERS_CONTRACT)
    doc["columns"][by]["primary_key"] = True
    doc["partition"] = {"by": by, "interval": interval, "premake": premake}
    return doc


def setup(project: ProjectDir, mode: str = "append", contract: dict[str, Any] | None = None,
          table: str = "public.orders", name: str = "orders", path: str = "data/orders*.csv") -> None:
    project.contract(name, contract or partitioned())
    project.config({name: {"source": {"kind": "csv", "path": path}, "table": table,
                           "contract": f"contracts/{name}.yaml", "mode": mode}})


def placement(project: ProjectDir) -> dict[int, str]:
    return dict(project.query("SELECT order_id, tableoid::regclass::text FROM orders"))


def test_partitions_appear_for_the_months_the_data_needs(project: ProjectDir) -> None:
    setup(project)
    project.write("data/orders.csv", orders_csv(ROWS))
    run_one()
    assert placement(project) == {1: "orders_p203101", 2: "orders_p203102", 3: "orders_p203102",
                                  4: "orders_p203104", 5: "orders_p203012"}
    assert project.scalar("SELECT relkind FROM pg_class WHERE oid = 'orders'::regclass") == "p"
    # only the months with rows (and those around now): no March, no default partition
    names = partition.existing(project.connect(), "orders")
    assert "orders_p203103" not in names
    assert {"orders_p203105", "orders_p203106"} <= names  # premake 2 ahead of the newest row
    assert "orders_p203107" not in names
    assert project.scalar("SELECT count(*) FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partdefid"
                          " WHERE p.partrelid = 'orders'::regclass") == 0
    bounds = project.scalar("SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'orders_p203102'")
    assert bounds == "FOR VALUES FROM ('2031-02-01') TO ('2031-03-01')"


def test_same_rows_as_a_plain_table(project: ProjectDir) -> None:
    setup(project)
    project.write("data/orders.csv", orders_csv(ROWS))
    run_one()
    plain = copy.deepcopy(ORDERS_CONTRACT)
    plain["columns"]["ordered_at"]["primary_key"] = True
    setup(project, contract=plain, table="public.orders_plain", name="plain")
    run_one()
    assert project.scalar("SELECT relkind FROM pg_class WHERE oid = 'orders_plain'::regclass") == "r"
    assert table_checksum(project.db_url, "orders", "order_id") == table_checksum(
        project.db_url, "orders_plain", "order_id")


def test_premake_partitions_exist_ahead_of_now(project: ProjectDir) -> None:
    setup(project, contract=partitioned("week", premake=3))
    project.write("data/orders.csv", orders_csv(ROWS[:1]))
    run_one()
    today = dt.datetime.now(dt.UTC).date()
    monday = today - dt.timedelta(days=today.weekday())
    names = partition.existing(project.connect(), "orders")
    for k in range(4):
        assert f"orders_p{(monday + dt.timedelta(weeks=k)):%Y%m%d}" in names
    # and the week of the one row (a future one) with 3 after it
    row_weeks = {f"orders_p{(dt.date(2031, 1, 13) + dt.timedelta(weeks=k)):%Y%m%d}" for k in range(4)}
    assert row_weeks <= names
    assert len(names) == 8


def test_premake_follows_the_newest_row_of_every_load(project: ProjectDir) -> None:
    """After each load the `premake` partitions after max(newest row, now) exist, whichever is later."""
    setup(project, contract=partitioned("year", premake=2))
    this_year = dt.datetime.now(dt.UTC).year
    project.write("data/orders1.csv", orders_csv([(1, 10, "F", "1.00", f"{this_year - 3}-05-01", None)]))
    run_one()  # old data: ahead of now only
    names = partition.existing(project.connect(), "orders")
    assert names == {f"orders_p{y}" for y in (this_year - 3, this_year, this_year + 1, this_year + 2)}
    project.write("data/orders2.csv", orders_csv([(2, 10, "F", "1.00", f"{this_year + 5}-05-01", None)]))
    run_one()  # future data: ahead of it
    names = partition.existing(project.connect(), "orders")
    assert {f"orders_p{y}" for y in (this_year + 5, this_year + 6, this_year + 7)} <= names
    assert f"orders_p{this_year + 8}" not in names and f"orders_p{this_year + 4}" not in names


def test_premake_stops_at_the_end_of_python_dates() -> None:
    spec = PartitionSpec(by="d", interval="year", premake=3)
    assert partition.ahead(spec, newest=dt.date(9998, 6, 1)) == [dt.date(9998, 1, 1), dt.date(9999, 1, 1)]


def test_merge_reload_updates_in_place(project: ProjectDir) -> None:
    setup(project, mode="merge")
    project.write("data/orders.csv", orders_csv(ROWS))
    run_one()
    changed = [(*r[:3], "99.00", *r[4:]) if r[0] == 2 else r for r in ROWS]
    project.write("data/orders.csv", orders_csv(changed))
    run = run_one()
    assert (run.counts.rows_updated, run.counts.rows_unchanged, run.counts.rows_inserted) == (1, 4, 0)
    assert project.scalar("SELECT total FROM orders WHERE order_id = 2") == 99
    assert placement(project)[2] == "orders_p203102"
    assert project.scalar("SELECT count(*) FROM orders") == 5


def test_timestamptz_partitions_are_bounded_in_utc(project: ProjectDir) -> None:
    doc = copy.deepcopy(ORDERS_CONTRACT)
    doc["columns"]["updated_at"].update(primary_key=True)
    doc["partition"] = {"by": "updated_at", "interval": "year", "premake": 0}
    setup(project, contract=doc)
    project.write("data/orders.csv", orders_csv([(1, 1, "F", "1", "2031-01-01", "2030-12-31T23:30:00-02:00"),
                                                 (2, 1, "F", "1", "2031-01-01", "2030-12-31T23:30:00+02:00")]))
    run_one()
    assert placement(project) == {1: "orders_p2031", 2: "orders_p2030"}


def test_two_concurrent_loads_needing_the_same_new_partition(project: ProjectDir) -> None:
    project.contract("orders", partitioned("day", premake=0))
    pipes = {f"p{i}": {"source": {"kind": "csv", "path": f"data/p{i}.csv"}, "table": "public.orders",
                       "contract": "contracts/orders.yaml", "mode": "append", "batch_rows": 7}
             for i in (1, 2)}
    project.config(pipes)
    for i in (1, 2):  # both need the same 30 new days, batch after batch
        rows = [(i * 1000 + d, 1, "F", "1.00", f"2032-03-{d:02d}", None) for d in range(1, 31)]
        project.write(f"data/p{i}.csv", orders_csv(rows))
    ctx = open_project(project.path)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    runs: list[Any] = []

    def go(name: str) -> None:
        try:
            barrier.wait()
            runs.extend(run_pipelines(ctx, [name]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(n,)) for n in pipes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert [r.status for r in runs] == ["succeeded", "succeeded"], [r.error for r in runs]
    assert project.scalar("SELECT count(*) FROM orders") == 60
    assert project.scalar("SELECT count(DISTINCT tableoid) FROM orders") == 30


def test_a_key_without_the_partition_column_is_a_config_error(project: ProjectDir) -> None:
    doc = copy.deepcopy(ORDERS_CONTRACT)
    doc["partition"] = {"by": "ordered_at", "interval": "month"}
    setup(project, contract=doc)
    with pytest.raises(ConfigError) as err:
        run_one()
    msg = str(err.value)
    assert "contracts/orders.yaml:" in msg and "partition" in msg
    assert "primary key (order_id)" in msg and "'ordered_at'" in msg


@pytest.mark.parametrize(("change", "expected"), [
    ({"partition": {"by": "status", "interval": "month"}}, "needs one of: date, timestamptz, timestamp"),
    ({"partition": {"by": "nope", "interval": "month"}}, "'nope' is not a column"),
    ({"partition": {"by": "updated_at", "interval": "month"}}, "must be declared not_null"),
    ({"partition": {"by": "ordered_at", "interval": "quarter"}}, "partition.interval"),
])
def test_partition_config_errors(project: ProjectDir, change: dict[str, Any], expected: str) -> None:
    doc = copy.deepcopy(ORDERS_CONTRACT)
    doc["columns"]["ordered_at"]["primary_key"] = True
    doc.update(change)
    setup(project, contract=doc)
    with pytest.raises(ConfigError, match=expected):
        run_one()


def test_replace_mode_is_refused(project: ProjectDir) -> None:
    setup(project, mode="replace")
    with pytest.raises(ConfigError, match="mode replace is not supported yet on a partitioned table"):
        run_one()


def test_an_existing_plain_table_is_not_converted(project: ProjectDir) -> None:
    project.execute("CREATE TABLE orders (order_id bigint)")
    setup(project)
    project.write("data/orders.csv", orders_csv(ROWS))
    with pytest.raises(ContractError, match=r"convert it with `pgmill partition public\.orders`"):
        run_one()


def test_lock_profile_attach_lets_writers_through(project: ProjectDir) -> None:
    """Measured: CREATE TABLE ... PARTITION OF takes ACCESS EXCLUSIVE on the parent (it would wait for
    every open checkpoint), ATTACH PARTITION only SHARE UPDATE EXCLUSIVE (a writer's ROW EXCLUSIVE passes)."""
    project.execute("CREATE TABLE t (d date NOT NULL) PARTITION BY RANGE (d)")

    def parent_locks(stmt: str) -> set[str]:
        with project.connect(autocommit=False) as c:
            c.execute(stmt)
            modes = {r[0] for r in c.execute("SELECT mode FROM pg_locks WHERE relation = 't'::regclass"
                                             " AND pid = pg_backend_pid()").fetchall()}
            c.rollback()
        return set(modes)

    assert "AccessExclusiveLock" in parent_locks(
        "CREATE TABLE t_a PARTITION OF t FOR VALUES FROM ('2030-01-01') TO ('2030-02-01')")
    spec = PartitionSpec(by="d", interval="month", premake=0)
    with project.connect() as c:
        partition.ensure_partitions(c, "t", spec, "date", [dt.date(2031, 1, 1)])  # its own transaction
        with c.transaction():  # as inside a checkpoint that has already written
            c.execute("INSERT INTO t VALUES ('2031-01-02')")
            assert partition.ensure_partitions(c, "t", spec, "date", [dt.date(2030, 1, 1)]) == ["t_p203001"]
            modes = {r[0] for r in c.execute("SELECT mode FROM pg_locks WHERE relation = 't'::regclass"
                                             " AND pid = pg_backend_pid()").fetchall()}
            assert "AccessExclusiveLock" not in modes and "ShareUpdateExclusiveLock" in modes
            with project.connect() as writer:  # another load writing meanwhile is not blocked
                writer.execute("SET lock_timeout = '2s'")
                writer.execute("INSERT INTO t VALUES ('2031-01-03')")
    assert project.scalar("SELECT count(*) FROM t") == 2


def test_period_arithmetic() -> None:
    assert partition.period_end(dt.date(2031, 12, 1), "month") == dt.date(2032, 1, 1)
    assert partition.period_start(dt.date(2031, 6, 5), "week") == dt.date(2031, 6, 2)  # a Monday
    assert partition.partition_name("s.orders", dt.date(2031, 6, 2), "week") == "orders_p20310602"
    assert partition.partition_name("orders", dt.date(2031, 1, 1), "year") == "orders_p2031"
    assert [d.isoformat() for d in partition.ahead(PartitionSpec(by="d", interval="month", premake=2),
                                                   dt.date(2031, 11, 20))] == ["2031-11-01", "2031-12-01", "2032-01-01"]
