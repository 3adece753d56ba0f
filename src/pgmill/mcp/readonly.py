"""The read-only path every MCP tool reads through, in layers that each hold on their own.

1. The role: sessions switch to `pgmill_reader` (SELECT only). Starting is refused when that switch is
   impossible and the connecting user is a superuser, owns tables, or holds a predefined role that reaches
   files, programs or other backends: read-only would then rest on the checks below alone.
2. The statement: parsed with the Postgres parser and refused unless it is one plain read (`sqlcheck`).
3. The protocol: sent with the extended protocol (unnamed statement, never prepared), which carries exactly
   one statement, with the caller's values bound as parameters, never spliced into the text.
4. The transaction: READ ONLY, always rolled back, under a server-side statement_timeout, lock_timeout and
   idle_in_transaction_session_timeout set at session level where the statement cannot reach them.
5. The result: streamed row by row and cut at row and byte caps the caller cannot raise (`truncated`).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, cast
from uuid import UUID

import psycopg
from psycopg import sql

from pgmill.db import roles
from pgmill.db.connect import Target
from pgmill.db.migrations import migrate
from pgmill.errors import PgmillError
from pgmill.mcp.sqlcheck import QueryRefused, check_catalog, inspect
from pgmill.retry import describe

log = logging.getLogger("pgmill.mcp")

Conn = psycopg.Connection[tuple[Any, ...]]
# Predefined roles that read or write server files, run programs, signal other backends or write anything.
_POWERFUL_ROLES = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program",
                   "pg_signal_backend", "pg_write_all_data")


class NotReadOnly(PgmillError):
    """The server cannot guarantee read-only access with the configured database user."""

    exit_code = 10


class QueryFailed(PgmillError):
    """PostgreSQL refused or cancelled a statement (a timeout, a missing table, a privilege)."""


@dataclass(frozen=True)
class Limits:
    """Caps fixed when the server starts; tool arguments can lower them, never raise them."""

    max_rows: int = 500
    max_bytes: int = 256_000
    max_cell_chars: int = 2_000
    statement_timeout_ms: int = 10_000
    lock_timeout_ms: int = 2_000
    idle_in_transaction_timeout_ms: int = 20_000


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    truncated: bool = False
    truncated_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": self.rows, "row_count": len(self.rows),
                "truncated": self.truncated, "truncated_reason": self.truncated_reason}


class ReadOnlyDatabase:
    """Opens read-only sessions on a project's database; see the module docstring for the layers."""

    def __init__(self, target: Target, limits: Limits, role: str | None) -> None:
        self.target = target
        self.limits = limits
        self.role = role  # None: the login user itself, checked to be unprivileged at start

    @classmethod
    def start(cls, target: Target, schemas: Sequence[str], limits: Limits | None = None) -> ReadOnlyDatabase:
        """Bring pgmill's schema and roles up to date if allowed, then prove the read-only role works."""
        with target.connect(autocommit=True, application_name="pgmill-mcp") as conn:
            if roles.can_create_roles(conn):
                # as the operator's user, before any tool runs: the reader needs its grants on new tables
                migrate(conn)
                roles.ensure_roles(conn, list(schemas))
            role = _choose_role(conn)
        return cls(target, limits or Limits(), role)

    @contextmanager
    def transaction(self) -> Iterator[Conn]:
        """A fresh session as the read-only role, in a READ ONLY transaction that is always rolled back."""
        with self.target.connect(autocommit=True, application_name="pgmill-mcp") as conn:
            lim = self.limits
            for name, value in (("statement_timeout", lim.statement_timeout_ms),
                                ("lock_timeout", lim.lock_timeout_ms),
                                ("idle_in_transaction_session_timeout", lim.idle_in_transaction_timeout_ms),
                                ("default_transaction_read_only", "on")):
                conn.execute("SELECT pg_catalog.set_config(%s, %s, false)", (name, str(value)))
            if self.role:
                conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(self.role)))
            conn.execute("BEGIN TRANSACTION READ ONLY")
            try:
                yield conn
            finally:
                # never COMMIT: even a write that slipped through every other layer is undone; if the
                # ROLLBACK itself fails, the connection closes and the server discards the transaction
                if not conn.closed:
                    conn.execute("ROLLBACK")

    def read(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run library function `fn(conn, ...)` in a read-only transaction; errors become pgmill errors."""
        try:
            with self.transaction() as conn:
                return fn(conn, *args, **kwargs)
        except psycopg.Error as exc:
            raise QueryFailed(describe(exc)) from None

    def query(self, text: str, params: Sequence[Any] = (), max_rows: int | None = None) -> QueryResult:
        """Run one checked read-only statement; `max_rows` may only lower the server's cap."""
        insp = inspect(text)
        cap = min(max_rows, self.limits.max_rows) if max_rows and max_rows > 0 else self.limits.max_rows
        try:
            with self.transaction() as conn:
                check_catalog(conn, insp)
                return self.stream(conn, text, [sql_param(p) for p in params], cap)
        except psycopg.Error as exc:
            raise QueryFailed(describe(exc)) from None

    def stream(self, conn: Conn, text: str, params: list[Any], cap: int) -> QueryResult:
        """Run one statement already checked, in `conn`'s read-only transaction, capped at `cap` rows."""
        cur = psycopg.RawCursor(conn)  # $1-style placeholders; `%` in the statement stays literal
        # extended protocol with an unnamed statement: one statement only, never prepared, values bound
        rows = cast(Generator[Any, None, None], cur.stream(text, params))
        try:
            first = next(rows, None)
            columns = [d.name for d in cur.description or ()]
            result = QueryResult(columns)
            size = 0
            row = first
            while row is not None:
                if len(result.rows) >= cap:
                    result.truncated, result.truncated_reason = True, f"more than {cap} rows"
                    break
                values = [json_value(v, self.limits.max_cell_chars) for v in row]
                size += len(json.dumps(values, ensure_ascii=False, default=str))
                if size > self.limits.max_bytes:
                    result.truncated = True
                    result.truncated_reason = f"result larger than {self.limits.max_bytes} bytes"
                    break
                result.rows.append(values)
                row = next(rows, None)
            return result
        finally:
            rows.close()  # stops the statement on the server if rows are left


def sql_param(value: Any) -> str | None:
    """Values travel as text of unknown type, so the server types them from context, as psql users expect."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def json_value(value: Any, max_chars: int) -> Any:
    """A JSON value for one cell; long text and binary values are cut to `max_chars`."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if len(value) <= max_chars else value[:max_chars] + f"…[{len(value) - max_chars} more chars]"
    if isinstance(value, bytes | memoryview):
        raw = bytes(value)
        return {"base64": base64.b64encode(raw[:max_chars]).decode(), "bytes": len(raw)}
    if isinstance(value, Decimal | UUID | date | datetime | time | timedelta):
        return str(value)
    if isinstance(value, list | tuple):
        return [json_value(v, max_chars) for v in value][:1000]
    if isinstance(value, dict):
        text = json.dumps(value, ensure_ascii=False, default=str)
        return value if len(text) <= max_chars else json_value(text, max_chars)
    return json_value(str(value), max_chars)


def _choose_role(conn: Conn) -> str | None:
    """The role sessions will use; refuse when neither it nor the login user is safely unprivileged."""
    user = conn.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
    try:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(roles.READER)))
    except psycopg.Error:
        reasons = _privileges(conn)
        if reasons:
            raise NotReadOnly(
                f"refusing to start read-only: the database user {user} {' and '.join(reasons)}, and cannot "
                f"switch to the read-only role {roles.READER} (create it by running `pgmill run` once as a "
                f"user who may create roles, then GRANT {roles.READER} TO {user}; or connect as a user "
                "without these privileges)"
            ) from None
        log.warning("role %s is not available; reading as %s, which owns no tables and is not a superuser",
                    roles.READER, user)
        return None
    reasons = _privileges(conn)
    conn.execute("RESET ROLE")
    if reasons:
        raise NotReadOnly(f"refusing to start read-only: the role {roles.READER} {' and '.join(reasons)}")
    return roles.READER


def _privileges(conn: Conn) -> list[str]:
    """Why the current role could write despite a READ ONLY transaction (empty: it cannot)."""
    row = conn.execute(
        "SELECT r.rolsuper, EXISTS (SELECT 1 FROM pg_catalog.pg_class c"
        "   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        "   WHERE c.relowner = r.oid AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
        "   AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'),"
        " ARRAY(SELECT p.rolname FROM pg_catalog.pg_roles p WHERE p.rolname = ANY(%s)"
        "   AND pg_catalog.pg_has_role(r.oid, p.oid, 'USAGE') ORDER BY 1)"
        " FROM pg_catalog.pg_roles r WHERE r.rolname = current_user",
        (list(_POWERFUL_ROLES),),
    ).fetchone()
    assert row is not None
    reasons = []
    if row[0]:
        reasons.append("is a superuser")
    if row[1]:
        reasons.append("owns tables")
    if row[2]:
        reasons.append(f"is a member of {', '.join(row[2])}")
    return reasons


__all__ = ["Limits", "NotReadOnly", "QueryFailed", "QueryRefused", "QueryResult", "ReadOnlyDatabase"]
