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
