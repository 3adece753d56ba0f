"""Every command's failure paths end as one message on stderr (no traceback) and the exit code the README
documents:

    1 a run that finished with failures    5 transient (a lost connection, a serialization failure)
    2 configuration (also a bad option)    6 database (Postgres refused; no server at the configured URL)
    3 contract                             7 pipeline already running
    4 source                               8 accounting
    9 quality check failed                 10 the MCP server cannot guarantee read-only access
    70 unexpected (a bug: please report)   130 interrupted (Ctrl-C)

A dead database URL is 6, not 5: Target.connect raises DatabaseUnavailable, a DatabaseError (no server
answered at the configured address), and the guard keeps a PgmillError's own code. 5 is for errors that
are transient in kind and reach the shell unmapped (psycopg's OperationalError without a SQLSTATE, 40001...).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import typer
from psycopg import sql
from typer.testing import CliRunner, Result

from pgmill.cli import app
from pgmill.cli.shell import guarded
from pgmill.errors import SourceError
from pgmill.ingest.lock import take
from tests.helpers import ORDERS_CONTRACT, ProjectDir, orders_csv

runner = CliRunner()
DEAD_URL = "postgresql://u:secret@127.0.0.1:1/none?connect_timeout=2"

# every command that opens a project, with the arguments it needs to get that far
PROJECT_COMMANDS = [
    ["run"], ["status"], ["transform"], ["graph"], ["check"], ["report"],
    ["quarantine", "list"], ["quarantine", "show", "orders"], ["quarantine", "replay", "orders"],
    ["db", "start"], ["db", "stop"], ["db", "status"], ["db", "url"], ["mcp"],
    ["tune"], ["indexes"], ["explain", "SELECT 1"],
    ["serve", "--once"], ["metrics"], ["alerts"], ["alerts", "test"], ["cost"], ["status", "--since", "30d"],
    ["dashboard", "--export", "site"], ["validate"], ["retention"], ["partition", "orders"],
    ["cdc", "status"], ["cdc", "drop", "orders"],
]
NO_PROJECT_NEEDED = {"init", "schema", "demo"}
# the commands that connect to the database (`db status` reports a dead server with exit 1 instead)
# (`alerts test` stops at the missing channels first, `partition` at a contract without `partition:`: config
# errors)
# (`cdc status` and `cdc drop orders` on a project without a `cdc:` pipeline: nothing to connect to, or a
# config error)
CONNECTING = [c for c in PROJECT_COMMANDS if c[0] not in ("db", "cdc")
              and c not in (["alerts", "test"], ["partition", "orders"])]


def _commands(group: typer.Typer = app, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Callable[..., Any]]]:
    """Every command of the app (`db status`, ...) and the function registered for it."""
    for info in group.registered_commands:
        assert info.callback is not None
        yield " ".join((*path, info.name or info.callback.__name__.replace("_", "-"))), info.callback
    for sub in group.registered_groups:
        assert sub.typer_instance is not None and sub.name is not None
        yield from _commands(sub.typer_instance, (*path, sub.name))


def _message(res: Result | subprocess.CompletedProcess[str]) -> str:
    """What the command wrote to stderr: one message, no traceback. (A message may go on over lines of its
    own, e.g. a config error listing each problem, or libpq's hint after a refused connection.)"""
    text = res.stderr.strip()
    lines = text.splitlines()
    assert lines and not any(line.startswith("error: ") for line in lines[1:]), res.stderr
    assert "Traceback" not in text and "Traceback" not in res.stdout
    return text


def _orders_project(p: ProjectDir) -> None:
    p.orders_pipeline()
    p.write("data/orders.csv", orders_csv([(1, 2, "F", "1.00", "2024-01-01", None)]))


# ---------------------------------------------------------------- every command is guarded


def test_every_command_runs_inside_the_one_guard() -> None:
    guard_code = guarded(lambda: None).__code__
    found = dict(_commands())
    assert len(found) >= 20
    for name, callback in found.items():
        assert callback.__code__ is guard_code, f"pgmill {name} is not wrapped by shell.guarded"


def test_the_walk_below_covers_every_command_that_opens_a_project() -> None:
    walked = {" ".join(c[:2] if c[0] in ("db", "quarantine", "alerts", "cdc") else c[:1]) for c in PROJECT_COMMANDS}
    walked.discard("alerts")  # the group's own callback: listing the alerts
    assert walked == set(dict(_commands())) - NO_PROJECT_NEEDED


# ---------------------------------------------------------------- 2: configuration


@pytest.mark.parametrize("args", PROJECT_COMMANDS, ids=" ".join)
def test_no_project_is_a_config_error(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGMILL_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    line = _message(res)
    assert line.startswith("error: no pgmill.yaml in ") and "pgmill init" in line


@pytest.mark.parametrize("args", PROJECT_COMMANDS, ids=" ".join)
def test_a_broken_project_file_is_a_config_error(args: list[str], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # with PGMILL_DATABASE_URL set too: tune, indexes and explain do not fall back past a broken project
    monkeypatch.setenv("PGMILL_DATABASE_URL", DEAD_URL)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pgmill.yaml").write_text("pipelines: [\n")
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert "pgmill.yaml:2:1: YAML syntax error" in _message(res)


@pytest.mark.parametrize(("args", "message"), [
    (["schema", "nope"], "unknown schema 'nope': use project, contract or both"),
    (["graph", "--format", "png"], "unknown format 'png': use text, dot or mermaid"),
    (["mcp", "--http", "localhost:http"], "--http 'localhost:http': expected HOST:PORT or PORT"),
    (["run", "nope"], "no pipeline named 'nope'"),
    (["quarantine", "replay", "nope"], "no pipeline named 'nope'"),
    (["db", "start"], "this project uses an external database (postgresql://u:***@127.0.0.1:1/none"),
    (["init", "."], "already exists"),
    (["partition", "orders"], "public.orders: its contract contracts/orders.yaml has no partition section"),
    (["partition", "nope"], "no pipeline loads public.nope: the project's tables are public.orders"),
])
def test_bad_arguments_are_config_errors(args: list[str], message: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGMILL_DATABASE_URL", DEAD_URL)  # none of these gets as far as connecting
    monkeypatch.chdir(tmp_path)
    _orders_project(ProjectDir(tmp_path, DEAD_URL))
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    line = _message(res)
    assert message in line and "secret" not in line


def test_tune_options_and_unknown_runs_are_config_errors(project: ProjectDir) -> None:
    project.config({})
    res = runner.invoke(app, ["tune", "--max-width", "0"])
    assert res.exit_code == 2 and "--max-width 0: " in _message(res)
    res = runner.invoke(app, ["tune", "--rollback", "999"])
    assert res.exit_code == 2 and "no tuning run 999" in _message(res)


# ---------------------------------------------------------------- 3, 4, 7: loads


def test_contract_violation_with_policy_fail(project: ProjectDir) -> None:
    project.contract("t", {"columns": {"id": {"type": "int", "primary_key": True},
                                       "v": {"type": "int", "min": 0, "on_failure": "fail"}}})
    project.write("data/t.csv", "id,v\n1,5\n2,-3\n")
    project.config({"t": {"source": {"kind": "csv", "path": "data/t.csv"}, "table": "t",
                          "contract": "contracts/t.yaml"}})
    res = runner.invoke(app, ["run", "--json"])
    assert res.exit_code == 3
    # the whole message, its [rule ...] included: the guard never reads a message as rich markup
    assert _message(res) == ("error: data/t.csv:line 3: v = '-3' is below the minimum 0 "
                                "[rule v.min, policy fail]")


def test_missing_source_file(project: ProjectDir) -> None:
    project.orders_pipeline(path="data/nothere.csv")
    res = runner.invoke(app, ["run", "--json"])
    assert res.exit_code == 4
    assert "source file not found: data/nothere.csv" in _message(res)


def test_pipeline_locked_by_another_run(project: ProjectDir) -> None:
    _orders_project(project)
    assert runner.invoke(app, ["status"]).exit_code == 0  # schema pgmill in place
    with psycopg.connect(project.db_url, autocommit=True) as other:
        take(other, "orders", wait=False)
        res = runner.invoke(app, ["run", "--json"])
    assert res.exit_code == 7
    assert "pipeline orders is already running" in _message(res)


def test_a_run_that_finished_with_failures_is_1(project: ProjectDir) -> None:
    project.config({})
    project.write("models/ratio.sql", "SELECT 1 / 0 AS r\n")
    res = runner.invoke(app, ["run", "--json"])
    assert res.exit_code == 1
    assert "division by zero" in _message(res)


# ---------------------------------------------------------------- 5, 6: the database


@pytest.mark.parametrize("args", CONNECTING, ids=" ".join)
def test_dead_database_url(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGMILL_DATABASE_URL", DEAD_URL)
    monkeypatch.chdir(tmp_path)
    p = ProjectDir(tmp_path, DEAD_URL)
    p.contract("orders", ORDERS_CONTRACT)
    p.config({"orders": {"source": {"kind": "csv", "path": "data/*.csv"}, "table": "orders",
                         "contract": "contracts/orders.yaml"}}, retry={"attempts": 1})
    p.write("models/m.sql", "SELECT 1 AS one\n")
    res = runner.invoke(app, args)
    assert res.exit_code == 6, res.output
    line = _message(res)
    assert "cannot connect to postgresql://u:***@127.0.0.1:1/none" in line and "secret" not in line


def test_dead_database_url_without_a_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGMILL_DATABASE_URL", DEAD_URL)
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["indexes"])
    assert res.exit_code == 6 and "cannot connect to" in _message(res)


def test_db_status_of_a_dead_server_answers_with_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGMILL_DATABASE_URL", DEAD_URL)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pgmill.yaml").write_text("pipelines: {}\n")
    res = runner.invoke(app, ["db", "status"])
    assert res.exit_code == 1 and "running: False" in res.stdout and res.stderr == ""


def test_postgres_refusing_a_statement_is_6_not_a_bug(project: ProjectDir) -> None:
    project.config({})
    res = runner.invoke(app, ["explain", "SELECT * FROM nowhere"])
    assert res.exit_code == 6
    assert _message(res) == 'error: PostgreSQL: relation "nowhere" does not exist [SQLSTATE 42P01]'


# ---------------------------------------------------------------- 9, 10


def test_check_with_a_failed_error_severity_rule_is_9(project: ProjectDir) -> None:
    with psycopg.connect(project.db_url, autocommit=True) as c:
        c.execute("CREATE TABLE public.orders (order_id bigint, status text)")
        c.execute("INSERT INTO public.orders VALUES (1, 'F'), (2, 'X')")
    project.contract("orders", {"columns": {"order_id": {"type": "bigint"}, "status": {"type": "text"}},
                                "checks": {"accepted_values": {"status": ["F"]}}})
    project.config({"orders": {"source": {"kind": "csv", "path": "x.csv"}, "table": "orders",
                               "contract": "contracts/orders.yaml"}})
    res = runner.invoke(app, ["check", "--json"])
    assert res.exit_code == 9
    assert _message(res).startswith("error: 1 error-severity check failed on public.orders (check run ")
    assert '"ok": false' in res.stdout  # the report is still printed


@pytest.fixture
def table_owner(project: ProjectDir) -> Iterator[str]:
    """A login role that owns a table and may not switch to pgmill_reader."""
    name = "x_owner_" + uuid.uuid4().hex[:8]
    with psycopg.connect(project.db_url, autocommit=True) as c:
        c.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        c.execute(sql.SQL("GRANT CREATE, USAGE ON SCHEMA public TO {}").format(sql.Identifier(name)))
    with psycopg.connect(project.db_url.replace("postgres@", f"{name}@"), autocommit=True) as c:
        c.execute("CREATE TABLE mine (x int)")
    yield name
    with psycopg.connect(project.db_url, autocommit=True) as c:
        c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_mcp_refuses_to_start_when_read_only_cannot_be_guaranteed(
        project: ProjectDir, table_owner: str, monkeypatch: pytest.MonkeyPatch) -> None:
    project.config({})
    monkeypatch.setenv("PGMILL_DATABASE_URL", project.db_url.replace("postgres@", f"{table_owner}@"))
    res = runner.invoke(app, ["mcp"])
    assert res.exit_code == 10
    assert f"refusing to start read-only: the database user {table_owner} owns" in _message(res)


# ---------------------------------------------------------------- whatever else a command raises


def _raise(exc: BaseException) -> Callable[..., Any]:
    def boom(*_args: Any, **_kwargs: Any) -> Any:
        raise exc
    return boom


# a library function each command calls before anything else can fail (no database needed)
INJECT = {
    "init": (["init", "new"], "pgmill.scaffold.init_project"),
    "schema": (["schema"], "pgmill.config.schema.json_schemas"),
    "check": (["check"], "pgmill.quality.checks.run_checks"),
    "tune": (["tune"], "pgmill.tune.run.run_tune"),
}
RAISED: list[tuple[BaseException, int, str]] = [
    (RuntimeError("boom"), 70,
     "error: unexpected RuntimeError: boom (set PGMILL_DEBUG=1 for a traceback; please report it)"),
    (KeyboardInterrupt(), 130, "interrupted; committed checkpoints are kept, rerun to resume"),
    (psycopg.OperationalError("server closed the connection unexpectedly"), 5,
     "error: PostgreSQL: server closed the connection unexpectedly"),
    (psycopg.errors.SerializationFailure("could not serialize access"), 5,
     "error: PostgreSQL: could not serialize access [SQLSTATE 40001]"),
    (psycopg.errors.UndefinedTable('relation "t" does not exist'), 6,
     'error: PostgreSQL: relation "t" does not exist [SQLSTATE 42P01]'),
    (SourceError("cannot read s3://bucket/x.csv"), 4, "error: cannot read s3://bucket/x.csv"),
]


@pytest.mark.parametrize(("exc", "code", "line"), RAISED, ids=[type(e).__name__ for e, _, _ in RAISED])
@pytest.mark.parametrize("command", sorted(INJECT))
def test_raised_anywhere(command: str, exc: BaseException, code: int, line: str, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGMILL_DEBUG", raising=False)
    monkeypatch.setenv("PGMILL_DATABASE_URL", DEAD_URL)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pgmill.yaml").write_text("pipelines: {}\n")
    args, target = INJECT[command]
    monkeypatch.setattr(target, _raise(exc))
    res = runner.invoke(app, args)
    assert res.exit_code == code, res.output
    assert _message(res) == line


def test_an_interrupted_load_is_still_130(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the loader records Ctrl-C in the ledger, then raises PgmillError("interrupted") from it
    from pgmill.errors import PgmillError

    def interrupted(*_args: Any, **_kwargs: Any) -> Any:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise PgmillError("interrupted") from exc

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pgmill.yaml").write_text("pipelines: {}\n")
    monkeypatch.setattr("pgmill.orchestrate.run_project", interrupted)
    res = runner.invoke(app, ["run", "--json"])
    assert res.exit_code == 130
    assert _message(res) == "interrupted; committed checkpoints are kept, rerun to resume"


def test_debug_shows_the_traceback_of_a_bug(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGMILL_DEBUG", "1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("pgmill.scaffold.init_project", _raise(RuntimeError("boom")))
    res = runner.invoke(app, ["init", "new"])
    assert res.exit_code != 0 and isinstance(res.exception, RuntimeError)


# ---------------------------------------------------------------- through the real entry point


@pytest.mark.parametrize(("raised", "code", "line"), [
    ("RuntimeError('boom')", 70,
     "error: unexpected RuntimeError: boom (set PGMILL_DEBUG=1 for a traceback; please report it)"),
    ("KeyboardInterrupt()", 130, "interrupted; committed checkpoints are kept, rerun to resume"),
])
def test_the_console_script_exits_with_the_code(raised: str, code: int, line: str, tmp_path: Path) -> None:
    # pgmill._launch.main, as the `pgmill` console script calls it, with a library function that fails
    script = ("import sys, pgmill.scaffold as s\n"
              f"def boom(*a): raise {raised}\n"
              "s.init_project = boom\n"
              "from pgmill._launch import main\n"
              "main()\n")
    env = {k: v for k, v in os.environ.items() if k != "PGMILL_DEBUG"}
    res = subprocess.run([sys.executable, "-c", script, "init", "new"], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=120)
    assert res.returncode == code
    assert _message(res) == line


def test_the_console_script_without_a_project(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PGMILL_DATABASE_URL"}
    res = subprocess.run([sys.executable, "-m", "pgmill", "check"], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=120)
    assert res.returncode == 2
    assert _message(res).startswith("error: no pgmill.yaml in ")
