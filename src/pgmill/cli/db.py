"""`pgmill db start | stop | status | url`: the embedded database."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

from pgmill.cli.shell import JsonOpt, ProjectOpt, guarded, out
from pgmill.project import open_project

if TYPE_CHECKING:
    from pathlib import Path

    from pgmill.db.embedded import EmbeddedServer
    from pgmill.project import ProjectContext

group = typer.Typer(help="The embedded database: start, stop, status, url.", no_args_is_help=True)


def _embedded(project: Path | None) -> tuple[ProjectContext, EmbeddedServer]:
    from pgmill.errors import ConfigError

    ctx = open_project(project)
    if ctx.target.embedded is None:
        raise ConfigError(f"this project uses an external database ({ctx.target.display_url}); "
                          "pgmill db start/stop only manage the embedded one")
    return ctx, ctx.target.embedded


@group.command("start")
@guarded
def db_start(project: ProjectOpt = None) -> None:
    """Start the embedded PostgreSQL (data in .pgmill/)."""
    ctx, server = _embedded(project)
    server.start()
    out.print(f"running: {ctx.target.display_url}")


@group.command("stop")
@guarded
def db_stop(project: ProjectOpt = None) -> None:
    """Stop the embedded PostgreSQL."""
    _ctx, server = _embedded(project)
    out.print("stopped" if server.stop() else "was not running")


@group.command("status")
@guarded
def db_status(project: ProjectOpt = None, as_json: JsonOpt = False) -> None:
    """Is the database up, where is it, which version."""
    from pgmill.db.status import database_status

    st = database_status(open_project(project).target)
    if as_json:
        out.print_json(json.dumps(st))
    else:
        for k, v in st.items():
            out.print(f"{k}: {v}")
    if not st.get("running"):
        raise typer.Exit(1)  # like pg_isready: scripts ask "is it up?" by the exit code


@group.command("url")
@guarded
def db_url(project: ProjectOpt = None) -> None:
    """Print the connection URL (password redacted), e.g. for psql "$(pgmill db url)"."""
    out.print(open_project(project).target.display_url, markup=False)


def register(app: typer.Typer) -> None:
    """Add the `db` group."""
    app.add_typer(group, name="db")
