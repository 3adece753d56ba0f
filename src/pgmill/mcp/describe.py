"""What the database holds, read from the system catalogs: tables, columns, constraints, indexes.

Functions take an open connection (the MCP server passes a read-only one) and return plain dicts.
"""

from __future__ import annotations

from typing import Any

import psycopg

from pgmill.errors import PgmillError

_KINDS = {"r": "table", "p": "partitioned table", "v": "view", "m": "materialized view", "f": "foreign table"}


class NoSuchTable(PgmillError):
    """The named table does not exist or the read-only role may not see it."""


def tables(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Every table and view outside the system schemas, with estimated rows and size on disk."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname, c.relkind, c.reltuples::bigint, pg_catalog.pg_total_relation_size(c.oid),"
        " pg_catalog.has_table_privilege(c.oid, 'SELECT')"
        " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')"
        " AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' ORDER BY 1, 2"
    ).fetchall()
    return [
        {"table": f"{schema}.{name}", "kind": _KINDS[kind],
         # reltuples is -1 until the table is first vacuumed or analyzed
         "row_estimate": int(est) if est is not None and est >= 0 else None,
         "total_bytes": int(size), "readable": bool(readable)}
        for schema, name, kind, est, size, readable in rows
    ]


def resolve(conn: psycopg.Connection[Any], table: str) -> int:
    """The oid of `table` ('name' or 'schema.name', quoted identifiers allowed), or NoSuchTable."""
    try:
        row = conn.execute("SELECT pg_catalog.to_regclass(%s)::oid", (table,)).fetchone()
    except psycopg.errors.InvalidName as exc:
        raise NoSuchTable(f"{table!r} is not a valid table name") from exc
    if row is None or row[0] is None:
        raise NoSuchTable(f"no table named {table!r} (list_tables shows the tables you can read)")
    return int(row[0])


def describe(conn: psycopg.Connection[Any], table: str) -> dict[str, Any]:
    """Columns, constraints, indexes and statistics of one table."""
    oid = resolve(conn, table)
    head = conn.execute(
        "SELECT n.nspname, c.relname, c.relkind, c.reltuples::bigint, pg_catalog.pg_total_relation_size(c.oid),"
        " s.n_live_tup, s.last_analyze, s.last_autoanalyze, s.seq_scan, s.idx_scan"
        " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " LEFT JOIN pg_catalog.pg_stat_all_tables s ON s.relid = c.oid WHERE c.oid = %s",
        (oid,),
    ).fetchone()
    assert head is not None
    schema, name, kind, est, size, live, analyzed, autoanalyzed, seq_scans, idx_scans = head
    columns = conn.execute(
        "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,"
        " pg_catalog.pg_get_expr(d.adbin, d.adrelid)"
        " FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_attrdef d"
        "   ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        " WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (oid,),
    ).fetchall()
    constraints = conn.execute(
        "SELECT conname, contype, pg_catalog.pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint"
        " WHERE conrelid = %s ORDER BY contype, conname",
        (oid,),
    ).fetchall()
    indexes = conn.execute(
        "SELECT i.relname, pg_catalog.pg_get_indexdef(x.indexrelid), x.indisunique, x.indisprimary,"
        " x.indisvalid, pg_catalog.pg_relation_size(x.indexrelid), s.idx_scan"
        " FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid"
        " LEFT JOIN pg_catalog.pg_stat_all_indexes s ON s.indexrelid = x.indexrelid"
        " WHERE x.indrelid = %s ORDER BY i.relname",
        (oid,),
    ).fetchall()
    contype = {"p": "primary key", "u": "unique", "f": "foreign key", "c": "check", "x": "exclusion",
               "n": "not null", "t": "trigger"}
    return {
        "table": f"{schema}.{name}", "kind": _KINDS.get(kind, kind),
        "row_estimate": int(est) if est is not None and est >= 0 else None, "live_rows": live,
        "total_bytes": int(size), "last_analyzed": max((t for t in (analyzed, autoanalyzed) if t), default=None),
        "seq_scans": seq_scans, "index_scans": idx_scans,
        "columns": [{"name": n, "type": t, "not_null": nn, "default": d} for n, t, nn, d in columns],
        "constraints": [{"name": n, "type": contype.get(t, t), "definition": d} for n, t, d in constraints],
        "indexes": [{"name": n, "definition": d, "unique": u, "primary": p, "valid": v, "bytes": b, "scans": s}
                    for n, d, u, p, v, b, s in indexes],
    }


def has_table(conn: psycopg.Connection[Any], table: str) -> bool:
    row = conn.execute("SELECT pg_catalog.to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])
