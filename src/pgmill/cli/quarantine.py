"""`pgmill quarantine list | show | replay`: the rows that broke their contract."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pgmill.cli.shell import JsonOpt, ProjectOpt, guarded, out, read
from pgmill.project import open_project

group = typer.Typer(help="Rows that broke their contract: list, show, replay.", no_args_is_help=True)


@group.command("list")
@guarded
def quarantine_list(
    project: ProjectOpt = None,
    pipeline: Annotated[str | None, typer.Option(help="only this pipeline")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Quarantined rows by pipeline, column and rule."""
    from pgmill.ingest.quarantine import summary

    rows = read(project, lambda conn: summary(conn, pipeline))
    if as_json:
        out.print_json(json.dumps([{"pipeline": p, "column": c, "rule": r, "rows": n} for p, c, r, n in rows]))
        return
    if not rows:
        out.print("quarantine is empty")
        return
    from rich.table import Table

    t = Table()
    for col in ("pipeline", "column", "rule", "rows"):
        t.add_column(col, justify="right" if col == "rows" else "left")
    for p, c, r, n in rows:
        t.add_row(p, c, r, f"{n:,}")
    out.print(t)
    out.print("see the rows: pgmill quarantine show PIPELINE")


@group.command("show")
@guarded
def quarantine_show(
    pipeline: Annotated[str, typer.Argument(help="pipeline name")],
    project: ProjectOpt = None,
    limit: Annotated[int, typer.Option(help="how many rows")] = 20,
    rule: Annotated[str | None, typer.Option(help="only rows that broke this rule")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Quarantined rows of a pipeline: where each came from, its values and what it broke."""
    from rich.markup import escape

    from pgmill.ingest.quarantine import rows as q_rows

    items = read(project, lambda conn: q_rows(conn, pipeline, limit, rule))
    if as_json:
        out.print_json(json.dumps(items, default=str))
        return
    if not items:
        out.print(f"no quarantined rows for {pipeline}", markup=False)
    for it in items:
        out.print(f"[bold]#{it['id']}[/] {escape(str(it['source_location']))} (run {it['run_id']})", markup=True)
        for v in it["violations"]:
            out.print(f"   - {v['message']}", markup=False)
        out.print(f"     {json.dumps(it['record']) if it['record'] is not None else it['raw_text']}", markup=False)


@group.command("replay")
@guarded
def quarantine_replay(
    pipeline: Annotated[str, typer.Argument(help="pipeline name")],
    project: ProjectOpt = None,
    ids: Annotated[list[int] | None, typer.Option("--id", help="only these quarantine ids")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-check quarantined rows against the current contract; load those that now pass."""
    from pgmill.ingest.replay import replay

    res = replay(open_project(project), pipeline, ids)
    if as_json:
        out.print_json(json.dumps(res.__dict__))
        return
    out.print(f"replayed {res.candidates:,} rows of {pipeline} (run {res.run_id}): {res.loaded:,} loaded, "
              f"{res.still_failing:,} still failing"
              + (f", {res.not_replayable:,} unparsable rows kept as they are" if res.not_replayable else ""))


def register(app: typer.Typer) -> None:
    """Add the `quarantine` group."""
    app.add_typer(group, name="quarantine")
