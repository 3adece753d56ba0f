"""`pgmill check` and `pgmill report`: thin commands over run_checks and write_report."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from pgmill.errors import PgmillError

if TYPE_CHECKING:
    from rich.console import Console

    from pgmill.quality.results import CheckReport

# the same options as the other commands; defined here so that cli.py can import this module at any point
ProjectOpt = Annotated[
    Path | None,
    typer.Option("--project", "-p", help="project folder (default: found from the current folder upwards)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
T = TypeVar("T")

_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "error": "bold red", "skipped": "dim"}


def register(app: typer.Typer) -> None:
    """Add `check` and `report` to the pgmill command."""

    @app.command()
    def check(
        tables: Annotated[list[str] | None, typer.Argument(help="tables or pipelines to check (default: all)")] = None,
        project: ProjectOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Run the contracts' table checks inside Postgres and record them in pgmill.quality_results."""
        from pgmill.quality.checks import run_checks

        report = _guard(lambda: run_checks(_open(project), tables))
        out = _console()
        if as_json:
            out.print_json(json.dumps(report.as_dict(), default=str))
        else:
            _print_check(out, report)
        if not report.ok:
            raise typer.Exit(1)

    @app.command()
    def report(
        out_file: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write")] = Path("quality-report.html"),
        project: ProjectOpt = None,
    ) -> None:
        """Write a self-contained HTML quality report (rules, completeness, duplicates, trends) and summarize it."""
        from pgmill.quality.report import collect, write_report

        def body() -> None:
            ctx = _open(project)
            path = write_report(ctx, out_file)
            out = _console()
            from rich.table import Table

            t = Table("table", "status", "rows", "rules", "pass", "warn", "fail", "error", title="Latest checks")
            for s in (sec.summary() for sec in collect(ctx)):
                t.add_row(s["table"], f"[{_STYLE[s['status']]}]{s['status']}[/]", f"{s['rows']:,}", str(s["rules"]),
                          str(s["pass"]), str(s["warn"]), str(s["fail"]), str(s["error"]))
            out.print(t)
            out.print(f"wrote {path}")

        _guard(body)


def _open(project: Path | None) -> Any:
    from pgmill.project import open_project

    return open_project(project)


def _guard(fn: Callable[[], T]) -> T:
    """Library errors become one clean line and the error's exit code, as in every pgmill command."""
    try:
        return fn()
    except PgmillError as exc:
        from rich.console import Console

        Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(exc.exit_code) from None


def _console() -> Console:
    from rich.console import Console

    out = Console(highlight=False, soft_wrap=True)
    return out if out.is_terminal else Console(highlight=False, soft_wrap=True, width=160)


def _print_check(out: Console, report: CheckReport) -> None:
    from rich.table import Table

    t = Table("table", "rule", "status", "pass rate", "failed", "severity", "result", title=f"check run {report.run_id}")
    for r in report.results:
        t.add_row(r.table, r.rule, f"[{_STYLE[r.status]}]{r.status}[/]", f"{r.pass_rate:.2f}%",
                  f"{r.rows_failed:,}", r.severity, r.message)
    out.print(t)
    verdict = ("[green]all error-severity checks passed[/]" if report.ok else
               f"[bold red]{len(report.failures)} error-severity checks failed[/] on "
               + ", ".join(report.failed_tables))
    n = len(report.warnings)
    out.print(verdict + (f"; {n} warning{'s' if n != 1 else ''}" if n else ""))
