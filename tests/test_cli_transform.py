"""`pgmill transform` and `pgmill graph` through the command line."""

from __future__ import annotations

import json

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from pgmill.cli.transform import register
from tests.helpers import ProjectDir


@pytest.fixture
def app() -> typer.Typer:
    a = typer.Typer()
    register(a)
    return a


def _project(project: ProjectDir) -> None:
    project.config()
    with psycopg.connect(project.db_url, autocommit=True) as c:
        c.execute("CREATE TABLE orders (id int, total numeric)")
        c.execute("INSERT INTO orders VALUES (1, 10), (2, 0)")
    project.write("models/paid.sql", "SELECT * FROM orders WHERE total > 0")
    project.write("models/summary.sql", "-- pgmill: {materialized: view}\nSELECT count(*) AS n FROM paid")
    project.write("models/ratio.sql", "SELECT 1 / (SELECT count(*) - 1 FROM paid) AS r")  # fails: 1 / 0


def test_transform_json_and_exit_code(project: ProjectDir, app: typer.Typer) -> None:
    _project(project)
    res = CliRunner().invoke(app, ["transform", "--json", "--project", str(project.path), "--threads", "2"])
    assert res.exit_code == 1, res.output
    doc = json.loads(res.stdout)
    assert doc["status"] == "failed" and doc["failed"] == ["public.ratio"]
    assert sorted(doc["ran"]) == ["public.paid", "public.summary"]
    assert "division by zero" in res.stderr


def test_transform_select_and_table_output(project: ProjectDir, app: typer.Typer) -> None:
    _project(project)
    res = CliRunner().invoke(app, ["transform", "--select", "+summary"])
    assert res.exit_code == 0, res.output
    assert "public.summary" in res.stdout and "2 built, 0 failed, 0 skipped" in res.stdout


def test_transform_config_error_is_one_line(project: ProjectDir, app: typer.Typer) -> None:
    _project(project)
    project.write("models/ghost.sql", "SELECT * FROM nowhere")
    res = CliRunner().invoke(app, ["transform"])
    assert res.exit_code == 2
    assert "models/ghost.sql: reads nowhere" in res.stderr and "Traceback" not in res.output


@pytest.mark.parametrize(("fmt", "expect"), [
    ("text", "public.summary [view] models/summary.sql\n  <- public.paid"),
    ("dot", '"public.paid" -> "public.summary";'),
    ("mermaid", "graph LR"),
])
def test_graph_formats(project: ProjectDir, app: typer.Typer, fmt: str, expect: str) -> None:
    _project(project)
    res = CliRunner().invoke(app, ["graph", "--format", fmt])
    assert res.exit_code == 0, res.output
    assert expect in res.stdout


def test_graph_marks_missing_tables_and_rejects_unknown_format(project: ProjectDir, app: typer.Typer) -> None:
    _project(project)
    project.write("models/ghost.sql", "SELECT * FROM nowhere")
    res = CliRunner().invoke(app, ["graph"])
    assert res.exit_code == 0 and "<- nowhere (missing)" in res.stdout
    res = CliRunner().invoke(app, ["graph", "--format", "png"])
    assert res.exit_code == 2 and "unknown format" in res.stderr
