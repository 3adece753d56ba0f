"""Which relations a model reads, found by parsing its SQL with the Postgres parser itself (pglast).

Every `RangeVar` in the statement is a relation read, wherever it sits (FROM, JOIN, subqueries in any
clause, LATERAL, set operations, function arguments), except an unqualified name that a CTE in scope
defines: `WITH orders AS (...) SELECT * FROM orders` reads the CTE, not the table. Scoping follows
Postgres: a CTE is visible in the rest of its statement and in later CTEs of the same WITH (in all of
them, itself included, under WITH RECURSIVE), and an inner WITH shadows an outer one.

Names come out as the parser folded them: unquoted identifiers in lower case, quoted ones as written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pglast
from pglast import ast
from pglast.parser import ParseError

from pgmill.transform.relation import Relation, SqlError

__all__ = ["Relation", "SqlError", "parse_model", "parse_select", "references"]


def parse_select(text: str) -> tuple[ast.SelectStmt, str]:
    """The single SELECT in `text` and its source text without the trailing semicolon and comments."""
    try:
        stmts = pglast.parse_sql(text)
    except ParseError as exc:
        loc = exc.args[1] if len(exc.args) > 1 else None  # pglast: (message, character offset)
        line = text[:loc].count("\n") + 1 if isinstance(loc, int) and loc > 0 else None
        raise SqlError(f"line {line}: {exc.args[0]}" if line else str(exc.args[0])) from exc
    if len(stmts) != 1:
        raise SqlError(f"a model is one SELECT statement; found {len(stmts)} statements")
    raw = stmts[0]
    if not isinstance(raw.stmt, ast.SelectStmt) or raw.stmt.intoClause is not None:
        kind = "SELECT ... INTO" if isinstance(raw.stmt, ast.SelectStmt) else type(raw.stmt).__name__
        raise SqlError(f"a model is one SELECT statement (WITH ... SELECT, VALUES); found {kind}")
    start = raw.stmt_location or 0
    body = text[start: start + raw.stmt_len] if raw.stmt_len else text[start:]
    return raw.stmt, body.strip()


def references(text: str) -> list[Relation]:
    """The relations `text` (one SELECT) reads, sorted and without repeats."""
    return parse_model(text)[1]


def parse_model(text: str) -> tuple[str, list[Relation]]:
    """The SELECT's own text (see parse_select) and the relations it reads, from one parse."""
    stmt, body = parse_select(text)
    return body, sorted(set(_walk(stmt, frozenset())), key=Relation.sort_key)


def _walk(node: object, ctes: frozenset[str]) -> Iterator[Relation]:
    if isinstance(node, ast.RangeVar):
        if node.schemaname is None and node.catalogname is None and node.relname in ctes:
            return
        yield Relation(node.schemaname, str(node.relname))
    elif isinstance(node, ast.SelectStmt | ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt | ast.MergeStmt):
        yield from _statement(node, ctes)
    elif isinstance(node, ast.Node):
        for child in _children(node):
            yield from _walk(child, ctes)
    elif isinstance(node, tuple | list):
        for child in node:
            yield from _walk(child, ctes)


def _statement(node: ast.Node, ctes: frozenset[str]) -> Iterator[Relation]:
    if not isinstance(node, ast.SelectStmt):
        # a model only reads: a data-modifying CTE would write on every run, behind pgmill's back
        raise SqlError(f"a model only reads; found {type(node).__name__} inside a WITH")
    with_clause = getattr(node, "withClause", None)
    if with_clause is not None:
        defined = [c.ctename for c in with_clause.ctes or ()]
        if with_clause.recursive:
            ctes = ctes | set(defined)
            for cte in with_clause.ctes:
                yield from _walk(cte.ctequery, ctes)
        else:
            for cte in with_clause.ctes or ():
                yield from _walk(cte.ctequery, ctes)
                ctes = ctes | {cte.ctename}
    for child in _children(node, skip=("withClause",)):
        yield from _walk(child, ctes)


def _children(node: ast.Node, skip: Iterable[str] = ()) -> Iterator[object]:
    for attr in node.__slots__:  # type: ignore[attr-defined]  # generated AST classes declare them
        if attr in skip:
            continue
        value = getattr(node, attr, None)
        if isinstance(value, ast.Node | tuple | list):
            yield value
