"""The `pgmill` command: a thin shell over the library. Each command opens the project and calls one function."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from pgmill.errors import PgmillError

# numpy's OpenBLAS starts a thread per core that spins after use; pgmill does no linear algebra
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

app = typer.Typer(
    name="pgmill",
    help="PostgreSQL data pipelines: contract-checked, exactly-once loads, quarantine, run ledger.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The embedded database: start, stop, status, url.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Rows that broke their contract: list, show, replay.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(quarantine_app, name="quarantine")



class _Console:
    """A rich Console made on first use: importing rich costs ~20 ms that a command printing JSON, or
    nothing, need not pay."""

    def __init__(self, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Any = None

    def real(self) -> Any:
        """The rich Console itself."""
        if self._console is None:
            from rich.console import Console

            c = Console(stderr=self._stderr, highlight=False, soft_wrap=True)
            if not self._stderr and not c.is_terminal:
                c = Console(highlight=False, soft_wrap=True, width=160)  # logs and pipes: no 80-column squeeze
            self._console = c
        return self._console

    def print_json(self, text: str) -> None:
        """JSON for scripts as plain text (what rich prints, less its colours, and without importing it);
        coloured on a terminal."""
        stream = sys.stderr if self._stderr else sys.stdout
        if self._console is None and not stream.isatty():
            stream.write(json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n")
            stream.flush()
            return
        self.real().print_json(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)


out = _Console()
err = _Console(stderr=True)

ProjectOpt = Annotated[
    Path | None,
    typer.Option("--project", "-p", help="project folder (default: found from the current folder upwards)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
T = TypeVar("T")


def _guard(fn: Callable[[], T]) -> T:
    """Run a command body; library errors become one clean line and an exit code, never a traceback."""
    try:
        return fn()
    except PgmillError as exc:
        err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted; committed checkpoints are kept, rerun to resume")
        raise typer.Exit(130) from None
    except (typer.Exit, SystemExit):
        raise
    except Exception as exc:  # a bug of pgmill's: still one line, and where to report it
        from pgmill.retry import as_pgmill

        err.print(f"[bold red]error:[/] {as_pgmill(exc)} (set PGMILL_DEBUG=1 for a traceback; "
                  "please report it)", markup=True, highlight=False)
        if os.environ.get("PGMILL_DEBUG"):
            raise
        raise typer.Exit(70) from None


def _open(project: Path | None) -> Any:
    from pgmill.project import open_project

    return open_project(project)


def _read(project: Path | None, fn: Callable[[Any], T]) -> T:
    """Open the project's database (schema pgmill up to date) and read from it."""
    from pgmill.db.migrations import migrate

    with _open(project).target.connect() as conn:
        migrate(conn)
        return fn(conn)


# ---------------------------------------------------------------- init, schema


@app.command()
def init(directory: Annotated[Path, typer.Argument(help="folder for the new project")] = Path(".")) -> None:
    """Write a commented starter project that `pgmill run` loads as it is."""
    from pgmill.scaffold import init_project

    written = _guard(lambda: init_project(directory))
    for p in written:
        out.print(f"  wrote {p}")
    out.print(f"Next: cd {directory} && pgmill run")


@app.command()
def schema(
    which: Annotated[str, typer.Argument(help="project | contract | both")] = "both",
) -> None:
    """Print the JSON Schema of pgmill.yaml and contract files (for editor completion)."""
    from pgmill.config.schema import json_schemas

    def body() -> None:
        schemas = json_schemas()
        if which not in ("project", "contract", "both"):
            raise PgmillError(f"unknown schema {which!r}: use project, contract or both")
        doc = schemas if which == "both" else schemas[which]
        out.print_json(json.dumps(doc))

    _guard(body)


# ---------------------------------------------------------------- run, status


