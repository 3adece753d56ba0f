"""Source state in pgmill.state and pgmill.files, written in the same transaction as the rows it covers."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from pgmill.ingest.sources.base import ByteRange, FileMark, RangeState, SourceState
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
    ranges: dict[tuple[str, str], list[RangeState]] = {}
    for r in conn.execute(
        "SELECT path, sha256, range_start, range_end, first_line, records_done, complete, byte_offset, next_line"
        " FROM pgmill.file_ranges WHERE pipeline = %s ORDER BY path, sha256, range_start", (pipeline,),
    ).fetchall():
        ranges.setdefault((r[0], r[1]), []).append(
            RangeState(ByteRange(int(r[2]), int(r[3]), int(r[4])), int(r[5]), bool(r[6]), int(r[7]), int(r[8])))
    conn.commit()
    if row is None:
        return SourceState({}, None, files, ranges)
    return SourceState(dict(row[0] or {}), row[1], files, ranges)


def save_file_mark(conn: psycopg.Connection[Any], pipeline: str, run_id: int, m: FileMark) -> None:
    if m.range is not None:
        _save_range_mark(conn, pipeline, run_id, m, m.range)
        return
    conn.execute(
        "INSERT INTO pgmill.files (pipeline, path, size, sha256, records_done, byte_offset, next_line, complete, run_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (pipeline, path, sha256) DO UPDATE SET records_done = EXCLUDED.records_done,"
        " byte_offset = EXCLUDED.byte_offset, next_line = EXCLUDED.next_line, complete = EXCLUDED.complete,"
        " run_id = EXCLUDED.run_id, loaded_at = now()",
        (pipeline, m.path, m.size, digest_of(m.sha256), m.records_done, m.byte_offset, m.next_line, m.complete, run_id),
    )


def _save_range_mark(conn: psycopg.Connection[Any], pipeline: str, run_id: int, m: FileMark, r: ByteRange) -> None:
    """A range's progress. The file's plan goes in with it (a no-op once any range has committed), so a
    rerun resumes the same ranges; the range that completes last marks the file complete."""
    sha = digest_of(m.sha256)
    key = (pipeline, m.path, sha)
    conn.execute(
        "INSERT INTO pgmill.file_ranges (pipeline, path, sha256, range_start, range_end, first_line, byte_offset,"
        " next_line) SELECT %s, %s, %s, s, e, l, s, l FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS p(s, e, l)"
        " ON CONFLICT (pipeline, path, sha256, range_start) DO NOTHING",
        (*key, [p.start for p in m.plan], [p.end for p in m.plan], [p.first_line for p in m.plan]),
    )
    conn.execute(
        "UPDATE pgmill.file_ranges SET records_done = %s, byte_offset = %s, next_line = %s, complete = %s,"
        " run_id = %s, loaded_at = now() WHERE pipeline = %s AND path = %s AND sha256 = %s AND range_start = %s",
        (m.records_done, m.byte_offset, m.next_line, m.complete, run_id, *key, r.start),
    )
    if not m.complete:
        return
    # The file's row is locked first, so ranges completing at once take turns here, and each one's count
    # below (a new snapshot, after the lock) sees the ranges that committed before it.
    conn.execute(
        "INSERT INTO pgmill.files (pipeline, path, size, sha256, run_id) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (pipeline, path, sha256) DO UPDATE SET run_id = EXCLUDED.run_id",
        (pipeline, m.path, m.size, sha, run_id),
    )
    conn.execute(
        "UPDATE pgmill.files f SET complete = NOT r.open, records_done = r.records,"
        " byte_offset = CASE WHEN r.open THEN 0 ELSE f.size END, next_line = r.next_line, loaded_at = now()"
        " FROM (SELECT bool_or(NOT complete) AS open, sum(records_done) AS records, max(next_line) AS next_line"
        "       FROM pgmill.file_ranges WHERE pipeline = %s AND path = %s AND sha256 = %s) r"
        " WHERE f.pipeline = %s AND f.path = %s AND f.sha256 = %s",
        (*key, *key),
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
