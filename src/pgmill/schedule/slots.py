"""Expected runs as rows: pgmill.expected_runs, one row per (job, scheduled_for), planned ahead.

The primary key makes a slot exist once, whatever the clocks or daylight saving do; claiming takes a due
slot with `FOR UPDATE SKIP LOCKED` and moves it to `running` in the same transaction, so two `pgmill serve`
processes on one database never run one slot twice. A claim is a lease, renewed by the claimer while the
run goes on: a lease that lapses means the claimer died (SIGKILL, a lost machine), and the slot is run
again, up to `MAX_ATTEMPTS` times (the load resumes from its last checkpoint: exactly once holds).

Every function takes `now` from the caller, so tests and benchmarks can drive simulated time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from pgmill.config.duration import parse_duration
from pgmill.schedule.timetable import Timetable

MAX_ATTEMPTS = 3  # claims of one slot whose claimer died before finishing it
PLAN_BACKFILL = timedelta(days=7)  # after downtime, slots older than this are not even planned
PLAN_LIMIT = 10_000
_INSTANT = timedelta(microseconds=1)  # slots planned for one job in one call, so a fast schedule after a long stop stays bounded

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class Claim:
    """A slot this process now runs."""

    job: str
    scheduled_for: datetime
    attempt: int


def plan(conn: Conn, timetables: Mapping[str, Timetable], now: datetime, horizon: timedelta, *,
         prune: bool = False) -> int:
    """Create the slots of every job up to `now + horizon` (and always its next one, however far ahead), from
    the last one planned, so slots that fell while nothing ran exist too and the misfire policy decides on
    them. With `prune` (a service's first tick: the schedule is read once per start), also retire the slots
    that the schedule no longer gives. Returns how many slots were created."""
    until = now + horizon
    jobs = list(timetables)
    rows: list[tuple[str, datetime]] = []
    with conn.transaction():
        # each job's last slot: one backward probe of the primary key per job, whatever the history's size
        last = dict(conn.execute(
            "SELECT j, (SELECT max(scheduled_for) FROM pgmill.expected_runs e WHERE e.job = j)"
            " FROM unnest(%s::text[]) j", (jobs,)).fetchall())
        for job, tt in timetables.items():
            known = last.get(job)
            if known is not None and known >= until:
                continue  # planned far enough already: no cron arithmetic on most ticks
            # a job never planned starts now (a slot due this very instant included); one planned before
            # resumes after its last slot
            start = max(known, now - PLAN_BACKFILL) if known is not None else now - _INSTANT
            slots = tt.slots(start, until)[:PLAN_LIMIT]
            if not slots or slots[-1] <= now:
                slots.append(tt.next_after(max(start, now)))  # the next run is always known
            rows += [(job, s) for s in slots]
        created = 0
        if rows:
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO pgmill.expected_runs (job, scheduled_for) VALUES (%s, %s)"
                                " ON CONFLICT (job, scheduled_for) DO NOTHING", rows)
                created = max(cur.rowcount, 0)
        if prune:
            _prune(conn, timetables, now, until)
    return created


def _prune(conn: Conn, timetables: Mapping[str, Timetable], now: datetime, until: datetime) -> None:
    for job, tt in timetables.items():
        # a future slot the schedule no longer gives (the expression changed since it was planned)
        keep = tt.slots(now, until)
        keep.append(tt.next_after(max([now, *keep])))
        conn.execute("DELETE FROM pgmill.expected_runs WHERE job = %s AND state = 'pending' AND scheduled_for > %s"
                     " AND NOT (scheduled_for = ANY(%s))", (job, now, keep))
    # jobs no longer scheduled: their future slots go, their due ones are skipped with the reason
    jobs = list(timetables)
    conn.execute("DELETE FROM pgmill.expected_runs WHERE state = 'pending' AND scheduled_for > %s"
                 " AND NOT (job = ANY(%s))", (now, jobs))
    conn.execute("UPDATE pgmill.expected_runs SET state = 'skipped', finished_at = %s,"
                 " error = 'the job is no longer scheduled in pgmill.yaml'"
                 " WHERE state = 'pending' AND scheduled_for <= %s AND NOT (job = ANY(%s))", (now, now, jobs))


def recover(conn: Conn, now: datetime) -> int:
    """Slots whose claimer's lease lapsed: back to pending to run again, or failed after MAX_ATTEMPTS."""
    with conn.transaction():
        again = conn.execute(
            "UPDATE pgmill.expected_runs SET state = 'pending', claimed_by = NULL, lease_until = NULL,"
            " error = 'the process running it stopped before it finished; run again'"
            " WHERE state = 'running' AND lease_until < %s AND attempts < %s", (now, MAX_ATTEMPTS)).rowcount
        conn.execute(
            "UPDATE pgmill.expected_runs SET state = 'failed', finished_at = %s,"
            " error = format('the process running it stopped %%s times before it finished', attempts)"
            " WHERE state = 'running' AND lease_until < %s", (now, now))
    return max(again, 0)


def renew(conn: Conn, instance: str, now: datetime, lease: timedelta) -> None:
    """Extend the leases of the slots this instance is running."""
    with conn.transaction():
        conn.execute("UPDATE pgmill.expected_runs SET lease_until = %s WHERE claimed_by = %s AND state = 'running'",
                     (now + lease, instance))


def claim(conn: Conn, timetables: Mapping[str, Timetable], instance: str, now: datetime,
          lease: timedelta) -> list[Claim]:
    """Claim the slots due now, at most one per job, applying each job's misfire and overlap policies."""
    out: list[Claim] = []
    with conn.transaction():
        due = conn.execute(
            "SELECT job, scheduled_for, attempts FROM pgmill.expected_runs"
            " WHERE state = 'pending' AND scheduled_for <= %s AND job = ANY(%s)"
            " ORDER BY job, scheduled_for FOR UPDATE SKIP LOCKED", (now, list(timetables))).fetchall()
        if not due:
            return out
        busy = dict(conn.execute(
            "SELECT job, max(started_at) FROM pgmill.expected_runs WHERE state = 'running' AND job = ANY(%s)"
            " GROUP BY job", (list({r[0] for r in due}),)).fetchall())
        by_job: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
        for job, at, attempts in due:
            by_job[job].append((at, int(attempts)))
        for job, slots in by_job.items():
            spec = timetables[job].spec
            runnable, missed = _misfire(spec.misfire, parse_duration(spec.misfire_grace), slots, now)
            _close(conn, job, missed, "missed", now,
                   f"started too late (misfire_grace {spec.misfire_grace}, misfire: {spec.misfire})")
            if job in busy:
                # slots that came due while the previous run went on; a backlog from before it stays queued
                overlapping = [s for s in runnable if s[0] >= busy[job]]
                if spec.overlap == "skip":
                    _close(conn, job, overlapping, "skipped", now, "the previous run was still going (overlap: skip)")
                continue
            if runnable:
                at, attempts = runnable[0]
                conn.execute(
                    "UPDATE pgmill.expected_runs SET state = 'running', claimed_by = %s, claimed_at = %s,"
                    " started_at = %s, lease_until = %s, attempts = attempts + 1, error = NULL"
                    " WHERE job = %s AND scheduled_for = %s",
                    (instance, now, now, now + lease, job, at))
                out.append(Claim(job, at, attempts + 1))
    return out


def _misfire(policy: str, grace_s: float, slots: list[tuple[datetime, int]],
             now: datetime) -> tuple[list[tuple[datetime, int]], list[tuple[datetime, int]]]:
    """(slots to run in order, slots missed) among a job's due slots under its misfire policy."""
    grace = timedelta(seconds=grace_s)
    resumed = [s for s in slots if s[1] > 0]  # claimed before and given back: it runs again, however late
    fresh = [s for s in slots if s[1] == 0]
    late = [s for s in fresh if now - s[0] > grace]
    on_time = [s for s in fresh if now - s[0] <= grace]
    if not late or policy == "run_all":
        return resumed + fresh, []
    if policy == "skip":
        return resumed + on_time, late
    # run_once: the backlog collapses into one run, the newest late slot, unless one on time runs anyway
    if on_time:
        return resumed + on_time, late
    return resumed + late[-1:], late[:-1]


def _close(conn: Conn, job: str, slots: list[tuple[datetime, int]], state: str, now: datetime, why: str) -> None:
    if slots:
        conn.execute(
            "UPDATE pgmill.expected_runs SET state = %s, finished_at = %s, error = %s"
            " WHERE job = %s AND scheduled_for = ANY(%s)", (state, now, why, job, [s[0] for s in slots]))


def finish(conn: Conn, claim: Claim, instance: str, now: datetime, state: str, run_id: int | None,
           error: str | None) -> bool:
    """Record how a claimed slot ended; False if this instance no longer holds it (its lease lapsed and
    another claimed it), in which case nothing is written."""
    with conn.transaction():
        n = conn.execute(
            "UPDATE pgmill.expected_runs SET state = %s, finished_at = %s, run_id = %s, error = %s,"
            " lease_until = NULL WHERE job = %s AND scheduled_for = %s AND claimed_by = %s AND state = 'running'",
            (state, now, run_id, error, claim.job, claim.scheduled_for, instance)).rowcount
    return n == 1


def release(conn: Conn, claim: Claim, instance: str, why: str) -> None:
    """Give a claimed slot back (this service is stopping and its run was interrupted): the next service
    to start runs it again, and the run resumes from its last checkpoint."""
    with conn.transaction():
        conn.execute(
            "UPDATE pgmill.expected_runs SET state = 'pending', claimed_by = NULL, lease_until = NULL, error = %s"
            " WHERE job = %s AND scheduled_for = %s AND claimed_by = %s AND state = 'running'",
            (why, claim.job, claim.scheduled_for, instance))


def overview(conn: Conn, now: datetime, late_after: timedelta = timedelta(minutes=1)) -> list[dict[str, Any]]:
    """Per job: its next expected run, the slots late now (due, not started, after `late_after`), how the last
    one ended, and what was missed or failed over the last day. Read-only, index-backed."""
    rows = conn.execute(
        "SELECT j.job,"
        " (SELECT min(scheduled_for) FROM pgmill.expected_runs e WHERE e.job = j.job AND e.state = 'pending'"
        "   AND e.scheduled_for > %(now)s) AS next_run,"
        " (SELECT array_agg(scheduled_for ORDER BY scheduled_for) FROM pgmill.expected_runs e WHERE e.job = j.job"
        "   AND e.state = 'pending' AND e.scheduled_for < %(late)s) AS late,"
        " (SELECT row(scheduled_for, state, run_id, error)::text FROM pgmill.expected_runs e WHERE e.job = j.job"
        "   AND e.state NOT IN ('pending', 'running') AND e.scheduled_for <= %(now)s"
        "   ORDER BY scheduled_for DESC LIMIT 1) AS last,"
        " (SELECT count(*) FROM pgmill.expected_runs e WHERE e.job = j.job AND e.state IN ('missed', 'skipped')"
        "   AND e.scheduled_for > %(day)s) AS missed_24h,"
        " (SELECT count(*) FROM pgmill.expected_runs e WHERE e.job = j.job AND e.state IN ('failed', 'timed_out')"
        "   AND e.scheduled_for > %(day)s) AS failed_24h,"
        " (SELECT count(*) FROM pgmill.expected_runs e WHERE e.job = j.job AND e.state = 'running') AS running"
        " FROM (SELECT DISTINCT job FROM pgmill.expected_runs) j ORDER BY j.job",
        {"now": now, "late": now - late_after, "day": now - timedelta(days=1)}).fetchall()
    return [{"job": r[0], "next_run": r[1].isoformat() if r[1] else None,
             "late": [t.isoformat() for t in r[2] or ()], "last": r[3], "missed_24h": int(r[4]),
             "failed_24h": int(r[5]), "running": int(r[6])} for r in rows]
