"""What a query asks of each table it reads, from the Postgres parser's own tree (pglast).

Every column reference is resolved against the catalog: `alias.col` through the FROM list, a bare `col`
to the one table in scope (or an enclosing scope) that has such a column; an ambiguous or unknown name is
left unresolved rather than assigned to the wrong table.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pglast import ast, enums, parse_sql
from pglast.stream import RawStream

from pgmill.tune.snapshot import CatalogSnapshot, Table, TableKey

_RANGE_OPS = {"<", ">", "<=", ">="}


@dataclass
class TableAccess:
    """The predicates, orderings and columns one query applies to one table it reads."""

    table: TableKey
    eq: list[str] = field(default_factory=list)
    consts: dict[str, str] = field(default_factory=dict)  # column -> literal SQL of `col = literal`
    ranges: list[str] = field(default_factory=list)
    joins: list[str] = field(default_factory=list)
    order: list[tuple[str, bool]] = field(default_factory=list)  # (column, descending), under a LIMIT only
    group: list[str] = field(default_factory=list)
    used: set[str] = field(default_factory=set)
    star: bool = False

    def _add(self, bucket: list[str], col: str) -> None:
        if col not in bucket:
            bucket.append(col)


@dataclass
class Analysis:
    """One statement: an access per table occurrence, and which column each `$n` parameter is compared to."""

    accesses: list[TableAccess]
    params: dict[int, tuple[TableKey, str, str]]  # $n -> (table, column, role: eq | lo | hi)
    limit_params: set[int]
    is_select: bool
    unresolved: list[str]


@dataclass
class _Scope:
    entries: dict[str, tuple[Table, TableAccess]]  # alias (or table name) -> table
    parent: _Scope | None
    order: list[str] = field(default_factory=list)


class _Analyzer:
    def __init__(self, catalog: CatalogSnapshot) -> None:
        self.catalog = catalog
        self.accesses: list[TableAccess] = []
        self.params: dict[int, tuple[TableKey, str, str]] = {}
        self.limit_params: set[int] = set()
        self.unresolved: list[str] = []
        self.ctes: set[str] = set()

    # ------------------------------------------------------------ statements and FROM

    def select(self, stmt: Any, parent: _Scope | None) -> None:
        if stmt.withClause is not None:
            for cte in stmt.withClause.ctes or ():
                self.ctes.add(cte.ctename)
                if isinstance(cte.ctequery, ast.SelectStmt):
                    self.select(cte.ctequery, parent)
        if stmt.op != enums.SetOperation.SETOP_NONE:
            for side in (stmt.larg, stmt.rarg):
                if side is not None:
                    self.select(side, parent)
            return
        scope = _Scope({}, parent)
        joins: list[Any] = []
        for item in stmt.fromClause or ():
            self._from(item, scope, joins)
        for quals in joins:
            self._predicates(quals, scope)
        if stmt.whereClause is not None:
            self._predicates(stmt.whereClause, scope)
        targets = {t.name: t.val for t in stmt.targetList or () if isinstance(t, ast.ResTarget) and t.name}
        positional = [t.val for t in stmt.targetList or () if isinstance(t, ast.ResTarget)]
        if stmt.limitCount is not None and stmt.sortClause:
            self._order(stmt.sortClause, scope, targets, positional)
        for p in _param_numbers(stmt.limitCount) | _param_numbers(stmt.limitOffset):
            self.limit_params.add(p)
        if stmt.groupClause:
            self._group(stmt.groupClause, scope, positional)
        for node in (stmt.targetList, stmt.groupClause, stmt.sortClause, stmt.havingClause, stmt.whereClause,
                     stmt.distinctClause, joins):
            self._uses(node, scope)

    def _from(self, item: Any, scope: _Scope, joins: list[Any]) -> None:
        if isinstance(item, ast.RangeVar):
            relname = str(item.relname)
            if item.schemaname is None and relname in self.ctes:
                return
            table = self.catalog.find(item.schemaname, relname)
            if table is None:
                self.unresolved.append(relname)
                return
            access = TableAccess(table.key)
            self.accesses.append(access)
            alias = str(item.alias.aliasname) if item.alias is not None else relname
            scope.entries[alias] = (table, access)
            scope.order.append(alias)
        elif isinstance(item, ast.JoinExpr):
            self._from(item.larg, scope, joins)
            self._from(item.rarg, scope, joins)
            if item.quals is not None:
                joins.append(item.quals)
            for name in item.usingClause or ():
                col = str(name.sval)
                owners = [e for e in scope.entries.values() if col in e[0].columns]
                for _table, access in owners:
                    access._add(access.joins, col)
                    access.used.add(col)
        elif isinstance(item, ast.RangeSubselect) and isinstance(item.subquery, ast.SelectStmt):
            self.select(item.subquery, scope.parent)

    # ------------------------------------------------------------ column resolution

    def resolve(self, ref: Any, scope: _Scope | None) -> tuple[TableAccess, str] | None:
        names = [str(f.sval) for f in ref.fields if isinstance(f, ast.String)]
        if len(names) != len(ref.fields) or not names:
            return None  # `t.*` or `*`
        col = names[-1]
        qualifier = names[-2] if len(names) >= 2 else None
        schema = names[-3] if len(names) >= 3 else None
        s = scope
        while s is not None:
            if qualifier is not None:
                entry = s.entries.get(qualifier)
                if entry is not None and (schema is None or entry[0].schema == schema):
                    return (entry[1], col) if col in entry[0].columns else None
            else:
                owners = [e for e in s.entries.values() if col in e[0].columns]
                if len(owners) == 1:
                    return owners[0][1], col
                if len(owners) > 1:
                    self.unresolved.append(col)  # ambiguous: Postgres itself would refuse it
                    return None
            s = s.parent
        return None

    def _star(self, ref: Any, scope: _Scope) -> None:
        names = [str(f.sval) for f in ref.fields if isinstance(f, ast.String)]
        if names:
            entry = scope.entries.get(names[-1])
            if entry is not None:
                entry[1].star = True
        else:
            for _t, access in scope.entries.values():
                access.star = True

    def _uses(self, node: Any, scope: _Scope) -> None:
        for ref in _column_refs(node):
            if any(isinstance(f, ast.A_Star) for f in ref.fields):
                self._star(ref, scope)
                continue
            hit = self.resolve(ref, scope)
            if hit is not None:
                hit[0].used.add(hit[1])

    # ------------------------------------------------------------ predicates

    def _predicates(self, node: Any, scope: _Scope) -> None:
        if isinstance(node, ast.BoolExpr):
            if node.boolop == enums.BoolExprType.AND_EXPR:
                for arg in node.args or ():
                    self._predicates(arg, scope)
            else:
                self._sublinks(node, scope)
            return
        if isinstance(node, ast.A_Expr):
            self._a_expr(node, scope)
        elif isinstance(node, ast.SubLink):
            self._sublink(node, scope)
        else:
            self._sublinks(node, scope)

    def _a_expr(self, node: Any, scope: _Scope) -> None:
        kind = node.kind
        op = node.name[-1].sval if node.name else ""
        left = self._col(node.lexpr, scope)
        if kind == enums.A_Expr_Kind.AEXPR_OP and op in ("=", *_RANGE_OPS):
            right = self._col(node.rexpr, scope)
            if left is not None and right is not None and left[0] is not right[0]:
                for access, col in (left, right):
                    access._add(access.joins, col)
            elif left is not None and right is None and _is_value(node.rexpr):
                self._compare(left, op, node.rexpr)
            elif right is not None and left is None and _is_value(node.lexpr):
                self._compare(right, _flip(op), node.lexpr)
        elif kind == enums.A_Expr_Kind.AEXPR_IN and left is not None and _is_value(node.rexpr):
            left[0]._add(left[0].eq, left[1])
            self._bind(node.rexpr, left, "eq")
        elif kind in (enums.A_Expr_Kind.AEXPR_BETWEEN, enums.A_Expr_Kind.AEXPR_BETWEEN_SYM) and left is not None:
            bounds = list(node.rexpr or ())
            if len(bounds) == 2 and all(_is_value(b) for b in bounds):
                left[0]._add(left[0].ranges, left[1])
                self._bind(bounds[0], left, "lo")
                self._bind(bounds[1], left, "hi")
        elif kind == enums.A_Expr_Kind.AEXPR_LIKE and op == "~~" and left is not None:
            if isinstance(node.rexpr, ast.A_Const) and isinstance(node.rexpr.val, ast.String):
                if str(node.rexpr.val.sval)[:1] not in ("%", "_", ""):
                    left[0]._add(left[0].ranges, left[1])
        self._sublinks(node, scope)

    def _compare(self, target: tuple[TableAccess, str], op: str, value: Any) -> None:
        access, col = target
        if op == "=":
            access._add(access.eq, col)
            if isinstance(value, ast.A_Const) and not value.isnull:
                access.consts.setdefault(col, RawStream()(value))
            self._bind(value, target, "eq")
        else:
            access._add(access.ranges, col)
            self._bind(value, target, "lo" if op in (">", ">=") else "hi")

    def _bind(self, value: Any, target: tuple[TableAccess, str], role: str) -> None:
        for n in sorted(_param_numbers(value)):
            self.params.setdefault(n, (target[0].table, target[1], role))

    def _col(self, node: Any, scope: _Scope) -> tuple[TableAccess, str] | None:
        if isinstance(node, ast.TypeCast):
            node = node.arg  # `col::type` still uses an index when the cast is binary-compatible; costing decides
        if isinstance(node, ast.ColumnRef):
            return self.resolve(node, scope)
        return None

    def _sublink(self, node: Any, scope: _Scope) -> None:
        if node.subLinkType == enums.SubLinkType.ANY_SUBLINK and node.testexpr is not None:
            hit = self._col(node.testexpr, scope)
            if hit is not None:
                hit[0]._add(hit[0].joins, hit[1])
        if isinstance(node.subselect, ast.SelectStmt):
            self.select(node.subselect, scope)

    def _sublinks(self, node: Any, scope: _Scope) -> None:
        for sub in _walk(node, ast.SubLink):
            self._sublink(sub, scope)

    # ------------------------------------------------------------ ORDER BY ... LIMIT and GROUP BY

    def _order(self, sort: Any, scope: _Scope, targets: dict[str, Any], positional: list[Any]) -> None:
        cols: list[tuple[TableAccess, str, bool]] = []
        for item in sort:
            node = _output(item.node, targets, positional)
            hit = self._col(node, scope)
            if hit is None:
                return  # ordering by an expression or an aggregate: no index gives it
            cols.append((hit[0], hit[1], item.sortby_dir == enums.SortByDir.SORTBY_DESC))
        owners = {id(c[0]) for c in cols}
        if len(owners) == 1:
            access = cols[0][0]
            access.order = [(c, d) for _a, c, d in cols]

    def _group(self, group: Any, scope: _Scope, positional: list[Any]) -> None:
        for item in group:
            hit = self._col(_output(item, {}, positional), scope)
            if hit is not None:
                hit[0]._add(hit[0].group, hit[1])


def _output(node: Any, targets: dict[str, Any], positional: list[Any]) -> Any:
    """ORDER BY 2 / ORDER BY alias name the output column; GROUP BY 1 names one too."""
    if isinstance(node, ast.A_Const) and isinstance(node.val, ast.Integer):
        pos = int(node.val.ival or 0)
        if 0 < pos <= len(positional):
            return positional[pos - 1]
    fields: tuple[Any, ...] = getattr(node, "fields", None) or ()
    if isinstance(node, ast.ColumnRef) and len(fields) == 1 and isinstance(fields[0], ast.String):
        name = str(fields[0].sval)
        if name in targets:
            return targets[name]
    return node


def _flip(op: str) -> str:
    return {"<": ">", ">": "<", "<=": ">=", ">=": "<="}.get(op, op)


def _is_value(node: Any) -> bool:
    """A constant, a parameter or an expression of them (now() - interval '7 days'): no column inside."""
    if node is None:
        return False
    if isinstance(node, ast.SubLink):
        return False
    return not any(True for _ in _column_refs(node))


def _children(node: Any) -> Iterator[Any]:
    if isinstance(node, (list, tuple)):
        yield from node
    elif isinstance(node, ast.Node):
        for name in getattr(node, "__slots__", ()):
            value = getattr(node, name, None)
            if isinstance(value, (ast.Node, list, tuple)):
                yield value


def _walk(node: Any, kind: type[Any]) -> Iterator[Any]:
    """Nodes of `kind` under `node`, not descending into sub-selects (they are analysed on their own)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, kind):
            yield n
            if kind is ast.SubLink:
                continue
        if isinstance(n, (ast.SelectStmt, ast.SubLink)) and n is not node:
            continue
        stack.extend(reversed(list(_children(n))))


def _column_refs(node: Any) -> Iterator[Any]:
    yield from _walk(node, ast.ColumnRef)


def _param_numbers(node: Any) -> set[int]:
    return {int(p.number) for p in _walk(node, ast.ParamRef)} if node is not None else set()


def analyze(sql_text: str, catalog: CatalogSnapshot) -> Analysis:
    """Parse one statement and describe what it asks of each table (empty for anything but a SELECT)."""
    stmts = parse_sql(sql_text)
    if len(stmts) != 1 or not isinstance(stmts[0].stmt, ast.SelectStmt):
        return Analysis([], {}, set(), False, [])
    a = _Analyzer(catalog)
    a.select(stmts[0].stmt, None)
    return Analysis(a.accesses, a.params, a.limit_params, True, a.unresolved)
