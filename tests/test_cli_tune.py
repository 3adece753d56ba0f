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


def test_tune_notes_a_workload_table_that_is_mostly_outside_the_visibility_map(shop: str, tmp_path: Path) -> None:
    import psycopg

    with psycopg.connect(shop, autocommit=True) as conn:  # loaded, analyzed, never vacuumed
        conn.execute("CREATE TABLE app.fresh WITH (autovacuum_enabled = false) AS SELECT g AS id, g % 500 AS grp, "
                     "md5(g::text) AS pad FROM generate_series(1, 60000) g")
        conn.execute("ANALYZE app.fresh")
    write_queries(tmp_path, {"fresh_group": "-- params: [[7], [42]]\nSELECT count(*) FROM app.fresh WHERE grp = $1",
                             "point_lookup": SHAPES["point_lookup"]})
    (tmp_path / "pgmill.yaml").write_text("pipelines: {}\ntune: {observed: 0}\n")
    runner = CliRunner()
    doc = json.loads(runner.invoke(cli(), ["tune", "--json"]).output)
    assert doc["unvacuumed"] == ["app.fresh"]  # app.customers, VACUUMed when seeded, is not named
    text = runner.invoke(cli(), ["tune"])
    assert text.exit_code == 0, text.output
    assert ("note: most pages of app.fresh are not in the visibility map (no VACUUM since a large load?): "
            "index-only scans are costed as heap reads") in " ".join(text.output.split())


def test_the_visibility_map_note_names_only_large_tables_under_half_covered() -> None:
    from pgmill.tune.snapshot import CatalogSnapshot, Table, unvacuumed

    def table(name: str, pages: int, visible: int) -> Table:
        return Table(1, "s", name, 1.0, pages, pages * 8192, 1, 1, 0, 0, 0, 0, False, all_visible=visible)

    tables = [table("loaded", 1000, 0), table("half", 1000, 499), table("vacuumed", 1000, 500),
              table("small", 127, 0), table("elsewhere", 1000, 0)]
    catalog = CatalogSnapshot({t.key: t for t in tables}, ["s"], 150000)
    keys = {("s", n) for n in ("loaded", "half", "vacuumed", "small")}
    assert unvacuumed(catalog, keys) == ["s.half", "s.loaded"]
