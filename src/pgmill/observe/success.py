"""Success rate from the execution log (`pgmill status --since 30d`): per pipeline, per scheduled job, overall.

Pipelines are counted from pgmill.runs (runs started in the window that have ended): successes, and the
successes that retries saved (a transient failure retried, then the run succeeded). Jobs are counted from
pgmill.expected_runs (slots due in the window): slots that ran and how they ended, slots the schedule
claimed again after their claimer died and that then succeeded, late slots (started, or still waiting,
more than `late_after` after they were due) and missed ones (dropped by the misfire policy). Overall is
the execution log's runs, with the schedule's late and missed slots beside them (a scheduled pipeline's
slot is also one of its runs, so the two are not added up).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class Rate:
    """One pipeline's, one job's or the overall figures; late and missed are None where there is no schedule."""

    name: str
    runs: int  # runs (or slots) that ended
    successes: int
    saved_by_retry: int  # successes that needed a retry
    late: int | None = None
    missed: int | None = None

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.runs if self.runs else None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "runs": self.runs, "successes": self.successes,
                "failures": self.runs - self.successes, "success_rate": self.success_rate,
                "saved_by_retry": self.saved_by_retry, "late": self.late, "missed": self.missed}


@dataclass(frozen=True)
class SuccessReport:
    since: timedelta
    as_of: datetime
    pipelines: tuple[Rate, ...]
    jobs: tuple[Rate, ...]
    overall: Rate

    def as_dict(self) -> dict[str, Any]:
        return {"since_seconds": self.since.total_seconds(), "as_of": self.as_of.isoformat(),
                "overall": self.overall.as_dict(), "pipelines": [r.as_dict() for r in self.pipelines],
                "jobs": [r.as_dict() for r in self.jobs]}


def success_rate(conn: Conn, since: timedelta, *, late_after: timedelta = timedelta(minutes=1),
                 jobs: Sequence[str] | None = None) -> SuccessReport:
    """The success figures of the last `since`, as of the database's clock; with `jobs`, the schedule's
    figures of those jobs only (their slots read by the primary key, not the whole window's; the overall
    late and missed counts are then theirs)."""
    with conn.transaction():
        row = conn.execute("SELECT now(), to_regclass('pgmill.runs') IS NOT NULL,"
                           " to_regclass('pgmill.expected_runs') IS NOT NULL").fetchone()
        assert row is not None
        as_of, has_runs, has_slots = row
        pipelines = tuple(
            Rate(p, int(n), int(ok), int(saved)) for p, n, ok, saved in conn.execute(
                "SELECT pipeline, count(*), count(*) FILTER (WHERE status = 'succeeded'),"
                " count(*) FILTER (WHERE status = 'succeeded' AND retries > 0)"
                " FROM pgmill.runs WHERE started_at >= %s AND status <> 'running'"
                " GROUP BY pipeline ORDER BY pipeline", (as_of - since,)).fetchall()) if has_runs else ()
        only = sql.SQL("") if jobs is None else sql.SQL(" AND job = ANY(%(jobs)s)")
        rates = tuple(
            Rate(j, int(n), int(ok), int(saved), int(late), int(missed)) for j, n, ok, saved, late, missed in
            conn.execute(sql.SQL(
                "SELECT job, count(*) FILTER (WHERE state IN ('succeeded', 'failed', 'timed_out')),"
                " count(*) FILTER (WHERE state = 'succeeded'),"
                " count(*) FILTER (WHERE state = 'succeeded' AND attempts > 1),"
                " count(*) FILTER (WHERE started_at - scheduled_for > %(late)s"
                "                  OR (state = 'pending' AND %(now)s - scheduled_for > %(late)s)),"
                " count(*) FILTER (WHERE state = 'missed')"
                " FROM pgmill.expected_runs WHERE scheduled_for >= %(start)s AND scheduled_for <= %(now)s{}"
                " GROUP BY job ORDER BY job").format(only),
                {"late": late_after, "now": as_of, "start": as_of - since, "jobs": list(jobs or ())}).fetchall()
        ) if has_slots and (jobs is None or jobs) else ()
    overall = Rate("overall", sum(r.runs for r in pipelines), sum(r.successes for r in pipelines),
                   sum(r.saved_by_retry for r in pipelines), sum(r.late or 0 for r in rates),
                   sum(r.missed or 0 for r in rates))
    return SuccessReport(since, as_of, pipelines, rates, overall)


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.2%}"


def format_success(report: SuccessReport) -> str:
    """A plain-text table of the report, for a terminal or a log."""
    header = ("", "runs", "succeeded", "success", "saved by retry", "late", "missed")
    lines: list[tuple[str, ...]] = [header]
    sections = (("pipeline", report.pipelines), ("job", report.jobs), ("", (report.overall,)))
    for kind, rows in sections:
        for r in rows:
            label = f"{kind} {r.name}" if kind else r.name
            lines.append((label, str(r.runs), str(r.successes), _pct(r.success_rate), str(r.saved_by_retry),
                          "-" if r.late is None else str(r.late), "-" if r.missed is None else str(r.missed)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [f"success over the last {_span(report.since)} (as of {report.as_of.astimezone(UTC):%Y-%m-%d %H:%M} UTC)"]
    for line in lines:
        text.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths,
                                                                                                 strict=True))))
    return "\n".join(text).rstrip() + "\n"


def _span(d: timedelta) -> str:
    s = int(d.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s and s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"
