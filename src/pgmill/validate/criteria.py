"""`validate(conn, ctx)`: every measurable success criterion of the brief, with this project's figure, its
source, the threshold and pass / fail / not measured, in the brief's order."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

from pgmill import __version__
from pgmill.observe.cost import cost_report
from pgmill.observe.success import success_rate
from pgmill.project import ProjectContext
from pgmill.validate import data_quality, performance, realtime, reliability
from pgmill.validate.costs import cost_criteria
from pgmill.validate.model import Validation, days

Conn = psycopg.Connection[Any]
DEFAULT_SINCE = timedelta(days=30)


def validate(conn: Conn, ctx: ProjectContext, since: timedelta = DEFAULT_SINCE, *,
             scale_results: Path | None = None, executor_results: Path | None = None) -> Validation:
    """The criteria as of the database's clock; the ledger's and the checks' over the last `since`. Reads
    only: schema pgmill must be in place (pgmill.db.migrations.migrate). The 10x criterion reads the
    benchmark's figures from `scale_results` (default: bench/results_scale.json in the project folder), the
    parallel one from `executor_results` (default: bench/results_executor.json)."""
    _require_schema(conn)
    rates = success_rate(conn, since)
    now = rates.as_of
    start = now - since
    window = f"last {days(since)}"
    ledger = reliability.ledger_window(conn, start)
    checks = data_quality.latest_checks(conn, start)
    latest = performance.latest_measured(conn)
    criteria = [
        performance.query_p95(latest),
        performance.index_utilization(conn),
        performance.query_reduction(latest, performance.latest_optimization(conn)),
        performance.parallel_throughput(executor_results or ctx.dir / performance.EXECUTOR_RESULTS),
        reliability.success(rates, window),
        reliability.retries(conn, rates, window),
        reliability.data_loss(conn, ledger, window),
        data_quality.validation_loads(ledger, window),
        data_quality.validation_checks(checks, window),
        data_quality.schema_enforced(ctx),
        data_quality.completeness(checks, window),
        data_quality.duplicates(checks, ledger, window),
        *cost_criteria(cost_report(conn, ctx.config.cost, now=now)),
        realtime.realtime(conn, since, window),
        performance.scale_10x(scale_results or ctx.dir / performance.SCALE_RESULTS),
    ]
    return Validation(ctx.dir.name, ctx.target.display_url, now, __version__, since, criteria)


def _require_schema(conn: Conn) -> None:
    from pgmill.errors import DatabaseError

    row = conn.execute("SELECT to_regclass('pgmill.run_totals') IS NOT NULL").fetchone()
    if not row or not row[0]:
        raise DatabaseError("schema pgmill is missing or out of date in this database: any pgmill command that "
                            "writes (pgmill run, pgmill status) brings it up to date")
