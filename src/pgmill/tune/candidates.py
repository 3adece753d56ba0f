"""Candidate indexes for a query's accesses, and the rule that an existing index already covers one.

The heuristics are a visible tuple of plain functions (`RULES`): each turns one table access into key
column lists; the generator then adds partial and covering variants and drops what is covered.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from pgmill.tune.analyze import TableAccess
from pgmill.tune.snapshot import CatalogSnapshot, Index, Table

_MAX_INCLUDE = 4
_MAX_INCLUDE_WIDTH = 96  # bytes: wider payloads make the index a second copy of the table
_LOW_CARDINALITY = 20  # a `col = literal` on a column with at most this many values becomes a partial index


@dataclass(frozen=True, order=True)
class Candidate:
    """A btree index the advisor may propose; ordered (for tie-breaks) by table, keys, include, predicate."""

    schema: str
    table: str
    keys: tuple[str, ...]
    desc: tuple[bool, ...]
    include: tuple[str, ...] = ()
    where: str = ""  # a conjunction of `col = literal` taken from the queries

    @property
    def name(self) -> str:
        """A deterministic name: table, key columns and a hash of the whole definition."""
        digest = hashlib.sha256(repr((self.schema, self.table, self.keys, self.desc, self.include,
                                      self.where)).encode()).hexdigest()[:8]
        stem = "_".join(("pgmill", self.table, *self.keys))[:50]
        return f"{stem}_{digest}"

    def ddl(self, *, concurrently: bool = False, name: str | None = None, only: bool = False,
            on: tuple[str, str] | None = None) -> sql.Composed:
        """CREATE INDEX for this candidate; `only`: ON ONLY a partitioned table (its partitions get none), `on`:
        (schema, table) of a partition to build it on instead of the candidate's table."""
        schema, table = on or (self.schema, self.table)
        keys = sql.SQL(", ").join(
            sql.SQL("{}{}").format(sql.Identifier(k), sql.SQL(" DESC" if d else ""))
            for k, d in zip(self.keys, self.desc, strict=True))
        parts: list[sql.Composable] = [
            sql.SQL("CREATE INDEX {}{} ON {}{}.{} ({})").format(
                sql.SQL("CONCURRENTLY ") if concurrently else sql.SQL(""), sql.Identifier(name or self.name),
                sql.SQL("ONLY ") if only else sql.SQL(""), sql.Identifier(schema), sql.Identifier(table), keys)]
        if self.include:
            parts.append(sql.SQL(" INCLUDE ({})").format(sql.SQL(", ").join(map(sql.Identifier, self.include))))
        if self.where:
            # the predicate is literal text the Postgres parser produced from the workload's own SQL
            parts.append(sql.SQL(" WHERE ") + sql.SQL(self.where))
        return sql.Composed(parts)

    def text(self, conn: psycopg.Connection[object] | None = None) -> str:
        return self.ddl().as_string(conn)

    def label(self) -> str:
        keys = ", ".join(k + (" DESC" if d else "") for k, d in zip(self.keys, self.desc, strict=True))
        out = f"{self.schema}.{self.table} ({keys})"
        if self.include:
            out += f" INCLUDE ({', '.join(self.include)})"
        if self.where:
            out += f" WHERE {self.where}"
        return out


Keys = tuple[tuple[str, bool], ...]
Rule = Callable[[TableAccess, Table, int], Iterable[Keys]]


def _selective_first(cols: list[str], t: Table) -> list[str]:
    """Equality columns ordered most selective first (ties by name), so the key narrows fastest."""
    return sorted(cols, key=lambda c: (-t.columns[c].distinct(t.rows), c))


def _asc(cols: Iterable[str]) -> Keys:
    return tuple((c, False) for c in cols)


def rule_single(a: TableAccess, t: Table, width: int) -> Iterable[Keys]:
    """Each equality, range and join column alone."""
    for c in (*a.eq, *a.ranges, *a.joins):
        yield _asc([c])


def rule_equality(a: TableAccess, t: Table, width: int) -> Iterable[Keys]:
    """The equality columns together, most selective first, then one range column after them."""
    eq = _selective_first(a.eq, t)
    for k in range(2, min(width, len(eq)) + 1):
        yield _asc(eq[:k])
    for r in a.ranges[:2]:
        if r not in eq and eq:
            yield _asc([*eq[: width - 1], r])


def rule_join(a: TableAccess, t: Table, width: int) -> Iterable[Keys]:
    """A join column with the equality columns of the same table (nested-loop lookups)."""
    eq = _selective_first(a.eq, t)
    for j in a.joins:
        if eq and j not in eq:
            yield _asc([*eq[: width - 1], j])
            yield _asc([j, *eq[: width - 1]])


def rule_top_n(a: TableAccess, t: Table, width: int) -> Iterable[Keys]:
    """ORDER BY ... LIMIT: equality columns, then the sort keys, so the scan stops after LIMIT rows."""
    if not a.order or len(a.order) > width:
        return
    eq = [c for c in _selective_first(a.eq, t) if c not in {o for o, _ in a.order}]
    order = a.order
    if all(d for _c, d in order):  # a btree reads backwards: all-DESC needs no DESC keys
        order = [(c, False) for c, _d in order]
    yield tuple(order)
    if eq:
        yield (*_asc(eq[: width - len(order)]), *order)


