"""`pgmill run`: load the pipelines, check the loaded tables, then build the models on what passed.

What follows a load is recorded as steps of the load's run in pgmill.run_steps, so its page shows the
whole command: `checks` (per checked table: the quality run and its counts), `models` (the transform
run, a run of its own, with what it built) and `tune` (the tuning run)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from pgmill.config.load import load_contract
from pgmill.db.catalog import table_key
from pgmill.errors import PgmillError
from pgmill.ingest.runner import ProgressFn, run_pipelines
from pgmill.observe import ledger
from pgmill.observe.cost_meter import metered
from pgmill.observe.ledger import RunRecord
from pgmill.project import ProjectContext
from pgmill.quality.checks import run_checks
from pgmill.quality.results import CheckReport
from pgmill.retry import RetryPolicy, as_pgmill, reported
from pgmill.transform.runner import TransformResult, load_graph, run_transforms
from pgmill.tune.run import TuneReport, needs_retune, retune_after_run


@dataclass
class ProjectRun:
    """Everything one `pgmill run` did."""

    loads: list[RunRecord]
    checks: CheckReport | None = None
    transform: TransformResult | None = None
    tuning: TuneReport | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (all(r.status == "succeeded" for r in self.loads)
                and (self.checks is None or self.checks.ok)
                and (self.transform is None or self.transform.status == "succeeded"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "loads": [r.as_dict() for r in self.loads],
            "checks": self.checks.as_dict() if self.checks else None,
            "transform": self.transform.as_dict() if self.transform else None,
            "tuning": self.tuning.as_dict() if self.tuning else None,
            "notes": self.notes,
        }


@metered("run")  # its CPU, database time and storage, per run: pgmill.run_costs (docs/cost.md)
def run_project(
    ctx: ProjectContext,
    pipelines: list[str] | None = None,
    *,
    progress: ProgressFn | None = None,
    wait: bool = False,
    transform: bool = True,
    check: bool = True,
    tune: bool = True,
) -> ProjectRun:
    """Load; check the loaded tables whose contracts declare `checks:`; build the models, except those
    downstream of a failed load or of a table that failed an error-severity check; then re-tune the
    indexes if the workload or the data size changed enough."""
    with reported():  # each step retried what it could; what is left is reported, not "unexpected"
        result = _load_check_build(ctx, pipelines, progress, wait, transform, check)
    if tune and result.ok and _auto_tune_wanted(ctx) and _retune_due(ctx, result):
        started = datetime.now(UTC)
        try:
            result.tuning = retune_after_run(ctx.target, ctx.dir, ctx.config.tune)
        except (PgmillError, psycopg.Error) as exc:  # a failed re-tune never fails a good load
            failure = {"error": str(as_pgmill(exc))}
            result.notes.append(f"re-tuning failed (the load stands): {failure['error']}")
            _record_steps(ctx, result, "tune", started, lambda _r: ("failed", None, failure))
        else:
            t = result.tuning
            if t is not None:
                detail = {"tuning_run": t.run_id, "mode": t.mode, "recommended": len(t.advice.recommendations)}
                _record_steps(ctx, result, "tune", started, lambda _r: ("succeeded", None, detail))
    return result


StepOf = Callable[[RunRecord], "tuple[str, int | None, dict[str, Any]] | None"]


def _record_steps(ctx: ProjectContext, result: ProjectRun, name: str, started: datetime, of: StepOf) -> None:
    """Record step `name` in each load run `of` gives (status, rows, detail) for, on a connection of its own,
    retried (each step is written once). The ledger out of reach only costs the record: a note says so, the
    command's outcome stands."""
    todo = [(r.run_id, s) for r in result.loads if r.run_id and (s := of(r)) is not None]
    if not todo:
        return

    def write() -> None:
        with ctx.target.connect() as conn:
            for run_id, (status, rows, detail) in todo:
                ledger.step_once(conn, run_id, name, status, started, rows, detail)

    try:
        RetryPolicy.of(ctx.config.retry).call(write)
    except (PgmillError, psycopg.Error) as exc:
        result.notes.append(f"step {name} not recorded in the ledger: {as_pgmill(exc)}")


