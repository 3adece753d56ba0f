"""Storage of the project's tables: bytes per table and per partition (with indexes and TOAST), rows as
the planner estimates them (reltuples: no scan), and what retention archived (pgmill.archives)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from pgmill.db.catalog import split_table, table_key


@dataclass
class PartitionStorage:
    name: str
    bounds: str
    bytes: int
    rows_estimate: int


@dataclass
class TableStorage:
    table: str
    exists: bool
    partitioned: bool = False
    bytes: int = 0
    rows_estimate: int = 0
    partitions: list[PartitionStorage] = field(default_factory=list)
    archived_files: int = 0
    archived_bytes: int = 0
    archived_rows: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def table_storage(conn: psycopg.Connection[Any], tables: list[str], *, archives: bool = True) -> list[TableStorage]:
    """Storage of each of `tables` ('name' or 'schema.name'), in their order; a missing one says so. Without
    `archives` (a database whose pgmill.archives is not there yet) nothing is archived."""
    archived = {str(r[0]): r[1:] for r in conn.execute(
        "SELECT table_name, count(*), coalesce(sum(bytes), 0), coalesce(sum(rows), 0)"
        " FROM pgmill.archives GROUP BY table_name").fetchall()} if archives else {}
    out = []
    for table in tables:
        schema, rel = split_table(table)
        key = table_key(table)
        row = conn.execute("SELECT c.relkind, pg_catalog.pg_total_relation_size(c.oid), c.reltuples"
                           " FROM pg_catalog.pg_class c"
                           " WHERE c.oid = pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %s::text, %s::text))",
                           (schema, rel)).fetchone()
        ts = TableStorage(key, row is not None)
        files, nbytes, rows = archived.get(key, (0, 0, 0))
        ts.archived_files, ts.archived_bytes, ts.archived_rows = int(files), int(nbytes), int(rows)
        if row is None:
            out.append(ts)
            continue
        ts.partitioned = row[0] == "p"
        if ts.partitioned:
            ts.partitions = [
                PartitionStorage(str(r[0]), str(r[1]), int(r[2]), max(int(r[3]), 0))
                for r in conn.execute(
                    "SELECT c.relname, pg_catalog.pg_get_expr(c.relpartbound, c.oid),"
                    " pg_catalog.pg_total_relation_size(c.oid), c.reltuples"
                    " FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid"
                    " WHERE i.inhparent = pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %s::text, %s::text))"
                    " ORDER BY c.relname", (schema, rel)).fetchall()
            ]
            ts.bytes = sum(p.bytes for p in ts.partitions)
            ts.rows_estimate = sum(p.rows_estimate for p in ts.partitions)
        else:
            ts.bytes, ts.rows_estimate = int(row[1]), max(int(row[2]), 0)
        out.append(ts)
    return out
