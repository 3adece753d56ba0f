"""Measuring what a command costs, and recording it in pgmill.run_costs.

`@metered("run")` on a library entry point that takes the project first (orchestrate.run_project) measures
the whole call with a `CostMeter`, shares the drivers among the runs it made (pgmill.observe.cost_model)
and records one row per run, plus one for the work outside any run. Measuring never fails the command:
when it cannot measure or record, the command's result stands and `CostMeter.error` says why.

What is measured, and how far to trust it:

- CPU: `getrusage(RUSAGE_SELF)`, user + system, of the whole process: every thread pgmill starts (the
  loaders, pyarrow's and polars' pools, the sampler) and whatever else the process does meanwhile. Not
  the interpreter's start and the imports before the command (about a second in a fresh `pgmill`).
- Database time: the increase of `total_exec_time` in pg_stat_statements over this database's and this
  user's statements, when the extension is there (created when the library is preloaded, as the tuner
  does): exact to the statement and recorded when it ends, but statements that fail are not counted and
  other sessions of the same user in the same database are. Otherwise `active_time` of
  pg_stat_database: every session's time in statements in this database, whoever runs them, reported by
  each backend within a second of going idle and when it closes. The measured difference between the two
  on pgmill's own work is a few percent (docs/cost.md); `db_source` says which one a row has.
- Bytes written: the WAL the server wrote (`pg_current_wal_lsn`), cluster-wide. Under wal_level=minimal
  (the embedded default) rows written into a table created or truncated in the same transaction write no
  WAL and are not counted.
- Storage: `pg_total_relation_size` of every table, and `pg_database_size`, before and after.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from psycopg import sql

from pgmill.config.cost import CostConfig
from pgmill.db.connect import close_quietly
from pgmill.db.migrations import migrate
from pgmill.errors import DatabaseError, DatabaseUnavailable
from pgmill.observe import cost_probe as probe
from pgmill.observe.cost_model import (
    Sample,
    Span,
    compute_usd,
    database_usd,
    share,
    split_storage,
    valid_series,
)
from pgmill.project import ProjectContext

SAMPLE_S = 1.0  # seconds between samples: an interval's drivers go to the runs in progress during it
JOIN_S = 15.0  # how long the end of a command waits for a sampler stuck in a query

P = ParamSpec("P")
R = TypeVar("R")

# one meter at a time in a process: CPU is measured for the whole process, so a second meter (nested, or
# on another thread) would count the same seconds twice; it measures nothing instead
_ONE_AT_A_TIME = threading.Lock()


@dataclass
class CostRow:
    """What one run (or, with `run_id` None, the command outside any run) used."""

    run_id: int | None
    job: str
    started_at: datetime
    finished_at: datetime
    cpu_seconds: float
    db_seconds: float | None
    db_source: str | None
    bytes_written: int | None
    storage_delta_bytes: int | None
    bytes_processed: int = 0


def metered(job: str) -> Callable[[Callable[Concatenate[ProjectContext, P], R]],
                                  Callable[Concatenate[ProjectContext, P], R]]:
    """Measure every call of the decorated function (its first argument is the project) as `job`."""

    def wrap(fn: Callable[Concatenate[ProjectContext, P], R]) -> Callable[Concatenate[ProjectContext, P], R]:
        @functools.wraps(fn)
        def inner(ctx: ProjectContext, /, *args: P.args, **kwargs: P.kwargs) -> R:
            with CostMeter(ctx, job):
                return fn(ctx, *args, **kwargs)

        return inner

    return wrap


class CostMeter:
    """Measure the drivers of the work done inside `with`, share them among the runs pgmill.runs shows
    this process made meanwhile, and record them. A meter while another one is measuring in the same
    process (nested, or on another thread) measures nothing: the first one has it all. Neither does one
    whose project says `cost: {measure: false}`."""

    def __init__(self, ctx: ProjectContext, job: str, *, sample_s: float = SAMPLE_S) -> None:
        self.ctx = ctx
        self.job = job
        self.sample_s = sample_s
        self.rows: list[CostRow] = []
        self.invocation: int | None = None
        self.error: str | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._holding = False
        self._last_run = 0
        self._tables: dict[tuple[str, str], int] = {}
        self._db_bytes: int | None = None
        self._pgss: sql.Composable | None = None
        self._conn_failed = False

    def __enter__(self) -> CostMeter:
        if not self.ctx.config.cost.measure or not _ONE_AT_A_TIME.acquire(blocking=False):
            return self
        self._holding = True
        try:
            self._start()
        except DatabaseError as exc:
            self._close()
            if not isinstance(exc, DatabaseUnavailable) and self._conn_failed:
                # bad credentials, no such database: the command would fail the same way on its own first
                # connection; failing here keeps it to one attempt and one message
                self._release()
                raise
            self.error = f"cost not measured: {exc}"
        except Exception as exc:  # measuring must never stop the work it measures
            self.error = f"cost not measured: {exc}"
            self._close()
        return self

    def __exit__(self, *_: object) -> None:
        if not self._holding:
            return
        try:
            if self._conn is not None:
                self._finish()
        except Exception as exc:  # the command's own outcome is what the caller needs
            self.error = f"cost not recorded: {exc}"
        finally:
            self._close()
            self._release()

    def _release(self) -> None:
        if self._holding:
            self._holding = False
            _ONE_AT_A_TIME.release()

    def db_seconds_by_source(self) -> dict[str, float | None]:
        """The command's database time by each source the meter samples (None: not measured), to compare
        them; the rows carry the one chosen."""
        out: dict[str, float | None] = {}
        for key, source in (("statements", "pg_stat_statements"), ("active", "pg_stat_database")):
            ok = valid_series(self._samples, key)
            first, last = self._samples[0].values[key] if ok else 0, self._samples[-1].values[key] if ok else 0
            out[source] = (float(last or 0) - float(first or 0)) / 1000.0 if ok else None
        return out

    # ---------------------------------------------------------------- measuring

    def _start(self) -> None:
        self._conn_failed = True
        conn = self._conn = self.ctx.target.connect(autocommit=True, application_name="pgmill cost")
        self._conn_failed = False
        conn.execute("SET statement_timeout = '10s'")
        migrate(conn)
        self._pgss = probe.statement_time_sql(conn)
        row = conn.execute("SELECT coalesce(max(run_id), 0) FROM pgmill.runs").fetchone()
        self._last_run = int(row[0]) if row else 0
        self._tables = probe.table_sizes(conn)
        self._db_bytes = probe.database_size(conn)
        self._samples.append(self._sample(conn))
        self._thread = threading.Thread(target=self._sampler, name="pgmill-cost", daemon=True)
        self._thread.start()

    def _sampler(self) -> None:
        conn = self._conn
        while conn is not None and not self._stop.wait(self.sample_s):
            try:
                self._samples.append(self._sample(conn))
            except Exception:  # the connection went away: the end of the command reconnects
                return

    def _sample(self, conn: psycopg.Connection[Any]) -> Sample:
        cpu = probe.cpu_seconds()
        pgss = self._pgss if self._pgss is not None else sql.SQL("NULL::float8, NULL::bigint")
        row = conn.execute(sql.SQL(
            "SELECT extract(epoch FROM clock_timestamp())::float8,"
            " CASE WHEN pg_is_in_recovery() THEN NULL"
            " ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 END,"
            " (SELECT active_time FROM pg_stat_database WHERE datname = current_database())::float8, {}"
        ).format(pgss)).fetchone()
        assert row is not None
        at, wal, active, statements, dealloc = row
        return Sample(float(at), {"cpu": cpu, "wal": wal, "active": active, "statements": statements,
                                  "dealloc": None if dealloc is None else float(dealloc)})

    def _finish(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(JOIN_S)
            if self._thread.is_alive():
                raise RuntimeError("the database did not answer the cost sampler in time")
        conn = self._usable_connection()
        if conn is None:
            raise RuntimeError("the database is not running")
        self._samples.append(self._sample(conn))
        rows, db_bytes = self._rows(conn)
        files = probe.files_bytes(self.ctx)
        self.invocation = record_costs(conn, self.ctx.config.cost, rows, db_bytes, files)
        self.rows = rows

    def _usable_connection(self) -> psycopg.Connection[Any] | None:
        """The meter's connection, or a new one if it broke (but never starting a stopped embedded server)."""
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self._close()
        embedded = self.ctx.target.embedded
        if embedded is not None and not embedded.status().running:
            return None
        conn = self._conn = self.ctx.target.connect(autocommit=True, application_name="pgmill cost")
        conn.execute("SET statement_timeout = '10s'")
        return conn

    def _rows(self, conn: psycopg.Connection[Any]) -> tuple[list[CostRow], int | None]:
        samples, source = _db_series(self._samples)
        t0, t1 = samples[0].at, samples[-1].at
        runs = conn.execute(
            "SELECT run_id, pipeline, extract(epoch FROM started_at)::float8,"
            " extract(epoch FROM coalesce(finished_at, clock_timestamp()))::float8, bytes_read, target_table"
            " FROM pgmill.runs WHERE run_id > %s AND host = %s AND pid = %s ORDER BY run_id",
            (self._last_run, socket.gethostname(), os.getpid())).fetchall()
        spans = [Span(max(t0, float(r[2])), min(t1, float(r[3]))) for r in runs]
        # other processes' runs in progress meanwhile take their part of the database's figures (their own
        # meters count it), not of this process's CPU
        others = conn.execute(
            "SELECT extract(epoch FROM started_at)::float8,"
            " extract(epoch FROM coalesce(finished_at, clock_timestamp()))::float8, status, host, pid"
            " FROM pgmill.runs WHERE NOT (run_id > %s AND host = %s AND pid = %s)"
            " AND (status = 'running' OR finished_at > %s) AND started_at < %s",
            (self._last_run, socket.gethostname(), os.getpid(), datetime.fromtimestamp(t0, UTC),
             datetime.fromtimestamp(t1, UTC))).fetchall()
        foreign = [Span(max(t0, float(a)), min(t1, float(b))) for a, b, status, host, pid in others
                   if status != "running" or host != socket.gethostname() or probe.alive(pid)]
        shares = share(samples, spans, ("cpu",))
        server = share(samples, [*spans, *foreign], ("db", "wal"))
        for mine, theirs in zip(shares.spans, server.spans, strict=False):  # foreign spans come last
            mine.update(theirs)
        shares.own.update(server.own)
        tables = probe.table_sizes(conn)
        db_bytes = probe.database_size(conn)
        total = None if db_bytes is None or self._db_bytes is None else db_bytes - self._db_bytes
        direct = probe.direct_growth([str(r[5] or "") for r in runs], self._tables, tables)
        storage, own_storage = split_storage(total, direct, shares.wall, shares.own_wall)
        rows: list[CostRow] = []
        for r, span, part, grown in zip(runs, spans, shares.spans, storage, strict=True):
            rows.append(_row(int(r[0]), str(r[1]), span.start, span.end, part, source, grown, int(r[4] or 0)))
        if shares.own_wall > 0 or not runs:
            rows.append(_row(None, self.job, t0, t1, shares.own, source, own_storage, 0))
        return rows, db_bytes

    def _close(self) -> None:
        close_quietly(self._conn)
        self._conn = None


