"""`pgmill cdc status | drop`: the replication slots of the pipelines that stream changes (`cdc:`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pgmill.cli.shell import JsonOpt, ProjectOpt, guarded, out
from pgmill.project import open_project

group = typer.Typer(help="Change data capture: the slots of the pipelines that stream changes.",
                    no_args_is_help=True)


def _bytes(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.1f} MB"


@group.command("status")
@guarded
def cdc_status(
    pipelines: Annotated[list[str] | None, typer.Argument(help="pipelines (default: every one with `cdc:`)")] = None,
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Each slot as the source sees it: active, WAL it holds back on the source, changes not confirmed yet,
    and the position the target has applied. A lost slot means the next run loads a new snapshot."""
    from pgmill.ingest.cdc.manage import status

    rows = status(open_project(project), pipelines)
    if as_json:
        out.print_json(json.dumps([r.as_dict() for r in rows]))
        return
    if not rows:
        out.print("no pipeline streams changes (none has `cdc:` on its postgres source)")
        return
    for r in rows:
        d = r.as_dict()
        state = ("LOST: the next run loads a new snapshot" if r.health.lost
                 else ("streaming" if r.health.active else "idle"))
        out.print(f"{r.pipeline}: slot {r.slot} ({state}), publication {r.publication}", markup=False)
        out.print(f"  applied up to {d['stored_lsn'] or '-'}; slot confirmed {d['confirmed_lsn'] or '-'}; "
                  f"WAL held on the source {_bytes(r.health.retained_bytes)}, not yet confirmed "
                  f"{_bytes(r.health.lag_bytes)}; wal_status {r.health.wal_status or '-'}", markup=False)


@group.command("drop")
@guarded
def cdc_drop(
    pipeline: Annotated[str, typer.Argument(help="the pipeline whose slot and publication go")],
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Drop the pipeline's replication slot and the publication pgmill made (one you named stays), so the
    source keeps no WAL for it; its next run loads a new snapshot. Refused while the pipeline runs."""
    from pgmill.ingest.cdc.manage import drop

    d = drop(open_project(project), pipeline)
    if as_json:
        out.print_json(json.dumps(d.as_dict()))
        return
    out.print(f"{d.pipeline}: slot {d.slot} {'dropped' if d.slot_dropped else 'was not there'}; publication "
              f"{d.publication} {'dropped' if d.publication_dropped else 'kept'}; the next run loads a new snapshot",
              markup=False)


def register(app: typer.Typer) -> None:
    """Add the `cdc` group."""
    app.add_typer(group, name="cdc")
