"""What the catalog says about a checked table: its columns and the uniqueness its indexes already prove."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from pgmill.db import catalog
from pgmill.db.catalog import qualified, split_table, table_key


@dataclass
class TableInfo:
    name: str  # schema.table
    columns: dict[str, str]  # name -> SQL type, in table order
    unique_indexes: list[tuple[str, ...]] = field(default_factory=list)  # plain, valid, non-partial
    not_null: set[str] = field(default_factory=set)
    nulls_not_distinct: set[tuple[str, ...]] = field(default_factory=set)
    sample_key: tuple[str, ...] = ()
    addressable: bool = True  # a plain table or materialized view: a row's ctid finds it again

    @property
    def ident(self) -> sql.Identifier:
        return qualified(self.name)

    def key_is_unique(self, key: tuple[str, ...]) -> str | None:
        """The index columns that already make `key` unique (rows with a NULL in the key aside), if any."""
        for idx in self.unique_indexes:
            if set(idx) <= set(key):
                return ", ".join(idx)
        return None

    def rows_are_unique(self) -> str | None:
        """An index that makes whole-row duplicates impossible: unique over columns that cannot be NULL."""
        for idx in self.unique_indexes:
            if set(idx) <= self.not_null or idx in self.nulls_not_distinct:
                return ", ".join(idx)
        return None

    def missing(self, columns: tuple[str, ...]) -> str | None:
        """A message for the first of `columns` the table lacks, with the nearest name; None if all exist."""
        for c in columns:
            if c not in self.columns:
                close = difflib.get_close_matches(c, list(self.columns), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else f" (columns: {', '.join(self.columns)})"
                return f"column {c!r} is not in {self.name}{hint}"
        return None


def base_type(sql_type: str) -> str:
    """A column's type as format_type writes it, without modifiers: `numeric(12,2)` -> `numeric`,
    `timestamp(3) with time zone` -> `timestamp with time zone`, `character varying(20)[]` ->
    `character varying[]`."""
    return re.sub(r"\(\d+(,\d+)?\)", "", sql_type)


# quality/checks.py (edited on another branch) imports it from here; the rule is db.catalog's


def table_info(conn: psycopg.Connection[Any], name: str) -> TableInfo | None:
    """The table (or view, or materialized view) `name`, or None when it does not exist."""
    name = table_key(name)
    schema, table = split_table(name)
    cols = catalog.columns(conn, schema, table)
    if not cols:
        return None
    rows = conn.execute(
        "SELECT array(SELECT a.attname::text FROM unnest(i.indkey) k JOIN pg_attribute a"
        "        ON a.attrelid = i.indrelid AND a.attnum = k),"
        "       coalesce((to_jsonb(i) ->> 'indnullsnotdistinct')::boolean, false)"
        " FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND i.indisunique AND i.indisvalid"
        "   AND i.indpred IS NULL AND i.indexprs IS NULL",
        (schema, table),
    ).fetchall()
    rel = conn.execute(
        "SELECT c.relkind, array(SELECT a.attname::text FROM pg_attribute a"
        "                        WHERE a.attrelid = c.oid AND a.attnum > 0 AND a.attnotnull)"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        (schema, table),
    ).fetchone()
    kind, not_null = (str(rel[0]), {str(c) for c in rel[1]}) if rel else ("", set())
    uniques = [tuple(r[0]) for r in rows]
    nnd = {tuple(r[0]) for r in rows if r[1]}
    # views and foreign tables have no ctid; a partitioned table's ctids repeat across its partitions
    return TableInfo(name, cols, uniques, not_null, nnd, addressable=kind in ("r", "m"))
