"""Target tables from contracts: created with their key, evolved additively, never dropped by pgmill."""

from __future__ import annotations

import psycopg
from psycopg import sql

from pgmill.config.spec import Contract
from pgmill.config.types import parse_type
from pgmill.db import catalog, partition

# `as` re-exports them for ingest/writer.py, ingest/runner.py and mcp/server.py (outside this change, and
# the first two being edited on another branch) until those import db.catalog
from pgmill.db.catalog import qualified, split_table
from pgmill.errors import ContractError


def create_table_sql(table: str | sql.Composable, contract: Contract, extra_text_columns: list[str] = ()) -> sql.Composed:  # type: ignore[assignment]
    target = qualified(table) if isinstance(table, str) else table
    cols = [
        sql.SQL("{} {}{}").format(
            sql.Identifier(name),
            sql.SQL(parse_type(spec.type).sql),
            sql.SQL(" NOT NULL") if spec.not_null or spec.primary_key else sql.SQL(""),
        )
        for name, spec in contract.columns.items()
    ]
    cols += [sql.SQL("{} text").format(sql.Identifier(c)) for c in extra_text_columns]
    if contract.primary_key:
        cols.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, contract.primary_key))))
    stmt = sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(target, sql.SQL(", ").join(cols))
    if contract.partition:
        stmt = sql.SQL("{} PARTITION BY {} ({})").format(
            stmt, sql.SQL(contract.partition.kind.upper()), sql.Identifier(contract.partition.by))
    return stmt


def ensure_table(conn: psycopg.Connection[object], table: str, contract: Contract) -> list[str]:
    """Create `table` from the contract, or add the columns the contract gained; return columns added."""
    schema, rel = split_table(table)
    # concurrent pipelines creating the same schema race on the catalog even with IF NOT EXISTS
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('pgmill ddl'))")
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    have = catalog.columns(conn, schema, rel)
    if not have:
        conn.execute(create_table_sql(table, contract))
        _premake(conn, table, contract, new=True)
        return []
    if contract.partition:
        kind = conn.execute(
            "SELECT relkind FROM pg_catalog.pg_class"
            " WHERE oid = pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %s::text, %s::text))",
            (schema, rel),
        ).fetchone()
        if isinstance(kind, tuple) and kind[0] != "p":
            raise ContractError(
                f"{table} exists as a plain table but the contract partitions it by "
                f"{contract.partition.by}: convert it with `pgmill partition {table}` (see its --dry-run for "
                "the plan and its locks), or drop the partition section"
            )
        _premake(conn, table, contract, new=False)
    added = []
    for name, spec in contract.columns.items():
        if name in have:
            want = parse_type(spec.type).sql
            if not _same_type(have[name], want):
                raise ContractError(
                    f"{table}.{name} is {have[name]} in the database but {want} in the contract; "
                    "pgmill only evolves tables additively: change the column yourself or the contract"
                )
            continue
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                qualified(table), sql.Identifier(name), sql.SQL(parse_type(spec.type).sql)
            )
        )
        added.append(name)
    return added


def _premake(conn: psycopg.Connection[object], table: str, contract: Contract, *, new: bool) -> None:
    """Range: the current partition and `premake` ones after it; hash and list: every partition the contract
    names that the table lacks (the caller's transaction)."""
    spec = contract.partition
    if spec and spec.kind != "range":
        partition.ensure_fixed(conn, table, spec, new=new)
    elif spec:
        partition.ensure_partitions(conn, table, spec, contract.columns[spec.by].type, partition.ahead(spec))


_SYNONYMS = {
    "character varying": "varchar",
    "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp",
    "character": "char",
}


def _same_type(db: str, contract: str) -> bool:
    def norm(t: str) -> str:
        t = t.lower().replace(" ", "") if "(" in t else t.lower()
        for long, short in _SYNONYMS.items():
            t = t.replace(long.replace(" ", "") if "(" in t else long, short)
        return t

    return norm(db) == norm(contract)
