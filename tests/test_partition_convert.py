"""`pgmill partition TABLE`: a plain table converted into the partitioned one its contract now declares, with
the same rows (count and checksum) while a reader loops, its key, indexes, grants and comment carried over;
the dry run's plan; and the refusals."""

from __future__ import annotations

import copy
import json
import threading
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from pgmill.cli.root import app
from pgmill.db import partition, roles
from tests.helpers import ORDERS_CONTRACT, ProjectDir, orders_csv, run_one, table_checksum

runner = CliRunner()
ROWS = 20_000


def contract(part: bool) -> dict[str, Any]:
    doc = copy.deepcopy(ORDERS_CONTRACT)
    doc["columns"]["ordered_at"]["primary_key"] = True
    if part:
        doc["partition"] = {"by": "ordered_at", "interval": "month", "premake": 1}
    return doc


def plain_table(project: ProjectDir) -> None:
    """`orders` loaded as a plain table, then grown to ROWS rows over 2029-2030, indexed, granted, commented."""
    project.contract("orders", contract(part=False))
    project.config({"orders": {"source": {"kind": "csv", "path": "data/*.csv"}, "table": "orders",
                               "contract": "contracts/orders.yaml", "mode": "merge"}})
    project.write("data/a.csv", orders_csv([(1, 10, "F", "1.00", "2029-01-05", None)]))
    run_one()
    project.execute("INSERT INTO orders SELECT g, g %% 97, 'O', g / 100.0, DATE '2029-01-01' + (g %% 730),"
                    " TIMESTAMPTZ '2029-01-01' + g * INTERVAL '1 minute' FROM generate_series(2, %s) g", (ROWS,))
    project.execute("CREATE INDEX orders_by_customer ON orders (customer_id, total DESC)")
    project.execute("COMMENT ON TABLE orders IS 'all the orders'")
    with project.connect() as c:
        roles.ensure_roles(c, ["public"])  # grants pgmill_reader and pgmill_loader on the table
    project.contract("orders", contract(part=True))


def reading(project: ProjectDir, stop: threading.Event, seen: list[Any]) -> None:
    with project.connect() as c:
        while not stop.is_set():
            try:
                seen.append(c.execute("SELECT count(*), sum(hashtext(t::text)::bigint) FROM orders t").fetchone())
            except psycopg.Error as exc:  # must not happen: kept to fail the test with the message
                seen.append(exc)


def test_convert_keeps_every_row_while_a_reader_loops(project: ProjectDir) -> None:
    plain_table(project)
    before = table_checksum(project.db_url, "orders", "order_id,ordered_at")
    sums = project.query("SELECT count(*), sum(hashtext(t::text)::bigint) FROM orders t")[0]
    grants = project.query("SELECT grantee, privilege_type FROM information_schema.role_table_grants"
                           " WHERE table_name = 'orders' ORDER BY 1, 2")
    assert ("pgmill_reader", "SELECT") in grants
    stop, seen = threading.Event(), []
    reader = threading.Thread(target=reading, args=(project, stop, seen))
    reader.start()
    try:
        res = runner.invoke(app, ["partition", "orders", "--json"])
    finally:
        stop.set()
        reader.join()
    assert res.exit_code == 0, res.output
    plan = json.loads(res.stdout)
    assert plan["rows"] == ROWS and not plan["dry_run"]
    assert table_checksum(project.db_url, "orders", "order_id,ordered_at") == before
    assert seen and all(s == sums for s in seen), [s for s in seen if s != sums][:3]
    assert project.scalar("SELECT relkind FROM pg_class WHERE oid = 'orders'::regclass") == "p"
    names = partition.existing(project.connect(), "orders")
    assert {f"orders_p{y}{m:02}" for y in (2029, 2030) for m in range(1, 13)} <= names
    assert project.scalar("SELECT count(*) FROM orders_p202902") == project.scalar(
        "SELECT count(*) FROM orders WHERE ordered_at >= '2029-02-01' AND ordered_at < '2029-03-01'")
    # the key, the index, the grants and the comment, under their old names
    assert project.scalar("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'orders_pkey'"
                          " AND conrelid = 'orders'::regclass") == "PRIMARY KEY (order_id, ordered_at)"
    assert project.scalar("SELECT pg_get_indexdef('orders_by_customer'::regclass)") == (
        "CREATE INDEX orders_by_customer ON ONLY public.orders USING btree (customer_id, total DESC)")
    assert project.query("SELECT grantee, privilege_type FROM information_schema.role_table_grants"
                         " WHERE table_name = 'orders' ORDER BY 1, 2") == grants
    assert project.scalar("SELECT obj_description('orders'::regclass, 'pg_class')") == "all the orders"
    assert project.scalar("SELECT count(*) FROM pg_class WHERE relname LIKE '%%pgmill_part%%'"
                          " OR relname LIKE 'pgmill_conv_%%'") == 0
    # and loads go on into it, new months made as they are needed
    project.write("data/b.csv", orders_csv([(ROWS + 1, 10, "F", "1.00", "2031-03-05", None)]))
    run_one()
    assert project.scalar("SELECT tableoid::regclass::text FROM orders WHERE order_id = %s", (ROWS + 1,)) == (
        "orders_p203103")


