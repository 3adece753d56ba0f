"""What the cost meter reads: process CPU, pg_stat_statements, table and database sizes, pgmill's files."""

from __future__ import annotations

import os
import resource
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgmill.project import ProjectContext


def cpu_seconds() -> float:
    """This process's CPU so far, user + system, all its threads."""
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def alive(pid: object) -> bool:
    """A process of this host is still there (a run row left 'running' by a dead one takes no share)."""
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def statement_time_sql(conn: psycopg.Connection[Any]) -> sql.Composable | None:
    """The two sampled figures of pg_stat_statements, as a select list: this database's and this user's
    total statement time (ms) and the count of evicted entries. None without the extension (it is created
    when the library is preloaded, as the tuner does)."""
    find = ("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
            " WHERE e.extname = 'pg_stat_statements'")
    try:
        row = conn.execute(find).fetchone()
        if row is None:
            preload = conn.execute("SHOW shared_preload_libraries").fetchone()
            if preload is None or "pg_stat_statements" not in str(preload[0]):
                return None
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            row = conn.execute(find).fetchone()
            if row is None:
                return None
        schema = str(row[0])
        info = conn.execute("SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                            " WHERE n.nspname = %s AND c.relname = 'pg_stat_statements_info'", (schema,)).fetchone()
        conn.execute(sql.SQL("SELECT 1 FROM {} (false) LIMIT 1").format(
            sql.Identifier(schema, "pg_stat_statements")))  # readable by this user?
    except psycopg.Error:  # not allowed to create or read it: the database's own counters will do
        return None
    dealloc = (sql.SQL("(SELECT dealloc FROM {})").format(sql.Identifier(schema, "pg_stat_statements_info"))
               if info else sql.SQL("NULL::bigint"))
    return sql.SQL(
        "(SELECT coalesce(sum(total_exec_time), 0)::float8 FROM {fn}(false)"
        " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND userid = (SELECT oid FROM pg_roles WHERE rolname = current_user)), {dealloc}"
    ).format(fn=sql.Identifier(schema, "pg_stat_statements"), dealloc=dealloc)


def table_sizes(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], int]:
    """Every table's and materialized view's size with its indexes and TOAST, by (schema, name)."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname, pg_total_relation_size(c.oid) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')").fetchall()
    return {(str(s), str(n)): int(b) for s, n, b in rows if b is not None}


def database_size(conn: psycopg.Connection[Any]) -> int | None:
    row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row and row[0] is not None else None


def direct_growth(targets: Sequence[str], before: dict[tuple[str, str], int],
                   after: dict[tuple[str, str], int]) -> list[int]:
    """How much each run's own tables grew (a run's target_table: one table, or the models it built,
    comma-separated); a table named by several runs is shared equally."""
    named = [[_split_name(t) for t in target.split(",") if t.strip()] for target in targets]
    claims: dict[tuple[str, str], int] = {}
    for names in named:
        for key in set(names):
            claims[key] = claims.get(key, 0) + 1
    out = []
    for names in named:
        grown = 0.0
        for key in set(names):
            if key in after or key in before:
                grown += (after.get(key, 0) - before.get(key, 0)) / claims[key]
        out.append(round(grown))
    return out


def _split_name(name: str) -> tuple[str, str]:
    """'schema.table' or 'table' (in public), as pgmill's project files write them (plain identifiers)."""
    parts = [p.strip().strip('"') for p in name.strip().split(".")]
    return ("public", parts[0]) if len(parts) == 1 else (parts[-2], parts[-1])


def files_bytes(ctx: ProjectContext) -> int:
    """pgmill's own files: the project folder, except the embedded database's data (counted as the
    database's storage)."""
    skip = ctx.target.embedded.pgdata.resolve() if ctx.target.embedded is not None else None
    total = 0
    stack = [Path(ctx.dir)]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for e in entries:
            try:
                if e.is_symlink():
                    continue
                if e.is_dir():
                    if skip is None or Path(e.path).resolve() != skip:
                        stack.append(Path(e.path))
                elif e.is_file():
                    total += e.stat().st_size
            except OSError:
                continue
    return total
