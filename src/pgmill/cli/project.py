"""`pgmill init` and `pgmill schema`: a new project, and the JSON Schema of its files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pgmill.cli.shell import guarded, out


@guarded
def init(directory: Annotated[Path, typer.Argument(help="folder for the new project")] = Path(".")) -> None:
    """Write a commented starter project that `pgmill run` loads as it is."""
    from pgmill.scaffold import init_project

    for p in init_project(directory):
        out.print(f"  wrote {p}")
    out.print(f"Next: cd {directory} && pgmill run")


@guarded
def schema(
    which: Annotated[str, typer.Argument(help="project | contract | both")] = "both",
) -> None:
    """Print the JSON Schema of pgmill.yaml and contract files (for editor completion)."""
    from pgmill.config.schema import json_schemas
    from pgmill.errors import ConfigError

    if which not in ("project", "contract", "both"):
        raise ConfigError(f"unknown schema {which!r}: use project, contract or both")
    schemas = json_schemas()
    out.print_json(json.dumps(schemas if which == "both" else schemas[which]))


def register(app: typer.Typer) -> None:
    """Add `init` and `schema`."""
    app.command()(init)
    app.command()(schema)