def _retune_due(ctx: ProjectContext, result: ProjectRun) -> bool:
    """Whether the indexes need re-tuning: the read-only part of retune_after_run, so the one retried as a
    whole (creating and measuring indexes is not repeated blindly; it has its own handling per index)."""

    def due() -> bool:
        with ctx.target.connect(autocommit=True, application_name="pgmill tune") as conn:
            return needs_retune(conn, ctx.dir, ctx.config.tune)[0]

    try:
        return RetryPolicy.of(ctx.config.retry).call(due)
    except (PgmillError, psycopg.Error) as exc:
        result.notes.append(f"re-tuning failed (the load stands): {as_pgmill(exc)}")
        return False


def _auto_tune_wanted(ctx: ProjectContext) -> bool:
    """Automatic re-tuning follows the declared workload (queries/*.sql); for a workload that is only
    observed, pgmill changes indexes as a side effect of a load only when `tune.auto` says so explicitly."""
    if ctx.config.tune.auto == "off":
        return False
    if "auto" in ctx.config.tune.model_fields_set:
        return True
    queries = ctx.dir / "queries"
    return queries.is_dir() and any(queries.glob("*.sql"))


def _load_check_build(ctx: ProjectContext, pipelines: list[str] | None, progress: ProgressFn | None,
                      wait: bool, transform: bool, check: bool) -> ProjectRun:
    loads = run_pipelines(ctx, pipelines, progress=progress, wait=wait) if ctx.config.pipelines else []
    result = ProjectRun(loads)
    if not all(r.status == "succeeded" for r in loads):
        result.notes.append("checks and models skipped: a load failed (fix it and rerun)")
        return result
    blocked: set[str] = set()
    if check:
        targets = _tables_with_checks(ctx, [r.pipeline for r in loads])
        if targets:
            started = datetime.now(UTC)
            result.checks = run_checks(ctx, targets)
            blocked = set(result.checks.failed_tables)
            _record_steps(ctx, result, "checks", started, _checks_step(ctx, result.checks))
    if not transform:
        return result
    graph = load_graph(ctx, strict=False)
    if not graph.models:
        return result
    stopped = {k for k, srcs in graph.sources.items() if {table_key(s) for s in srcs} & blocked}
    for k in list(stopped):
        stopped |= graph.descendants(k)
    if stopped:
        result.notes.append("models not built, downstream of a table that failed its checks: "
                            + ", ".join(sorted(stopped)))
    todo = [k for k in graph.order if k not in stopped]
    if todo:
        started = datetime.now(UTC)
        result.transform = run_transforms(ctx, todo if stopped else None)
        tr = result.transform
        if tr.run_id is not None:
            detail = {"run_id": tr.run_id, "built": len(tr.ran), "failed": len(tr.failed), "skipped": len(tr.skipped)}
            _record_steps(ctx, result, "models", started, lambda _r: (tr.status, len(tr.ran), detail))
    return result


def _checks_step(ctx: ProjectContext, report: CheckReport) -> StepOf:
    """The `checks` step of a load run: its table's results in the check run."""
    tables = {t.table: t for t in report.tables}

    def of(r: RunRecord) -> tuple[str, int | None, dict[str, Any]] | None:
        t = tables.get(table_key(ctx.config.pipelines[r.pipeline].table))
        if t is None:
            return None
        counts = {s: sum(1 for x in t.results if x.status == s) for s in ("pass", "warn", "fail", "error", "skipped")}
        return ("succeeded" if t.ok else "failed", t.rows,
                {"quality_run": report.run_id, "table": t.table, "rules": len(t.results), **counts})

    return of


def _tables_with_checks(ctx: ProjectContext, pipelines: list[str]) -> list[str]:
    out = []
    for name in pipelines:
        spec = ctx.config.pipelines[name]
        if load_contract(ctx.dir, spec.contract).checks.model_dump(exclude_defaults=True):
            out.append(name)
    return out