def test_dry_run_prints_the_plan_and_changes_nothing(project: ProjectDir) -> None:
    plain_table(project)
    res = runner.invoke(app, ["partition", "orders", "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    plan = json.loads(res.stdout)
    assert plan["dry_run"] and plan["rows"] == ROWS and plan["bytes"] > 0
    parts = {p["name"]: p for p in plan["partitions"]}
    assert parts["orders_p202902"]["start"] == "2029-02-01" and parts["orders_p202902"]["end"] == "2029-03-01"
    assert sum(p["rows"] for p in plan["partitions"]) == ROWS
    assert plan["constraints"] == ["orders_pkey"] and plan["indexes"] == ["orders_by_customer"]
    assert "pgmill_reader: SELECT" in plan["grants"]
    assert plan["steps"][0].startswith("LOCK public.orders IN SHARE ROW EXCLUSIVE MODE")
    assert plan["write_wait_s"] is None
    assert project.scalar("SELECT relkind FROM pg_class WHERE oid = 'orders'::regclass") == "r"
    assert project.scalar("SELECT count(*) FROM pg_class WHERE relname LIKE 'orders\\_p2%%'") == 0
    text = runner.invoke(app, ["partition", "orders", "--dry-run"])
    assert text.exit_code == 0 and "plan for public.orders: 20,000 rows" in text.stdout
    assert "orders_p202902 [2029-02-01, 2029-03-01): " in text.stdout


@pytest.mark.parametrize(("setup", "code", "message"), [
    ("CREATE TABLE orders (order_id bigint PRIMARY KEY, customer_id bigint, status text, total numeric(12,2),"
     " ordered_at date NOT NULL, updated_at timestamptz)", 2,
     "the primary key orders_pkey of public.orders lacks the partition column ordered_at"),
    ("CREATE TABLE orders (order_id bigint, customer_id bigint, status text, total numeric(12,2),"
     " ordered_at date, updated_at timestamptz); INSERT INTO orders VALUES (1, 1, 'F', 1, NULL, NULL)", 3,
     "public.orders: 1 row(s) have NULL in the partition column ordered_at"),
    ("CREATE TABLE orders (order_id bigint, ordered_at date NOT NULL) PARTITION BY RANGE (ordered_at)", 2,
     "public.orders is already partitioned: nothing to convert"),
    ("CREATE TABLE orders (order_id bigint, ordered_at date NOT NULL); CREATE VIEW v AS SELECT * FROM orders", 2,
     "public.orders is not converted: views depend on it (v)"),
    ("CREATE TABLE orders_p203001 (x int); CREATE TABLE orders (order_id bigint, ordered_at date NOT NULL);"
     " INSERT INTO orders VALUES (1, '2030-01-02')", 2,
     "public.orders is not converted: orders_p203001 already exist(s)"),
], ids=["key", "null", "partitioned", "view", "name-taken"])
def test_refusals(project: ProjectDir, setup: str, code: int, message: str) -> None:
    for stmt in setup.split("; "):
        project.execute(stmt)
    project.contract("orders", contract(part=True))
    project.config({"orders": {"source": {"kind": "csv", "path": "data/*.csv"}, "table": "orders",
                               "contract": "contracts/orders.yaml"}})
    before = project.scalar("SELECT relkind FROM pg_class WHERE oid = 'orders'::regclass")
    res = runner.invoke(app, ["partition", "orders"])
    assert res.exit_code == code, res.output
    assert message in res.stderr
    assert project.scalar("SELECT relkind FROM pg_class WHERE oid = 'orders'::regclass") == before


def test_a_run_refusing_the_plain_table_names_the_command(project: ProjectDir) -> None:
    plain_table(project)
    res = runner.invoke(app, ["run"])
    assert res.exit_code == 3
    assert "convert it with `pgmill partition orders`" in res.stderr


def test_a_serial_column_keeps_its_sequence(project: ProjectDir) -> None:
    project.execute("CREATE TABLE orders (n bigserial, order_id bigint, ordered_at date NOT NULL,"
                    " PRIMARY KEY (order_id, ordered_at))")
    project.execute("INSERT INTO orders (order_id, ordered_at) VALUES (1, '2030-01-02'), (2, '2030-02-03')")
    project.contract("orders", contract(part=True))
    project.config({"orders": {"source": {"kind": "csv", "path": "data/*.csv"}, "table": "orders",
                               "contract": "contracts/orders.yaml"}})
    assert runner.invoke(app, ["partition", "orders"]).exit_code == 0
    project.execute("INSERT INTO orders (order_id, ordered_at) VALUES (3, '2030-02-04')")
    assert project.query("SELECT order_id, n FROM orders ORDER BY 1") == [(1, 1), (2, 2), (3, 3)]
    assert project.scalar("SELECT pg_get_serial_sequence('orders', 'n')") == "public.orders_n_seq"


def test_writers_holding_the_table_past_the_lock_timeout(project: ProjectDir) -> None:
    plain_table(project)
    with project.connect(autocommit=False) as writer:
        writer.execute("UPDATE orders SET total = total WHERE order_id = 1")  # an open load's checkpoint
        res = runner.invoke(app, ["partition", "orders", "--lock-timeout", "0.2"])
        writer.rollback()
    assert res.exit_code == 7, res.output
    assert "public.orders is busy: writers held it for more than 0.2 s; try again" in res.stderr
    assert project.scalar("SELECT relkind FROM pg_class WHERE oid = 'orders'::regclass") == "r"
