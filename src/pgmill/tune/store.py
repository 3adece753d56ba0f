"""pgmill's tuning tables, created idempotently under the migrations' advisory lock.

pgmill.tuning_runs    one row per `pgmill tune` (recommend, apply, auto, rollback): its report as jsonb
pgmill.index_actions  every index created, kept, dropped, failed or rolled back, with why
pgmill.workload_snapshots  the workload's fingerprint and data size at each tuning, to decide re-tuning
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pgmill.db.migrations import _LOCK_KEY

DDL = """
CREATE TABLE IF NOT EXISTS pgmill.tuning_runs (
    run_id       bigserial PRIMARY KEY,
    mode         text NOT NULL CHECK (mode IN ('recommend','apply','auto','rollback')),
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    backend      text,
    status       text NOT NULL DEFAULT 'running',
    report       jsonb,
    rolled_back_by bigint
);
CREATE TABLE IF NOT EXISTS pgmill.index_actions (
    action_id    bigserial PRIMARY KEY,
    run_id       bigint NOT NULL REFERENCES pgmill.tuning_runs ON DELETE CASCADE,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    action       text NOT NULL CHECK (action IN
                   ('create','keep','drop','failed','drop_invalid','rollback_drop','trade')),
    schema_name  text NOT NULL,
    index_name   text NOT NULL,
    table_name   text NOT NULL,
    definition   text,
    size_bytes   bigint,
    reason       text,
    detail       jsonb
);
CREATE INDEX IF NOT EXISTS index_actions_run ON pgmill.index_actions (run_id, action_id);
CREATE INDEX IF NOT EXISTS index_actions_index ON pgmill.index_actions (schema_name, index_name);
CREATE TABLE IF NOT EXISTS pgmill.workload_snapshots (
    snapshot_id  bigserial PRIMARY KEY,
    run_id       bigint REFERENCES pgmill.tuning_runs ON DELETE SET NULL,
    taken_at     timestamptz NOT NULL DEFAULT now(),
    fingerprint  text NOT NULL,
    data_bytes   bigint NOT NULL,
    queries      jsonb NOT NULL
);
"""

#: the tuple to append to pgmill.db.migrations.MIGRATIONS (then `ensure_schema` finds the tables in place)
MIGRATION = (4, "query tuning: tuning runs, index actions, workload snapshots", DDL)


def ensure_schema(conn: psycopg.Connection[Any]) -> None:
    """Create the tuning tables if missing (safe to call from many processes at once)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute("CREATE SCHEMA IF NOT EXISTS pgmill")
        conn.execute(DDL.encode())


def start_run(conn: psycopg.Connection[Any], mode: str, backend: str | None) -> int:
    with conn.transaction():
        row = conn.execute("INSERT INTO pgmill.tuning_runs (mode, backend) VALUES (%s, %s) RETURNING run_id",
                           (mode, backend)).fetchone()
    assert row is not None
    return int(row[0])


def finish_run(conn: psycopg.Connection[Any], run_id: int, status: str, report: dict[str, Any]) -> None:
    with conn.transaction():
        conn.execute("UPDATE pgmill.tuning_runs SET finished_at = clock_timestamp(), status = %s, report = %s"
                     " WHERE run_id = %s", (status, Jsonb(report), run_id))


def record(conn: psycopg.Connection[Any], run_id: int, action: str, schema: str, index: str, table: str, *,
           definition: str | None = None, size: int | None = None, reason: str | None = None,
           detail: dict[str, Any] | None = None) -> None:
    with conn.transaction():
        conn.execute(
            "INSERT INTO pgmill.index_actions (run_id, action, schema_name, index_name, table_name, definition,"
            " size_bytes, reason, detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (run_id, action, schema, index, table, definition, size, reason,
             Jsonb(detail) if detail is not None else None))


def snapshot(conn: psycopg.Connection[Any], run_id: int | None, fingerprint: str, data_bytes: int,
             queries: list[str]) -> None:
    with conn.transaction():
        conn.execute("INSERT INTO pgmill.workload_snapshots (run_id, fingerprint, data_bytes, queries)"
                     " VALUES (%s, %s, %s, %s)", (run_id, fingerprint, data_bytes, Jsonb(queries)))


def last_snapshot(conn: psycopg.Connection[Any]) -> tuple[str, int] | None:
    row = conn.execute("SELECT fingerprint, data_bytes FROM pgmill.workload_snapshots"
                       " ORDER BY snapshot_id DESC LIMIT 1").fetchone()
    return (str(row[0]), int(row[1])) if row else None
