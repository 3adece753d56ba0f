"""What-if costing: the planner's estimated cost of a query under a set of candidate indexes.

With HypoPG the indexes are hypothetical (catalog-free, this session only). Without it each candidate is
built for real inside a transaction that is rolled back, so no other session ever sees it; a set of
several candidates on the tables of one query is then costed as the best of its single-index costs.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import psycopg

from pgmill.tune.candidates import Candidate
from pgmill.tune.catalog import Catalog, Table
from pgmill.tune.workload import WorkloadQuery

COST_SAMPLES = 3  # parameter sets a query is costed with (their mean)
_PAGE = 8192
_FILL = 0.9  # btree leaf fillfactor


def explain_json(conn: psycopg.Connection[Any], query: WorkloadQuery, params: Sequence[Any],
                 generic: bool = False) -> dict[str, Any]:
    """The top plan node of EXPLAIN (FORMAT JSON), planned with these parameter values."""
    opts = "GENERIC_PLAN, FORMAT JSON" if generic else "FORMAT JSON"
    with psycopg.RawCursor(conn) as cur:
        cur.execute(f"EXPLAIN ({opts}) {query.sql}".encode(), None if generic else list(params))
        row = cur.fetchone()
    assert row is not None
    doc = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    return dict(doc[0]["Plan"])


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


def estimate_size(c: Candidate, t: Table) -> int:
    """Bytes of the built btree: entries x (8-byte tuple header + aligned key and INCLUDE widths + 4-byte
    line pointer) over 90%-full 8 kB leaf pages, plus inner pages and the metapage. Repeated keys are
    deduplicated (PostgreSQL 13+: one key and a 6-byte heap pointer per row) unless INCLUDE columns or the
    key's type rule it out."""
    rows = max(t.rows * _selectivity(c, t), 1.0)
    width = 0
    for col in (*c.keys, *c.include):
        column = t.columns[col]
        align = {"c": 1, "s": 2, "i": 4, "d": 8}.get(column.align, 4)
        width = math.ceil(width / align) * align + column.width
    tuple_bytes = math.ceil((8 + width) / 8) * 8 + 4
    distinct = min(rows, math.prod(t.columns[k].distinct(t.rows) for k in c.keys))
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


class WhatIf(ABC):
    """Costs queries under candidate index sets; every figure is cached, so repeated questions are free."""

    def __init__(self, conn: psycopg.Connection[Any], catalog: Catalog, generic_plans: bool) -> None:
        self.conn = conn
        self.catalog = catalog
        self.generic_plans = generic_plans
        self.kind = "real"
        self._cache: dict[tuple[str, frozenset[Candidate]], float] = {}
        self.sizes: dict[Candidate, int] = {}
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
            self.sizes[c] = estimate_size(c, self.catalog.tables[(c.schema, c.table)])
        return self.sizes[c]

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
        if not sets:
            if not self.generic_plans:
                return 0.0
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

    def __init__(self, conn: psycopg.Connection[Any], catalog: Catalog, generic_plans: bool) -> None:
        super().__init__(conn, catalog, generic_plans)
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
                row = self.conn.execute(
                    "SELECT pg_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = %s AND c.relname = 'pgmill_whatif'", (c.schema,)).fetchone()
                self.sizes[c] = int(row[0]) if row else estimate_size(c, self.catalog.tables[(c.schema, c.table)])
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


def has_hypopg(conn: psycopg.Connection[Any]) -> bool:
    """HypoPG is installed in this database, or can be (the extension is available to CREATE)."""
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'hypopg'").fetchone():
        return True
    if not conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'hypopg'").fetchone():
        return False
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS hypopg")
    except psycopg.Error:
        return False
    return True


def make_whatif(conn: psycopg.Connection[Any], catalog: Catalog, backend: str = "auto") -> WhatIf:
    """HypoPG when available (or asked for), otherwise real indexes in rolled-back transactions."""
    generic = catalog.server_version >= 160000
    if backend in ("auto", "hypopg") and has_hypopg(conn):
        return HypoWhatIf(conn, catalog, generic)
    if backend == "hypopg":
        from pgmill.errors import DatabaseError

        raise DatabaseError("HypoPG is not available on this server (CREATE EXTENSION hypopg failed)")
    return RealWhatIf(conn, catalog, generic)
