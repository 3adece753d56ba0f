"""`pgmill validate`: the brief's success criteria against this project's own data (pgmill.validate)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pgmill.cli.shell import JsonOpt, ProjectOpt, guarded, out, read
from pgmill.project import open_project


@guarded
def validate(
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
    out_file: Annotated[Path | None, typer.Option(
        "--out", metavar="FILE", help="write the report as markdown to FILE (e.g. validation.md)")] = None,
    since: Annotated[str, typer.Option(
        metavar="DURATION", help="the window of the ledger's and the checks' criteria")] = "30d",
) -> None:
    """Check the brief's measurable success criteria against this project's data: each figure, its source,
    the threshold, and pass / fail / not measured. Exit 1 if a measured criterion fails."""
    from datetime import timedelta

    from pgmill.config.duration import parse_duration
    from pgmill.errors import ConfigError
    from pgmill.validate import render_markdown
    from pgmill.validate import validate as run_validation

    try:
        window = timedelta(seconds=parse_duration(since))
    except ValueError as exc:
        raise ConfigError(f"--since: {exc}") from None
    ctx = open_project(project)
    report = read(project, lambda conn: run_validation(conn, ctx, window))
    text = render_markdown(report)
    if out_file is not None:
        out_file.write_text(text, encoding="utf-8")
    if as_json:
        out.print_json(json.dumps(report.as_dict(), default=str))
    elif out_file is not None:
        out.print(f"wrote {out_file}: {report.count('pass')} passed, {report.count('fail')} failed, "
                  f"{report.count('not_measured')} not measured", markup=False)
    else:
        out.print(text, markup=False, end="")
    if not report.ok:
        raise typer.Exit(report.exit_code)


def register(app: typer.Typer) -> None:
    """Add `validate`."""
    app.command()(validate)
