"""`pgmill transform` and `pgmill graph`: build the models, draw their dependencies."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from pgmill.cli.shell import JsonOpt, ProjectOpt, guarded, out, print_error
from pgmill.project import open_project

SelectOpt = Annotated[
    list[str] | None,
    typer.Option("--select", "-s", help="MODEL, MODEL+ (and descendants), +MODEL (and ancestors); repeatable"),
]
ThreadsOpt = Annotated[
    int | None, typer.Option("--threads", "-t", min=1, max=64, help="models built at once (default: models.threads)")
]


@guarded
def transform(
    select: SelectOpt = None,
    threads: ThreadsOpt = None,
    full_refresh: Annotated[bool, typer.Option("--full-refresh", help="rebuild incremental models")] = False,
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Build the models in models/*.sql in dependency order, independent ones in parallel."""
    from pgmill.transform.runner import run_transforms

    res = run_transforms(open_project(project), select, threads, full_refresh=full_refresh)
    if as_json:
        out.print_json(json.dumps(res.as_dict()))
    else:
        _print_result(res)
    for m in res.models:
        if m.status == "failed":
            print_error(f"model {m.model} failed: {m.error}")
    if res.failed:
        raise typer.Exit(1)  # the run finished, with failures (each named above)


@guarded
def graph(
    fmt: Annotated[str, typer.Option("--format", "-f", help="text | dot | mermaid")] = "text",
    project: ProjectOpt = None,
) -> None:
    """Print the models' dependency graph, as text or for Graphviz (dot) or Mermaid."""
    from pgmill.errors import ConfigError
    from pgmill.transform.runner import load_graph

    if fmt not in ("text", "dot", "mermaid"):
        raise ConfigError(f"unknown format {fmt!r}: use text, dot or mermaid")
    # a missing table shows in the graph (marked missing) rather than stopping it
    g = load_graph(open_project(project), strict=False)
    if not g.models:
        out.print("no models: add SELECT statements as models/*.sql")
        return
    text = {"text": g.to_text, "dot": g.to_dot, "mermaid": g.to_mermaid}[fmt]()
    out.print(text, markup=False, highlight=False)


def _print_result(res: Any) -> None:
    from rich.table import Table

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
            out.print(f"skipped {m.model}: {m.error}", markup=False)


def register(app: typer.Typer) -> None:
    """Add `transform` and `graph`."""
    app.command("transform")(transform)
    app.command("graph")(graph)
