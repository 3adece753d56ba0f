"""The source side of CDC, over an ordinary connection: what the source must allow, the publication, the
slot's health, and dropping both.

The slot itself is created on the replication connection (replication.py), because only there does its
creation export the snapshot the initial load reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgmill.config.spec import CdcSpec, PostgresSource
from pgmill.errors import SourceError
from pgmill.ingest.sources.postgres import connect_source, raise_for, source_url


@dataclass(frozen=True)
class Names:
    """The slot and publication of a CDC pipeline, and whether pgmill owns the publication."""

    slot: str
    publication: str
    own_publication: bool


def names(pipeline: str, cdc: CdcSpec) -> Names:
    base = "pgmill_" + "".join(ch if ch.isalnum() else "_" for ch in pipeline.lower())
    return Names(cdc.slot or base[:63], cdc.publication or base[:63], cdc.publication is None)


@dataclass(frozen=True)
class SlotHealth:
    """A slot as the source sees it (pg_replication_slots). `retained_bytes`: WAL the source keeps for it
    (from its restart_lsn to the current WAL position); `lag_bytes`: changes not confirmed yet (from its
    confirmed_flush_lsn). `wal_status` is PostgreSQL's: reserved, extended, unreserved or lost."""

    slot: str
    exists: bool
    active: bool = False
    wal_status: str | None = None
    restart_lsn: int | None = None
    confirmed_lsn: int | None = None
    retained_bytes: int | None = None
    lag_bytes: int | None = None

    @property
    def lost(self) -> bool:
        """The slot is gone or its WAL was removed: the changes since cannot be streamed."""
        return not self.exists or self.wal_status == "lost" or self.confirmed_lsn is None

    def as_dict(self) -> dict[str, Any]:
        return {"slot": self.slot, "exists": self.exists, "active": self.active, "wal_status": self.wal_status,
                "restart_lsn": self.restart_lsn, "confirmed_lsn": self.confirmed_lsn,
                "retained_bytes": self.retained_bytes, "lag_bytes": self.lag_bytes}


def origin(spec: PostgresSource) -> str:
    return f"postgres:{spec.table}"


def connect(spec: PostgresSource) -> psycopg.Connection[Any]:
    """A read-write connection to the source, in autocommit: slots and publications are managed one
    statement at a time."""
    conn = connect_source(source_url(spec.url_env, origin(spec)), spec.url_env)
    conn.rollback()
    conn.read_only = False
    conn.autocommit = True
    return conn


def check_source(conn: psycopg.Connection[Any], spec: PostgresSource) -> None:
    """Raise SourceError saying what to change when the source cannot stream changes: `wal_level` below
    logical, or a role without REPLICATION."""
    # RDS and Aurora grant streaming through membership of rds_replication, not the REPLICATION attribute
    row = conn.execute(
        "SELECT current_setting('wal_level'), r.rolreplication OR r.rolsuper OR EXISTS (SELECT 1 FROM pg_roles g"
        "  WHERE g.rolname = 'rds_replication' AND pg_has_role(current_user, g.oid, 'member')), current_user"
        " FROM pg_roles r WHERE r.rolname = current_user").fetchone()
    assert row is not None
    level, can, user = row
    where = origin(spec)
    if level != "logical":
        raise SourceError(
            f"{where}: the source has wal_level = {level}; change data capture needs wal_level = logical "
            "(ALTER SYSTEM SET wal_level = logical, then restart it; on a managed service, its logical "
            "replication setting: see README 'Near-real-time'). Without it, load the table by `cursor` "
            "instead of `cdc:` (docs/cdc.md 'Fallback')")
    if not can:
        raise SourceError(
            f"{where}: role {user} may not stream changes: it needs the REPLICATION attribute "
            f"(ALTER ROLE {user} REPLICATION; on a managed service, its replication role: see README "
            "'Near-real-time')")


