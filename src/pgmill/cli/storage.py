"""`pgmill retention`: expired partitions detached, archived when asked, dropped."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pgmill.cli.shell import JsonOpt, ProjectOpt, guarded, out
from pgmill.project import open_project


@guarded
def retention(
    tables: Annotated[list[str] | None, typer.Argument(help="tables to apply retention to (default: every "
                                                              "table whose contract's partition has `retain`)")] = None,
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list the partitions past retention; change nothing")] = False,
) -> None:
    """Detach the partitions wholly older than the contract's `retain` (CONCURRENTLY: the table stays open to
    reads and loads), write each to Parquet first with `archive: parquet`, then drop them."""
    from pgmill.ingest.retention import run_retention

    report = run_retention(open_project(project), tables, dry_run=dry_run)
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
        return
    verb = "would drop" if dry_run else "dropped"
    for table, first in report.cutoffs.items():
        parts = [p for p in report.partitions if p.table == table]
        out.print(f"{table}: keeping from {first}; {verb} {len(parts)} partition(s)", markup=False)
        for p in parts:
            extra = f" -> {p.path} ({p.rows:,} rows, {p.bytes:,} bytes, sha256 {p.sha256})" if p.path else ""
            pending = " (finishing an interrupted detach)" if p.state != "attached" else ""
            out.print(f"  {p.partition} {p.bounds}: {p.action}{pending}{extra}", markup=False)


def register(app: typer.Typer) -> None:
    """Add `retention`."""
    app.command()(retention)
