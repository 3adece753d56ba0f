"""Source state in pgmill.state and pgmill.files, written in the same transaction as the rows it covers."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from pgmill.ingest.sources.base import FileMark, SourceState
from pgmill.ingest.sources.files import digest_of


def load_state(conn: psycopg.Connection[Any], pipeline: str) -> SourceState:
    row = conn.execute("SELECT state, cursor_value FROM pgmill.state WHERE pipeline = %s", (pipeline,)).fetchone()
    files = {
        (r[0], r[1]): (int(r[2]), bool(r[3]), int(r[4]), int(r[5]))
        for r in conn.execute(
            "SELECT path, sha256, records_done, complete, byte_offset, next_line FROM pgmill.files WHERE pipeline = %s",
            (pipeline,),
        ).fetchall()
    }
    conn.commit()
    if row is None:
        return SourceState({}, None, files)
    return SourceState(dict(row[0] or {}), row[1], files)


def save_file_mark(conn: psycopg.Connection[Any], pipeline: str, run_id: int, m: FileMark) -> None:
    conn.execute(
        "INSERT INTO pgmill.files (pipeline, path, size, sha256, records_done, byte_offset, next_line, complete, run_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (pipeline, path, sha256) DO UPDATE SET records_done = EXCLUDED.records_done,"
        " byte_offset = EXCLUDED.byte_offset, next_line = EXCLUDED.next_line, complete = EXCLUDED.complete,"
        " run_id = EXCLUDED.run_id, loaded_at = now()",
        (pipeline, m.path, m.size, digest_of(m.sha256), m.records_done, m.byte_offset, m.next_line, m.complete, run_id),
    )


def save_checkpoint(
    conn: psycopg.Connection[Any],
    pipeline: str,
    run_id: int,
    checkpoint: dict[str, Any] | None,
    cursor_value: str | None,
    cursor_type: str | None,
) -> None:
    """Merge the source checkpoint and advance the cursor (never backwards) for `pipeline`."""
    conn.execute(
        "INSERT INTO pgmill.state (pipeline, state, run_id) VALUES (%s, %s, %s) ON CONFLICT (pipeline) DO UPDATE"
        " SET state = pgmill.state.state || EXCLUDED.state, run_id = EXCLUDED.run_id, updated_at = now()",
        (pipeline, Jsonb(checkpoint or {}), run_id),
    )
    if cursor_value is not None and cursor_type is not None:
        typ = sql.SQL(cursor_type)
        conn.execute(
            sql.SQL(
                "UPDATE pgmill.state SET cursor_value = %s WHERE pipeline = %s"
                " AND (cursor_value IS NULL OR cursor_value::{} < %s::{})"
            ).format(typ, typ),
            (cursor_value, pipeline, cursor_value),
        )
