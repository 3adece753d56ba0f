"""`pgmill tune` on a table partitioned by the contract: one table in the snapshot, one index on the parent
built ON ONLY + CONCURRENTLY per partition + ATTACH, valid everywhere, read by the plans, dropped as one."""

from __future__ import annotations

import datetime as dt
import re
import threading
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgmill.config.spec import Project
from pgmill.config.tune import TuneConfig
from pgmill.db.connect import Target
from pgmill.project import ProjectContext
from pgmill.tune import partitioned, store
from pgmill.tune.advisor import advise
from pgmill.tune.apply import apply_advice, drop_invalid_leftovers
from pgmill.tune.candidates import Candidate
from pgmill.tune.health import index_health
from pgmill.tune.run import rollback_run, run_tune
from pgmill.tune.snapshot import load_snapshot
from pgmill.tune.whatif import plan_indexes
from tests.helpers import ProjectDir, connect, execute, orders_csv, run_one
from tests.test_partition import setup
from tests.test_tune_advisor import write_queries

pytest_plugins = ["tests.pg15"]  # the pg15 fixture

MONTHS = 8
PER_MONTH = 6000
BY_CUSTOMER = "SELECT order_id, total FROM orders WHERE customer_id = 42"


def load_months(project: ProjectDir, months: int = MONTHS, first: int = 0, name: str = "orders.csv",
                per_month: int = PER_MONTH) -> int:
    """`months` months of orders from January 2031 (+`first` months), 1000 customers; returns the rows."""
    rows = []
    for m in range(first, first + months):
        start = dt.date(2031 + m // 12, m % 12 + 1, 1)
        for i in range(per_month):
            oid = m * per_month + i + 1
            rows.append((oid, oid % 1000, "P" if oid % 97 == 0 else "F", f"{oid % 500}.00",
                         (start + dt.timedelta(days=i % 28)).isoformat(), None))
    project.write(f"data/{name}", orders_csv(rows))
    run_one()
    return len(rows)


def tune_keeps_the_customer_index(project: ProjectDir) -> tuple[Any, list[Any]]:
    """`tune --apply` of the by-customer query, measured 20 times: its report, and the one index kept."""
    write_queries(project.path, {"by_customer": BY_CUSTOMER})
    report = run_tune(ProjectContext(project.path, Project(), Target(project.db_url)),
                      cfg=TuneConfig(observed=0, executions=20), apply=True)
    assert report.applied is not None
    kept = [o for o in report.applied.outcomes if o.status == "kept"]
    # the customer index; on a busy machine its covering variant may measure faster and be kept instead
    assert [o.label.split(" INCLUDE ")[0] for o in kept] == ["public.orders (customer_id)"], (
        [(o.label, o.status, o.reason) for o in report.applied.outcomes], report.applied.as_dict()["before"],
        report.applied.as_dict()["after"])
    return report, kept


def partitions(project: ProjectDir) -> list[str]:
    return [r[0] for r in project.query(
        "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'orders'::regclass ORDER BY 1")]


def pgmill_indexes(project: ProjectDir) -> list[str]:
    return [r[0] for r in project.query("SELECT relname FROM pg_class WHERE relname LIKE 'pgmill\\_%' ORDER BY 1")]


def test_snapshot_sees_the_partitioned_table_as_one(project: ProjectDir) -> None:
    setup(project)
    total = load_months(project)
    project.execute("ANALYZE orders")
    with project.connect() as conn:
        catalog = load_snapshot(conn)
    parts = partitions(project)
    assert len(parts) >= MONTHS
    assert not [k for k in catalog.tables if k[1].startswith("orders_p")], "a partition is a table of its own"
    t = catalog.tables[("public", "orders")]
    part_rows = project.scalar("SELECT sum(reltuples)::bigint FROM pg_class WHERE oid IN "
                               "(SELECT inhrelid FROM pg_inherits WHERE inhparent = 'orders'::regclass)")
    assert t.rows == part_rows == total
    assert t.size == project.scalar("SELECT sum(pg_table_size(inhrelid)) FROM pg_inherits "
                                    "WHERE inhparent = 'orders'::regclass") > 0
    assert t.partitions == len(parts) and not t.unanalyzed
    # the parent's statistics are the inherited ones (the parent alone has none)
    assert t.columns["customer_id"].n_distinct == 1000
    assert t.live == total


def test_tune_apply_indexes_the_parent_and_every_partition(project: ProjectDir) -> None:
    setup(project)
    # big enough that the index's gain (a scan of 200,000 rows against an index read of 200) stands far above
    # a busy machine's pauses
    load_months(project, per_month=25_000)
    report, kept = tune_keeps_the_customer_index(project)
    assert kept[0].improved == ["by_customer"] and kept[0].used_by == ["by_customer"]
    name = kept[0].name
    assert project.query("SELECT c.relkind, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                         " WHERE c.relname = %s", (name,)) == [("I", True)]
    attached = dict(project.query(
        "SELECT t.relname, i.indisvalid FROM pg_inherits h JOIN pg_index i ON i.indexrelid = h.inhrelid"
        " JOIN pg_class t ON t.oid = i.indrelid WHERE h.inhparent = %s::regclass", (name,)))
    parts = partitions(project)
    assert sorted(attached) == parts and all(attached.values())
    assert kept[0].size_bytes == project.scalar(
        "SELECT sum(pg_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = %s::regclass", (name,)) > 0
    with project.connect() as conn:
        [(plan,)] = conn.execute("EXPLAIN (FORMAT JSON) " + BY_CUSTOMER).fetchall()
        used = plan_indexes(plan[0]["Plan"])
        children = {r[0] for r in conn.execute(
            "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = %s::regclass", (name,))}
    assert used and used <= children, used

    # a month created after tuning gets the index from PostgreSQL at ATTACH PARTITION
    load_months(project, months=1, first=MONTHS + 3, name="orders_later.csv")
    later = set(partitions(project)) - set(parts)
    assert later
    assert project.scalar("SELECT count(*) FROM pg_inherits WHERE inhparent = %s::regclass", (name,)) == \
        len(partitions(project))

    # pgmill indexes: the parent's index once, its size its partitions' indexes', none of those on its own
    with project.connect() as conn:
        health = index_health(conn)
    listed = {x["index"]: x for x in health.indexes}
    assert listed[f"public.{name}"]["size_bytes"] >= kept[0].size_bytes
    assert "public.orders_pkey" in listed
    assert not [n for n in [*listed, *(f.index for f in health.findings)] if re.search(r"orders_p\d", n)]

    result = rollback_run(Target(project.db_url), TuneConfig(), report.run_id)
    assert result["dropped"] == [f"public.{name}"]
    assert pgmill_indexes(project) == []


def test_a_failed_partition_build_leaves_no_index(project: ProjectDir) -> None:
    setup(project)
    load_months(project, months=3)
    write_queries(project.path, {"by_customer": BY_CUSTOMER})
    with project.connect() as conn:
        store.ensure_schema(conn)
        advice = advise(conn, project.path, TuneConfig(observed=0))
        run_id = store.start_run(conn, "apply", advice.backend)
    assert advice.recommendations
    blocker = psycopg.connect(project.db_url)
    # an open writer on the last partition: its CONCURRENTLY build waits for it past lock_timeout and fails
    # after the parent's index and the first partitions' were made: all of them must go
    blocker.execute("UPDATE orders SET total = total WHERE order_id = %s", (3 * PER_MONTH,))
    release = threading.Timer(3.0, blocker.commit)
    release.start()
    try:
        applied = apply_advice(lambda: connect(project.db_url), advice, run_id, executions=5, lock_timeout="300ms")
    finally:
        release.join()
        blocker.close()
    assert [o.status for o in applied.outcomes] == ["failed"] * len(applied.outcomes)
    assert "timeout" in applied.outcomes[0].reason or "canceling" in applied.outcomes[0].reason
    assert pgmill_indexes(project) == []


def test_leftovers_of_an_interrupted_partitioned_build_are_dropped(project: ProjectDir) -> None:
    setup(project)
    load_months(project, months=2)
    parts = partitions(project)
    project.execute("CREATE INDEX pgmill_orders_customer_id_0badf00d ON ONLY orders (customer_id)")
    part_index = [sql.Identifier(f"pgmill_{p}_0badf00d") for p in parts[:2]]
    project.execute(sql.SQL("CREATE INDEX {} ON {} (customer_id)").format(part_index[0], sql.Identifier(parts[0])))
    project.execute(sql.SQL("ALTER INDEX pgmill_orders_customer_id_0badf00d ATTACH PARTITION {}").format(part_index[0]))
    project.execute(sql.SQL("CREATE INDEX {} ON {} (customer_id)").format(  # never attached
        part_index[1], sql.Identifier(parts[1])))
    with project.connect() as conn:
        store.ensure_schema(conn)
        run_id = store.start_run(conn, "apply", "real")
        dropped = drop_invalid_leftovers(conn, run_id, "1s")
    assert dropped[0] == "public.pgmill_orders_customer_id_0badf00d"
    assert f"public.pgmill_{parts[1]}_0badf00d" in dropped
    assert pgmill_indexes(project) == []


_LOCKS = ("SELECT c.relname, l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
          " WHERE l.pid = pg_backend_pid() AND c.relkind IN ('r', 'p') AND c.relnamespace = 'public'::regnamespace")


def test_lock_profile_of_the_catalog_steps(project: ProjectDir) -> None:
    """The steps around the CONCURRENTLY builds lock as the README says: ON ONLY takes SHARE on the parent
    alone (an instant: nothing is built), ATTACH only ACCESS SHARE on the tables, and the DROP of the
    parent's index ACCESS EXCLUSIVE on the table and every partition."""
    setup(project)
    load_months(project, months=2)
    parts = partitions(project)
    c = Candidate("public", "orders", ("customer_id",), (False,))
    with project.connect() as conn:
        with conn.transaction():
            conn.execute(c.ddl(only=True))
            assert dict(conn.execute(_LOCKS).fetchall()) == {"orders": "ShareLock"}
        child = partitioned.partition_index_name(parts[0], c.name)
        conn.execute(c.ddl(concurrently=True, name=child, on=("public", parts[0])))
        with conn.transaction():
            conn.execute(sql.SQL("ALTER INDEX {} ATTACH PARTITION {}").format(sql.Identifier(c.name),
                                                                              sql.Identifier(child)))
            assert dict(conn.execute(_LOCKS).fetchall()) == {"orders": "AccessShareLock", parts[0]: "AccessShareLock"}
        with conn.transaction():
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(c.name)))
            locks = dict(conn.execute(_LOCKS).fetchall())
    assert locks == dict.fromkeys(["orders", *parts], "AccessExclusiveLock")
    assert pgmill_indexes(project) == []


