"""Partitions past a contract's `retain`: finding them, detaching them without blocking readers or writers,
dropping them.

`ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY` takes only SHARE UPDATE EXCLUSIVE on the parent (queries
and loads on the table go on), in two transactions of its own: it cannot run inside a transaction block, so
the connection must be in autocommit. If it is interrupted between the two (cancelled, the session lost),
the partition is left attached but "pending detach" (pg_inherits.inhdetachpending): queries no longer see
it, and only `DETACH PARTITION ... FINALIZE` completes it, which is what a later run does. A partition
detached but not yet dropped (a run that stopped after the detach) is found again by its name, which
pgmill gave it (`<table>_pYYYYMM`...), and by the comment pgmill sets on it just before the detach
(COMMENT takes SHARE UPDATE EXCLUSIVE on the partition alone): a table of the user's that merely has such
a name is never touched. Only names that parse as a period wholly older than the retention qualify.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql

from pgmill.config.spec import PartitionSpec
from pgmill.db.catalog import split_table
from pgmill.db.partition import partition_name, period_end, period_start

State = Literal["attached", "pending", "detached"]

_FORMATS = {"year": "%Y", "month": "%Y%m"}


@dataclass(frozen=True)
class Expired:
    """A partition of `table` wholly older than the retention, and how far its detach has gone."""

    table: str
    name: str
    start: dt.date
    end: dt.date
    state: State

    @property
    def bounds(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


def cutoff(spec: PartitionSpec, today: dt.date) -> dt.date:
    """The first day kept: the start of the period `retain` periods before the current one."""
    assert spec.retain is not None
    start = period_start(today, spec.period)
    for _ in range(spec.retain):
        start = period_start(start - dt.timedelta(days=1), spec.period)
    return start


def expired(conn: psycopg.Connection[Any], table: str, spec: PartitionSpec, today: dt.date) -> list[Expired]:
    """Partitions of `table` (attached, pending detach, or detached and left behind) that end on or before
    the cutoff, oldest first; the current period and newer ones never qualify (retain >= 1)."""
    schema, rel = split_table(table)
    rows = conn.execute(
        "SELECT c.relname, i.inhdetachpending, pg_catalog.obj_description(c.oid, 'pg_class') = %s"
        " FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " LEFT JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid"
        " WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname LIKE %s"
        " AND (i.inhparent IS NULL OR i.inhparent"
        "      = pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %s::text, %s::text)))",
        (_marker(table), schema, rel.replace("_", r"\_") + r"\_p%", schema, rel),
    ).fetchall()
    last = cutoff(spec, today)
    out = []
    for name, pending, marked in rows:
        start = _start(table, str(name), spec.period)
        if start is None or (pending is None and not marked) or period_end(start, spec.period) > last:
            continue
        state: State = "detached" if pending is None else "pending" if pending else "attached"
        out.append(Expired(table, str(name), start, period_end(start, spec.period), state))
    return sorted(out, key=lambda e: e.start)


def _start(table: str, name: str, interval: str) -> dt.date | None:
    """The period a partition name of pgmill's stands for; None for any other name."""
    m = re.fullmatch(r"\d{4,8}", name[len(split_table(table)[1]) + 2:])
    if m is None:
        return None
    try:
        start = dt.datetime.strptime(m.group(0), _FORMATS.get(interval, "%Y%m%d")).date()
    except ValueError:
        return None
    return start if partition_name(table, start, interval) == name and period_start(start, interval) == start else None


def detach(conn: psycopg.Connection[Any], part: Expired) -> None:
    """Detach `part` from its table without blocking it: CONCURRENTLY, or FINALIZE one left pending.
    `conn` must be in autocommit (DETACH CONCURRENTLY makes its own transactions)."""
    if part.state == "detached":
        return
    if not conn.autocommit:
        raise ValueError("detach needs a connection in autocommit: DETACH CONCURRENTLY cannot run in a transaction")
    schema, _ = split_table(part.table)
    how = sql.SQL("FINALIZE" if part.state == "pending" else "CONCURRENTLY")
    conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(
        sql.Identifier(schema, part.name), sql.Literal(_marker(part.table))))
    conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {} {}").format(
        sql.Identifier(*split_table(part.table)), sql.Identifier(schema, part.name), how))


def _marker(table: str) -> str:
    return f"pgmill retention: detached from {table}"


def drop(conn: psycopg.Connection[Any], part: Expired) -> None:
    """Drop a detached partition (the caller's transaction, if any: with the archive's ledger row)."""
    schema, _ = split_table(part.table)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema, part.name)))


def lock_table(conn: psycopg.Connection[Any], table: str) -> bool:
    """Take the session's retention lock on `table` (one retention per table at a time); False if held."""
    row = conn.execute("SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtext(%s))",
                       (f"pgmill retention {table}",)).fetchone()
    return bool(row and row[0])


def unlock_table(conn: psycopg.Connection[Any], table: str) -> None:
    conn.execute("SELECT pg_catalog.pg_advisory_unlock(pg_catalog.hashtext(%s))", (f"pgmill retention {table}",))
