"""What a read-only statement may contain, decided with the Postgres parser (pglast) before it is sent.

Two steps. `inspect` is pure: one statement, a plain SELECT / WITH / VALUES / TABLE or an EXPLAIN of one,
no data-modifying CTE, no SELECT INTO, no FOR UPDATE/SHARE, no function on the deny list; it returns every
name the statement could use to run code (functions, operators, casts, attribute notation). `check_catalog`
then looks those names up in the database: only built-in (pg_catalog), side-effect-free functions may be
called, and no name may be shadowed by an object in another schema, which anyone with CREATE there could
have planted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pglast
from pglast import ast

from pgmill.errors import PgmillError

SYSTEM_SCHEMA = "pg_catalog"

# Refused wherever they appear, whatever the catalog says: they sleep, read or write files, run SQL given as
# text (which would bypass this check), signal backends, change settings, take locks that outlive the
# statement, or touch large objects, replication, WAL, statistics or other databases.
DENIED_NAMES = frozenset({
    "pg_sleep", "pg_sleep_for", "pg_sleep_until", "pg_read_file", "pg_read_binary_file", "pg_stat_file",
    "set_config", "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile",
    "pg_notify", "pg_promote", "pg_switch_wal", "pg_export_snapshot", "pg_import_system_collations",
    "nextval", "setval", "setseed", "txid_current", "pg_current_xact_id", "pg_nextoid",
    "query_to_xml", "query_to_xml_and_xmlschema", "query_to_xmlschema", "ts_stat", "ts_rewrite",
    "loread", "lowrite", "gin_clean_pending_list",
})
DENIED_PREFIXES = (
    "lo_", "dblink", "pg_advisory", "pg_try_advisory", "pg_ls_", "pg_file_", "pg_logical_", "pg_replication_",
    "pg_create_", "pg_drop_", "pg_copy_", "pg_backup_", "pg_wal_replay_", "pg_stat_reset", "pg_log_",
    "pg_restore_", "pg_clear_", "binary_upgrade_", "brin_", "cursor_to_xml", "table_to_xml",
    "schema_to_xml", "database_to_xml", "pg_sync_", "pg_prewarm",
)
# Volatile built-ins that only read or compute; every other volatile function is refused.
ALLOWED_VOLATILE = frozenset({
    "random", "random_normal", "gen_random_uuid", "uuidv4", "uuidv7", "clock_timestamp", "timeofday",
    "array_shuffle", "array_sample", "pg_relation_size", "pg_total_relation_size", "pg_table_size",
    "pg_indexes_size", "pg_database_size", "pg_tablespace_size", "pg_is_in_recovery", "pg_blocking_pids",
    "pg_jit_available", "pg_current_wal_lsn", "pg_partition_tree", "pg_partition_ancestors",
})
EXPLAIN_OPTIONS = frozenset({
    "analyze", "verbose", "costs", "settings", "generic_plan", "buffers", "serialize", "wal", "timing",
    "summary", "memory", "format",
})
_WRITES = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)


class QueryRefused(PgmillError):
    """A statement the read-only guard will not send; the message says why and what is allowed."""

    exit_code = 9


Name = tuple[str | None, str]  # (schema or None, name)


@dataclass(frozen=True)
class Inspection:
    """The names in one statement through which it could run code."""

    functions: frozenset[Name] = field(default_factory=frozenset)
    operators: frozenset[Name] = field(default_factory=frozenset)
    types: frozenset[Name] = field(default_factory=frozenset)
    attributes: frozenset[str] = field(default_factory=frozenset)  # `x.name`: a column, or name(x)
    explain: bool = False


def denied(name: str) -> bool:
    n = name.lower()
    return n in DENIED_NAMES or n.startswith(DENIED_PREFIXES)


def inspect(text: str) -> Inspection:
    """Parse `text` and refuse anything but one read-only statement; return the names to check."""
    try:
        stmts = pglast.parse_sql(text)
    except pglast.parser.ParseError as exc:
        raise QueryRefused(f"not valid PostgreSQL SQL: {exc}") from exc
    if len(stmts) != 1:
        raise QueryRefused(f"send exactly one statement (found {len(stmts)}); stacked statements are refused")
    stmt: Any = stmts[0].stmt
    explain = isinstance(stmt, ast.ExplainStmt)
    if explain:
        _check_explain_options(stmt)
        stmt = stmt.query
    if not isinstance(stmt, ast.SelectStmt):
        kind = type(stmt).__name__.removesuffix("Stmt").upper()
        raise QueryRefused(f"only SELECT, WITH, VALUES, TABLE or EXPLAIN of one may run here, not {kind}")
    functions: set[Name] = set()
    operators: set[Name] = set()
    types: set[Name] = set()
    attributes: set[str] = set()
    for node in _walk(stmt):
        if isinstance(node, _WRITES):
            raise QueryRefused("data-modifying statements (also inside WITH) are refused: this server only reads")
        if isinstance(node, ast.IntoClause):
            raise QueryRefused("SELECT ... INTO creates a table and is refused: this server only reads")
        if isinstance(node, ast.LockingClause):
            raise QueryRefused("FOR UPDATE / FOR SHARE take row locks and are refused: this server only reads")
        if isinstance(node, ast.FuncCall):
            functions.add(_qualified(node.funcname, "function"))
        elif isinstance(node, ast.A_Expr) and node.name:
            operators.add(_qualified(node.name, "operator"))
        elif isinstance(node, ast.TypeCast) and node.typeName is not None:
            types.add(_qualified(node.typeName.names, "type"))
        elif isinstance(node, ast.ColumnRef):
            attributes.update(str(f.sval) for f in (node.fields or ())[1:] if isinstance(f, ast.String))
        elif isinstance(node, ast.A_Indirection):
            attributes.update(str(f.sval) for f in (node.indirection or ()) if isinstance(f, ast.String))
    for _schema, name in functions:
        if denied(name):
            raise QueryRefused(f"function {name}() is refused: it has side effects or reaches outside the query")
    for attr in attributes:
        if denied(attr):
            raise QueryRefused(f"'.{attr}' is refused: attribute notation would call the function {attr}()")
    return Inspection(frozenset(functions), frozenset(operators), frozenset(types), frozenset(attributes),
                      explain)


def _check_explain_options(stmt: ast.ExplainStmt) -> None:
    for opt in stmt.options or ():
        if isinstance(opt, ast.DefElem) and str(opt.defname).lower() not in EXPLAIN_OPTIONS:
            raise QueryRefused(f"EXPLAIN option {opt.defname} is not allowed")


def _qualified(names: Any, what: str) -> Name:
    parts = [str(n.sval) for n in names or () if isinstance(n, ast.String)]
    if not parts:
        raise QueryRefused(f"unsupported {what} name")
    if len(parts) > 2:
        raise QueryRefused(f"{what} {'.'.join(parts)}: names in other databases are refused")
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def _walk(root: ast.Node) -> Iterator[ast.Node]:
    """Every node below `root`, whatever the clause: FROM items, CTEs, sublinks, window and sort clauses."""
    stack: list[Any] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, ast.Node):
            yield item
            stack.extend(getattr(item, attr, None) for attr in getattr(type(item), "__slots__", ()))


# ---------------------------------------------------------------- the catalog step


@dataclass(frozen=True)
class _Proc:
    schema: str
    volatile: bool


def check_catalog(conn: Any, insp: Inspection) -> None:
    """Refuse names that resolve (or could resolve) to code outside pg_catalog, or to side effects."""
    names = sorted({n for _, n in insp.functions} | set(insp.attributes))
    procs: dict[str, list[_Proc]] = {}
    one_arg: set[str] = set()
    if names:
        rows = conn.execute(
            "SELECT p.proname, n.nspname, p.provolatile = 'v',"
            " p.pronargs >= 1 AND p.pronargs - p.pronargdefaults <= 1"
            " FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
            " WHERE p.proname = ANY(%s)",
            (names,),
        ).fetchall()
        for name, schema, volatile, single in rows:
            procs.setdefault(name, []).append(_Proc(schema, bool(volatile)))
            if single:
                one_arg.add(name)
    for schema, name in sorted(insp.functions, key=lambda n: (n[0] or "", n[1])):
        _check_function(schema, name, procs.get(name, []))
    for attr in sorted(insp.attributes & one_arg):
        try:
            _check_function(None, attr, procs.get(attr, []))
        except QueryRefused as exc:
            raise QueryRefused(f"'.{attr}' could call a function through attribute notation: {exc}") from None
    _check_operators(conn, insp.operators)
    _check_types(conn, insp.types)


def _check_function(schema: str | None, name: str, procs: list[_Proc]) -> None:
    if schema is not None and schema != SYSTEM_SCHEMA:
        raise QueryRefused(f"function {schema}.{name}() is refused: only built-in functions (schema pg_catalog)"
                           " may be called")
    builtin = [p for p in procs if p.schema == SYSTEM_SCHEMA]
    others = sorted({p.schema for p in procs if p.schema != SYSTEM_SCHEMA})
    if not builtin:
        where = f" (it is defined in schema {', '.join(others)})" if others else ""
        raise QueryRefused(f"function {name}() is refused: only built-in functions may be called{where}")
    if schema is None and others:
        raise QueryRefused(f"function {name}() is also defined in schema {', '.join(others)}, which could "
                           f"take the call; write pg_catalog.{name}(...) to call the built-in")
    if any(p.volatile for p in builtin) and name not in ALLOWED_VOLATILE:
        raise QueryRefused(f"function {name}() is refused: it is volatile (may have side effects)")


def _check_operators(conn: Any, operators: frozenset[Name]) -> None:
    for schema, op in operators:
        if schema is not None and schema != SYSTEM_SCHEMA:
            raise QueryRefused(f"operator {schema}.{op} is refused: only built-in operators may be used")
    unqualified = sorted({op for schema, op in operators if schema is None})
    if not unqualified:
        return
    rows = conn.execute(
        "SELECT DISTINCT o.oprname, n.nspname FROM pg_catalog.pg_operator o"
        " JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace"
        " WHERE o.oprname = ANY(%s) AND n.nspname <> 'pg_catalog'",
        (unqualified,),
    ).fetchall()
    if rows:
        op, schema = rows[0]
        raise QueryRefused(f"operator {op} is also defined in schema {schema}, whose code could run; use "
                           f"OPERATOR(pg_catalog.{op})")


def _check_types(conn: Any, types: frozenset[Name]) -> None:
    """A cast runs the target type's input function, any cast function into it and a domain's CHECK
    expressions: refuse types where any of those could be code outside pg_catalog."""
    names = sorted({n for _, n in types})
    if not names:
        return
    rows = conn.execute(
        "SELECT t.typname, tn.nspname FROM pg_catalog.pg_type t"
        " JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace"
        " WHERE t.typname = ANY(%s) AND ("
        "  t.typinput::oid IN (SELECT p.oid FROM pg_catalog.pg_proc p WHERE p.pronamespace <> 'pg_catalog'::regnamespace)"
        "  OR EXISTS (SELECT 1 FROM pg_catalog.pg_cast c JOIN pg_catalog.pg_proc p ON p.oid = c.castfunc"
        "             WHERE c.casttarget = t.oid AND p.pronamespace <> 'pg_catalog'::regnamespace)"
        "  OR (t.typtype = 'd' AND EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k"
        "                                 WHERE k.contypid = t.oid AND k.contype = 'c')))",
        (names,),
    ).fetchall()
    if rows:
        name, schema = rows[0]
        raise QueryRefused(f"a cast to {schema}.{name} is refused: it could run code outside pg_catalog "
                           "(its input or cast function, or a domain CHECK)")
