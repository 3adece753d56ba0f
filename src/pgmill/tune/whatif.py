"""What-if costing: the planner's estimated cost of a query under a set of candidate indexes.

With HypoPG the indexes are hypothetical (catalog-free, this session only). Without it each candidate is
built for real inside a transaction that is rolled back, so no other session ever sees it; a set of
several candidates on the tables of one query is then costed as the best of its single-index costs.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import psycopg
from psycopg import sql

from pgmill.db.catalog import extension_available, extension_schema
from pgmill.tune.candidates import Candidate
from pgmill.tune.partitioned import index_bytes
from pgmill.tune.snapshot import CatalogSnapshot, Table
from pgmill.tune.workload import WorkloadQuery

COST_SAMPLES = 3  # parameter sets a query is costed with (their mean)
_PAGE = 8192
_FILL = 0.9  # btree leaf fillfactor
SAMPLE_ROWS = 30_000  # rows sampled to count the distinct values of a multi-column key


def explain_json(conn: psycopg.Connection[Any], query: WorkloadQuery, params: Sequence[Any],
                 generic: bool = False) -> dict[str, Any]:
    """The top plan node of EXPLAIN (FORMAT JSON), planned with these parameter values; `generic`: the plan
    for any values (a statement pg_stat_statements saw whose `$n` pgmill cannot fill)."""
    if generic and conn.info.server_version < 160000:
        return _generic_plan_by_prepare(conn, query)
    opts = "GENERIC_PLAN, FORMAT JSON" if generic else "FORMAT JSON"
    with psycopg.RawCursor(conn) as cur:
        cur.execute(f"EXPLAIN ({opts}) {query.sql}".encode(), None if generic else list(params))
        row = cur.fetchone()
    assert row is not None
    return _top_node(row[0])


def _top_node(doc: Any) -> dict[str, Any]:
    doc = doc if not isinstance(doc, str) else json.loads(doc)
    return dict(doc[0]["Plan"])


_PREPARED = itertools.count()


def _generic_plan_by_prepare(conn: psycopg.Connection[Any], query: WorkloadQuery) -> dict[str, Any]:
    """PostgreSQL before 16 has no EXPLAIN (GENERIC_PLAN): prepare the statement (the server infers its
    parameters' types) and explain its generic plan, forced for this one EXECUTE, run with NULLs (a generic
    plan does not depend on the values; nothing is executed). The setting is restored, the statement freed."""
    label = f"pgmill_generic_{next(_PREPARED)}"
    name = sql.Identifier(label)
    prepared = False
    try:
        with conn.transaction():  # a savepoint inside the caller's transaction: an error undoes the setting
            conn.execute(sql.SQL("PREPARE {} AS {}").format(name, sql.SQL(query.sql)))
            prepared = True
            [(n, before)] = conn.execute(
                "SELECT coalesce(cardinality(parameter_types), 0), current_setting('plan_cache_mode')"
                " FROM pg_prepared_statements WHERE name = %s", (label,)).fetchall()
            conn.execute("SELECT set_config('plan_cache_mode', 'force_generic_plan', true)")
            row = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE {} ({})").format(
                name, sql.SQL(", ").join([sql.NULL] * n)) if n else
                sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE {}").format(name)).fetchone()
            conn.execute("SELECT set_config('plan_cache_mode', %s, true)", (before,))
    finally:
        if prepared and conn.info.transaction_status != psycopg.pq.TransactionStatus.INERROR:
            with contextlib.suppress(psycopg.Error), conn.transaction():  # never aborts the caller's transaction
                conn.execute(sql.SQL("DEALLOCATE {}").format(name))
    assert row is not None
    return _top_node(row[0])


def plan_indexes(plan: dict[str, Any]) -> set[str]:
    """Names of the indexes a plan reads."""
    out: set[str] = set()
    stack = [plan]
    while stack:
        node = stack.pop()
        if "Index Name" in node:
            out.add(str(node["Index Name"]))
        stack.extend(node.get("Plans", []))
    return out


_NO_DEDUP_TYPES = ("numeric", "jsonb", "real", "double precision", "float")


def estimate_size(c: Candidate, t: Table, distinct: float | None = None) -> int:
    """Bytes of the built btree: entries x (8-byte tuple header + aligned key and INCLUDE widths + 4-byte
    line pointer) over 90%-full 8 kB leaf pages, plus inner pages and the metapage. Repeated keys are
    deduplicated (PostgreSQL 13+: one key and a 6-byte heap pointer per row) unless INCLUDE columns or the
    key's type rule it out. `distinct`: the key's distinct values when known (a multi-column key's from a
    sample, see `sample_distinct`); otherwise the product of its columns' (independence)."""
    rows = max(t.rows * _selectivity(c, t), 1.0)
    width = 0
    for col in (*c.keys, *c.include):
        column = t.columns[col]
        align = {"c": 1, "s": 2, "i": 4, "d": 8}.get(column.align, 4)
        width = math.ceil(width / align) * align + column.width
    tuple_bytes = math.ceil((8 + width) / 8) * 8 + 4
    independent = math.prod(t.columns[k].distinct(t.rows) for k in c.keys)
    distinct = max(1.0, min(rows, independent if distinct is None else distinct))
    dedup = not c.include and not any(t.columns[k].type.startswith(_NO_DEDUP_TYPES) for k in c.keys)
    if dedup and rows / distinct >= 2:
        total = distinct * tuple_bytes + (rows - distinct) * 6
    else:
        total = rows * tuple_bytes
    leaves = math.ceil(total / (_PAGE * _FILL - 24 - 16))
    per_page = max(2, int((_PAGE - 40) // tuple_bytes))
    inner = math.ceil(leaves / per_page) if leaves > 1 else 0
    return int((leaves + inner + 1) * _PAGE)


def _selectivity(c: Candidate, t: Table) -> float:
    if not c.where:
        return 1.0
    sel = 1.0
    for part in c.where.split(" AND "):
        col = part.split(" = ", 1)[0].strip('"')
        column = t.columns.get(col)
        sel *= 1.0 / column.distinct(t.rows) if column else 0.5
    return sel


def sample_distinct(conn: psycopg.Connection[Any], c: Candidate, t: Table) -> float | None:
    """Distinct values of `c`'s key (under its predicate) from a block sample of about SAMPLE_ROWS rows
    (the whole table when it is that small); None when the sample is empty.

    Columns of real tables are rarely independent (a customer's orders fall on a few dates), so the product
    of per-column counts can overstate a composite key's distinct values, and understate deduplication, by
    4x or more. Two estimators, each low in one case, and the larger is taken: Duj1 (Haas and Stokes, the
    one ANALYZE uses) on the sampled key values, low when the leading column is clustered in the heap so
    that block samples see whole groups; and the leading column's count times the distinct keys per
    leading value in the sample, low when groups are scattered. The sample is fixed (REPEATABLE), so the
    estimate, like everything the advisor does, is the same on the same data."""
    rows = max(t.rows * _selectivity(c, t), 1.0)
    pct = min(100.0, 100.0 * SAMPLE_ROWS / max(t.rows, 1.0))
    cols = sql.SQL(", ").join(map(sql.Identifier, c.keys))
    # the predicate is literal text the Postgres parser produced from the workload's own SQL
    where = sql.SQL(" WHERE ") + sql.SQL(c.where) if c.where else sql.SQL("")
    query = sql.SQL(
        "WITH s AS (SELECT {cols} FROM {schema}.{table} TABLESAMPLE SYSTEM ({pct}) REPEATABLE (7){where}),"
        " g AS (SELECT {lead} AS lead, count(*) AS n FROM s GROUP BY {cols})"
        " SELECT coalesce(sum(n), 0)::float8, count(*)::float8, (count(*) FILTER (WHERE n = 1))::float8,"
        " count(DISTINCT lead)::float8 FROM g").format(
        cols=cols, schema=sql.Identifier(t.schema), table=sql.Identifier(t.name), pct=sql.Literal(pct),
        where=where, lead=sql.Identifier(c.keys[0]))
    row = conn.execute(query).fetchone()
    if row is None or not row[0]:
        return None
    n, d, f1, lead = (float(x) for x in row)
    if pct >= 100.0:
        return d
    duj1 = n * d / max(n - f1 + f1 * n / rows, 1.0)
    grouped = t.columns[c.keys[0]].distinct(t.rows) * d / max(lead, 1.0)
    return max(duj1, grouped)


class WhatIf(ABC):
    """Costs queries under candidate index sets; every figure is cached, so repeated questions are free."""

    def __init__(self, conn: psycopg.Connection[Any], catalog: CatalogSnapshot) -> None:
        self.conn = conn
        self.catalog = catalog
        self.kind = "real"
        self._cache: dict[tuple[str, frozenset[Candidate]], float] = {}
        self.sizes: dict[Candidate, int] = {}
        self._distinct: dict[tuple[str, str, tuple[str, ...], str], float | None] = {}
        self.explains = 0

    # -------------------------------------------------------------- interface

    def relevant(self, q: WorkloadQuery, config: Iterable[Candidate]) -> frozenset[Candidate]:
        tables = {(a.table) for a in (q.analysis.accesses if q.analysis else [])}
        return frozenset(c for c in config if (c.schema, c.table) in tables)

    def cost(self, q: WorkloadQuery, config: Iterable[Candidate]) -> float:
        rel = self.relevant(q, config)
        key = (q.name, rel)
        if key not in self._cache:
            self._cache[key] = self._cost(q, rel)
        return self._cache[key]

    def size(self, c: Candidate) -> int:
        if c not in self.sizes:
            t = self.catalog.tables[(c.schema, c.table)]
            self.sizes[c] = estimate_size(c, t, self.distinct(c, t))
        return self.sizes[c]

    def distinct(self, c: Candidate, t: Table) -> float | None:
        """A multi-column key's distinct values, sampled once per key and predicate (single columns: None,
        their statistics say it)."""
        if len(c.keys) < 2:
            return None
        key = (c.schema, c.table, c.keys, c.where)
        if key not in self._distinct:
            self._distinct[key] = sample_distinct(self.conn, c, t)
        return self._distinct[key]

    def prepare(self, queries: list[WorkloadQuery], candidates: list[Candidate]) -> None:
        """Cost every query with the existing indexes (backends add what they can batch)."""
        for q in queries:
            self.cost(q, ())

    @abstractmethod
    def close(self) -> None:
        """Leave the session as it was."""

    # -------------------------------------------------------------- planning

    @abstractmethod
    def _cost(self, q: WorkloadQuery, config: frozenset[Candidate]) -> float:
        """The plan cost of `q` with exactly these candidates in place."""

    def _plan_cost(self, q: WorkloadQuery) -> float:
        sets = q.param_sets() if q.runnable else []
        if not sets:  # no values for its parameters: the plan for any values
            self.explains += 1
            return float(explain_json(self.conn, q, [], generic=True)["Total Cost"])
        picked = [sets[(i * len(sets)) // COST_SAMPLES] for i in range(min(COST_SAMPLES, len(sets)))]
        total = 0.0
        for params in picked:
            self.explains += 1
            total += float(explain_json(self.conn, q, params)["Total Cost"])
        return total / len(picked)


class HypoWhatIf(WhatIf):
    """HypoPG: hypothetical indexes, exact costing of any set."""

    def __init__(self, conn: psycopg.Connection[Any], catalog: CatalogSnapshot) -> None:
        super().__init__(conn, catalog)
        self.kind = "hypopg"
        self._live: dict[Candidate, int] = {}
        conn.execute("SELECT hypopg_reset()")

    def _cost(self, q: WorkloadQuery, config: frozenset[Candidate]) -> float:
        for c in sorted(set(self._live) - config):
            self.conn.execute("SELECT hypopg_drop_index(%s)", (self._live.pop(c),))
        for c in sorted(config - set(self._live)):
            # HypoPG (to 1.3 at least) does not cost index-only scans on INCLUDE columns; as trailing keys
            # they give the planner the same index-only access at nearly the same cost
            proxy = replace(c, keys=(*c.keys, *c.include), desc=(*c.desc, *(False,) * len(c.include)), include=())
            row = self.conn.execute("SELECT indexrelid FROM hypopg_create_index(%s)",
                                    (proxy.text(self.conn),)).fetchone()
            assert row is not None
            self._live[c] = int(row[0])
        return self._plan_cost(q)

    def close(self) -> None:
        self.conn.execute("SELECT hypopg_reset()")
        self._live.clear()


class RealWhatIf(WhatIf):
    """Real indexes built inside a rolled-back transaction; sets costed as the best single index."""

    def prepare(self, queries: list[WorkloadQuery], candidates: list[Candidate]) -> None:
        super().prepare(queries, candidates)
        for c in candidates:
            users = [q for q in queries if self.relevant(q, [c])]
            if not users:
                continue
            with self.conn.transaction(force_rollback=True):
                self.conn.execute(c.ddl(name="pgmill_whatif"))
                size = index_bytes(self.conn, c.schema, "pgmill_whatif")
                if size is not None:
                    self.sizes[c] = size
                for q in users:
                    self._cache[(q.name, frozenset([c]))] = self._plan_cost(q)

    def _cost(self, q: WorkloadQuery, config: frozenset[Candidate]) -> float:
        if not config:
            return self._plan_cost(q)
        if len(config) == 1:  # not prepared (a candidate added later): build it now
            [c] = config
            with self.conn.transaction(force_rollback=True):
                self.conn.execute(c.ddl(name="pgmill_whatif"))
                return self._plan_cost(q)
        return min([self.cost(q, ()), *(self.cost(q, [c]) for c in config)])

    def close(self) -> None:
        """Every real index lived in a rolled-back transaction: nothing is left to undo."""
        self._cache.clear()


def ensure_hypopg(conn: psycopg.Connection[Any]) -> bool:
    """HypoPG is installed in this database, or can be (the extension is available to CREATE)."""
    if extension_schema(conn, "hypopg") is not None:
        return True
    if not extension_available(conn, "hypopg"):
        return False
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS hypopg")
    except psycopg.Error:
        return False
    return True


def make_whatif(conn: psycopg.Connection[Any], catalog: CatalogSnapshot, backend: str = "auto") -> WhatIf:
    """HypoPG when available (or asked for), otherwise real indexes in rolled-back transactions."""
    if backend in ("auto", "hypopg") and ensure_hypopg(conn):
        return HypoWhatIf(conn, catalog)
    if backend == "hypopg":
        from pgmill.errors import DatabaseError

        raise DatabaseError("HypoPG is not available on this server (CREATE EXTENSION hypopg failed)")
    return RealWhatIf(conn, catalog)
