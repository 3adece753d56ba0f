"""Index tuning for the MCP server: HypoPG detection, hypothetical indexes in `explain`, the advisor.

HypoPG's functions live outside pg_catalog, so the read-only query guard (rightly) refuses to call them.
Two paths therefore exist, each with its own guarantee:

- `explain_hypothetical`: the model's statement still goes through the guard and runs as the read-only
  role in a READ ONLY transaction; before it, pgmill itself (not the model) calls `hypopg_create_index`
  on the same session with a statement it rebuilt from the parsed request: only column keys, INCLUDE
  columns and a WHERE predicate that passes the same function checks as a query.
- `recommend`: the advisor runs on pgmill's own tuning connection (`Target.connect`) because it needs
  statistics and pg_stat_statements, but with HypoPG that session is READ ONLY at session level
  (`default_transaction_read_only`) and the advisor is forced onto the HypoPG backend, which never builds
  an index. Were either layer to fail, the other still refuses `CREATE INDEX`.
  Without HypoPG the advisor builds each candidate for real (in rolled-back transactions): the server
  offers it then only with --allow-writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pglast
import psycopg
from pglast import ast, enums
from pglast.stream import RawStream
from psycopg import sql

from pgmill.config.tune import TuneConfig
from pgmill.db.connect import Target
from pgmill.errors import PgmillError
from pgmill.mcp.readonly import Limits, QueryFailed, QueryResult, ReadOnlyDatabase, sql_param
from pgmill.mcp.sqlcheck import QueryRefused, check_catalog, inspect
from pgmill.retry import describe
from pgmill.tune.advisor import Advice, advise

APP_NAME = "pgmill-mcp tune"
MAX_HYPOTHETICAL = 10
# access methods HypoPG (1.3) can simulate, as far as pgmill asks it to
METHODS = ("btree", "hash", "brin")


class HypoPGUnavailable(PgmillError):
    """Hypothetical indexes were asked for, but HypoPG is not installed in the database."""


@dataclass(frozen=True)
class Tuning:
    """What the server can offer for index tuning, decided once at start."""

    hypopg_schema: str | None = None  # the schema holding HypoPG's functions; None: HypoPG is not installed
    hypopg_installable: bool = False  # not installed, but the server has it (CREATE EXTENSION hypopg)

    @property
    def hypopg(self) -> bool:
        return self.hypopg_schema is not None


def detect(target: Target, *, install: bool) -> Tuning:
    """Whether HypoPG is installed in the database. With `install` (a server allowed to write) it is created
    when the server has it, as `pgmill tune` does; a read-only server changes nothing and only reports that
    it could be installed."""
    from pgmill.db.catalog import extension_available, extension_schema
    from pgmill.tune.whatif import ensure_hypopg

    try:
        with target.connect(autocommit=True, application_name=APP_NAME) as conn:
            if install:
                ensure_hypopg(conn)
            schema = extension_schema(conn, "hypopg")
            if schema is not None:
                return Tuning(schema)
            return Tuning(None, extension_available(conn, "hypopg"))
    except psycopg.Error:
        return Tuning()


# ---------------------------------------------------------------- hypothetical indexes


@dataclass(frozen=True)
class HypoIndex:
    """A hypothetical index as pgmill understood the request; `statement` is rebuilt, never the input."""

    schema: str | None
    table: str
    method: str
    keys: tuple[tuple[str, bool], ...]  # (column, descending)
    include: tuple[str, ...]
    where: str | None

    def statement(self) -> str:
        ident = sql.Identifier
        table = ident(self.schema, self.table) if self.schema else ident(self.table)
        keys = sql.SQL(", ").join(sql.SQL("{}{}").format(ident(c), sql.SQL(" DESC" if d else ""))
                                  for c, d in self.keys)
        parts: list[sql.Composable] = [sql.SQL("CREATE INDEX ON {} USING {} ({})").format(
            table, sql.SQL(self.method), keys)]
        if self.include:
            parts.append(sql.SQL(" INCLUDE ({})").format(sql.SQL(", ").join(map(ident, self.include))))
        if self.where:
            # the Postgres parser's own rendering of the request's predicate, checked like a query
            parts.append(sql.SQL(" WHERE ") + sql.SQL(self.where))
        return sql.Composed(parts).as_string(None)


def missing(tuning: Tuning) -> str:
    """Why HypoPG cannot be used, and what would fix it."""
    if tuning.hypopg_installable:
        return ("the server has it but it is not installed in this database (CREATE EXTENSION hypopg, or start "
                "the server once with --allow-writes, which installs it)")
    return "this database server does not have it (install the package, e.g. postgresql-NN-hypopg)"


def parse_hypothetical(text: str) -> HypoIndex:
    """`CREATE INDEX ... ON table (a, b DESC) [INCLUDE (c)] [WHERE ...]`, or just `table (a, b)`."""
    source = text.strip().rstrip(";").strip()
    if not source:
        raise QueryRefused("an empty hypothetical index")
    if not source.lower().startswith("create"):
        source = f"CREATE INDEX ON {source}"
    try:
        stmts = pglast.parse_sql(source)
    except pglast.parser.ParseError as exc:
        raise QueryRefused(f"hypothetical index {text!r}: not a CREATE INDEX statement or 'table (columns)':"
                           f" {exc}") from None
    if len(stmts) != 1 or not isinstance(stmts[0].stmt, ast.IndexStmt):
        raise QueryRefused(f"hypothetical index {text!r}: give one CREATE INDEX statement or 'table (columns)'")
    stmt: ast.IndexStmt = stmts[0].stmt
    if stmt.unique or stmt.primary or stmt.isconstraint:
        raise QueryRefused(f"hypothetical index {text!r}: UNIQUE and constraint indexes are not supported")
    if stmt.options or stmt.tableSpace:
        raise QueryRefused(f"hypothetical index {text!r}: WITH (...) and TABLESPACE are not supported")
    rel = stmt.relation
    if rel is None or rel.catalogname:
        raise QueryRefused(f"hypothetical index {text!r}: name a table of this database")
    method = str(stmt.accessMethod or "btree").lower()
    if method not in METHODS:
        raise QueryRefused(f"hypothetical index {text!r}: USING {method} is not supported "
                           f"(use {', '.join(METHODS)})")
    keys = tuple((_column(e, text), e.ordering == enums.SortByDir.SORTBY_DESC) for e in stmt.indexParams or ())
    include = tuple(_column(e, text) for e in stmt.indexIncludingParams or ())
    if not keys:
        raise QueryRefused(f"hypothetical index {text!r}: no key columns")
    where = RawStream()(stmt.whereClause) if stmt.whereClause is not None else None
    return HypoIndex(str(rel.schemaname) if rel.schemaname else None, str(rel.relname), method, keys, include,
                     where)


def _column(elem: Any, text: str) -> str:
    if not isinstance(elem, ast.IndexElem) or elem.expr is not None or not elem.name:
        raise QueryRefused(f"hypothetical index {text!r}: only plain columns may be keys (no expressions)")
    if elem.collation or elem.opclass or elem.ordering == enums.SortByDir.SORTBY_USING:
        raise QueryRefused(f"hypothetical index {text!r}: COLLATE, operator classes and USING orderings are "
                           "not supported")
    if elem.nulls_ordering != enums.SortByNulls.SORTBY_NULLS_DEFAULT:
        raise QueryRefused(f"hypothetical index {text!r}: NULLS FIRST/LAST is not supported")
    return str(elem.name)


def explain_hypothetical(db: ReadOnlyDatabase, tuning: Tuning, sql_text: str, params: Sequence[Any] | None,
                         indexes: Sequence[str]) -> dict[str, Any]:
    """The estimated plan of `sql_text` without and with hypothetical `indexes` (nothing is created)."""
    if tuning.hypopg_schema is None:
        raise HypoPGUnavailable(f"hypothetical indexes need the HypoPG extension: {missing(tuning)}; explain"
                                " without them works")
    if not indexes:
        raise QueryRefused("no hypothetical indexes given")
    if len(indexes) > MAX_HYPOTHETICAL:
        raise QueryRefused(f"at most {MAX_HYPOTHETICAL} hypothetical indexes at a time")
    hypos = [parse_hypothetical(t) for t in indexes]
    text = f"EXPLAIN (FORMAT TEXT) {sql_text}"
    insp = inspect(text)  # the model's statement: the same guard as `query`
    predicates = [inspect(f"SELECT 1 WHERE {h.where}") for h in hypos if h.where]
    values = [sql_param(p) for p in params or ()]
    create = sql.SQL("SELECT indexrelid, indexname FROM {}.hypopg_create_index(%s)").format(
        sql.Identifier(tuning.hypopg_schema))
    size = sql.SQL("SELECT {}.hypopg_relation_size(%s)").format(sql.Identifier(tuning.hypopg_schema))
    reset = sql.SQL("SELECT {}.hypopg_reset()").format(sql.Identifier(tuning.hypopg_schema))
    try:
        with db.transaction() as conn:
            check_catalog(conn, insp)
            for p in predicates:
                check_catalog(conn, p)
            before = _plan(db, conn, text, values)
            created: list[dict[str, Any]] = []
            for h in hypos:
                stmt = h.statement()
                row = conn.execute(create, (stmt,)).fetchone()
                assert row is not None
                bytes_ = conn.execute(size, (row[0],)).fetchone()
                created.append({"statement": stmt, "name": str(row[1]),
                                "estimated_size_bytes": int(bytes_[0]) if bytes_ and bytes_[0] is not None
                                else None})
            after = _plan(db, conn, text, values)
            conn.execute(reset)
    except psycopg.Error as exc:
        raise QueryFailed(describe(exc)) from None
    plan_after = "\n".join(str(r[0]) for r in after.rows)
    for c in created:
        c["used_in_plan"] = c["name"] in plan_after
    return {"plan_without": "\n".join(str(r[0]) for r in before.rows), "plan_with": plan_after,
            "hypothetical_indexes": created, "truncated": before.truncated or after.truncated}


def _plan(db: ReadOnlyDatabase, conn: psycopg.Connection[Any], text: str, values: list[Any]) -> QueryResult:
    # through the same streaming path as `query`: extended protocol, one statement, capped
    return db.stream(conn, text, values, db.limits.max_rows)


# ---------------------------------------------------------------- the advisor


def recommend(target: Target, project_dir: Path | None, cfg: TuneConfig, tuning: Tuning, limits: Limits, *,
              budget: str | None) -> Advice:
    """Index recommendations for the declared and observed workload; nothing is left changed.

    With HypoPG: a session that is READ ONLY at session level, the advisor forced onto HypoPG (it raises
    rather than fall back to real indexes). Without: real candidate indexes in rolled-back transactions,
    which the server offers only with --allow-writes."""
    try:
        with target.connect(autocommit=True, application_name=APP_NAME) as conn:
            if tuning.hypopg:
                for name, value in (("default_transaction_read_only", "on"),
                                    ("statement_timeout", str(limits.statement_timeout_ms)),
                                    ("lock_timeout", str(limits.lock_timeout_ms))):
                    conn.execute("SELECT pg_catalog.set_config(%s, %s, false)", (name, value))
                return advise(conn, project_dir, cfg, budget=budget, backend="hypopg")
            conn.execute("SELECT pg_catalog.set_config('lock_timeout', %s, false)", (str(limits.lock_timeout_ms),))
            return advise(conn, project_dir, cfg, budget=budget, backend="real")
    except psycopg.Error as exc:
        raise QueryFailed(describe(exc)) from None

