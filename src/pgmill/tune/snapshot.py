"""What the advisor knows about the database: tables, columns with their statistics, indexes, write load.

Every column the advisor names is resolved against this snapshot of the catalog, never guessed from text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

TableKey = tuple[str, str]  # (schema, table)

_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pgmill", "pg_toast")

# A partitioned table (relkind 'p') holds no rows itself: its rows, pages, size and activity are those of its
# leaf partitions (pg_partition_tree), and its partitions are not tables of their own here (queries name the
# parent, and pgmill indexes the parent). It counts as analyzed once ANALYZE ran on the parent (which
# autovacuum never does), as only that fills its pg_stats rows with inherited = true.
_TABLES = """
SELECT c.oid, n.nspname, c.relname, greatest(coalesce(p.reltuples, c.reltuples), 0)::float8,
       coalesce(p.relpages, c.relpages), coalesce(p.size, pg_table_size(c.oid)),
       coalesce(p.n_live_tup, s.n_live_tup, 0), coalesce(p.n_tup_ins, s.n_tup_ins, 0),
       coalesce(p.n_tup_upd, s.n_tup_upd, 0), coalesce(p.n_tup_del, s.n_tup_del, 0),
       coalesce(p.seq_scan, s.seq_scan, 0), coalesce(p.idx_scan, s.idx_scan, 0),
       c.reltuples < 0 OR (c.relkind <> 'p' AND s.last_analyze IS NULL AND s.last_autoanalyze IS NULL),
       coalesce(p.partitions, 0), coalesce(p.relallvisible, c.relallvisible)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
LEFT JOIN LATERAL (
    SELECT sum(greatest(lc.reltuples, 0)) AS reltuples, sum(greatest(lc.relpages, 0))::bigint AS relpages,
           sum(pg_table_size(lc.oid))::bigint AS size, sum(ls.n_live_tup)::bigint AS n_live_tup,
           sum(ls.n_tup_ins)::bigint AS n_tup_ins, sum(ls.n_tup_upd)::bigint AS n_tup_upd,
           sum(ls.n_tup_del)::bigint AS n_tup_del, sum(ls.seq_scan)::bigint AS seq_scan,
           sum(ls.idx_scan)::bigint AS idx_scan, count(*) AS partitions,
           sum(greatest(lc.relallvisible, 0))::bigint AS relallvisible
    FROM pg_partition_tree(c.oid) pt JOIN pg_class lc ON lc.oid = pt.relid
    LEFT JOIN pg_stat_user_tables ls ON ls.relid = lc.oid
    WHERE pt.isleaf) p ON c.relkind = 'p'
WHERE c.relkind IN ('r', 'p', 'm') AND NOT c.relispartition AND NOT (n.nspname = ANY(%s))
  AND n.nspname NOT LIKE 'pg_temp%%'
ORDER BY n.nspname, c.relname
"""

_COLUMNS = """
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       coalesce(st.avg_width, CASE WHEN t.typlen > 0 THEN t.typlen ELSE 32 END),
       coalesce(st.n_distinct, 0)::float8, coalesce(st.null_frac, 0)::float8,
       EXISTS (SELECT 1 FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod
               WHERE am.amname = 'btree' AND oc.opcdefault
                 AND (oc.opcintype = t.oid OR oc.opcintype = t.typbasetype
                      OR (t.oid = 'varchar'::regtype AND oc.opcintype = 'text'::regtype))),
       t.typalign
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stats st ON st.schemaname = n.nspname AND st.tablename = c.relname AND st.attname = a.attname
     AND st.inherited = (c.relkind = 'p')
WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

# A partitioned index (relkind 'I') has no storage or scans of its own: its size and scans are its leaf
# indexes' (one per partition, attached), which plans name instead of it.
_INDEXES = """
SELECT i.indrelid, ic.relname, i.indexrelid, i.indnkeyatts,
       ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
             LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             ORDER BY k.ord),
       ARRAY(SELECT (o & 1) = 1 FROM unnest(i.indoption::int2[]) o),
       pg_get_expr(i.indpred, i.indrelid), i.indisvalid, i.indisunique, i.indisprimary,
       CASE WHEN ic.relkind = 'I' THEN (SELECT coalesce(sum(pg_relation_size(pt.relid)), 0)::bigint
                                        FROM pg_partition_tree(i.indexrelid) pt WHERE pt.isleaf)
            ELSE pg_relation_size(i.indexrelid) END,
       CASE WHEN ic.relkind = 'I' THEN (SELECT coalesce(sum(ls.idx_scan), 0)::bigint
                                        FROM pg_partition_tree(i.indexrelid) pt
                                        JOIN pg_stat_user_indexes ls ON ls.indexrelid = pt.relid WHERE pt.isleaf)
            ELSE coalesce(s.idx_scan, 0) END,
       am.amname, pg_get_indexdef(i.indexrelid), i.indexprs IS NOT NULL
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = i.indexrelid
WHERE i.indrelid = ANY(%s)
ORDER BY i.indrelid, ic.relname
"""


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool
    width: int  # average stored width in bytes (pg_stats), or the type's length
    n_distinct: float  # as in pg_stats: > 0 a count, < 0 a share of the rows, 0 unknown
    null_frac: float
    btree: bool  # the type has a default btree operator class
    align: str

    def distinct(self, rows: float) -> float:
        """Number of distinct values in a table of `rows` rows (1 when unknown, i.e. not selective)."""
        if self.n_distinct > 0:
            return self.n_distinct
        if self.n_distinct < 0:
            return max(1.0, -self.n_distinct * rows)
        return 1.0


