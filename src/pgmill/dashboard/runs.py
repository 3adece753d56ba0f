"""The runs page: the runs of the last 24 hours or 7 days, one lane per pipeline, with filters by pipeline and
status; and the newest of them as a table.

Every query is bounded by the window and a LIMIT and read through an index: runs started in the window
(runs_started, or runs_pipeline_started with a pipeline), runs started before it that ended in it
(runs_finished) or are still running (runs_running). The pipelines come from pgmill.run_totals (one row per
pipeline and status), the running runs and pgmill.yaml, never from a scan of pgmill.runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from pgmill.project import ProjectContext

Conn = psycopg.Connection[Any]

WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
DEFAULT_WINDOW = "24h"
STATUSES = ("succeeded", "failed", "abandoned", "running")
MAX_BARS = 2000  # runs drawn in the timeline at most (the newest)
MAX_ROWS = 100  # runs listed in the table at most (the newest)


@dataclass(frozen=True)
class RunRow:
    run_id: int
    pipeline: str
    status: str
    mode: str | None
    started_at: datetime
    finished_at: datetime | None
    retries: int
    rows_read: int
    rows_quarantined: int
    error: str | None

    @property
    def seconds(self) -> float | None:
        return None if self.finished_at is None else (self.finished_at - self.started_at).total_seconds()


@dataclass
class Runs:
    window: str  # "24h" or "7d"
    start: datetime
    end: datetime  # the database's clock now
    pipeline: str | None  # the filters in force (None: all)
    status: str | None
    pipelines: list[str]  # every pipeline the ledger or pgmill.yaml knows: the filter's choices
    lanes: list[str]  # the timeline's rows
    runs: list[RunRow]  # newest first, at most MAX_BARS
    total: int  # runs in the window that match the filters

    @property
    def listed(self) -> list[RunRow]:
        return self.runs[:MAX_ROWS]

    def count(self, status: str) -> int:
        return sum(1 for r in self.runs if r.status == status)


def known_pipelines(conn: Conn, ctx: ProjectContext) -> list[str]:
    """pgmill.yaml's pipelines and every name in the ledger (`transform` for the models' runs): those with
    an ended run (pgmill.run_totals) or a running one (index runs_running)."""
    rows = conn.execute(
        "SELECT pipeline FROM pgmill.run_totals UNION SELECT pipeline FROM pgmill.runs WHERE status = 'running'"
    ).fetchall()
    return sorted({*ctx.config.pipelines, *(str(r[0]) for r in rows)})


def _choice(value: str | None, allowed: list[str] | tuple[str, ...]) -> str | None:
    return value if value in allowed else None


def runs_page(conn: Conn, ctx: ProjectContext, now: datetime, window: str | None = None,
              pipeline: str | None = None, status: str | None = None) -> Runs:
    """The runs overlapping the window that ends `now`, filtered; unknown filter values mean no filter."""
    window = window if window in WINDOWS else DEFAULT_WINDOW
    start = now - WINDOWS[window]
    pipelines = known_pipelines(conn, ctx)
    pipe = _choice(pipeline, pipelines)
    stat = _choice(status, STATUSES)
    where = [sql.SQL("TRUE")]
    params: dict[str, Any] = {"start": start, "now": now, "pipeline": pipe, "status": stat, "limit": MAX_BARS}
    if pipe is not None:
        where.append(sql.SQL("pipeline = %(pipeline)s"))
    if stat is not None:
        where.append(sql.SQL("status = %(status)s"))
    cond = sql.SQL(" AND ").join(where)
    # started in the window, or before it and ended in it or still running: each branch on its own index
    query = sql.SQL(
        "SELECT run_id, pipeline, status, mode, started_at, finished_at, retries, rows_read, rows_quarantined, error"
        " FROM (SELECT * FROM pgmill.runs WHERE started_at >= %(start)s AND started_at <= %(now)s AND {cond}"
        "       ORDER BY started_at DESC LIMIT %(limit)s) inside"
        " UNION ALL"
        " SELECT run_id, pipeline, status, mode, started_at, finished_at, retries, rows_read, rows_quarantined, error"
        " FROM (SELECT * FROM pgmill.runs WHERE started_at < %(start)s AND (finished_at >= %(start)s"
        "       OR status = 'running') AND {cond} ORDER BY started_at DESC LIMIT %(limit)s) across"
        " ORDER BY started_at DESC, run_id DESC LIMIT %(limit)s").format(cond=cond)
    runs = [RunRow(*r) for r in conn.execute(query, params).fetchall()]
    total = len(runs)
    if total >= MAX_BARS:
        row = conn.execute(sql.SQL(
            "SELECT (SELECT count(*) FROM pgmill.runs WHERE started_at >= %(start)s AND started_at <= %(now)s"
            "        AND {cond})"
            " + (SELECT count(*) FROM pgmill.runs WHERE started_at < %(start)s AND (finished_at >= %(start)s"
            "    OR status = 'running') AND {cond})").format(cond=cond), params).fetchone()
        total = int(row[0]) if row else total
    lanes = [pipe] if pipe is not None else sorted({*pipelines, *(r.pipeline for r in runs)})
    return Runs(window, start, now, pipe, stat, pipelines, lanes, runs, total)
