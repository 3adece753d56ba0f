"""`pgmill transform` and `pgmill graph`: thin commands over pgmill.transform, added to an app by `register`.

The shell's helpers (error guard, consoles) are imported when a command runs, so that pgmill.cli may
import this module while it is itself being imported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

ProjectOpt = Annotated[
    Path | None,
    typer.Option("--project", "-p", help="project folder (default: found from the current folder upwards)"),
]
SelectOpt = Annotated[
    list[str] | None,
    typer.Option("--select", "-s", help="MODEL, MODEL+ (and descendants), +MODEL (and ancestors); repeatable"),
]
ThreadsOpt = Annotated[
    int | None, typer.Option("--threads", "-t", min=1, max=64, help="models built at once (default: models.threads)")
]


def transform(
    select: SelectOpt = None,
    threads: ThreadsOpt = None,
    full_refresh: Annotated[bool, typer.Option("--full-refresh", help="rebuild incremental models")] = False,
    project: ProjectOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """Build the models in models/*.sql in dependency order, independent ones in parallel."""
    from pgmill.cli import _guard, _open, err, out
    from pgmill.transform.runner import run_transforms

    def body() -> None:
        res = run_transforms(_open(project), select, threads, full_refresh=full_refresh)
        if as_json:
            out.print_json(json.dumps(res.as_dict()))
        else:
            _print_result(res)
        for m in res.models:
            if m.status == "failed":
                err.print(f"[bold red]error:[/] model {m.model} failed: {m.error}", markup=True)
        if res.failed:
            raise typer.Exit(1)

    _guard(body)


def graph(
    fmt: Annotated[str, typer.Option("--format", "-f", help="text | dot | mermaid")] = "text",
    project: ProjectOpt = None,
) -> None:
    """Print the models' dependency graph, as text or for Graphviz (dot) or Mermaid."""
    from pgmill.cli import _guard, _open, out
    from pgmill.errors import PgmillError
    from pgmill.transform.runner import load_graph

    def body() -> None:
        if fmt not in ("text", "dot", "mermaid"):
            raise PgmillError(f"unknown format {fmt!r}: use text, dot or mermaid")
        # a missing table shows in the graph (marked missing) rather than stopping it
        g = load_graph(_open(project), strict=False)
        if not g.models:
            out.print("no models: add SELECT statements as models/*.sql")
            return
        text = {"text": g.to_text, "dot": g.to_dot, "mermaid": g.to_mermaid}[fmt]()
        out.print(text, markup=False, highlight=False)

    _guard(body)


def _print_result(res: Any) -> None:
    from rich.table import Table

    from pgmill.cli import out

    if not res.models:
        out.print("no models: add SELECT statements as models/*.sql")
        return
    t = Table()
    for col in ("model", "materialized", "status", "rows", "secs"):
        t.add_column(col, justify="right" if col in ("rows", "secs") else "left")
    for m in res.models:
        t.add_row(m.model, m.materialized, m.status, "-" if m.rows is None else f"{m.rows:,}",
                  "-" if m.seconds is None else f"{m.seconds:.2f}")
    out.print(t)
    out.print(f"run {res.run_id}: {len(res.ran)} built, {len(res.failed)} failed, {len(res.skipped)} skipped")
    for m in res.models:
        if m.status == "skipped":
            out.print(f"skipped {m.model}: {m.error}")


def register(app: typer.Typer) -> None:
    """Add `transform` and `graph` to the `pgmill` app."""
    app.command("transform")(transform)
    app.command("graph")(graph)
