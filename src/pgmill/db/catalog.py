"""What pgmill asks the system catalogs, asked one way: table names, a relation's columns, extensions.

Catalog names are written pg_catalog.* so that a search_path (the MCP server's connections run the
user's) cannot put another relation in their place.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

DEFAULT_SCHEMA = "public"


def split_table(name: str) -> tuple[str, str]:
    """'name' or 'schema.name' -> (schema, name); without a schema, public."""
    schema, _, table = name.rpartition(".")
    return (schema or DEFAULT_SCHEMA), table


def table_key(name: str) -> str:
    """'schema.name', the one spelling of a table in pgmill's tables and reports."""
    return "{}.{}".format(*split_table(name))


def qualified(name: str) -> sql.Identifier:
    """The table as a schema-qualified identifier for composed SQL."""
    return sql.Identifier(*split_table(name))


def columns(conn: psycopg.Connection[Any], schema: str, name: str) -> dict[str, str]:
    """The relation's columns in table order, name -> type with modifiers (e.g. numeric(12,2)); empty when
    it does not exist. Schema pg_temp names the session's temporary tables."""
    rows = conn.execute(
        "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a"
        " WHERE a.attrelid = pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %s::text, %s::text))"
        " AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (schema, name),
    ).fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def extension_schema(conn: psycopg.Connection[Any], name: str) -> str | None:
    """The schema extension `name` is installed in; None when it is not installed in this database."""
    row = conn.execute(
        "SELECT n.nspname FROM pg_catalog.pg_extension e"
        " JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = %s",
        (name,),
    ).fetchone()
    return str(row[0]) if row else None


def extension_available(conn: psycopg.Connection[Any], name: str) -> bool:
    """The server ships extension `name`: CREATE EXTENSION can install it (given the privilege)."""
    row = conn.execute("SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = %s", (name,)).fetchone()
    return row is not None
