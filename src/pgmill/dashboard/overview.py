"""The overview: per pipeline and scheduled job, the last run, the age of the last success against the
schedule (green, amber, red), the next expected run, late and missed slots, the success rate over 30 days;
and the alerts firing now.

Health is the age of the last success in periods of the schedule: within one period (plus the misfire
grace) green, within two amber, beyond red. A pipeline without a schedule is green when its last run
succeeded, red when it failed, grey when it never ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

from pgmill.config.duration import parse_duration
from pgmill.config.schedule import Scheduled
from pgmill.observe.success import Rate, success_rate
from pgmill.project import ProjectContext
from pgmill.schedule.jobs import PIPELINE_PREFIX, scheduled_jobs
from pgmill.schedule.timetable import Timetable

Conn = psycopg.Connection[Any]
WINDOW = timedelta(days=30)
LATE_AFTER = timedelta(minutes=1)
#: the ledger names of the jobs that are not pipelines: where their runs are recorded
_JOB_LEDGER = {"models": "transform"}


@dataclass
class LastRun:
    run_id: int
    status: str
    started_at: datetime
    finished_at: datetime | None
    retries: int
    error: str | None


@dataclass
class Row:
    name: str  # the pipeline's name, or the job's id (models, checks, tune)
    kind: str  # "pipeline" or "job"
    schedule: str  # "*/15 * * * * (UTC)", "every 1h", or "on demand"
    health: str  # green, amber, red, grey
    why: str  # the health in words
    last: LastRun | None = None
    last_success_at: datetime | None = None
    next_run: datetime | None = None
    late: list[datetime] = field(default_factory=list)
    missed_30d: int = 0
    rate: Rate | None = None  # runs over the last 30 days


@dataclass
class Alert:
    rule: str
    subject: str
    since: datetime
    message: str


@dataclass
class Overview:
    as_of: datetime
    rows: list[Row]
    alerts: list[Alert]
    overall: Rate

    def count(self, health: str) -> int:
        return sum(1 for r in self.rows if r.health == health)


def _describe(spec: Scheduled | None) -> str:
    if spec is None or not spec.scheduled:
        return "on demand"
    if spec.every is not None:
        return f"every {spec.every}"
    return f"{spec.schedule} ({spec.timezone})"


def _period(spec: Scheduled, now: datetime) -> timedelta:
    table = Timetable("x", spec)
    first = table.next_after(now)
    return table.next_after(first) - first


def health(spec: Scheduled | None, last: LastRun | None, last_success: datetime | None,
           now: datetime) -> tuple[str, str]:
    """The colour of a pipeline or job, and why."""
    if last is None:
        return "grey", "never ran"
    if spec is None or not spec.scheduled:
        if last.status == "succeeded":
            return "green", "the last run succeeded"
        if last.status == "running":
            return ("amber" if last_success is None else "green"), "running now"
        return "red", f"the last run {last.status}"
    if last_success is None:
        return "red", "no run has succeeded yet"
    period = _period(spec, now)
    grace = timedelta(seconds=parse_duration(spec.misfire_grace))
    age = now - last_success
    if age <= period + grace:
        return "green", "succeeded within its period"
    if age <= 2 * period + grace:
        return "amber", "one period without a success"
    return "red", f"{int(age / period)} periods without a success"


def _runs(conn: Conn, names: list[str]) -> dict[str, tuple[LastRun | None, datetime | None]]:
    """Per ledger name: the latest run and the latest success, in one round trip (two index probes of
    runs_pipeline_started per name)."""
    rows = conn.execute(
        "SELECT p.name, l.run_id, l.status, l.started_at, l.finished_at, l.retries, l.error, ok.at"
        " FROM unnest(%s::text[]) p(name)"
        " LEFT JOIN LATERAL (SELECT run_id, status, started_at, finished_at, retries, error FROM pgmill.runs"
        "   WHERE pipeline = p.name ORDER BY started_at DESC LIMIT 1) l ON true"
        " LEFT JOIN LATERAL (SELECT coalesce(finished_at, started_at) AS at FROM pgmill.runs"
        "   WHERE pipeline = p.name AND status = 'succeeded' ORDER BY started_at DESC LIMIT 1) ok ON true",
        (names,)).fetchall()
    return {r[0]: (LastRun(*r[1:7]) if r[1] is not None else None, r[7]) for r in rows}


def _slots(conn: Conn, job: str, now: datetime) -> tuple[datetime | None, list[datetime], int]:
    """Next pending slot, late slots (due, not started) and slots missed in the window (primary key scans)."""
    row = conn.execute(
        "SELECT (SELECT min(scheduled_for) FROM pgmill.expected_runs WHERE job = %(job)s AND state = 'pending'"
        "        AND scheduled_for > %(now)s),"
        " (SELECT array_agg(scheduled_for ORDER BY scheduled_for) FROM (SELECT scheduled_for FROM"
        "   pgmill.expected_runs WHERE job = %(job)s AND state = 'pending' AND scheduled_for < %(late)s"
        "   AND scheduled_for >= %(start)s ORDER BY scheduled_for DESC LIMIT 50) l),"
        " (SELECT count(*) FROM pgmill.expected_runs WHERE job = %(job)s AND state IN ('missed', 'skipped')"
        "   AND scheduled_for > %(start)s)",
        {"job": job, "now": now, "late": now - LATE_AFTER, "start": now - WINDOW}).fetchone()
    assert row is not None
    return row[0], list(row[1] or ()), int(row[2])


def _job_runs(conn: Conn, job: str) -> tuple[LastRun | None, datetime | None]:
    """A job that is not in pgmill.runs (checks, tune): its slots tell how it went."""
    row = conn.execute(
        "SELECT coalesce(run_id, 0), state, coalesce(started_at, scheduled_for), finished_at, attempts - 1, error"
        " FROM pgmill.expected_runs WHERE job = %s AND state NOT IN ('pending', 'skipped', 'missed')"
        " ORDER BY scheduled_for DESC LIMIT 1", (job,)).fetchone()
    ok = conn.execute(
        "SELECT finished_at FROM pgmill.expected_runs WHERE job = %s AND state = 'succeeded'"
        " ORDER BY scheduled_for DESC LIMIT 1", (job,)).fetchone()
    last = LastRun(int(row[0]), row[1], row[2], row[3], max(int(row[4]), 0), row[5]) if row else None
    return last, (ok[0] if ok else None)


def overview(conn: Conn, ctx: ProjectContext) -> Overview:
    """The overview as of the database's clock."""
    jobs = scheduled_jobs(ctx.config)
    others = [j for j, job in jobs.items() if job.pipeline is None]  # models, checks, tune
    rates = success_rate(conn, WINDOW, late_after=LATE_AFTER, jobs=others)
    now = rates.as_of
    by_name = {r.name: r for r in (*rates.pipelines, *rates.jobs)}
    runs = _runs(conn, [*ctx.config.pipelines, *(_JOB_LEDGER[j] for j in others if j in _JOB_LEDGER)])
    rows: list[Row] = []
    for name, pipe in ctx.config.pipelines.items():
        last, ok = runs[name]
        rows.append(_row(conn, name, "pipeline", pipe, last, ok, now, PIPELINE_PREFIX + name in jobs,
                         by_name.get(name)))
    for job_id in others:
        ledger = _JOB_LEDGER.get(job_id)
        last, ok = runs[ledger] if ledger else _job_runs(conn, job_id)
        rows.append(_row(conn, job_id, "job", jobs[job_id].spec, last, ok, now, True,
                         by_name.get(ledger or "") or by_name.get(job_id)))
    alerts = [Alert(*r) for r in conn.execute(
        "SELECT rule, subject, since, message FROM pgmill.alert_state WHERE status = 'firing'"
        " ORDER BY since DESC LIMIT 50").fetchall()]
    order = {"red": 0, "amber": 1, "grey": 2, "green": 3}  # what needs a look first
    rows.sort(key=lambda r: (order[r.health], r.kind, r.name))
    return Overview(now, rows, alerts, rates.overall)


def _row(conn: Conn, name: str, kind: str, spec: Scheduled | None, last: LastRun | None, ok: datetime | None,
         now: datetime, scheduled: bool, rate: Rate | None) -> Row:
    colour, why = health(spec if scheduled else None, last, ok, now)
    row = Row(name, kind, _describe(spec if scheduled else None), colour, why, last, ok, rate=rate)
    if scheduled:
        job = name if kind == "job" else PIPELINE_PREFIX + name
        row.next_run, row.late, row.missed_30d = _slots(conn, job, now)
        if row.next_run is None and spec is not None:
            row.next_run = Timetable(job, spec).next_after(now)
    return row
