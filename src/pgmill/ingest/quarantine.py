"""pgmill.quarantine: rows that broke the contract, with where they came from and every rule they broke."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg

from pgmill.quality.validate import Violation


@dataclass(frozen=True)
class QuarantinedRow:
    location: str
    record: dict[str, Any] | None
    raw_text: str | None
    violations: list[Violation]
    record_json: str | None = None  # the record already as a JSON object (then `record` is None)


def _clean(text: str) -> str:
    # Postgres text and jsonb cannot hold NUL; keep it visible instead of failing the load
    return text.replace("\x00", "\\0") if "\x00" in text else text


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _json(value: Any) -> str:
    return json.dumps(_scrub(value), default=str, ensure_ascii=False)


# one encoder for every row: json.dumps with options builds a new encoder per call, a third of the cost
_ENCODE = json.JSONEncoder(ensure_ascii=False, default=str).encode
_COPY_SQL = ("COPY pgmill.quarantine (run_id, pipeline, target_table, source_location, record, raw_text, violations)"
             " FROM STDIN")


def _field(value: str | None) -> str:
    """A COPY text-format field (NUL made visible: Postgres text and jsonb cannot hold it)."""
    if value is None:
        return "\\N"
    if "\x00" in value:
        value = _clean(value)
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _json_field(value: Any) -> str:
    text = _ENCODE(value)
    if "\\u0000" in text:  # NUL inside a value (or the text \u0000): scrubbed the slow, exact way
        text = _json(value)
    return _field(text)


def _record_field(r: QuarantinedRow) -> str:
    if r.record_json is not None:
        if "\\u0000" in r.record_json:  # NUL inside a value: scrubbed the slow, exact way
            return _field(_json(json.loads(r.record_json)))
        return _field(r.record_json)
    return "\\N" if r.record is None else _json_field(r.record)


def encode(run_id: int, pipeline: str, table: str, rows: list[QuarantinedRow]) -> bytes:
    """The rows in COPY text format: built off the writing thread, so that the checkpoint only sends bytes."""
    head = f"{run_id}\t{_field(pipeline)}\t{_field(table)}\t"
    lines = [
        head + "\t".join((
            _field(r.location),
            _record_field(r),
            _field(r.raw_text),
            _json_field([{"column": v.column, "rule": v.rule, "message": v.message} for v in r.violations]),
        ))
        for r in rows
    ]
    return ("\n".join(lines) + "\n").encode() if lines else b""


def write_encoded(conn: psycopg.Connection[Any], data: bytes) -> None:
    if data:
        with conn.cursor() as cur, cur.copy(_COPY_SQL) as cp:
            cp.write(data)


def write(conn: psycopg.Connection[Any], run_id: int, pipeline: str, table: str, rows: list[QuarantinedRow]) -> int:
    """COPY the rows into pgmill.quarantine (inside the caller's checkpoint transaction)."""
    if not rows:
        return 0
    with conn.cursor() as cur, cur.copy(_COPY_SQL) as cp:
        for r in rows:
            cp.write_row((
                run_id, pipeline, table, _clean(r.location),
                _json(r.record) if r.record is not None else None,
                _clean(r.raw_text) if r.raw_text is not None else None,
                _json([v.as_dict() for v in r.violations]),
            ))
    return len(rows)


def summary(conn: psycopg.Connection[Any], pipeline: str | None = None) -> list[tuple[str, str, str, int]]:
    """(pipeline, column, rule, rows) for quarantined rows, most frequent first."""
    rows = conn.execute(
        "SELECT q.pipeline, coalesce(v->>'column', ''), v->>'rule', count(*) FROM pgmill.quarantine q,"
        " jsonb_array_elements(q.violations) v WHERE (%s::text IS NULL OR q.pipeline = %s)"
        " GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3",
        (pipeline, pipeline),
    ).fetchall()
    return [(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]


def rows(conn: psycopg.Connection[Any], pipeline: str, limit: int = 20, rule: str | None = None) -> list[dict[str, Any]]:
    """The newest quarantined rows of `pipeline` (optionally only those that broke `rule`)."""
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT id, run_id, source_location, record, raw_text, violations, quarantined_at"
            " FROM pgmill.quarantine WHERE pipeline = %s"
            " AND (%s::text IS NULL OR violations @> jsonb_build_array(jsonb_build_object('rule', %s::text)))"
            " ORDER BY id DESC LIMIT %s",
            (pipeline, rule, rule, limit),
        )
        return list(cur.fetchall())
