"""`pgmill check` and `pgmill report`: the contracts' table checks, and the HTML quality report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pgmill.cli.shell import JsonOpt, ProjectOpt, guarded, out
from pgmill.project import open_project

if TYPE_CHECKING:
    from pgmill.quality.results import CheckReport

_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "error": "bold red", "skipped": "dim"}


@guarded
def check(
    tables: Annotated[list[str] | None, typer.Argument(help="tables or pipelines to check (default: all)")] = None,
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the contracts' table checks inside Postgres and record them in pgmill.quality_results."""
    from pgmill.quality.checks import run_checks
    from pgmill.quality.results import QualityCheckFailed

    report = run_checks(open_project(project), tables)
    if as_json:
        out.print_json(json.dumps(report.as_dict(), default=str))
    else:
        _print_check(report)
    if not report.ok:
        n = len(report.failures)
        raise QualityCheckFailed(f"{n} error-severity check{'s' if n != 1 else ''} failed on "
                                 f"{', '.join(report.failed_tables)} (check run {report.run_id})")


@guarded
def report(
    out_file: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write")] = Path("quality-report.html"),
    project: ProjectOpt = None,
) -> None:
    """Write a self-contained HTML quality report (rules, completeness, duplicates, trends) and summarize it."""
    from rich.table import Table

    from pgmill.quality.report import collect, write_report

    ctx = open_project(project)
    path = write_report(ctx, out_file)
    t = Table("table", "status", "rows", "rules", "pass", "warn", "fail", "error", title="Latest checks")
    for s in (sec.summary() for sec in collect(ctx)):
        t.add_row(s["table"], f"[{_STYLE[s['status']]}]{s['status']}[/]", f"{s['rows']:,}", str(s["rules"]),
                  str(s["pass"]), str(s["warn"]), str(s["fail"]), str(s["error"]))
    out.print(t)
    out.print(f"wrote {path}", markup=False)


def _print_check(report: CheckReport) -> None:
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


def register(app: typer.Typer) -> None:
    """Add `check` and `report`."""
    app.command()(check)
    app.command()(report)
