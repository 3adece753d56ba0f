"""Least-privilege roles: `pgmill_loader` writes, `pgmill_reader` only reads (the MCP server, dashboards).

Both are NOLOGIN group roles: grant them to login roles (`GRANT pgmill_reader TO analyst`) or switch to
them (`SET ROLE pgmill_reader`). They are created only when the connecting user may create roles.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pgmill.retry import RetryPolicy

READER = "pgmill_reader"
LOADER = "pgmill_loader"
_RACED = (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation, psycopg.errors.InternalError_)
_RACES = RetryPolicy(attempts=5, initial_s=0.01, max_s=0.1)


def can_create_roles(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user").fetchone()
    return bool(row and row[0])


def ensure_roles(conn: psycopg.Connection[Any], schemas: list[str]) -> bool:
    """Create the roles if allowed and grant them on `schemas` (and pgmill); False when not allowed."""
    if not can_create_roles(conn):
        return False
    # Roles are cluster-wide but advisory locks are per database: projects on other databases of the same
    # server may race us on the catalog ("tuple concurrently updated"); another try settles it.
    _RACES.call(lambda: _ensure(conn, schemas), retry_if=lambda exc: isinstance(exc, _RACED))
    return True


def _ensure(conn: psycopg.Connection[Any], schemas: list[str]) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('pgmill roles'))")
        for role in (READER, LOADER):
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(READER), sql.Identifier(LOADER)))
        reader, loader = sql.Identifier(READER), sql.Identifier(LOADER)
        for schema in sorted({"pgmill", *schemas}):
            s = sql.Identifier(schema)
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, reader))
            conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(s, loader))
            conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(s, reader))
            conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA {} TO {}")
                         .format(s, loader))
            conn.execute(sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(s, loader))
            conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(s, reader))
            conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT, INSERT, UPDATE, DELETE,"
                                 " TRUNCATE ON TABLES TO {}").format(s, loader))
            conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT USAGE, SELECT ON SEQUENCES TO {}")
                         .format(s, loader))
