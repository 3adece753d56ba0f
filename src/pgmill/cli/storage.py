"""`pgmill retention`: expired partitions detached, archived when asked, dropped; `pgmill partition`: a plain
table converted to the partitioning its contract declares."""

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


@guarded
def partition(
    table: Annotated[str, typer.Argument(help="the plain table to convert (its contract declares `partition:`)")],
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan (steps, partitions, rows, locks); "
                                                            "change nothing")] = False,
    lock_timeout: Annotated[float, typer.Option("--lock-timeout", help="seconds to wait for writers to let go "
                                                                       "of the table before giving up")] = 10.0,
) -> None:
    """Convert an existing plain table into the range-partitioned table its contract now declares, in one
    transaction: reads go on throughout; writes wait while the rows are copied; reads wait only for the swap."""
    from pgmill.ingest.convert import partition_table

    plan = partition_table(open_project(project), table, dry_run=dry_run, lock_timeout_s=lock_timeout)
    if as_json:
        out.print_json(json.dumps(plan.as_dict()))
        return
    head = "plan for" if dry_run else "converted"
    out.print(f"{head} {plan.table}: {plan.rows:,} rows ({plan.bytes:,} bytes) into {len(plan.partitions)} "
              f"partition(s) by {plan.by}, one {plan.interval} each", markup=False)
    for i, step in enumerate(plan.steps, 1):
        out.print(f"  {i}. {step}", markup=False)
    for p in plan.partitions:
        out.print(f"  {p.name} [{p.start}, {p.end}): {p.rows:,} rows", markup=False)
    if not dry_run:
        out.print(f"writers waited {plan.write_wait_s:.3f} s, readers at most {plan.exclusive_s:.3f} s", markup=False)


def register(app: typer.Typer) -> None:
    """Add `retention` and `partition`."""
    app.command()(retention)
    app.command()(partition)
