"""append, merge and replace, incremental files, additive evolution: exact rows and exact counts."""

from __future__ import annotations

from typing import Any

import pytest

from pgmill.errors import ContractError
from pgmill.ingest.runner import run_pipeline
from pgmill.project import open_project
from tests.helpers import ORDERS_CONTRACT, ProjectDir, orders_csv, run_one


def _row(i: int, status: str = "F", upd: str = "2024-02-01T00:00:00Z", total: str | None = None) -> tuple[Any, ...]:
    return (i, 100 + i, status, total or f"{i}.00", "2024-01-01", upd)


def test_append_without_key_appends_everything(project: ProjectDir) -> None:
    contract = {"columns": {k: {kk: vv for kk, vv in v.items() if kk != "primary_key"}
                            for k, v in ORDERS_CONTRACT["columns"].items()}}
    project.contract("orders", contract)
    project.config({"orders": {"source": {"kind": "csv", "path": "data/*.csv"}, "table": "orders",
                               "contract": "contracts/orders.yaml", "mode": "append"}})
    project.write("data/a.csv", orders_csv([_row(1), _row(1), _row(2)]))
    c = run_one().counts
    assert (c.rows_read, c.rows_inserted, c.rows_duplicate) == (3, 3, 0)


def test_append_with_key_counts_already_loaded_keys_as_duplicates(project: ProjectDir) -> None:
    project.orders_pipeline(mode="append", path="data/*.csv", batch_rows=2)
    project.write("data/a.csv", orders_csv([_row(1), _row(2), _row(3)]))
    assert run_one().counts.rows_inserted == 3
    project.write("data/b.csv", orders_csv([_row(3, "O"), _row(4), _row(4, "P")]))
    c = run_one().counts
    # 4 twice in one batch: the later one wins in the batch; 3 was loaded before: kept as it was
    assert (c.rows_read, c.rows_inserted, c.rows_duplicate) == (3, 1, 2)
    assert project.query("SELECT order_id, status FROM orders ORDER BY 1") == [
        (1, "F"), (2, "F"), (3, "F"), (4, "P")]


def test_merge_updates_only_changed_rows_and_newest_cursor_wins(project: ProjectDir) -> None:
    project.orders_pipeline(mode="merge", path="data/*.csv", cursor="updated_at")
    project.write("data/a.csv", orders_csv([_row(1), _row(2), _row(3)]))
    assert run_one().counts.rows_inserted == 3
    project.write("data/b.csv", orders_csv([
        _row(1),                                             # identical: unchanged
        _row(2, "O", "2024-03-01T00:00:00Z"),                # newer: updated
        _row(3, "P", "2024-01-15T00:00:00Z"),                # older than what is loaded: kept as is
        _row(4, "O", "2024-03-01T00:00:00Z"),                # new
        _row(4, "F", "2024-02-15T00:00:00Z"),                # same key, older, same batch: duplicate
    ]))
    c = run_one().counts
    assert (c.rows_read, c.rows_inserted, c.rows_updated, c.rows_unchanged, c.rows_duplicate) == (5, 1, 1, 2, 1)
    assert project.query("SELECT order_id, status FROM orders ORDER BY 1") == [
        (1, "F"), (2, "O"), (3, "F"), (4, "O")]


def test_composite_key(project: ProjectDir) -> None:
    project.contract("items", {"columns": {"order_id": {"type": "bigint", "primary_key": True},
                                           "line": {"type": "int", "primary_key": True},
                                           "qty": {"type": "int"}}})
    project.config({"items": {"source": {"kind": "csv", "path": "data/*.csv"}, "table": "items",
                              "contract": "contracts/items.yaml", "mode": "merge"}})
    project.write("data/a.csv", "order_id,line,qty\n1,1,5\n1,2,6\n2,1,7\n1,1,9\n")
    c = run_one().counts
    assert (c.rows_inserted, c.rows_duplicate) == (3, 1)
    assert project.query("SELECT * FROM items ORDER BY 1, 2") == [(1, 1, 9), (1, 2, 6), (2, 1, 7)]
    pk = project.scalar("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'items'::regclass"
                        " AND contype = 'p'")
    assert pk == "PRIMARY KEY (order_id, line)"


def test_replace_swaps_in_a_new_table_and_keeps_indexes(project: ProjectDir) -> None:
    project.orders_pipeline(mode="replace", path="data/current.csv")
    project.write("data/current.csv", orders_csv([_row(1), _row(2)]))
    run_one()
    project.execute("CREATE INDEX orders_customer ON orders (customer_id)")
    project.write("data/current.csv", orders_csv([_row(7), _row(8), _row(9)]))
    c = run_one().counts
    assert c.rows_inserted == 3
    assert project.query("SELECT order_id FROM orders ORDER BY 1") == [(7,), (8,), (9,)]
    assert project.scalar("SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_customer'") == 1
    assert project.scalar("SELECT count(*) FROM pg_class WHERE relname LIKE 'orders__pgmill%'") == 0


