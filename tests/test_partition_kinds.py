"""Hash and list partitioned tables from the contract: every partition made with the table, rows in the
partition PostgreSQL's own routing gives them, a list value without a partition quarantined, and the rules of
the partition section."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pgmill.config.spec import PartitionSpec
from pgmill.db import partition
from pgmill.errors import ConfigError, ContractError
from pgmill.ingest.convert import partition_table
from pgmill.project import open_project
from tests.helpers import ORDERS_CONTRACT, ProjectDir, orders_csv, run_one, table_checksum

ROWS = [
    (1, 10, "F", "10.00", "2031-01-15", None),
    (2, 11, "O", "20.00", "2031-02-01", None),
    (3, 12, "P", "30.00", "2031-02-28", None),
    (4, 13, "F", "40.00", "2031-04-30", None),
    (5, 14, "O", "50.00", "2030-12-31", None),
    (6, 10, "O", "60.00", "2031-01-16", None),
]


def contract(part: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    doc = copy.deepcopy(ORDERS_CONTRACT)
    if key:
        doc["columns"][key]["primary_key"] = True
    doc["partition"] = part
    return doc


def setup(project: ProjectDir, doc: dict[str, Any], mode: str = "append") -> None:
    project.contract("orders", doc)
    project.config({"orders": {"source": {"kind": "csv", "path": "data/orders*.csv"}, "table": "public.orders",
                               "contract": "contracts/orders.yaml", "mode": mode}})


def placement(project: ProjectDir) -> dict[int, str]:
    return dict(project.query("SELECT order_id, tableoid::regclass::text FROM orders"))


# ------------------------------------------------------------------ hash


def test_hash_partitions_are_all_made_with_the_table(project: ProjectDir) -> None:
    setup(project, contract({"by": "customer_id", "hash": 4}, key="customer_id"))
    project.write("data/orders.csv", orders_csv(ROWS))
    run = run_one()
    assert run.counts.rows_inserted == 6
    assert partition.existing(project.connect(), "orders") == {"orders_h0", "orders_h1", "orders_h2", "orders_h3"}
    assert project.scalar("SELECT partstrat FROM pg_partitioned_table WHERE partrelid = 'orders'::regclass") == "h"
    # each row sits in the partition whose hash bounds PostgreSQL checks for it
    for order_id, part in placement(project).items():
        i = int(part.rsplit("_h", 1)[1])
        cust = project.scalar("SELECT customer_id FROM orders WHERE order_id = %s", (order_id,))
        assert project.scalar("SELECT satisfies_hash_partition('orders'::regclass, 4, %s, %s::bigint)",
                              (i, cust)) is True
    # the same customer, the same partition
    assert placement(project)[1] == placement(project)[6]
    # a second load creates nothing and keeps every row
    project.write("data/orders2.csv", orders_csv([(7, 15, "F", "1.00", "2031-05-01", None)]))
    run_one()
    assert len(partition.existing(project.connect(), "orders")) == 4
    assert project.scalar("SELECT count(*) FROM orders") == 7


def test_hash_merge_reload_matches_a_plain_table(project: ProjectDir, tmp_path: Any) -> None:
    setup(project, contract({"by": "customer_id", "hash": 3}, key="customer_id"), mode="merge")
    project.write("data/orders.csv", orders_csv(ROWS))
    run_one()
    project.write("data/orders2.csv", orders_csv([(2, 11, "F", "21.00", "2031-02-01", None)]))
    run = run_one()
    assert (run.counts.rows_updated, run.counts.rows_inserted) == (1, 0)
    assert project.scalar("SELECT total FROM orders WHERE order_id = 2") == 21
    assert table_checksum(project.db_url, "public.orders", "order_id")[0] == 6


def test_hash_on_a_nullable_column_puts_null_in_h0(project: ProjectDir) -> None:
    doc = contract({"by": "status", "hash": 4})
    doc["columns"]["order_id"]["primary_key"] = False
    setup(project, doc)
    project.write("data/orders.csv", orders_csv([(1, 10, None, "1.00", "2031-01-01", None)]))
    run_one()
    assert placement(project) == {1: "orders_h0"}


def test_hash_modulus_cannot_change_in_place(project: ProjectDir) -> None:
    setup(project, contract({"by": "customer_id", "hash": 2}, key="customer_id"))
    project.write("data/orders.csv", orders_csv(ROWS))
    run_one()
    setup(project, contract({"by": "customer_id", "hash": 4}, key="customer_id"))
    with pytest.raises(ContractError, match="the modulus of a hash-partitioned table cannot change in place"):
        run_one()


# ------------------------------------------------------------------ list


def test_list_partitions_route_by_value_and_quarantine_the_rest(project: ProjectDir) -> None:
    setup(project, contract({"by": "status", "values": ["F", "O"]}, key="status"))
    project.write("data/orders.csv", orders_csv(ROWS))
    run = run_one()
    assert (run.counts.rows_inserted, run.counts.rows_quarantined) == (5, 1)
    # F and O are not plain lower-case names: the partitions are named by position
    assert placement(project) == {1: "orders_l0", 2: "orders_l1", 4: "orders_l0", 5: "orders_l1", 6: "orders_l1"}
    [(loc, rule, column, msg)] = project.query(
        "SELECT source_location, violations->0->>'rule', violations->0->>'column', violations->0->>'message'"
        " FROM pgmill.quarantine")
    assert loc == "data/orders.csv:line 4"  # the third data row, line 4 of the file
    assert (rule, column) == ("partition.values", "status")
    assert msg == ("status = 'P' has no partition: the table is list-partitioned on status with values ['F', 'O'] "
                   "and no default partition")


def test_list_default_partition_takes_the_other_values_and_nulls(project: ProjectDir) -> None:
    doc = contract({"by": "status", "values": ["F", "O"], "default": True})
    doc["columns"]["order_id"]["primary_key"] = False
    setup(project, doc)
    project.write("data/orders.csv", orders_csv([*ROWS, (7, 10, None, "1.00", "2031-01-01", None)]))
    run = run_one()
    assert (run.counts.rows_inserted, run.counts.rows_quarantined) == (7, 0)
    assert placement(project) == {1: "orders_l0", 2: "orders_l1", 3: "orders_default", 4: "orders_l0",
                                  5: "orders_l1", 6: "orders_l1", 7: "orders_default"}
    assert project.scalar("SELECT count(*) FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partdefid"
                          " WHERE p.partrelid = 'orders'::regclass") == 1


def test_list_on_a_nullable_column_without_default_quarantines_null(project: ProjectDir) -> None:
    doc = copy.deepcopy(ORDERS_CONTRACT)
    doc["columns"]["order_id"]["primary_key"] = False
    doc["columns"]["region"] = {"type": "text"}
    doc["partition"] = {"by": "region", "values": ["eu", "us", "apac"]}
    setup(project, doc)
    header = "order_id,customer_id,status,total,ordered_at,updated_at,region"
    project.write("data/orders.csv", orders_csv([(1, 10, "F", "1", "2031-01-01", None, "eu"),
                                                 (2, 10, "F", "1", "2031-01-01", None, "apac"),
                                                 (3, 10, "F", "1", "2031-01-01", None, None),
                                                 (4, 10, "F", "1", "2031-01-01", None, "latam")], header))
    run = run_one()
    assert (run.counts.rows_inserted, run.counts.rows_quarantined) == (2, 2)
    assert placement(project) == {1: "orders_eu", 2: "orders_apac"}
    assert partition.existing(project.connect(), "orders") == {"orders_eu", "orders_us", "orders_apac"}
    rules = project.query("SELECT violations->0->>'rule', violations->0->>'message' FROM pgmill.quarantine"
                          " ORDER BY id")
    assert [r for r, _ in rules] == ["partition.values", "partition.values"]
    assert sorted(m.split(" has")[0] for _, m in rules) == ["region = 'latam'", "region = None"]


def test_a_list_value_added_to_the_contract_gets_its_partition(project: ProjectDir) -> None:
    project.write("data/orders.csv", orders_csv([(1, 10, "f", "1", "2031-01-01", None)]))
    doc = contract({"by": "status", "values": ["f", "o"]}, key="status")
    doc["columns"]["status"]["accepted_values"] = None
    setup(project, doc)
    run_one()
    doc["partition"]["values"] = ["f", "o", "p"]
    setup(project, doc)
    project.write("data/orders2.csv", orders_csv([(2, 10, "p", "1", "2031-01-01", None)]))
    run_one()
    assert placement(project) == {1: "orders_f", 2: "orders_p"}


def test_integer_list_values(project: ProjectDir) -> None:
    setup(project, contract({"by": "customer_id", "values": [10, 11, 12]}, key="customer_id"))
    project.write("data/orders.csv", orders_csv(ROWS))
    run = run_one()
    assert (run.counts.rows_inserted, run.counts.rows_quarantined) == (4, 2)
    assert placement(project) == {1: "orders_10", 2: "orders_11", 3: "orders_12", 6: "orders_10"}


# ------------------------------------------------------------------ config


@pytest.mark.parametrize(("part", "expected"), [
    ({"by": "customer_id"}, "give exactly one of interval .* got none"),
    ({"by": "customer_id", "hash": 4, "values": [1]}, "give exactly one of interval .* got hash and values"),
    ({"by": "ordered_at", "interval": "month", "hash": 4}, "got interval and hash"),
    ({"by": "customer_id", "hash": 4, "premake": 3}, "premake only apply to range partitions"),
    ({"by": "customer_id", "hash": 4, "retain": 3}, "retain only apply to range partitions"),
    ({"by": "customer_id", "values": [1], "archive": "parquet"}, "archive only apply to range partitions"),
    ({"by": "customer_id", "hash": 4, "default": True}, "default: true only applies to list partitions"),
    ({"by": "customer_id", "hash": 1}, "partition.hash"),
    ({"by": "customer_id", "values": []}, "partition.values"),
    ({"by": "status", "values": ["F", "F"]}, "'F' is listed twice"),
    ({"by": "status", "values": ["a", "default"], "default": True}, "would name the same partition"),
    ({"by": "customer_id", "values": ["x"]}, "every value must be an integer"),
    ({"by": "total", "values": [1]}, "a list partition needs a text, integer or uuid column"),
    ({"by": "nope", "hash": 2}, "'nope' is not a column"),
])
def test_partition_kind_config_errors(project: ProjectDir, part: dict[str, Any], expected: str) -> None:
    doc = copy.deepcopy(ORDERS_CONTRACT)
    doc["columns"]["order_id"]["primary_key"] = False
    doc["partition"] = part
    setup(project, doc)
    with pytest.raises(ConfigError, match=expected) as err:
        run_one()
    assert "contracts/orders.yaml" in str(err.value)


def test_the_key_must_include_a_hash_column(project: ProjectDir) -> None:
    setup(project, contract({"by": "customer_id", "hash": 4}))
    with pytest.raises(ConfigError, match=r"primary key \(order_id\) does not include the partition column"):
        run_one()


def test_range_yaml_is_unchanged() -> None:
    spec = PartitionSpec.model_validate({"by": "d", "interval": "month", "retain": "24 months"})
    assert (spec.kind, spec.period, spec.retain, spec.premake) == ("range", "month", 24, 2)
    assert PartitionSpec.model_validate({"by": "d", "hash": 8}).kind == "hash"
    with pytest.raises(ValueError, match="a hash partition has no interval"):
        _ = PartitionSpec.model_validate({"by": "d", "hash": 8}).period


def test_list_partition_names() -> None:
    spec = PartitionSpec.model_validate({"by": "r", "values": ["eu", "us-east", None, 7, "EU"], "default": True})
    assert list(partition.fixed_partitions("s.t", spec)) == ["t_eu", "t_l1", "t_null", "t_7", "t_l4", "t_default"]


def test_conversion_refuses_hash_and_list(project: ProjectDir) -> None:
    setup(project, contract({"by": "customer_id", "hash": 4}, key="customer_id"))
    with pytest.raises(ConfigError, match="converts a plain table to range partitions only"):
        partition_table(open_project(project.path), "public.orders", dry_run=True)


def test_a_plain_table_is_not_taken_for_a_hash_one(project: ProjectDir) -> None:
    project.execute("CREATE TABLE orders (order_id bigint, customer_id bigint NOT NULL, status text, total numeric,"
                    " ordered_at date, updated_at timestamptz, PRIMARY KEY (order_id, customer_id))")
    setup(project, contract({"by": "customer_id", "hash": 4}, key="customer_id"))
    project.write("data/orders.csv", orders_csv(ROWS))
    with pytest.raises(ContractError, match="exists as a plain table but the contract partitions it by customer_id"):
        run_one()


def test_a_value_added_while_the_default_holds_it_names_the_fix(project: ProjectDir) -> None:
    doc = contract({"by": "status", "values": ["f"], "default": True}, key="status")
    doc["columns"]["status"]["accepted_values"] = None
    setup(project, doc)
    project.write("data/orders.csv", orders_csv([(1, 10, "f", "1", "2031-01-01", None),
                                                 (2, 10, "p", "1", "2031-01-01", None)]))
    run_one()
    assert placement(project) == {1: "orders_f", 2: "orders_default"}
    doc["partition"]["values"] = ["f", "p"]
    setup(project, doc)
    with pytest.raises(ContractError, match="cannot add the partition orders_p: its default partition holds rows"):
        run_one()
    assert "orders_p" not in partition.existing(project.connect(), "orders")  # nothing half made
    project.execute("DELETE FROM orders WHERE status = 'p'")
    run_one()
    assert "orders_p" in partition.existing(project.connect(), "orders")


def test_uuid_list_values_compare_as_postgresql_does(project: ProjectDir) -> None:
    doc = copy.deepcopy(ORDERS_CONTRACT)
    doc["columns"]["order_id"]["primary_key"] = False
    doc["columns"]["tenant"] = {"type": "uuid", "not_null": True}
    a, b = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12"
    doc["partition"] = {"by": "tenant", "values": [a, b]}
    setup(project, doc)
    header = "order_id,customer_id,status,total,ordered_at,updated_at,tenant"
    project.write("data/orders.csv", orders_csv([(1, 10, "F", "1", "2031-01-01", None, a.upper()),
                                                 (2, 10, "F", "1", "2031-01-01", None, "{" + b + "}"),
                                                 (3, 10, "F", "1", "2031-01-01", None, a.replace("a0", "c0"))],
                                                header))
    run = run_one()
    assert (run.counts.rows_inserted, run.counts.rows_quarantined) == (2, 1)
    assert placement(project) == {1: "orders_l0", 2: "orders_l1"}


def test_the_mcp_view_of_hash_and_list() -> None:
    from pgmill.mcp.project_view import partition_view

    assert partition_view(PartitionSpec.model_validate({"by": "c", "hash": 8})) == \
        {"by": "c", "kind": "hash", "hash": 8}
    assert partition_view(PartitionSpec.model_validate({"by": "r", "values": ["eu"], "default": True})) == \
        {"by": "r", "kind": "list", "values": ["eu"], "default": True}
