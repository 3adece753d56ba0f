"""The cost page: `pgmill cost` (pgmill.observe.cost.cost_report) for a month, and what the runs of each
pipeline and job used per day of it (UTC days), priced the same way, so each job's days add up to its month."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from pgmill.config.cost import CostConfig
from pgmill.observe.cost import CostReport, cost_report
from pgmill.observe.cost_model import compute_usd, database_usd

Conn = psycopg.Connection[Any]

# one month of run_costs (index run_costs_finished), summed per UTC day and job
_DAILY = (
    "SELECT (finished_at AT TIME ZONE 'UTC')::date, job, count(*), sum(cpu_seconds), sum(db_seconds),"
    " sum(bytes_processed) FROM pgmill.run_costs WHERE finished_at >= %s AND finished_at <= %s"
    " GROUP BY 1, 2 ORDER BY 1, 2"
)


@dataclass
class DayCost:
    day: date
    usd: dict[str, float] = field(default_factory=dict)  # job -> what its runs used that day
    runs: int = 0
    bytes_processed: int = 0

    @property
    def total_usd(self) -> float:
        return sum(self.usd.values())


@dataclass
class CostPage:
    report: CostReport
    jobs: list[str]  # the columns: the month's jobs, costliest first
    days: list[DayCost]  # every day of the month to date, oldest first (days without runs too)

    @property
    def days_with_runs(self) -> list[DayCost]:
        return [d for d in self.days if d.runs]

    def previous_month(self) -> str:
        start = month_start(self.report.month)
        return (start - timedelta(days=1)).strftime("%Y-%m")

    def next_month(self) -> str | None:
        """None when the month shown is the current one."""
        return None if not self.report.complete else self.report.month_end.strftime("%Y-%m")


def month_start(month: str) -> datetime:
    return datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)


def cost_page(conn: Conn, cfg: CostConfig, month: str | None, now: datetime) -> CostPage:
    """The month `month` ("YYYY-MM", default the current one) as of `now` (ConfigError for a bad month)."""
    report = cost_report(conn, cfg, month, now=now)
    start = month_start(report.month)
    days = {start.date() + timedelta(days=i): DayCost(start.date() + timedelta(days=i))
            for i in range(max(0, (report.as_of - start).days + (1 if report.as_of > start else 0)))}
    for day, job, runs, cpu, db, processed in conn.execute(_DAILY, (start, report.as_of)).fetchall():
        d = days.setdefault(day, DayCost(day))
        d.usd[str(job)] = compute_usd(float(cpu or 0.0), cfg) + (
            database_usd(None if db is None else float(db), cfg) or 0.0)
        d.runs += int(runs)
        d.bytes_processed += int(processed or 0)
    ordered = [days[k] for k in sorted(days) if k < report.month_end.date()]
    return CostPage(report, [j.job for j in report.jobs], ordered)