@app.command()
def run(
    pipelines: Annotated[list[str] | None, typer.Argument(help="pipelines to run (default: all)")] = None,
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
    wait: Annotated[bool, typer.Option("--wait", help="queue behind a run of the same pipeline")] = False,
    transform: Annotated[bool, typer.Option("--transform/--no-transform",
                                            help="build the models in models/ after the loads")] = True,
    check: Annotated[bool, typer.Option("--check/--no-check",
                                        help="run the contracts' table checks on the loaded tables")] = True,
) -> None:
    """Load the pipelines (every row validated, committed in checkpoints, accounted for), then build the models."""
    from pgmill.orchestrate import run_project

    def body() -> None:
        ctx = _open(project)
        _settle_for_bulk_work()
        progress = _progress_printer(as_json)
        try:
            result = run_project(ctx, pipelines, progress=progress.update, wait=wait, transform=transform,
                                 check=check)
        finally:
            progress.close()
        if as_json:
            out.print_json(json.dumps(result.as_dict(), default=str))
        else:
            if result.loads:
                _print_runs(result.loads)
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
                err.print(f"[bold red]error:[/] pipeline {r.pipeline} failed: {r.error}", markup=True)
        if result.checks is not None:
            for f in result.checks.failures:
                err.print(f"[bold red]error:[/] {f.table}: check {f.rule} failed: {f.message}", markup=True)
        if result.transform is not None:
            for m in result.transform.models:
                if m.status == "failed":
                    err.print(f"[bold red]error:[/] model {m.model} failed: {m.error}", markup=True)
        if not result.ok:
            raise typer.Exit(1)

    _guard(body)


@app.command()
def status(
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
    pipeline: Annotated[str | None, typer.Option(help="only this pipeline")] = None,
    limit: Annotated[int, typer.Option(help="how many runs")] = 20,
) -> None:
    """Recent runs from the ledger (pgmill.runs)."""
    from pgmill.observe.ledger import recent_runs

    def body() -> None:
        records = _read(project, lambda conn: recent_runs(conn, pipeline, limit))
        if as_json:
            out.print_json(json.dumps([r.as_dict() for r in records]))
        elif not records:
            out.print("no runs yet: `pgmill run` loads the project's pipelines")
        else:
            _print_runs(records)

    _guard(body)


def _print_runs(records: list[Any]) -> None:
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
            out.print(f"run {r.run_id} ({r.pipeline}): {r.error}")


class _progress_printer:  # noqa: N801 - used like a function
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


# ---------------------------------------------------------------- quarantine


