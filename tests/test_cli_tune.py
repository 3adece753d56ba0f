"""`pgmill tune`, `pgmill indexes`, `pgmill explain` through the CLI, with no project: only PGMILL_DATABASE_URL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pgmill.cli.tune import register
from pgmill.db.embedded import EmbeddedServer
from tests.pg15 import seeded
from tests.test_tune_advisor import SHAPES, write_queries


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture
def shop(pg_server: EmbeddedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = seeded(pg_server.url())
    monkeypatch.setenv("PGMILL_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)
    return url


def test_tune_works_from_observed_queries_without_a_project(shop: str) -> None:
    import psycopg

    with psycopg.connect(shop) as conn:
        conn.execute("SELECT pg_stat_statements_reset()") if conn.execute(
            "SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone() else None
        for i in range(1, 40):
            conn.execute("SELECT id, country FROM app.customers WHERE email = %s", (f"user{i * 37}@example.com",))
    runner = CliRunner()
    first = runner.invoke(cli(), ["tune", "--json"])
    assert first.exit_code == 0, first.output
    with psycopg.connect(shop) as conn:  # the first tune created the extension; now it observes
        for i in range(1, 40):
            conn.execute("SELECT id, country FROM app.customers WHERE email = %s", (f"user{i * 37}@example.com",))
    result = runner.invoke(cli(), ["tune", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    observed = [q for q in doc["queries"] if q["source"] == "observed" and "email" in q["sql"]]
    assert observed
    assert any(r["label"].startswith("app.customers (email") for r in doc["recommendations"]), doc


def test_tune_apply_indexes_and_rollback(shop: str, tmp_path: Path) -> None:
    write_queries(tmp_path, {k: SHAPES[k] for k in ("point_lookup", "date_range")})
    (tmp_path / "pgmill.yaml").write_text("pipelines: {}\ntune: {executions: 8, observed: 0}\n")
    runner = CliRunner()
    result = runner.invoke(cli(), ["tune", "--apply", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    kept = [o for o in doc["applied"]["outcomes"] if o["status"] == "kept"]
    assert kept
    text = runner.invoke(cli(), ["indexes"])
    assert text.exit_code == 0 and "index utilization" in text.output
    health = json.loads(runner.invoke(cli(), ["indexes", "--json"]).output)
    assert health["pgmill_indexes"] == len(kept)
    back = runner.invoke(cli(), ["tune", "--rollback", str(doc["run_id"]), "--json"])
    assert back.exit_code == 0, back.output
    assert len(json.loads(back.output)["dropped"]) == len(kept)
    again = runner.invoke(cli(), ["tune", "--rollback", str(doc["run_id"])])
    assert again.exit_code != 0 and "already rolled back" in again.output


def test_explain_marks_a_big_sequential_scan(shop: str, tmp_path: Path) -> None:
    write_queries(tmp_path, {"covering": SHAPES["covering"]})
    (tmp_path / "pgmill.yaml").write_text("pipelines: {}\n")
    result = CliRunner().invoke(cli(), ["explain", "covering", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["analyzed"] and any("sequential scan of app.orders" in m for n in doc["plan"] for m in n["marks"])
    raw = CliRunner().invoke(cli(), ["explain", "SELECT count(*) FROM app.items WHERE qty = 2"])
    assert raw.exit_code == 0 and "sequential scan of app.items" in raw.output