def test_hypopg_costs_an_index_on_the_parent(pg15: str, tmp_path: Path) -> None:
    """HypoPG (PostgreSQL 11+) applies a hypothetical index on a partitioned table to its partitions: the
    advisor costs the parent's index without building anything."""
    name = "tune_part_" + uuid.uuid4().hex[:8]
    execute(pg15, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = pg15.replace("/postgres?", f"/{name}?", 1)
    with connect(url) as conn:
        conn.execute("CREATE TABLE orders (order_id bigint, customer_id bigint NOT NULL, total numeric,"
                     " ordered_at date NOT NULL, PRIMARY KEY (order_id, ordered_at)) PARTITION BY RANGE (ordered_at)")
        for m in range(1, 5):
            conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF orders FOR VALUES FROM ({}) TO ({})").format(
                sql.Identifier(f"orders_p20310{m}"), sql.Literal(f"2031-0{m}-01"), sql.Literal(f"2031-0{m + 1}-01")))
        conn.execute("INSERT INTO orders SELECT g, g % 1000, g % 500, date '2031-01-01' + g % 120"
                     " FROM generate_series(1, 40000) g")
        advice = advise(conn, write_queries(tmp_path, {"by_customer": BY_CUSTOMER}), TuneConfig(observed=0),
                        backend="hypopg")
        assert advice.backend == "hypopg"
        [rec] = advice.recommendations
        assert rec.label == "public.orders (customer_id)"
        assert advice.cost_after["by_customer"] < advice.cost_before["by_customer"] / 5
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'pgmill\\_%'").fetchone() == (0,)


def test_tune_indexes_a_hash_partitioned_table(project: ProjectDir) -> None:
    from tests.test_partition_kinds import contract
    from tests.test_partition_kinds import setup as setup_kind

    setup_kind(project, contract({"by": "order_id", "hash": 4}))
    load_months(project, months=4, per_month=25_000)
    _, kept = tune_keeps_the_customer_index(project)
    attached = dict(project.query(
        "SELECT t.relname, i.indisvalid FROM pg_inherits h JOIN pg_index i ON i.indexrelid = h.inhrelid"
        " JOIN pg_class t ON t.oid = i.indrelid WHERE h.inhparent = %s::regclass", (kept[0].name,)))
    assert attached == {"orders_h0": True, "orders_h1": True, "orders_h2": True, "orders_h3": True}