@quarantine_app.command("list")
def quarantine_list(
    project: ProjectOpt = None,
    pipeline: Annotated[str | None, typer.Option(help="only this pipeline")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Quarantined rows by pipeline, column and rule."""
    from pgmill.ingest.quarantine import summary

    def body() -> None:
        rows = _read(project, lambda conn: summary(conn, pipeline))
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

    _guard(body)


@quarantine_app.command("show")
def quarantine_show(
    pipeline: Annotated[str, typer.Argument(help="pipeline name")],
    project: ProjectOpt = None,
    limit: Annotated[int, typer.Option(help="how many rows")] = 20,
    rule: Annotated[str | None, typer.Option(help="only rows that broke this rule")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Quarantined rows of a pipeline: where each came from, its values and what it broke."""
    from pgmill.ingest.quarantine import rows as q_rows

    def body() -> None:
        items = _read(project, lambda conn: q_rows(conn, pipeline, limit, rule))
        if as_json:
            out.print_json(json.dumps(items, default=str))
            return
        if not items:
            out.print(f"no quarantined rows for {pipeline}")
        for it in items:
            out.print(f"[bold]#{it['id']}[/] {it['source_location']} (run {it['run_id']})", markup=True)
            for v in it["violations"]:
                out.print(f"   - {v['message']}")
            out.print(f"     {json.dumps(it['record']) if it['record'] is not None else it['raw_text']}",
                      markup=False)

    _guard(body)


@quarantine_app.command("replay")
def quarantine_replay(
    pipeline: Annotated[str, typer.Argument(help="pipeline name")],
    project: ProjectOpt = None,
    ids: Annotated[list[int] | None, typer.Option("--id", help="only these quarantine ids")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-check quarantined rows against the current contract; load those that now pass."""
    from pgmill.ingest.replay import replay

    def body() -> None:
        res = replay(_open(project), pipeline, ids)
        if as_json:
            out.print_json(json.dumps(res.__dict__))
            return
        out.print(f"replayed {res.candidates:,} rows of {pipeline} (run {res.run_id}): {res.loaded:,} loaded, "
                  f"{res.still_failing:,} still failing"
                  + (f", {res.not_replayable:,} unparsable rows kept as they are" if res.not_replayable else ""))

    _guard(body)


# ---------------------------------------------------------------- db


def _embedded(project: Path | None) -> Any:
    ctx = _open(project)
    if ctx.target.embedded is None:
        raise PgmillError(f"this project uses an external database ({ctx.target.display_url}); "
                          "pgmill db start/stop only manage the embedded one")
    return ctx


@db_app.command("start")
def db_start(project: ProjectOpt = None) -> None:
    """Start the embedded PostgreSQL (data in .pgmill/)."""
    def body() -> None:
        ctx = _embedded(project)
        ctx.target.embedded.start()
        out.print(f"running: {ctx.target.display_url}")

    _guard(body)


@db_app.command("stop")
def db_stop(project: ProjectOpt = None) -> None:
    """Stop the embedded PostgreSQL."""
    def body() -> None:
        ctx = _embedded(project)
        out.print("stopped" if ctx.target.embedded.stop() else "was not running")

    _guard(body)


@db_app.command("status")
def db_status(project: ProjectOpt = None, as_json: JsonOpt = False) -> None:
    """Is the database up, where is it, which version."""
    from pgmill.db.status import database_status

    def body() -> None:
        st = database_status(_open(project).target)
        if as_json:
            out.print_json(json.dumps(st))
        else:
            for k, v in st.items():
                out.print(f"{k}: {v}")
        if not st.get("running"):
            raise typer.Exit(1)

    _guard(body)


@db_app.command("url")
def db_url(project: ProjectOpt = None) -> None:
    """Print the connection URL (password redacted), e.g. for psql "$(pgmill db url)"."""
    _guard(lambda: out.print(_open(project).target.display_url, markup=False))


# ---------------------------------------------------------------- demo


@app.command()
def demo(
    directory: Annotated[Path | None, typer.Option("--dir", help="keep the demo project here")] = None,
    scale: Annotated[float, typer.Option(help="data size: 1.0 is the default demo, 10 is ten times more")] = 1.0,
) -> None:
    """Generate realistic data with defects and run it end to end on the embedded database."""
    from pgmill.demo.run import run_demo

    _guard(lambda: run_demo(directory, scale=scale, echo=lambda s: out.print(s, markup=False)))


def _register_commands() -> None:
    from pgmill.mcp.commands import register as register_mcp
    from pgmill.quality.commands import register as register_quality
    from pgmill.transform.commands import register as register_transform
    from pgmill.tune.commands import register as register_tune

    register_transform(app)
    register_quality(app)
    register_tune(app)
    register_mcp(app)


_register_commands()


def _settle_for_bulk_work() -> None:
    """This process is about to move millions of rows. The objects it holds now (modules, classes, the
    project) live as long as it does: frozen, the cyclic garbage collector stops walking them again and
    again, and it runs less often among the short-lived rows; it took ~6% of a load's CPU (perf)."""
    import gc

    import pgmill.ingest.runner  # noqa: F401  (polars, pyarrow, numpy: imported now, then frozen)

    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def main() -> None:
    try:
        app()
    except SystemExit as exc:
        sys.exit(exc.code)
    finally:
        # The command is done. Frozen, what it built is not walked once more by the garbage collector at
        # interpreter shutdown: ~0.1 s off every command (0.66 -> 0.58 s for a 20-model transform).
        import gc

        gc.freeze()


if __name__ == "__main__":
    main()
