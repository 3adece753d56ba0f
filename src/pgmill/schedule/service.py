"""The service loop behind `pgmill serve`: plan the slots, claim what is due, run it, record how it ended.

One tick, every `tick_seconds`:

1. collect the runs that ended (and interrupt those past their timeout);
2. renew this instance's leases, give back slots whose claimer died, plan slots ahead;
3. claim the slots due now (misfire and overlap policies applied in pgmill.schedule.slots) and start them;
4. record the tick in pgmill.service_instances, then run the hooks (alert evaluation, heartbeat).

A tick that cannot reach the database is skipped and counted; the runs already going on go on, and what
fell due meanwhile is claimed, per its misfire policy, once the database answers again. Nothing the
service knows lives only in its memory except the outcomes of runs that ended while the database was
away, which are written at the next tick that reaches it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from pgmill.config.duration import parse_duration
from pgmill.db.connect import close_quietly
from pgmill.db.migrations import migrate
from pgmill.errors import DatabaseUnavailable
from pgmill.project import ProjectContext
from pgmill.retry import describe, is_transient
from pgmill.schedule import slots
from pgmill.schedule.follow import Followers
from pgmill.schedule.jobs import Job, scheduled_jobs
from pgmill.schedule.runner import KILL_AFTER_S, Handle, Outcome, ProcessRunner, Runner

log = logging.getLogger("pgmill.serve")

Hook = Callable[[ProjectContext, datetime], None]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Running:
    claim: slots.Claim
    job: Job
    handle: Handle
    deadline: datetime
    timed_out: bool = False


@dataclass
class TickReport:
    at: datetime
    skipped: bool = False
    error: str | None = None
    started: list[str] = field(default_factory=list)  # "job@slot"
    finished: list[str] = field(default_factory=list)


class Service:
    """Runs a project's schedule. `tick()` does one round; `serve(stop)` ticks until `stop` is set."""

    def __init__(self, ctx: ProjectContext, *, runner: Runner | None = None,
                 clock: Callable[[], datetime] = utcnow, tick_seconds: float = 5.0,
                 lease: timedelta | None = None, horizon: timedelta = timedelta(minutes=15),
                 hooks: Sequence[Hook] = ()) -> None:
        self.ctx = ctx
        self.jobs = scheduled_jobs(ctx.config)
        self.timetables = {jid: job.timetable for jid, job in self.jobs.items()}
        self.runner = runner or ProcessRunner(ctx.dir)
        self.followers = Followers(self.runner, [n for n, p in ctx.config.pipelines.items() if p.follow])
        self.clock = clock
        self.tick_seconds = tick_seconds
        # long enough for a few missed renewals (a slow tick, a short database hiccup); a lapsed lease means
        # the claimer died, and its slot runs again
        self.lease = lease or timedelta(seconds=max(10.0, 12 * tick_seconds))
        self.horizon = horizon
        self.hooks = list(hooks)
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.running: dict[tuple[str, datetime], Running] = {}
        self.ticks = 0
        self.ticks_skipped = 0
        self.db_reconnects = 0
        self.hook_failures = 0
        self._conn: psycopg.Connection[Any] | None = None
        self._lost_connection = False
        self._registered = False
        self.stopping = False

    # ------------------------------------------------------------ one tick

    def tick(self) -> TickReport:
        now = self.clock()
        report = TickReport(now)
        if not self.stopping:
            self.followers.keep()
        self._reap(now, report)
        try:
            conn = self._connection()
            self._record_outcomes(conn, now, report)
            slots.renew(conn, self.instance, now, self.lease)
            slots.recover(conn, now)
            slots.plan(conn, self.timetables, now, self.horizon, prune=self.ticks == 0)
            if not self.stopping:
                for c in slots.claim(conn, self.timetables, self.instance, now, self.lease):
                    self._start(conn, c, now, report)
            self.ticks += 1
            self._record_tick(conn, now)
        except Exception as exc:
            if not (is_transient(exc) or isinstance(exc, psycopg.OperationalError)):
                raise
            self.ticks_skipped += 1
            self._drop_connection()
            report.skipped, report.error = True, describe(exc)
            log.warning("tick skipped: the database did not answer (%s); runs in flight go on", report.error)
            return report
        for hook in self.hooks:
            try:
                hook(self.ctx, now)
            except Exception as exc:  # a hook (alerts, heartbeat) never stops the schedule
                self.hook_failures += 1
                log.warning("%s failed: %s", getattr(hook, "__name__", "hook"), describe(exc))
        return report

    def _reap(self, now: datetime, report: TickReport) -> None:
        for r in self.running.values():
            if r.handle.poll() is None and now >= r.deadline and not r.timed_out:
                r.timed_out = True
                log.warning("%s (slot %s) passed its timeout %s: interrupting it", r.job.id,
                            r.claim.scheduled_for.isoformat(), r.job.spec.timeout)
                r.handle.interrupt()

    def _record_outcomes(self, conn: psycopg.Connection[Any], now: datetime, report: TickReport) -> None:
        for key, r in list(self.running.items()):
            out = r.handle.poll()
            if out is None:
                continue
            state, error = _state(r, out)
            slots.finish(conn, r.claim, self.instance, now, state, out.run_id, error)
            del self.running[key]
            report.finished.append(f"{r.job.id}@{r.claim.scheduled_for.isoformat()}:{state}")
            (log.info if state == "succeeded" else log.warning)(
                "%s (slot %s) %s%s", r.job.id, r.claim.scheduled_for.isoformat(), state, f": {error}" if error else "")

    def _start(self, conn: psycopg.Connection[Any], c: slots.Claim, now: datetime, report: TickReport) -> None:
        job = self.jobs[c.job]
        try:
            handle = self.runner.start(job.command)
        except OSError as exc:
            slots.finish(conn, c, self.instance, now, "failed", None, f"could not start: {exc}")
            return
        deadline = now + timedelta(seconds=parse_duration(job.spec.timeout))
        self.running[(c.job, c.scheduled_for)] = Running(c, job, handle, deadline)
        report.started.append(f"{c.job}@{c.scheduled_for.isoformat()}")
        log.info("%s (slot %s) started%s", c.job, c.scheduled_for.isoformat(),
                 f", attempt {c.attempt}" if c.attempt > 1 else "")

    def _record_tick(self, conn: psycopg.Connection[Any], now: datetime) -> None:
        with conn.transaction():
            if not self._registered:
                conn.execute(
                    "INSERT INTO pgmill.service_instances (instance, host, pid, tick_seconds) VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT (instance) DO NOTHING",
                    (self.instance, socket.gethostname(), os.getpid(), self.tick_seconds))
                self._registered = True
            conn.execute(
                "UPDATE pgmill.service_instances SET last_tick_at = %s, ticks = %s, ticks_skipped = %s,"
                " db_reconnects = %s, stopped_at = NULL WHERE instance = %s",
                (now, self.ticks, self.ticks_skipped, self.db_reconnects, self.instance))

    # ------------------------------------------------------------ the connection

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn = self.ctx.target.connect(application_name="pgmill serve")
        migrate(conn)
        if self._lost_connection:
            self.db_reconnects += 1
            self._lost_connection = False
        self._conn = conn
        return conn

    def _drop_connection(self) -> None:
        close_quietly(self._conn)
        self._conn = None
        self._lost_connection = True

    # ------------------------------------------------------------ loops

    def serve(self, stop: threading.Event) -> None:
        """Tick until `stop` is set, then stop the runs in flight cleanly (see `shutdown`)."""
        log.info("serving the schedule of %d jobs as %s, a tick every %.0f s", len(self.jobs), self.instance,
                 self.tick_seconds)
        while not stop.is_set():
            started = time.monotonic()
            self.tick()
            stop.wait(max(0.0, self.tick_seconds - (time.monotonic() - started)))
        self.shutdown()

    def run_due(self, *, poll_s: float = 0.2) -> TickReport:
        """`pgmill serve --once`: claim and run what is due now, wait for those runs, record them, return.
        Followed pipelines are not started: they never end."""
        self.followers = Followers(self.runner, [])
        report = self.tick()
        if report.skipped:
            raise DatabaseUnavailable(f"the database did not answer: {report.error}")
        self.stopping = True  # no new claims from here on
        while self.running:
            time.sleep(poll_s)
            later = self.tick()
            report.finished += later.finished
        self._close()
        return report

    def shutdown(self, grace_s: float = KILL_AFTER_S + 5) -> None:
        """Stop claiming; interrupt the runs in flight (each rolls back its batch in flight: committed
        checkpoints stay); record those that finished, give the others back to run again at the next start."""
        self.stopping = True
        for r in self.running.values():
            r.handle.interrupt()
        self.followers.stop(grace_s)
        deadline = time.monotonic() + grace_s
        while any(r.handle.poll() is None for r in self.running.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        try:
            conn = self._connection()
            now = self.clock()
            for r in list(self.running.values()):
                out = r.handle.poll()
                if out is not None and out.ok:
                    slots.finish(conn, r.claim, self.instance, now, "succeeded", out.run_id, None)
                else:
                    slots.release(conn, r.claim, self.instance,
                                  "interrupted: pgmill serve stopped; it runs again at the next start")
            with conn.transaction():
                conn.execute("UPDATE pgmill.service_instances SET stopped_at = %s WHERE instance = %s",
                             (now, self.instance))
        except psycopg.Error as exc:  # the leases lapse instead, and the next service runs them again
            log.warning("could not record the stop (%s); the slots in flight run again once their lease lapses",
                        describe(exc))
        self.running.clear()
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _state(r: Running, out: Outcome) -> tuple[str, str | None]:
    if r.timed_out:
        return "timed_out", f"cancelled after its timeout ({r.job.spec.timeout})" + (
            f": {out.error}" if out.error else "")
    return ("succeeded", None) if out.ok else ("failed", out.error)
