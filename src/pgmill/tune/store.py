"""pgmill's tuning tables (migration 4 in pgmill.db.migrations) and how tuning writes to them.

pgmill.tuning_runs    one row per `pgmill tune` (recommend, apply, auto, rollback): its report as jsonb
pgmill.index_actions  every index created, kept, dropped, failed or rolled back, with why
pgmill.workload_snapshots  the workload's fingerprint and data size at each tuning, to decide re-tuning
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pgmill.db.migrations import migrate


def ensure_schema(conn: psycopg.Connection[Any]) -> None:
    """The tuning tables are migration 4 of pgmill's schema: bring it up to date."""
    migrate(conn)
    if not conn.autocommit:
        conn.commit()


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