# ---------------------------------------------------------------- recording


def record_costs(conn: psycopg.Connection[Any], cfg: CostConfig, rows: Sequence[CostRow],
                 database_bytes: int | None, files: int | None) -> int:
    """Write one measured command's rows (sharing one `invocation` id, returned) with their dollars at
    today's prices, and the sizes of the database and of pgmill's files when it ended."""
    migrate(conn)
    with conn.transaction():
        row = conn.execute("SELECT nextval('pgmill.cost_invocation_id')").fetchone()
        assert row is not None
        invocation = int(row[0])
        for r in rows:
            conn.execute(
                "INSERT INTO pgmill.run_costs (invocation, run_id, job, started_at, finished_at, cpu_seconds,"
                " db_seconds, db_source, bytes_written, storage_delta_bytes, bytes_processed, database_bytes,"
                " files_bytes, compute_usd, database_usd) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                " %s, %s, %s, %s) ON CONFLICT (run_id) DO NOTHING",
                (invocation, r.run_id, r.job, r.started_at, r.finished_at, r.cpu_seconds, r.db_seconds,
                 r.db_source if r.db_seconds is not None else None, r.bytes_written, r.storage_delta_bytes,
                 r.bytes_processed, database_bytes, files, compute_usd(r.cpu_seconds, cfg),
                 database_usd(r.db_seconds, cfg)))
    return invocation


# ---------------------------------------------------------------- helpers


def _row(run_id: int | None, job: str, start: float, end: float, part: dict[str, float | None],
         source: str, storage: int | None, processed: int) -> CostRow:
    db = part.get("db")
    wal = part.get("wal")
    return CostRow(run_id, job, datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(max(start, end), UTC),
                   max(0.0, part.get("cpu") or 0.0), None if db is None else max(0.0, db),
                   source if db is not None else None, None if wal is None else max(0, round(wal)),
                   storage, processed)


def _db_series(samples: list[Sample]) -> tuple[list[Sample], str]:
    """The samples with one `db` series in seconds, and its source: pg_stat_statements when its figures
    hold for the whole command (no reset, no entry evicted), else pg_stat_database.active_time."""
    if valid_series(samples, "statements") and len({s.values.get("dealloc") for s in samples}) == 1:
        key, source = "statements", "pg_stat_statements"
    else:
        key, source = "active", "pg_stat_database"
    out = []
    for s in samples:
        v = s.values.get(key)
        out.append(Sample(s.at, {"cpu": s.values["cpu"], "wal": s.values["wal"],
                                 "db": None if v is None else float(v) / 1000.0}))
    return out, source


