"""Indexes on partitioned tables: built without long locks, measured, named and dropped as one index.

PostgreSQL cannot `CREATE INDEX CONCURRENTLY` on a partitioned table, and a plain `CREATE INDEX` there holds
a SHARE lock on every partition (writes wait) for the whole build. So an index the advisor recommends for a
partitioned table is built in three steps, the documented way:

1. `CREATE INDEX name ON ONLY parent (...)`: nothing is built, so its SHARE lock on the parent (alone) lasts
   an instant; the index is INVALID and no plan uses it;
2. per partition, `CREATE INDEX CONCURRENTLY` (SHARE UPDATE EXCLUSIVE on that partition: reads and writes
   go on), then `ALTER INDEX name ATTACH PARTITION partition_index` (ACCESS SHARE on the tables, catalog
   only); a sub-partitioned
   partition gets its own `ON ONLY` index, filled the same way; once every partition's index is attached,
   PostgreSQL marks the parent's index VALID.

Partitions created later (pgmill's months ahead) get the index from PostgreSQL itself at ATTACH PARTITION.
Dropping it drops the parent's index, which takes its attached partition indexes with it; PostgreSQL has no
`DROP INDEX CONCURRENTLY` for a partitioned index, so that DROP takes ACCESS EXCLUSIVE on the table and
its partitions for the instant of the catalog change (under `lock_timeout`, retried).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pgmill.tune.candidates import Candidate

# bytes of an index: a partitioned index (relkind 'I') has no storage, its leaf indexes have
_INDEX_BYTES = """
SELECT CASE WHEN c.relkind = 'I' THEN (SELECT coalesce(sum(pg_relation_size(pt.relid)), 0)::bigint
                                     FROM pg_partition_tree(c.oid) pt WHERE pt.isleaf)
            ELSE pg_relation_size(c.oid) END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s
"""

_CHILDREN = """
SELECT n.nspname, c.relname, c.relkind = 'p' FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE h.inhparent = (SELECT t.oid FROM pg_class t JOIN pg_namespace tn ON tn.oid = t.relnamespace
                     WHERE tn.nspname = %s AND t.relname = %s)
ORDER BY n.nspname, c.relname
"""


def index_bytes(conn: psycopg.Connection[Any], schema: str, name: str) -> int | None:
    """The index's size on disk (a partitioned index: its partitions' indexes together); None if absent."""
    row = conn.execute(_INDEX_BYTES, (schema, name)).fetchone()
    return int(row[0]) if row else None


def relkind(conn: psycopg.Connection[Any], schema: str, name: str) -> str | None:
    row = conn.execute("SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                       " WHERE n.nspname = %s AND c.relname = %s", (schema, name)).fetchone()
    return str(row[0]) if row else None


def partition_index_name(partition: str, parent_index: str) -> str:
    """`pgmill_<partition>_<the parent index's hash>`: deterministic, within 63 bytes, and recognizable
    (an interrupted build's leftovers are found by the prefix)."""
    return f"{('pgmill_' + partition)[:54]}_{parent_index.rsplit('_', 1)[-1]}"


def build(conn: psycopg.Connection[Any], c: Candidate, built: list[tuple[str, str]]) -> None:
    """Build `c` on its partitioned table: ON ONLY the parent, CONCURRENTLY on each partition, ATTACH. Every
    index made is appended to `built` (schema, name) as soon as it exists, so a failure can undo them.
    `conn` is in autocommit mode (CONCURRENTLY needs it)."""
    _build(conn, c, (c.schema, c.table), c.name, built)


def _build(conn: psycopg.Connection[Any], c: Candidate, table: tuple[str, str], name: str,
           built: list[tuple[str, str]]) -> None:
    conn.execute(c.ddl(name=name, only=True, on=table))
    built.append((table[0], name))
    parent = sql.Identifier(table[0], name)
    for schema, child, sub in conn.execute(_CHILDREN, table).fetchall():
        child_index = partition_index_name(child, name)
        if sub:
            _build(conn, c, (schema, child), child_index, built)
        else:
            conn.execute(c.ddl(concurrently=True, name=child_index, on=(schema, child)))
            built.append((schema, child_index))
        conn.execute(sql.SQL("ALTER INDEX {} ATTACH PARTITION {}").format(
            parent, sql.Identifier(schema, child_index)))


def root_names(conn: psycopg.Connection[Any], names: set[str]) -> dict[str, str]:
    """Index name as a plan shows it (a partition's index) -> the name of its root index (the one pgmill
    created on the partitioned table); names that belong to no partitioned index map to themselves."""
    out = {n: n for n in names}
    rows = conn.execute(
        "SELECT c.relname, r.relname FROM pg_class c JOIN pg_class r ON r.oid = pg_partition_root(c.oid)"
        " WHERE c.relname = ANY(%s) AND c.relkind = 'i' AND c.relispartition", (sorted(names),)).fetchall()
    out.update({str(a): str(b) for a, b in rows})
    return out