def test_replace_with_a_dependent_view_refills_in_place(project: ProjectDir) -> None:
    project.orders_pipeline(mode="replace", path="data/current.csv")
    project.write("data/current.csv", orders_csv([_row(1)]))
    run_one()
    project.execute("CREATE VIEW big_orders AS SELECT order_id FROM orders")
    project.write("data/current.csv", orders_csv([_row(5), _row(6)]))
    run_one()
    assert project.query("SELECT order_id FROM big_orders ORDER BY 1") == [(5,), (6,)]


def test_files_load_once_and_new_files_incrementally(project: ProjectDir) -> None:
    project.orders_pipeline(mode="append", path="data/*.csv")
    project.write("data/a.csv", orders_csv([_row(1)]))
    assert run_one().counts.rows_read == 1
    assert run_one().counts.rows_read == 0  # nothing new
    project.write("data/b.csv", orders_csv([_row(2)]))
    assert run_one().counts.rows_read == 1
    project.write("data/a.csv", orders_csv([_row(1), _row(3)]))  # changed content: a new file
    c = run_one().counts
    assert (c.rows_read, c.rows_inserted, c.rows_duplicate) == (2, 1, 1)


def test_contract_gains_a_column_and_the_table_evolves(project: ProjectDir) -> None:
    project.orders_pipeline(mode="merge", path="data/*.csv")
    project.write("data/a.csv", orders_csv([_row(1)]))
    run_one()
    contract = {"columns": dict(ORDERS_CONTRACT["columns"], channel={"type": "text"})}
    project.contract("orders", contract)
    project.write("data/b.csv", orders_csv([(*_row(2), "web")], header="order_id,customer_id,status,total,"
                                                                     "ordered_at,updated_at,channel"))
    run_one()
    assert project.query("SELECT order_id, channel FROM orders ORDER BY 1") == [(1, None), (2, "web")]
    step = project.scalar("SELECT detail FROM pgmill.run_steps WHERE name = 'evolve'")
    assert step == {"added_columns": ["channel"]}


def test_postgres_refusal_is_quarantined_by_bisection(project: ProjectDir) -> None:
    project.orders_pipeline(mode="append", path="data/*.csv")
    project.write("data/a.csv", orders_csv([_row(1)]))
    run_one()
    project.execute("ALTER TABLE orders ADD CONSTRAINT small CHECK (total < 50)")
    project.write("data/b.csv", orders_csv([_row(i) for i in range(2, 12)] + [_row(60, total="60.00")]))
    c = run_one().counts
    assert (c.rows_inserted, c.rows_quarantined) == (10, 1)
    loc, msg = project.query("SELECT source_location, violations->0->>'message' FROM pgmill.quarantine")[0]
    assert loc == "data/b.csv:line 12"
    assert msg.startswith('rejected by PostgreSQL: new row for relation "orders" violates check constraint "small"')


def test_parallel_files_with_workers_give_the_same_table(project: ProjectDir) -> None:
    project.orders_pipeline(mode="merge", path="data/*.csv", batch_rows=7)
    for f in range(6):
        project.write(f"data/p{f}.csv", orders_csv([_row(f * 40 + i) for i in range(40)] + [_row(f * 40, "O")]))
    run = run_pipeline(open_project(), "orders", workers=3)
    c = run.counts
    assert c.balanced() and (c.rows_read, c.rows_inserted, c.rows_duplicate) == (246, 240, 6)
    steps = project.query("SELECT name, status, rows FROM pgmill.run_steps ORDER BY name")
    assert steps == [(f"load data/p{f}.csv", "succeeded", 41) for f in range(6)]


def test_a_table_the_contract_cannot_load_is_a_failed_run_in_the_ledger(project: ProjectDir) -> None:
    """The table exists with a type the contract does not have: nothing is loaded, the run fails with the
    column named, and the execution log counts it (a failure before the first row is still a failed run)."""
    project.orders_pipeline(mode="append")
    project.write("data/orders_1.csv", orders_csv([_row(1), _row(2)]))
    project.execute("CREATE TABLE public.orders (order_id bigint PRIMARY KEY, customer_id bigint, status integer,"
                    " total numeric(12,2), ordered_at date, updated_at timestamptz)")
    with pytest.raises(ContractError) as failed:
        run_one(ok=False)
    message = "public.orders.status is integer in the database but text in the contract"
    assert message in str(failed.value)
    assert project.query("SELECT run_id, status, rows_read, finished_at IS NOT NULL FROM pgmill.runs") == [
        (failed.value.run_id, "failed", 0, True)]  # type: ignore[attr-defined]
    assert message in project.scalar("SELECT error FROM pgmill.runs")
    assert project.scalar("SELECT count(*) FROM public.orders") == 0