def check_key(conn: psycopg.Connection[Any], spec: PostgresSource, key: list[str]) -> None:
    """Raise SourceError when the source table's replica identity (what its updates and deletes say about the
    row they change) does not carry the contract's key (source names): before any slot is made."""
    assert spec.table is not None
    schema, table = spec.table.split(".") if "." in spec.table else ("public", spec.table)
    row = conn.execute(
        "SELECT c.relreplident, (SELECT array_agg(a.attname ORDER BY a.attnum) FROM pg_index i"
        "  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)"
        "  WHERE i.indrelid = c.oid AND CASE c.relreplident WHEN 'i' THEN i.indisreplident ELSE i.indisprimary END)"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        (schema, table)).fetchone()
    if row is None:
        raise SourceError(f"{origin(spec)}: table {schema}.{table} does not exist on the source")
    ident, cols = row[0], list(row[1] or [])
    if ident == "f":
        return  # the whole old row: any key
    if ident == "n" or not cols:
        raise SourceError(
            f"{origin(spec)}: table {schema}.{table} has no replica identity (no primary key): its updates and deletes "
            f"cannot be streamed; give it a primary key on {', '.join(key)}, or {_full_identity(schema, table)}")
    if sorted(cols) != sorted(key):
        raise SourceError(
            f"{origin(spec)}: the contract's key ({', '.join(key)}) is not the source table's replica identity "
            f"({', '.join(cols)}): updates and deletes name rows by the latter; make the contract's primary key "
            f"{', '.join(cols)}, or {_full_identity(schema, table)}")


def _full_identity(schema: str, table: str) -> str:
    """The statement a user runs to give the table a full replica identity (quoted as PostgreSQL needs)."""
    return sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(sql.Identifier(schema, table)).as_string(None)


def ensure_publication(conn: psycopg.Connection[Any], spec: PostgresSource, n: Names) -> None:
    """Make pgmill's publication for the table (or add the table to it); check a named one includes it."""
    assert spec.table is not None
    schema, table = spec.table.split(".") if "." in spec.table else ("public", spec.table)
    try:
        exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (n.publication,)).fetchone()
        has = conn.execute("SELECT 1 FROM pg_publication_tables WHERE pubname = %s AND schemaname = %s"
                           " AND tablename = %s", (n.publication, schema, table)).fetchone()
        if has:
            return
        if not n.own_publication:
            raise SourceError(
                f"{origin(spec)}: publication {n.publication} does not include table {schema}.{table} "
                f"(ALTER PUBLICATION {n.publication} ADD TABLE {schema}.{table}, or leave `publication` out "
                "and pgmill makes its own)" if exists else
                f"{origin(spec)}: publication {n.publication} does not exist on the source")
        target = sql.Identifier(schema, table)
        stmt = (sql.SQL("ALTER PUBLICATION {} ADD TABLE {}") if exists
                else sql.SQL("CREATE PUBLICATION {} FOR TABLE {}")).format(sql.Identifier(n.publication), target)
        conn.execute(stmt)
    except psycopg.Error as exc:
        raise_for(origin(spec), exc)


def health(conn: psycopg.Connection[Any], slot: str) -> SlotHealth:
    row = conn.execute(
        "SELECT active, wal_status, (restart_lsn - '0/0')::bigint, (confirmed_flush_lsn - '0/0')::bigint,"
        " (pg_current_wal_lsn() - restart_lsn)::bigint, (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint"
        " FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
    if row is None:
        return SlotHealth(slot, False)
    return SlotHealth(slot, True, bool(row[0]), row[1], row[2], row[3], row[4], row[5])


def table_oid(conn: psycopg.Connection[Any], spec: PostgresSource) -> int:
    """The source table's oid (a table dropped and made again has a new one)."""
    assert spec.table is not None
    schema, table = spec.table.split(".") if "." in spec.table else ("public", spec.table)
    try:
        row = conn.execute("SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))::oid", (schema, table)).fetchone()
    except psycopg.Error as exc:
        raise_for(origin(spec), exc)
    if row is None or row[0] is None:
        raise SourceError(f"{origin(spec)}: table {schema}.{table} does not exist on the source")
    return int(row[0])


def current_lsn(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT (pg_current_wal_flush_lsn() - '0/0')::bigint").fetchone()
    assert row is not None
    return int(row[0])


def drop_slot(conn: psycopg.Connection[Any], slot: str) -> bool:
    """Drop the slot if it exists (waiting up to 10 s for a consumer that is letting go); whether it did."""
    row = conn.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
    if row is None:
        return False
    if row[0] is not None:
        conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
    for _ in range(100):
        try:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            return True
        except psycopg.errors.ObjectInUse:
            import time

            time.sleep(0.1)
    raise SourceError(f"replication slot {slot} is still in use on the source; stop its consumer and retry")


def drop(spec: PostgresSource, n: Names) -> tuple[bool, bool]:
    """Drop the pipeline's slot and (when pgmill made it) its publication: (slot dropped, publication dropped)."""
    conn = connect(spec)
    try:
        slot = drop_slot(conn, n.slot)
        pub = False
        if n.own_publication and conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s",
                                              (n.publication,)).fetchone():
            conn.execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(n.publication)))
            pub = True
        return slot, pub
    except psycopg.Error as exc:
        raise_for(origin(spec), exc)
    finally:
        conn.close()
