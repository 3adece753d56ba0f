"""pgmill.quality_results (the history of every check) and the small sampling aggregate the checks use.

Both are migration 3 in pgmill.db.migrations, which holds SAMPLE_SIZE for the aggregate and the checks.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pgmill.db.catalog import extension_schema
from pgmill.db.migrations import migrate


def ensure_quality_schema(conn: psycopg.Connection[Any]) -> None:
    """pgmill.quality_results and the sampling aggregate are migration 3: bring the schema up to date."""
    migrate(conn)
    if not conn.autocommit:
        conn.commit()


def ensure_extension(conn: psycopg.Connection[Any], name: str) -> str | None:
    """The schema of contrib extension `name`, installing it into schema pgmill if it is missing;
    None when it cannot be installed (not shipped with the server, or no privilege)."""
    schema = extension_schema(conn, name)
    if schema is not None:
        return schema
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('pgmill ddl'))")
            conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {} SCHEMA pgmill").format(sql.Identifier(name)))
    except psycopg.Error:
        return None
    return extension_schema(conn, name)
