"""`pgmill run` loads, then builds the models on what it loaded; a failed load builds nothing on top."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from pgmill.cli import app
from tests.helpers import ProjectDir, orders_csv

runner = CliRunner()


def test_run_loads_then_builds_models(project: ProjectDir) -> None:
    project.orders_pipeline(mode="merge")
    project.write("data/orders.csv", orders_csv([(1, 7, "F", "10.00", "2024-01-01", None),
                                                 (2, 7, "O", "5.00", "2024-01-02", None),
                                                 (3, 8, "F", "1.00", "2024-01-02", None)]))
    project.write("models/customer_totals.sql",
                  "SELECT customer_id, sum(total) AS spent, count(*) AS orders FROM public.orders GROUP BY 1\n")
    project.write("models/big_spenders.sql", "SELECT customer_id FROM customer_totals WHERE spent > 5\n")
    res = runner.invoke(app, ["run", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["ok"] and doc["loads"][0]["rows_inserted"] == 3
    assert sorted(doc["transform"]["ran"]) == ["public.big_spenders", "public.customer_totals"]
    assert project.query("SELECT customer_id, spent::text FROM customer_totals ORDER BY 1") == [
        (7, "15.00"), (8, "1.00")]
    assert project.query("SELECT customer_id FROM big_spenders") == [(7,)]


def test_failed_load_builds_no_models(project: ProjectDir) -> None:
    project.orders_pipeline(mode="merge", path="data/missing.csv")
    project.write("models/m.sql", "SELECT 1 AS one\n")
    res = runner.invoke(app, ["run"])
    assert res.exit_code == 4 and "source file not found" in res.output
    assert project.scalar("SELECT to_regclass('public.m')") is None


def test_project_with_models_only(project: ProjectDir) -> None:
    project.config({})
    project.write("models/numbers.sql", "SELECT g AS n FROM generate_series(1, 5) g\n")
    res = runner.invoke(app, ["run", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["loads"] == []
    assert project.scalar("SELECT sum(n) FROM numbers") == 15


def test_failed_table_check_blocks_only_downstream_models(project: ProjectDir) -> None:
    contract = {"columns": {"order_id": {"type": "bigint", "primary_key": True},
                            "customer_id": {"type": "bigint"}, "status": {"type": "text"},
                            "total": {"type": "numeric(12,2)"}, "ordered_at": {"type": "date"},
                            "updated_at": {"type": "timestamptz"}},
                "checks": {"completeness": {"customer_id": 90}}}
    project.contract("orders", contract)
    project.config({"orders": {"source": {"kind": "csv", "path": "data/*.csv"}, "table": "public.orders",
                               "contract": "contracts/orders.yaml"}})
    project.write("data/orders.csv", orders_csv([(1, 7, "F", "1", "2024-01-01", None),
                                                 (2, None, "F", "1", "2024-01-01", None)]))
    project.write("models/per_customer.sql", "SELECT customer_id, count(*) AS n FROM public.orders GROUP BY 1\n")
    project.write("models/per_customer_top.sql", "SELECT * FROM per_customer WHERE n > 0\n")
    project.write("models/calendar.sql", "SELECT d::date AS day FROM generate_series('2024-01-01'::date, "
                                          "'2024-01-03', '1 day') d\n")
    res = runner.invoke(app, ["run", "--json"])
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert doc["checks"]["failed_tables"] == ["public.orders"]
    assert doc["transform"]["ran"] == ["public.calendar"]
    assert "public.per_customer, public.per_customer_top" in doc["notes"][0]
    assert project.scalar("SELECT to_regclass('public.per_customer')") is None
    assert project.scalar("SELECT count(*) FROM pgmill.quality_results WHERE status = 'fail'") == 1


def test_run_retunes_for_declared_queries(project: ProjectDir) -> None:
    project.orders_pipeline(mode="append")
    rows = [(i, i % 500, "FOP"[i % 3], f"{i % 90}.00", f"2024-01-{1 + i % 28:02d}", None) for i in range(1, 20001)]
    project.write("data/orders.csv", orders_csv(rows))
    project.write("queries/orders_of_customer.sql",
                  "-- name: orders_of_customer\n"
                  "-- params_sql: SELECT DISTINCT customer_id FROM public.orders ORDER BY 1 LIMIT 30\n"
                  "SELECT order_id, total FROM public.orders WHERE customer_id = $1\n")
    res = runner.invoke(app, ["run", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["tuning"] is not None and doc["tuning"]["mode"] == "auto"
    kept = project.query("SELECT index_name, definition FROM pgmill.index_actions WHERE action = 'keep'")
    assert len(kept) == 1 and kept[0][1].endswith('("customer_id")')
    again = json.loads(runner.invoke(app, ["run", "--json"]).stdout)
    assert again["tuning"] is None  # nothing changed: no re-tune
