"""One writer per pipeline: a session advisory lock, and a fencing token for when the lock is lost.

The lock lives on its own connection. If that connection dies, Postgres releases the lock and another run
may take it while this run's loaders are still committing. So the lock alone is not enough: the run also
writes its id into `pgmill.state.owner_run`, and every checkpoint transaction checks it `FOR KEY SHARE`. A
new run claims the row `FOR UPDATE`, which waits for the checkpoints in flight; after the claim no
checkpoint of the old run can commit. (KEY SHARE, not SHARE: parallel checkpoints of one run still update
the row's cursor without deadlocking each other.)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from pgmill.db.migrations import migrate
from pgmill.errors import PipelineLocked
from pgmill.project import ProjectContext

_LOCK_NAMESPACE = 0x706D  # "pm": advisory locks of pgmill pipelines


def take(conn: psycopg.Connection[Any], name: str, wait: bool) -> None:
    row = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_LOCK_NAMESPACE, name)).fetchone()
    if row and row[0]:
        return
    if not wait:
        raise PipelineLocked(
            f"pipeline {name} is already running (another pgmill process holds its lock); "
            "wait for it, or pass --wait to queue behind it"
        )
    conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (_LOCK_NAMESPACE, name))


class PipelineLock:
    """The pipeline's lock connection: reconnects and takes the lock again (never waiting) when the
    connection was lost, and refuses to go on if another run became the owner meanwhile."""

    def __init__(self, ctx: ProjectContext, name: str, wait: bool) -> None:
        self.ctx = ctx
        self.name = name
        self.wait = wait
        self.run_id: int | None = None
        self.retries = 0  # retries of setup and ledger work, added to the run when it is closed
        self._conn: psycopg.Connection[Any] | None = None
        self._session: tuple[int, datetime] | None = None  # (pid, backend_start) of the session holding the lock

    def count_retry(self, *_: object) -> None:
        """An `on_retry` for RetryPolicy.call: one more retry to add to the run."""
        self.retries += 1

    def conn(self) -> psycopg.Connection[Any]:
        c = self._conn
        if c is not None and not c.closed and not c.broken:
            return c
        self.close()
        c = self.ctx.target.connect(autocommit=True, application_name=f"pgmill lock {self.name}")
        try:
            migrate(c)
            if self._session is not None:
                _end_orphan(c, self._session)
            take(c, self.name, self.wait and self.run_id is None)
            self._session = _session(c)
            if self.run_id is not None:
                owner = _owner(c, self.name)
                if owner != self.run_id:
                    raise PipelineLocked(f"pipeline {self.name}: run {owner} took over while run {self.run_id} "
                                         "had lost its lock; this run stops, its committed checkpoints stand")
        except BaseException:
            c.close()
            raise
        self._conn = c
        return c

    def claim(self, run_id: int) -> None:
        """Make `run_id` the pipeline's owner; waits for checkpoints of an earlier owner still in flight."""
        c = self.conn()
        with c.transaction():
            c.execute("SELECT 1 FROM pgmill.state WHERE pipeline = %s FOR UPDATE", (self.name,))
            c.execute(
                "INSERT INTO pgmill.state (pipeline, owner_run) VALUES (%s, %s)"
                " ON CONFLICT (pipeline) DO UPDATE SET owner_run = EXCLUDED.owner_run",
                (self.name, run_id),
            )
        self.run_id = run_id

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def _session(conn: psycopg.Connection[Any]) -> tuple[int, datetime]:
    row = conn.execute("SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0]), row[1]


def _end_orphan(conn: psycopg.Connection[Any], session: tuple[int, datetime]) -> None:
    """End this run's previous lock session if the server still has it: a connection cut on the way (a
    pooler, a NAT, a reset towards the client only) can leave it, and its lock, alive for minutes. The pid
    and start time name that one session only; the wait (ms) lets it release the lock before we take it."""
    conn.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE pid = %s AND backend_start = %s",
                 session)


def _owner(conn: psycopg.Connection[Any], name: str) -> int | None:
    row = conn.execute("SELECT owner_run FROM pgmill.state WHERE pipeline = %s", (name,)).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def check_owner(conn: psycopg.Connection[Any], name: str, run_id: int) -> None:
    """Inside a checkpoint transaction: go on only while `run_id` owns the pipeline (and keep it so) and is
    still running: a unit still loading elsewhere after its run was closed (a failed sibling unit ended the
    run; Dask cannot stop a task that has started) commits nothing more."""
    row = conn.execute(
        "SELECT s.owner_run, (SELECT r.status FROM pgmill.runs r WHERE r.run_id = %s) FROM pgmill.state s"
        " WHERE s.pipeline = %s FOR KEY SHARE OF s", (run_id, name)).fetchone()
    owner = int(row[0]) if row and row[0] is not None else None
    if owner != run_id:
        raise PipelineLocked(f"pipeline {name}: run {owner} owns it now (this run, {run_id}, lost its lock); "
                             "stopping without committing more")
    status = row[1] if row else None
    if status is not None and status != "running":
        raise PipelineLocked(f"pipeline {name}: run {run_id} is {status} already (it lost its lock, or the run "
                             "ended while this part still loaded); stopping without committing more")
