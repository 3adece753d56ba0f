"""Quarantined rows survive the trip into pgmill.quarantine exactly, whatever characters they hold."""

from __future__ import annotations

import psycopg

from pgmill.db.migrations import migrate
from pgmill.ingest import quarantine
from pgmill.ingest.quarantine import QuarantinedRow
from pgmill.quality.validate import Violation


def test_awkward_text_round_trips_through_copy(conn: psycopg.Connection[object]) -> None:
    migrate(conn)  # type: ignore[arg-type]
    rows = [
        QuarantinedRow("data/a.csv:line 2", {"a": "tab\there", "b": "new\nline\r", "c": "back\\slash", "d": None,
                                             "e": 5, "f": "é ü \u2028 ✓", "g": "the text \\u0000"},
                       None, [Violation("a", "type", "a = 'tab\\there' is not a valid bigint")]),
        QuarantinedRow("data/a.csv:line 3", {"a": "nul\x00inside"}, "raw\x00text\t\\", [
            Violation(None, "parse", "has 1 fields, expected 2"), Violation("a", "min", "a = '1' is below 2")]),
        QuarantinedRow("api page 4", None, "### cut ###", [Violation(None, "parse", "unterminated quote (\")")]),
    ]
    with conn.transaction():
        quarantine.write_encoded(conn, quarantine.encode(7, "orders", "public.orders", rows))  # type: ignore[arg-type]
    got = conn.execute("SELECT run_id, pipeline, target_table, source_location, record, raw_text, violations"
                       " FROM pgmill.quarantine ORDER BY id").fetchall()
    assert [g[:4] for g in got] == [(7, "orders", "public.orders", r.location) for r in rows]
    assert got[0][4] == rows[0].record
    assert got[1][4] == {"a": "nul\\0inside"}  # NUL cannot live in jsonb: kept visible as \0
    assert got[2][4] is None
    assert [g[5] for g in got] == [None, "raw\\0text\t\\", "### cut ###"]
    assert [g[6] for g in got] == [[v.as_dict() for v in r.violations] for r in rows]


def test_nothing_to_encode_is_nothing_to_send() -> None:
    assert quarantine.encode(1, "p", "t", []) == b""


def test_records_built_in_bulk_as_json_round_trip_too(conn: psycopg.Connection[object]) -> None:
    import pyarrow as pa

    from pgmill.ingest.sources.base import json_objects

    migrate(conn)  # type: ignore[arg-type]
    table = pa.table({"a": ["tab\there", "nul\x00inside", None], "b": ['quote " and \\', "é ✓ \u2028", "x"]})
    texts = json_objects(table)
    assert texts is not None and len(texts) == 3
    assert json_objects(pa.table({"n": [1, 2]})) is None  # not text: the caller converts row by row
    rows = [QuarantinedRow(f"a.csv:line {i}", None, None, [Violation("a", "min", "m")], t) for i, t in enumerate(texts)]
    with conn.transaction():
        conn.execute("DELETE FROM pgmill.quarantine WHERE run_id = 8")
        quarantine.write_encoded(conn, quarantine.encode(8, "orders", "public.orders", rows))  # type: ignore[arg-type]
    got = [r for (r,) in conn.execute("SELECT record FROM pgmill.quarantine WHERE run_id = 8 ORDER BY id").fetchall()]
    assert got == [{"a": "tab\there", "b": 'quote " and \\'}, {"a": "nul\\0inside", "b": "é ✓ \u2028"},
                   {"a": None, "b": "x"}]
