"""`pgmill run`, `pgmill status` and `pgmill demo`: load the project (or a generated one), read the ledger."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from pgmill.cli.shell import (
    JsonOpt,
    ProjectOpt,
    err,
    guarded,
    out,
    print_error,
    read,
    settle_for_bulk_work,
)
from pgmill.observe.latency import arrival_latency
from pgmill.project import ProjectContext, open_project


@guarded
def run(
    pipelines: Annotated[list[str] | None, typer.Argument(help="pipelines to run (default: all)")] = None,
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
    wait: Annotated[bool, typer.Option("--wait", help="queue behind a run of the same pipeline")] = False,
    transform: Annotated[bool, typer.Option("--transform/--no-transform",
                                            help="build the models in models/ after the loads")] = True,
    check: Annotated[bool, typer.Option("--check/--no-check",
                                        help="run the contracts' table checks on the loaded tables")] = True,
    executor: Annotated[str | None, typer.Option(
        "--executor", help="where files and ranges load: threads, processes[:N] or dask://HOST:PORT "
        "(default: the project's executor:)")] = None,
    follow: Annotated[bool, typer.Option(
        "--follow", help="keep loading what is new, pass after pass, until Ctrl-C or SIGTERM (loads only)")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.05, help="--follow: seconds between passes when "
                                            "no file changes (the poll of HTTP and PostgreSQL sources)")] = 1.0,
    settle: Annotated[float, typer.Option("--settle", min=0.0, help="--follow: seconds a file must stay "
                                          "unmodified before it is read")] = 1.0,
) -> None:
    """Load the pipelines (every row validated, committed in checkpoints, accounted for), then build the models.
    With --follow, keep loading as micro-batches until stopped (docs/follow.md)."""
    from pgmill.execute.executors import parse_executor
    from pgmill.orchestrate import run_project

    ctx = open_project(project)
    if executor is not None:
        ctx.config = ctx.config.model_copy(update={"executor": parse_executor(executor)})
    settle_for_bulk_work()
    if follow:
        _follow(ctx, pipelines, as_json, wait, interval, settle)
        return
    progress = _ProgressPrinter(as_json)
    try:
        result = run_project(ctx, pipelines, progress=progress.update, wait=wait, transform=transform, check=check)
    finally:
        progress.close()
    if as_json:
        out.print_json(json.dumps(result.as_dict(), default=str))
    else:
        if result.loads:
            print_runs(result.loads)
        if result.checks is not None:
            c = result.checks
            out.print(f"checks: {len(c.results)} rules on {len(c.tables)} tables, {len(c.failures)} failed, "
                      f"{len(c.warnings)} warnings (check run {c.run_id}; `pgmill report` for the details)")
        if result.transform is not None:
            t = result.transform
            out.print(f"models: {len(t.ran)} built, {len(t.failed)} failed, {len(t.skipped)} skipped"
                      + (f" (run {t.run_id})" if t.run_id else ""))
        if result.tuning is not None:
            out.print(f"indexes re-tuned after the load (tuning run {result.tuning.run_id}); "
                      "`pgmill tune --json` for the report")
        for note in result.notes:
            out.print(note)
    for r in result.loads:
        if r.status != "succeeded":
            print_error(f"pipeline {r.pipeline} failed: {r.error}")
    if result.checks is not None:
        for f in result.checks.failures:
            print_error(f"{f.table}: check {f.rule} failed: {f.message}")
    if result.transform is not None:
        for m in result.transform.models:
            if m.status == "failed":
                print_error(f"model {m.model} failed: {m.error}")
    if not result.ok:
        raise typer.Exit(1)  # the run finished, with failures (each named above)


def _follow(ctx: ProjectContext, pipelines: list[str] | None, as_json: bool, wait: bool, interval: float, settle: float) -> None:
    import signal

    from pgmill.ingest.follow import Follow
    from pgmill.ingest.runner import run_pipelines

    f = Follow(interval, settle)
    # both stop the passes: the checkpoint in flight commits and each run closes as succeeded (SIGINT is
    # handled here, not left to KeyboardInterrupt: a process started in the background may have it ignored)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: f.stop.set())
    names = pipelines or list(ctx.config.pipelines)
    err.print(f"following {', '.join(names)} (a pass every {interval:g} s or on a file's change); "
              "Ctrl-C stops after the checkpoint in flight")
    progress = _ProgressPrinter(as_json)
    try:
        loads = run_pipelines(ctx, pipelines, progress=progress.update, wait=wait, follow=f)
    finally:
        progress.close()
    if as_json:
        ok = all(r.status == "succeeded" for r in loads)
        out.print_json(json.dumps({"ok": ok, "loads": [r.as_dict() for r in loads]}, default=str))
    else:
        print_runs(loads)
    for r in loads:
        if r.status != "succeeded":
            print_error(f"pipeline {r.pipeline} failed: {r.error}")
    if any(r.status != "succeeded" for r in loads):
        raise typer.Exit(1)


@guarded
def status(
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
    pipeline: Annotated[str | None, typer.Option(help="only this pipeline")] = None,
    limit: Annotated[int, typer.Option(help="how many runs")] = 20,
    since: Annotated[str | None, typer.Option(
        "--since", metavar="DURATION",
        help="success rate over this window instead (e.g. 30d): runs, successes, retries that saved a run, "
        "late and missed slots, per pipeline and job and overall")] = None,
    storage: Annotated[bool, typer.Option(
        "--storage", help="storage instead: bytes and estimated rows per table and per partition, and what "
        "retention archived")] = False,
) -> None:
    """Recent runs from the ledger (pgmill.runs) and a line per partitioned table's storage; with --since the
    success rate over a window, with --storage the storage of every table and partition."""
    from pgmill.observe.ledger import recent_runs

    if since is not None:
        _success(project, since, as_json)
        return
    if storage:
        _storage(project, as_json)
        return
    records, latencies = read(project, lambda conn: (recent_runs(conn, pipeline, limit),
                                                     arrival_latency(conn, timedelta(days=1))))
    if as_json:
        out.print_json(json.dumps([r.as_dict() for r in records]))
        return
    if not records:
        out.print("no runs yet: `pgmill run` loads the project's pipelines")
    else:
        print_runs(records)
    for lat in latencies:
        if pipeline is None or lat.pipeline == pipeline:
            out.print(f"{lat.pipeline}: arrival to queryable p50 {lat.p50_s:g} s, p95 {lat.p95_s:g} s, max "
                      f"{lat.max_s:g} s over {lat.counted()} in the last 24 h", markup=False)
    for t in _tables_storage(project):
        if t.partitioned:
            out.print(_storage_line(t), markup=False)


def _tables_storage(project: Path | None) -> list[Any]:
    from pgmill.db.storage import table_storage

    tables = open_project(project).tables
    return read(project, lambda conn: table_storage(conn, tables))


def _storage_line(t: Any) -> str:
    from pgmill.figures import size

    line = f"{t.table}: {size(t.bytes)}, ~{t.rows_estimate:,} rows"
    if t.partitioned:
        line += f" in {len(t.partitions)} partitions"
    if t.archived_files:
        line += f"; archived {t.archived_files} files, {size(t.archived_bytes)}, {t.archived_rows:,} rows"
    return line if t.exists else f"{t.table}: not created yet"


def _storage(project: Path | None, as_json: bool) -> None:
    from pgmill.figures import size

    tables = _tables_storage(project)
    if as_json:
        out.print_json(json.dumps({"tables": [t.as_dict() for t in tables]}))
        return
    for t in tables:
        out.print(_storage_line(t), markup=False)
        for p in t.partitions:
            out.print(f"  {p.name} {p.bounds}: {size(p.bytes)}, ~{p.rows_estimate:,} rows", markup=False)


def _success(project: Path | None, since: str, as_json: bool) -> None:
    from datetime import timedelta

    from pgmill.config.duration import parse_duration
    from pgmill.errors import ConfigError
    from pgmill.observe.success import format_success, success_rate

    try:
        window = timedelta(seconds=parse_duration(since))
    except ValueError as exc:
        raise ConfigError(f"--since: {exc}") from None
    report = read(project, lambda conn: success_rate(conn, window))
    if as_json:
        out.print_json(json.dumps(report.as_dict(), default=str))
    else:
        out.print(format_success(report), markup=False)


@guarded
def demo(
    directory: Annotated[Path | None, typer.Option("--dir", help="keep the demo project here")] = None,
    scale: Annotated[float, typer.Option(help="data size: 1.0 is the default demo, 10 is ten times more")] = 1.0,
) -> None:
    """Generate a shop's data with defects and run it end to end on the embedded database: load, check, build
    models, tune the declared queries, write the quality report and validation, show how to connect."""
    from pgmill.demo.run import run_demo

    run_demo(directory, scale=scale, echo=lambda s: out.print(s, markup=False))


def print_runs(records: list[Any]) -> None:
    """Runs of the ledger as a table, then the error of each failed one."""
    from rich.table import Table

    t = Table(title=None, show_lines=False)
    for col in ("run", "pipeline", "status", "started", "secs", "read", "inserted", "updated",
                "unchanged", "quarant.", "dupl.", "MB", "retries"):
        t.add_column(col, justify="right" if col not in ("pipeline", "status", "started") else "left")
    for r in records:
        d = r.as_dict()
        secs = d["seconds"]
        t.add_row(
            str(r.run_id), r.pipeline, r.status, (d["started_at"] or "")[:19].replace("T", " "),
            f"{secs:.1f}" if secs is not None else "-",
            f"{d['rows_read']:,}", f"{d['rows_inserted']:,}", f"{d['rows_updated']:,}", f"{d['rows_unchanged']:,}",
            f"{d['rows_quarantined']:,}", f"{d['rows_duplicate']:,}", f"{d['bytes_read'] / 1e6:.1f}",
            str(r.retries),
        )
    out.print(t)
    for r in records:
        if r.error:
            out.print(f"run {r.run_id} ({r.pipeline}): {r.error}", markup=False)


class _ProgressPrinter:
    """A rich progress bar on a terminal; a plain log line every few seconds otherwise."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = err.is_terminal and not quiet
        self.bars: dict[str, Any] = {}
        self.last: dict[str, float] = {}
        self.rich: Any = None
        if self.tty:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.rich = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TextColumn("{task.fields[rows]} rows"),
                                 TimeRemainingColumn(), console=err.real(), transient=False)
            self.rich.start()

    def update(self, p: Any) -> None:
        if self.quiet:
            return
        if self.rich is not None:
            if p.pipeline not in self.bars:
                self.bars[p.pipeline] = self.rich.add_task(p.pipeline, total=p.total_bytes, rows="0")
            self.rich.update(self.bars[p.pipeline], completed=p.bytes, total=p.total_bytes, rows=f"{p.rows:,}")
            return
        now = time.monotonic()
        if now - self.last.get(p.pipeline, 0) < 5:
            return
        self.last[p.pipeline] = now
        secs = max(now - p.started, 1e-9)
        pct = f" {100 * p.bytes / p.total_bytes:.0f}%" if p.total_bytes else ""
        err.print(f"{p.pipeline}: {p.rows:,} rows, {p.bytes / 1e6:.1f} MB{pct}, "
                  f"{p.bytes / 1e6 / secs:.1f} MB/s, {p.quarantined:,} quarantined")

    def close(self) -> None:
        if self.rich is not None:
            self.rich.stop()


def register(app: typer.Typer) -> None:
    """Add `run`, `status` and `demo`."""
    app.command()(run)
    app.command()(status)
    app.command()(demo)
