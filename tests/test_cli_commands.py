"""Every CLI command, its output and its error exits (through the real console script entry point)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pgmill.cli import app
from tests.helpers import ProjectDir, orders_csv

runner = CliRunner()


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "pgmill.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


def test_cli_init_then_run_loads_the_starter_project(project: ProjectDir) -> None:
    res = runner.invoke(app, ["init", "starter"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["run", "--project", "starter", "--json"])
    assert res.exit_code == 0, res.output
    [run] = json.loads(res.stdout)["loads"]
    assert run["status"] == "succeeded"
    assert (run["rows_read"], run["rows_inserted"], run["rows_quarantined"], run["rows_duplicate"]) == (10, 5, 4, 1)
    again = runner.invoke(app, ["init", "starter"])
    assert again.exit_code == 2 and "already exists" in again.output


def test_cli_status_and_quarantine(project: ProjectDir) -> None:
    project.orders_pipeline(mode="merge")
    project.write("data/orders.csv", orders_csv([(1, 2, "F", "1.00", "2024-01-01", None),
                                                 (2, 3, "Z", "1.00", "2024-01-01", None)]))
    assert runner.invoke(app, ["run"]).exit_code == 0
    res = runner.invoke(app, ["status", "--json"])
    assert json.loads(res.stdout)[0]["rows_quarantined"] == 1
    res = runner.invoke(app, ["status"])
    assert "orders" in res.stdout and "succeeded" in res.stdout
    res = runner.invoke(app, ["quarantine", "list", "--json"])
    assert json.loads(res.stdout) == [{"pipeline": "orders", "column": "status", "rule": "accepted_values", "rows": 1}]
    res = runner.invoke(app, ["quarantine", "show", "orders"])
    assert "data/orders.csv:line 3" in res.stdout and "status = 'Z' is not one of" in res.stdout
    # widen the contract, then replay: the row loads and leaves quarantine
    project.contract("orders", {"columns": {
        "order_id": {"type": "bigint", "primary_key": True}, "customer_id": {"type": "bigint", "not_null": True},
        "status": {"type": "text", "accepted_values": ["F", "O", "P", "Z"]}, "total": {"type": "numeric(12,2)"},
        "ordered_at": {"type": "date"}, "updated_at": {"type": "timestamptz"}}})
    res = runner.invoke(app, ["quarantine", "replay", "orders", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["candidates"], out["loaded"], out["still_failing"]) == (1, 1, 0)
    assert project.scalar("SELECT count(*) FROM pgmill.quarantine") == 0
    assert project.scalar("SELECT status FROM orders WHERE order_id = 2") == "Z"


def test_cli_config_error_exit_and_message(project: ProjectDir) -> None:
    project.write("pgmill.yaml", "pipelines:\n  o:\n    source: {kind: csv, path: x.csv}\n    tabel: t\n")
    res = _cli("run", cwd=project.path)
    assert res.returncode == 2
    assert "pgmill.yaml:4: pipelines.o.tabel: unknown field 'tabel'; did you mean 'table'?" in res.stderr
    assert "Traceback" not in res.stderr


def test_cli_no_project(tmp_path: Path) -> None:
    res = _cli("status", cwd=tmp_path)
    assert res.returncode == 2 and "no pgmill.yaml" in res.stderr and "pgmill init" in res.stderr


def test_cli_missing_file_fails_fast(project: ProjectDir) -> None:
    project.orders_pipeline(path="data/nothere.csv")
    res = _cli("run", cwd=project.path)
    assert res.returncode == 4  # SourceError
    assert "source file not found: data/nothere.csv" in res.stderr
    assert project.scalar("SELECT retries FROM pgmill.runs") == 0


def test_cli_dead_database_is_a_clear_error(project: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    project.orders_pipeline()
    monkeypatch.setenv("PGMILL_DATABASE_URL", "postgresql://u:secret@127.0.0.1:1/none?connect_timeout=2")
    res = _cli("status", cwd=project.path)
    assert res.returncode == 6
    assert "cannot connect to postgresql://u:***@127.0.0.1:1/none" in res.stderr
    assert "secret" not in res.stderr and "Traceback" not in res.stderr


def test_cli_schema_prints_both_schemas() -> None:
    res = runner.invoke(app, ["schema"])
    doc = json.loads(res.stdout)
    assert set(doc) == {"project", "contract"}
    assert "pipelines" in doc["project"]["properties"] and "columns" in doc["contract"]["properties"]


def test_cli_db_commands_on_embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGMILL_DATABASE_URL", raising=False)
    (tmp_path / "pgmill.yaml").write_text("pipelines: {}\n")
    assert _cli("db", "start", cwd=tmp_path).returncode == 0
    st = _cli("db", "status", "--json", cwd=tmp_path)
    assert st.returncode == 0 and json.loads(st.stdout)["running"] is True
    url = _cli("db", "url", cwd=tmp_path).stdout.strip()
    assert url.startswith("postgresql://postgres@/postgres?host=")
    assert "stopped" in _cli("db", "stop", cwd=tmp_path).stdout
    st = _cli("db", "status", cwd=tmp_path)
    assert st.returncode == 1 and "running: False" in st.stdout


def test_cli_db_start_refuses_external_database(project: ProjectDir) -> None:
    project.config({})
    res = _cli("db", "start", cwd=project.path)
    assert res.returncode == 2 and "external database" in res.stderr


def test_cli_unknown_pipeline(project: ProjectDir) -> None:
    project.orders_pipeline()
    res = _cli("run", "nope", cwd=project.path)
    assert res.returncode == 2 and "no pipeline named 'nope'" in res.stderr and "pipelines: orders" in res.stderr


def test_the_package_loads_its_heavy_modules_only_when_used() -> None:
    # `import pgmill` stays cheap; the public names still resolve; the command starts through pgmill._launch
    code = ("import sys, gc, pgmill; heavy = sorted({'psycopg', 'pydantic', 'polars', 'typer'} & set(sys.modules)); "
            "from pgmill import open_project, ProjectContext, run_pipelines; "
            "print(heavy, open_project.__module__, ProjectContext.__module__, run_pipelines.__module__)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["[]", "pgmill.project", "pgmill.project", "pgmill.ingest.runner"]
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        import pgmill

        pgmill.nope  # noqa: B018
    launched = subprocess.run([sys.executable, "-m", "pgmill", "--help"], capture_output=True, text=True, timeout=120)
    assert launched.returncode == 0 and "Usage: python -m pgmill" in launched.stdout, launched.stderr


def test_the_command_loads_its_modules_without_garbage_collections() -> None:
    count = "sum(s['collections'] for s in gc.get_stats())"
    load = {"plain": "import pgmill.cli", "launch": "L.load_cli()"}
    made = {}
    for name, stmt in load.items():
        res = subprocess.run([sys.executable, "-c", f"import gc, pgmill._launch as L; before = {count}; {stmt}; "
                              f"print({count} - before, gc.isenabled(), gc.get_freeze_count())"],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        collections, enabled, frozen = res.stdout.split()
        made[name] = (int(collections), enabled, int(frozen))
    assert made["plain"][0] > 20 and made["plain"][2] == 0  # what the launcher saves
    assert made["launch"][0] == 0 and made["launch"][1] == "True" and made["launch"][2] > 10_000