@dataclass(frozen=True)
class Index:
    schema: str
    name: str
    oid: int
    table: TableKey
    keys: tuple[str | None, ...]  # None: an expression
    include: tuple[str | None, ...]
    desc: tuple[bool, ...]
    predicate: str | None
    valid: bool
    unique: bool
    primary: bool
    size: int
    scans: int
    method: str
    definition: str


@dataclass
class Table:
    oid: int
    schema: str
    name: str
    rows: float
    pages: int
    size: int
    live: int
    inserted: int
    updated: int
    deleted: int
    seq_scan: int
    idx_scan: int
    unanalyzed: bool
    columns: dict[str, Column] = field(default_factory=dict)
    indexes: list[Index] = field(default_factory=list)
    partitions: int = 0  # leaf partitions of a partitioned table; 0 for a plain table
    all_visible: int = 0  # pages the visibility map marks all-visible (pg_class.relallvisible)

    @property
    def key(self) -> TableKey:
        return (self.schema, self.name)

    @property
    def churn(self) -> float:
        """Writes beyond the initial load, per live row: updates and deletes, and inserts past the rows held."""
        extra_inserts = max(0, self.inserted - self.live)
        return (self.updated + self.deleted + extra_inserts) / max(1, self.live)


@dataclass
class CatalogSnapshot:
    tables: dict[TableKey, Table]
    search_path: list[str]
    server_version: int

    def find(self, schema: str | None, name: str) -> Table | None:
        """The table a (possibly unqualified) name refers to, by the session's search_path."""
        if schema is not None:
            return self.tables.get((schema, name))
        for s in self.search_path:
            t = self.tables.get((s, name))
            if t is not None:
                return t
        return None

    def by_oid(self, oid: int) -> Table | None:
        for t in self.tables.values():
            if t.oid == oid:
                return t
        return None


def load_snapshot(conn: psycopg.Connection[Any]) -> CatalogSnapshot:
    """Snapshot the user tables, their columns (with statistics) and indexes."""
    version = int(conn.execute("SHOW server_version_num").fetchone()[0])  # type: ignore[index]
    path = [str(s) for s in conn.execute("SELECT current_schemas(false)").fetchone()[0]]  # type: ignore[index]
    tables: dict[TableKey, Table] = {}
    by_oid: dict[int, Table] = {}
    for r in conn.execute(_TABLES, (list(_SYSTEM_SCHEMAS),)).fetchall():
        t = Table(int(r[0]), r[1], r[2], float(r[3]), int(r[4]), int(r[5]), int(r[6]), int(r[7]), int(r[8]),
                  int(r[9]), int(r[10]), int(r[11]), bool(r[12]), partitions=int(r[13]), all_visible=int(r[14]))
        tables[t.key] = t
        by_oid[t.oid] = t
    oids = list(by_oid)
    for r in conn.execute(_COLUMNS, (oids,)).fetchall():
        by_oid[int(r[0])].columns[r[1]] = Column(r[1], r[2], bool(r[3]), int(r[4]), float(r[5]), float(r[6]),
                                                 bool(r[7]), str(r[8]))
    for r in conn.execute(_INDEXES, (oids,)).fetchall():
        t = by_oid[int(r[0])]
        nkeys = int(r[3])
        cols: list[str | None] = list(r[4])
        if r[14]:  # expression keys show as NULL attnum 0 entries: keep them as None
            cols = [c if c else None for c in cols]
        desc = tuple(bool(x) for x in (r[5] or []))[:nkeys]
        t.indexes.append(Index(t.schema, r[1], int(r[2]), t.key, tuple(cols[:nkeys]), tuple(cols[nkeys:]),
                               desc + (False,) * (nkeys - len(desc)), r[6], bool(r[7]), bool(r[8]),
                               bool(r[9]), int(r[10]), int(r[11]), str(r[12]), str(r[13])))
    return CatalogSnapshot(tables, path, version)


UNVACUUMED_PAGES = 128  # tables under 1 MB are read whole anyway: not worth the note
UNVACUUMED_SHARE = 0.5


def unvacuumed(catalog: CatalogSnapshot, keys: set[TableKey]) -> list[str]:
    """Workload tables with most of their pages outside the visibility map (no VACUUM since a large load, or
    one that a long transaction held back): the planner costs their index-only scans as heap reads, so the
    advisor sees covering indexes as worth less than they will be once autovacuum has run."""
    out = []
    for k in sorted(keys):
        t = catalog.tables.get(k)
        if t is not None and t.pages >= UNVACUUMED_PAGES and t.all_visible < UNVACUUMED_SHARE * t.pages:
            out.append(f"{t.schema}.{t.name}")
    return out


def analyze_unanalyzed(conn: psycopg.Connection[Any], catalog: CatalogSnapshot, keys: set[TableKey]) -> bool:
    """ANALYZE workload tables that have never been analyzed: costing without statistics is guesswork."""
    from psycopg import sql

    done = False
    for k in sorted(keys):
        t = catalog.tables.get(k)
        if t is not None and t.unanalyzed:
            conn.execute(sql.SQL("ANALYZE {}.{}").format(sql.Identifier(t.schema), sql.Identifier(t.name)))
            done = True
    return done
