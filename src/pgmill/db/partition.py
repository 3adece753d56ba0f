"""Partitions of a contract's table: their bounds, their names, and creating the missing ones.

Range partitions (a date/timestamp `interval`) are made as the data and the clock need them. Hash and list
partitions are fixed by the contract: all of them are made with the table (`ensure_fixed`); a list value
added to the contract later gets its partition on the next load (attached the same way).

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
from pgmill.config.spec import PartitionSpec, list_suffixes
from pgmill.config.types import parse_type
from pgmill.db.catalog import qualified, split_table
from pgmill.errors import ContractError

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


def name_fits(table: str, spec: PartitionSpec | None = None) -> bool:
    """Partition names of `table` stay within PostgreSQL's identifier length (else they would be cut)."""
    longest = SUFFIX_LENGTH
    if spec is not None and spec.kind != "range":
        longest = max(len(n.encode()) for n in fixed_partitions(table, spec)) - len(split_table(table)[1].encode())
    return len(split_table(table)[1].encode()) + longest <= MAX_IDENT_LENGTH


def fixed_partitions(table: str, spec: PartitionSpec) -> dict[str, sql.Composable]:
    """The partitions of a hash or list partitioned table, by name, with their bound (FOR VALUES ... or DEFAULT)."""
    name = split_table(table)[1]
    if spec.hash is not None:
        return {f"{name}_h{i}": sql.SQL("FOR VALUES WITH (MODULUS {}, REMAINDER {})").format(sql.Literal(spec.hash), sql.Literal(i))
                for i in range(spec.hash)}
    assert spec.values is not None
    out: dict[str, sql.Composable] = {
        f"{name}_{suffix}": sql.SQL("FOR VALUES IN ({})").format(sql.NULL if v is None else sql.Literal(str(v)))
        for v, suffix in zip(spec.values, list_suffixes(spec.values), strict=True)}
    if spec.default:
        out[f"{name}_default"] = sql.SQL("DEFAULT")
    return out


def ensure_fixed(conn: psycopg.Connection[Any], table: str, spec: PartitionSpec, *, new: bool) -> list[str]:
    """Create the hash or list partitions `table` lacks (all of them when it is `new`), in the caller's
    transaction; return their names. A hash table must hold exactly the contract's partitions: its modulus
    cannot change in place."""
    want = fixed_partitions(table, spec)
    have = set() if new else existing(conn, table)
    if spec.hash is not None and have and have != want.keys():
        raise ContractError(
            f"{table} has the hash partitions {', '.join(sorted(have))} but its contract says hash: {spec.hash} "
            f"({len(want)} partitions): the modulus of a hash-partitioned table cannot change in place; reload "
            "into a new table, or keep the old number")
    missing = [n for n in want if n not in have]
    if not missing:
        return []
    schema, _ = split_table(table)
    parent = qualified(table)
    if not new:  # concurrent loads adding the same list value: one does it, the other finds it there
        conn.execute("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext(%s))", (f"pgmill partition {table}",))
        have = existing(conn, table)
        missing = [n for n in want if n not in have]
    for name in missing:
        part = sql.Identifier(schema, name)
        if new:  # nothing uses the table yet: its lock is no one's concern
            conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} {}").format(part, parent, want[name]))
            continue
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
                     .format(part, parent))
        try:
            with conn.transaction():
                conn.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} {}").format(parent, part, want[name]))
        except psycopg.errors.CheckViolation as exc:  # rows of the new value are in the default partition
            raise ContractError(
                f"{table}: cannot add the partition {name}: its default partition holds rows with that value "
                f"({exc.diag.message_primary}); move them out first (copy them aside and DELETE them from "
                f"{split_table(table)[1]}_default), load again to make the partition, then put them back") from exc
    return missing


def ahead(spec: PartitionSpec, today: dt.date | None = None, newest: dt.date | None = None) -> list[dt.date]:
    """Starts of the partition holding max(`newest`, today) and the `premake` ones after it."""
    now = today or dt.datetime.now(dt.UTC).date()
    out = [period_start(max(now, newest or now), spec.period)]
    for _ in range(spec.premake):
        try:
            out.append(period_end(out[-1], spec.period))
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
    want = {partition_name(table, s, spec.period): s for s in set(starts)}
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
            create_partition(conn, parent, sql.Identifier(schema, name), start, spec.period, column_type)
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
