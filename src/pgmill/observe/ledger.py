"""The run ledger: pgmill.runs (one row per pipeline run) and pgmill.run_steps."""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

COUNTERS = (
    "rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_quarantined",
    "rows_duplicate", "rows_warned", "bytes_read", "batches", "rows_deleted", "rows_superseded",
)
#: where every record read ends up: rows_read is their sum (the accounting identity). rows_deleted and
#: rows_superseded are change data capture's: deletions applied, and changes a later change to the same key
#: replaced within one batch.
ACCOUNTED = ("rows_inserted", "rows_updated", "rows_unchanged", "rows_quarantined", "rows_duplicate",
             "rows_deleted", "rows_superseded")


@dataclass
class Counts:
    rows_read: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_unchanged: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    rows_warned: int = 0
    bytes_read: int = 0
    batches: int = 0
    rows_deleted: int = 0
    rows_superseded: int = 0

    def add(self, other: Counts) -> None:
        for k in COUNTERS:
            setattr(self, k, getattr(self, k) + getattr(other, k))

    @property
    def accounted(self) -> int:
        return sum(getattr(self, k) for k in ACCOUNTED)

    def balanced(self) -> bool:
        return self.rows_read == self.accounted


@dataclass
class RunRecord:
    run_id: int
    pipeline: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    retries: int
    error: str | None
    counts: Counts = field(default_factory=Counts)
    mode: str | None = None
    target_table: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(d.pop("counts"))
        for k in ("started_at", "finished_at"):
            d[k] = d[k].isoformat() if d[k] else None
        d["seconds"] = (self.finished_at - self.started_at).total_seconds() if self.finished_at else None
        return d


def new_run_id(conn: psycopg.Connection[Any]) -> int:
    """A run id for `start_run`, drawn before the run exists: a retried start then opens the same run."""
    row = conn.execute("SELECT nextval(pg_get_serial_sequence('pgmill.runs', 'run_id'))").fetchone()
    assert row is not None
    return int(row[0])


def start_run(conn: psycopg.Connection[Any], pipeline: str, mode: str, table: str,
              run_id: int | None = None) -> int:
    """Open a run; with `run_id` (from new_run_id) a second call is a no-op, so it may be retried after
    a connection lost while committing."""
    with conn.transaction():
        if run_id is not None:
            conn.execute(
                "INSERT INTO pgmill.runs (run_id, pipeline, status, mode, target_table, host, pid)"
                " VALUES (%s, %s, 'running', %s, %s, %s, %s) ON CONFLICT (run_id) DO NOTHING",
                (run_id, pipeline, mode, table, socket.gethostname(), os.getpid()),
            )
            return run_id
        row = conn.execute(
            "INSERT INTO pgmill.runs (pipeline, status, mode, target_table, host, pid)"
            " VALUES (%s, 'running', %s, %s, %s, %s) RETURNING run_id",
            (pipeline, mode, table, socket.gethostname(), os.getpid()),
        ).fetchone()
    assert row is not None
    return int(row[0])


def add_counts(conn: psycopg.Connection[Any], run_id: int, c: Counts) -> None:
    """Add a checkpoint's counts to the run (called inside the checkpoint's transaction)."""
    sets = sql.SQL(", ").join(sql.SQL("{0} = {0} + %s").format(sql.Identifier(k)) for k in COUNTERS)
    conn.execute(
        sql.SQL("UPDATE pgmill.runs SET {} WHERE run_id = %s").format(sets),
        [*(getattr(c, k) for k in COUNTERS), run_id],
    )


def add_retry(conn: psycopg.Connection[Any], run_id: int) -> None:
    with conn.transaction():
        conn.execute("UPDATE pgmill.runs SET retries = retries + 1 WHERE run_id = %s", (run_id,))


def finish_run(conn: psycopg.Connection[Any], run_id: int, status: str, error: str | None = None,
               extra_retries: int = 0) -> None:
    """Close the run; `extra_retries` are retries made outside the load itself (setup, the ledger). Closing
    it the same way again changes nothing, so it may be retried after a connection lost while committing."""
    with conn.transaction():
        conn.execute(
            "UPDATE pgmill.runs SET status = %s, error = %s, finished_at = clock_timestamp(),"
            " retries = retries + %s WHERE run_id = %s"
            " AND (finished_at IS NULL OR (status, error) IS DISTINCT FROM (%s, %s))",
            (status, error, extra_retries, run_id, status, error),
        )


def abandon_stale(conn: psycopg.Connection[Any], pipeline: str, keep: int | None = None) -> int:
    """Runs left 'running' by a process that died; called while holding the pipeline's lock. `keep`: the
    run being set up now (a retried setup may have opened it already)."""
    with conn.transaction():
        cur = conn.execute(
            "UPDATE pgmill.runs SET status = 'abandoned', finished_at = coalesce(finished_at, clock_timestamp()),"
            " error = coalesce(error, 'the process running it stopped before it finished;"
            " its committed checkpoints stand and the next run resumed after them')"
            " WHERE pipeline = %s AND status = 'running' AND run_id IS DISTINCT FROM %s",
            (pipeline, keep),
        )
    return cur.rowcount


def step(conn: psycopg.Connection[Any], run_id: int, name: str, status: str, started_at: datetime,
         rows: int | None = None, detail: dict[str, Any] | None = None) -> None:
    with conn.transaction():
        conn.execute(
            "INSERT INTO pgmill.run_steps (run_id, name, status, started_at, finished_at, rows, detail)"
            " VALUES (%s, %s, %s, %s, clock_timestamp(), %s, %s)",
            (run_id, name, status, started_at, rows, Jsonb(detail) if detail is not None else None),
        )


def step_once(conn: psycopg.Connection[Any], run_id: int, name: str, status: str, started_at: datetime,
              rows: int | None = None, detail: dict[str, Any] | None = None) -> None:
    """Record step `name` of the run unless the run has one by that name: a step written after the run
    (the checks, the models, the re-tuning that followed its load) may then be retried after a connection
    lost while committing."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO pgmill.run_steps (run_id, name, status, started_at, finished_at, rows, detail)"
            " SELECT %s, %s, %s, %s, clock_timestamp(), %s, %s WHERE NOT EXISTS"
            " (SELECT 1 FROM pgmill.run_steps WHERE run_id = %s AND name = %s)",
            (run_id, name, status, started_at, rows, Jsonb(detail) if detail is not None else None, run_id, name),
        )


def read_run(conn: psycopg.Connection[Any], run_id: int) -> RunRecord:
    rows = _select(conn, "WHERE run_id = %s", (run_id,), 1)
    return rows[0]


def recent_runs(conn: psycopg.Connection[Any], pipeline: str | None = None, limit: int = 20) -> list[RunRecord]:
    if pipeline:
        return _select(conn, "WHERE pipeline = %s", (pipeline,), limit)
    return _select(conn, "", (), limit)


def _select(conn: psycopg.Connection[Any], where: str, params: tuple[Any, ...], limit: int) -> list[RunRecord]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            sql.SQL("SELECT * FROM pgmill.runs {} ORDER BY run_id DESC LIMIT %s").format(sql.SQL(where)),
            (*params, limit),
        )
        out = []
        for r in cur.fetchall():
            counts = Counts(**{k: int(r[k]) for k in COUNTERS})
            out.append(RunRecord(r["run_id"], r["pipeline"], r["status"], r["started_at"], r["finished_at"],
                                 r["retries"], r["error"], counts, r["mode"], r["target_table"]))
    return out