def rule_group(a: TableAccess, t: Table, width: int) -> Iterable[Keys]:
    """GROUP BY columns, after the equality columns: a sorted input for the aggregate."""
    if a.group and len(a.group) <= width:
        eq = [c for c in _selective_first(a.eq, t) if c not in a.group]
        yield _asc(a.group)
        if eq:
            yield _asc([*eq[: width - len(a.group)], *a.group])


RULES: tuple[Rule, ...] = (rule_single, rule_equality, rule_join, rule_top_n, rule_group)


def covers(index: Index, c: Candidate) -> bool:
    """An existing valid btree index makes `c` pointless when `c`'s keys are a prefix of its keys (same
    directions, or all flipped), it holds every column `c` would include, and it is not partial (or has
    the same predicate text). A unique index on a prefix of `c`'s keys already pins one row."""
    if not index.valid or index.method != "btree" or (index.schema, index.table[1]) != (c.schema, c.table):
        return False
    if index.predicate is not None and index.predicate.strip("()") != (c.where or ""):
        return False
    n = len(c.keys)
    ikeys = index.keys
    if index.unique and not c.include and len(ikeys) <= n and tuple(c.keys[: len(ikeys)]) == ikeys:
        return True
    if len(ikeys) < n or tuple(ikeys[:n]) != c.keys:
        return False
    same = tuple(index.desc[:n]) == c.desc
    flipped = tuple(not d for d in index.desc[:n]) == c.desc
    if not (same or flipped):
        return False
    held = {k for k in (*ikeys, *index.include) if k is not None}
    return set(c.include) <= held


def _partial_where(a: TableAccess, t: Table) -> tuple[set[str], str]:
    cols = sorted(c for c in a.consts if 0 < t.columns[c].distinct(t.rows) <= _LOW_CARDINALITY
                  and t.columns[c].n_distinct != 0)
    if not cols:
        return set(), ""
    return set(cols), " AND ".join(f"{sql.Identifier(c).as_string(None)} = {a.consts[c]}" for c in cols)


def for_access(a: TableAccess, catalog: CatalogSnapshot, width: int, max_width: int | None = None) -> list[Candidate]:
    """Every candidate for one table access: the rules' keys (at most `width` of them), plus partial and
    covering variants; `max_width` caps the columns of an index, keys and INCLUDE together.

    A covering variant comes in two forms when both fit: the extra columns as INCLUDE, and as trailing key
    columns. The second is often far smaller: btree deduplication (PostgreSQL 13+) merges equal keys, and
    INCLUDE columns turn it off (an index on (product_id, quantity) can take a quarter of the room of one
    on (product_id) INCLUDE (quantity)); the costing then picks whichever is cheaper per byte."""
    t = catalog.tables[a.table]
    keys_cap = min(width, max_width) if max_width is not None else width
    seen: set[Candidate] = set()
    fixed, where = _partial_where(a, t)
    for rule in RULES:
        for keys in rule(a, t, keys_cap):
            cols = [k for k, _d in keys]
            if len(set(cols)) != len(cols) or not all(t.columns[k].btree for k in cols):
                continue
            base = Candidate(t.schema, t.name, tuple(cols), tuple(d for _k, d in keys))
            variants = [base]
            if where:
                rest = tuple(kd for kd in keys if kd[0] not in fixed)
                if rest:
                    variants.append(Candidate(t.schema, t.name, tuple(k for k, _ in rest),
                                              tuple(d for _, d in rest), (), where))
            for v in variants:
                seen.add(v)
                extra = sorted(a.used - set(v.keys) - (fixed if v.where else set()))
                if (a.star or not 0 < len(extra) <= _MAX_INCLUDE
                        or sum(t.columns[c].width for c in extra) > _MAX_INCLUDE_WIDTH):
                    continue
                total = len(v.keys) + len(extra)
                if max_width is None or total <= max_width:
                    seen.add(Candidate(v.schema, v.table, v.keys, v.desc, tuple(extra), v.where))
                if total <= keys_cap and all(t.columns[c].btree for c in extra):
                    seen.add(Candidate(v.schema, v.table, (*v.keys, *extra), (*v.desc, *(False,) * len(extra)),
                                       (), v.where))
    return sorted(c for c in seen if not any(covers(i, c) for i in t.indexes))


def generate(accesses: Iterable[TableAccess], catalog: CatalogSnapshot, width: int,
             schemas: Iterable[str] = (), max_width: int | None = None) -> list[Candidate]:
    """Candidates for all accesses, deduplicated and in a fixed order."""
    allowed = set(schemas)
    out: set[Candidate] = set()
    for a in accesses:
        if allowed and a.table[0] not in allowed:
            continue
        out.update(for_access(a, catalog, width, max_width))
    return sorted(out)
