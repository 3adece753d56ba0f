"""`pgmill check` and `pgmill report`, registered on a typer app as pgmill.cli does."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import typer
from typer.testing import CliRunner

from pgmill.cli.quality import register
from tests.helpers import ProjectDir

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def _project(project: ProjectDir, checks: dict[str, object]) -> None:
    with psycopg.connect(project.db_url, autocommit=True) as c:
        c.execute("CREATE TABLE public.orders (order_id bigint, status text)")
        c.execute("INSERT INTO public.orders SELECT i, CASE WHEN i % 10 = 0 THEN 'X' ELSE 'F' END"
                  " FROM generate_series(1, 200) i")
    project.contract("orders", {"columns": {"order_id": {"type": "bigint"}, "status": {"type": "text"}},
                                "checks": checks})
    project.config({"orders": {"source": {"kind": "csv", "path": "x.csv"}, "table": "orders",
                               "contract": "contracts/orders.yaml"}})


def test_cli_check_json_and_exit_code(project: ProjectDir) -> None:
    _project(project, {"unique": ["order_id"], "accepted_values": {"status": ["F"]}})
    res = runner.invoke(_app(), ["check", "--json"])
    assert res.exit_code == 9, res.output  # QualityCheckFailed
    doc = json.loads(res.stdout)
    assert doc["ok"] is False and doc["failed_tables"] == ["public.orders"]
    rules = {r["rule"]: r for r in doc["tables"][0]["results"]}
    assert (rules["accepted_values(status)"]["rows_failed"], rules["accepted_values(status)"]["status"]) == (20, "fail")
    assert rules["accepted_values(status)"]["pass_rate"] == 90.0
    assert rules["unique(order_id)"]["status"] == "pass"


def test_cli_check_passes_with_warnings(project: ProjectDir) -> None:
    _project(project, {"accepted_values": {"status": {"values": ["F"], "severity": "warn"}}})
    res = runner.invoke(_app(), ["check", "orders"])
    assert res.exit_code == 0, res.output
    assert "accepted_values(status)" in res.stdout and "warn" in res.stdout
    assert "all error-severity checks passed; 1 warning" in res.stdout


def test_cli_check_unknown_table_is_a_clean_error(project: ProjectDir) -> None:
    _project(project, {})
    res = runner.invoke(_app(), ["check", "nope"])
    assert res.exit_code == 2
    assert "no table or pipeline named 'nope'" in res.output


def test_cli_report_writes_html_and_prints_a_summary(project: ProjectDir, tmp_path: Path) -> None:
    _project(project, {"not_null": ["status"]})
    out = tmp_path / "r" / "quality.html"
    res = runner.invoke(_app(), ["report", "--out", str(out), "--project", str(project.path)])
    assert res.exit_code == 0, res.output
    assert out.is_file() and 'data-table="public.orders"' in out.read_text()
    assert "public.orders" in res.stdout and f"wrote {out}" in res.stdout
    assert project.scalar("SELECT count(DISTINCT run_id) FROM pgmill.quality_results") == 1  # checked once first
