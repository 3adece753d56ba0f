"""Range partitions of a contract's table: their bounds, their names, and creating the missing ones.

A partition is created as a plain table and then attached: `ALTER TABLE ... ATTACH PARTITION` takes a
SHARE UPDATE EXCLUSIVE lock on the parent, which does not block loads writing into it, where
`CREATE TABLE ... PARTITION OF` takes ACCESS EXCLUSIVE (measured in tests/test_partition.py): inside a
checkpoint that has already written into the table, that would wait for every other load's checkpoint
and could deadlock with one doing the same. Concurrent creators of the same partition are serialized by a
transaction-level advisory lock keyed on the parent; the second finds the partition there and does nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql

from pgmill.config.base import MAX_IDENT_LENGTH
from pgmill.config.spec import PartitionSpec
from pgmill.config.types import parse_type
from pgmill.db.catalog import qualified, split_table

#: the longest suffix a partition's name adds to its table's (_pYYYYMMDD)
SUFFIX_LENGTH = 10


def period_start(day: dt.date, interval: str) -> dt.date:
    """The first day of the partition holding `day`."""
    if interval == "day":
        return day
    if interval == "week":
        return day - dt.timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day.replace(month=1, day=1)


def period_end(start: dt.date, interval: str) -> dt.date:
    """The first day after the partition starting on `start`."""
    if interval == "day":
        return start + dt.timedelta(days=1)
    if interval == "week":
        return start + dt.timedelta(days=7)
    if interval == "month":
        return dt.date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return dt.date(start.year + 1, 1, 1)


def partition_name(table: str, start: dt.date, interval: str) -> str:
    """`<table>_pYYYY`, `_pYYYYMM` or `_pYYYYMMDD` (day and week)."""
    fmt = {"year": "%Y", "month": "%Y%m"}.get(interval, "%Y%m%d")
    return f"{split_table(table)[1]}_p{start.strftime(fmt)}"


def name_fits(table: str) -> bool:
    """Partition names of `table` stay within PostgreSQL's identifier length (else they would be cut)."""
    return len(split_table(table)[1].encode()) + SUFFIX_LENGTH <= MAX_IDENT_LENGTH


def ahead(spec: PartitionSpec, today: dt.date | None = None, newest: dt.date | None = None) -> list[dt.date]:
    """Starts of the partition holding max(`newest`, today) and the `premake` ones after it."""
    now = today or dt.datetime.now(dt.UTC).date()
    out = [period_start(max(now, newest or now), spec.interval)]
    for _ in range(spec.premake):
        try:
            out.append(period_end(out[-1], spec.interval))
        except (ValueError, OverflowError):  # past year 9999: Python's dates end there
            break
    return out


def bound(day: dt.date, column_type: str) -> sql.Literal:
    # timestamptz bounds are written in UTC: the session's time zone must not move them
    text = day.isoformat() if column_type == "date" else f"{day.isoformat()} 00:00:00"
    return sql.Literal(text + ("+00" if column_type == "timestamptz" else ""))


def existing(conn: psycopg.Connection[Any], table: str) -> set[str]:
    """Names of the partitions attached to `table`."""
    schema, name = split_table(table)
    rows = conn.execute(
        "SELECT c.relname FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %s::text, %s::text))",
        (schema, name),
    ).fetchall()
    return {str(r[0]) for r in rows}


def ensure_partitions(conn: psycopg.Connection[Any], table: str, spec: PartitionSpec, column_type: str,
                      starts: Iterable[dt.date], known: set[str] | None = None) -> list[str]:
    """Create the partitions starting on `starts` that `table` lacks; return the names created. `known`
    (partitions seen to exist) is read first and updated; the work runs in its own transaction when the
    connection is not in one, else in the caller's (holding only SHARE UPDATE EXCLUSIVE on the parent)."""
    column_type = parse_type(column_type).sql
    want = {partition_name(table, s, spec.interval): s for s in set(starts)}
    if known is not None and want.keys() <= known:
        return []
    created: list[str] = []
    with conn.transaction():
        have = existing(conn, table)
        if want.keys() <= have:
            if known is not None:
                known |= have
            return []
        conn.execute("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext(%s))",
                     (f"pgmill partition {table}",))
        have = existing(conn, table)  # another load may have made them while this one waited
        schema, _ = split_table(table)
        parent = qualified(table)
        for name, start in sorted(want.items(), key=lambda kv: kv[1]):
            if name in have:
                continue
            create_partition(conn, parent, sql.Identifier(schema, name), start, spec.interval, column_type)
            created.append(name)
        if known is not None:
            known |= have | set(created)
    return created


def create_partition(conn: psycopg.Connection[Any], parent: sql.Identifier, part: sql.Identifier, start: dt.date,
                     interval: str, column_type: str) -> None:
    """Create `part` as a plain table shaped like `parent`, then attach it for the period from `start`."""
    conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
                 .format(part, parent))
    conn.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
        parent, part, bound(start, column_type), bound(period_end(start, interval), column_type)))
