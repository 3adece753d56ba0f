"""Writing validated rows into the target, inside the caller's checkpoint transaction.

append:  COPY straight into the table; if the key is already there, fall back to the staging table and
         `INSERT ... ON CONFLICT DO NOTHING` (the rows that were already present count as duplicates).
merge:   COPY into a temporary staging table, then one `INSERT ... ON CONFLICT DO UPDATE` that changes a
         row only when a value differs (and, with a cursor, only when the incoming row is not older).
replace: like append/merge, but into a fresh table that is swapped in when the whole run has loaded.

If Postgres rejects data that the contract let through (a CHECK or foreign key of the user's, a value out
of range), the batch is bisected under savepoints until the offending rows are isolated and quarantined
with Postgres' own message: one bad row never costs the batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import psycopg
from psycopg import errors as pgerr
from psycopg import sql

from pgmill.config.spec import PartitionSpec
from pgmill.db import partition as partitions
from pgmill.db.catalog import qualified, split_table
from pgmill.db.ddl import create_table_sql
from pgmill.ingest.sources.base import csv_lines_table

COPY_CHUNK = 1 << 20


def to_copy_bytes(df: pl.DataFrame) -> bytes:
    """CSV in the shape `COPY ... (FORMAT csv, NULL '\\N')` expects."""
    buf = io.BytesIO()
    # polars' default datetime text is ISO 8601 with microseconds, and +0000 for zoned columns
    df.write_csv(buf, include_header=False, null_value="\\N")
    return buf.getvalue()


@dataclass(frozen=True)
class CopyData:
    """Bytes ready for COPY ... FROM STDIN (FORMAT csv), the columns they hold, in order, and the dialect.

    `row_ends` (numpy, the offset just past each row's line) is set when every row is exactly one line, as
    for a CSV file's own lines: the rows can then be split without the typed frame and read back."""

    data: bytes
    columns: list[str]
    delimiter: str = ","
    quote: str = '"'
    null: str = "\\N"
    row_ends: Any = None

    @classmethod
    def of(cls, df: pl.DataFrame) -> CopyData:
        return cls(to_copy_bytes(df), list(df.columns))

    @property
    def by_line(self) -> bool:
        return self.row_ends is not None

    def slice(self, start: int, stop: int) -> CopyData:
        """Rows [start, stop) (only `by_line` data)."""
        begin = int(self.row_ends[start - 1]) if start else 0
        end = int(self.row_ends[stop - 1]) if stop else 0
        return dataclasses.replace(self, data=self.data[begin:end], row_ends=self.row_ends[start:stop] - begin)

    def records(self, rows: list[int]) -> list[dict[str, Any]]:
        """Rows as {column: text}, read back from the bytes (only `by_line` data)."""
        view = memoryview(self.data)
        text = b"".join(bytes(view[(int(self.row_ends[r - 1]) if r else 0) : int(self.row_ends[r])]) for r in rows)
        return csv_lines_table(text, self.columns, self.delimiter, self.quote, [self.null]).to_pylist()  # type: ignore[no-any-return]


@dataclass
class WriteResult:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicate: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (row index in df, Postgres' message)


class TableWriter:
    """Writes batches for one pipeline run on one connection."""

    def __init__(self, conn: psycopg.Connection[Any], table: str, columns: list[str], key: list[str],
                 mode: str, cursor: str | None, partition: tuple[PartitionSpec, str] | None = None) -> None:
        self.conn = conn
        self.partition = partition  # (spec, column type) of a partitioned table
        self._partitions: set[str] = set()  # partitions seen to exist
        self.table = table
        self.columns = columns
        self.key = key
        self.mode = mode
        self.cursor = cursor
        self.dest: sql.Composable = qualified(table)
        self.stage = sql.Identifier(f"pgmill_stage_{abs(hash(table)) % 10**8}")
        self.cols_sql = sql.SQL(", ").join(map(sql.Identifier, columns))
        with conn.transaction():  # its own transaction: a checkpoint must never nest in an implicit one
            # the staging table lives in temp buffers: the 8 MB default is smaller than one batch
            conn.execute("SET temp_buffers = '128MB'")
            self._keys_new = mode == "merge" and bool(key) and _is_empty(conn, self.dest)
        self._conflicts = 0
        #: a timestamptz column set when a row is deleted at the source (change data capture's soft delete);
        #: an upsert of the key clears it
        self.soft_delete: str | None = None

    # ------------------------------------------------------------ deletions (change data capture)

    def delete(self, keys: dict[str, list[str | None]], types: list[str], at: list[Any]) -> int:
        """Delete the rows whose key (contract column -> text values, cast to `types`) is given, or, with
        `soft_delete`, set that column to each deletion's time `at`; the number of rows it changed."""
        names = list(keys)
        cols = sql.SQL(", ").join(sql.SQL("unnest(%s::text[]) AS {}").format(sql.Identifier(k)) for k in names)
        match = sql.SQL(" AND ").join(sql.SQL("t.{0} = k.{0}::{1}").format(sql.Identifier(k), sql.SQL(typ))
                                      for k, typ in zip(names, types, strict=True))
        params: list[Any] = [keys[k] for k in names]
        if self.soft_delete is None:
            stmt = sql.SQL("DELETE FROM {} t USING (SELECT {}) k WHERE {}").format(self.dest, cols, match)
        else:
            stmt = sql.SQL("UPDATE {} t SET {s} = k.at FROM (SELECT {}, unnest(%s::timestamptz[]) AS at) k"
                           " WHERE {} AND t.{s} IS NULL").format(
                self.dest, cols, match, s=sql.Identifier(self.soft_delete))
            params.append(at)
        return max(self.conn.execute(stmt, params).rowcount, 0)

    def delete_all(self) -> int:
        """Every row goes (a TRUNCATE at the source), or is marked deleted now with `soft_delete`."""
        if self.soft_delete is None:
            stmt = sql.SQL("DELETE FROM {}").format(self.dest)
        else:
            stmt = sql.SQL("UPDATE {} SET {s} = now() WHERE {s} IS NULL").format(
                self.dest, s=sql.Identifier(self.soft_delete))
        return max(self.conn.execute(stmt).rowcount, 0)

    # ------------------------------------------------------------ replace

    def begin_replace(self, contract_ddl: Callable[[sql.Composable], sql.Composed]) -> None:
        schema, name = split_table(self.table)
        new = sql.Identifier(schema, f"{name}__pgmill_new")
        self.conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(new))
        self.conn.execute(contract_ddl(new))
        self.dest = new

    def finish_replace(self) -> None:
        """Swap the new table in: rename when nothing depends on the old one, else truncate and refill."""
        schema, name = split_table(self.table)
        old = qualified(self.table)
        new = sql.Identifier(schema, f"{name}__pgmill_new")
        deps = self.conn.execute(
            "SELECT count(*) FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid"
            " WHERE d.refobjid = format('%%I.%%I', %s::text, %s::text)::regclass AND r.ev_class <> d.refobjid",
            (schema, name),
        ).fetchone()
        indexes = self.conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s"
            " AND indexname NOT IN (SELECT conname FROM pg_constraint"
            "  WHERE conrelid = format('%%I.%%I', %s::text, %s::text)::regclass)",
            (schema, name, schema, name),
        ).fetchall()
        if deps and deps[0]:  # views depend on the table: keep its identity
            self.conn.execute(sql.SQL("TRUNCATE {}").format(old))
            self.conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
                old, self.cols_sql, self.cols_sql, new))
            self.conn.execute(sql.SQL("DROP TABLE {}").format(new))
        else:
            pkeys = self.conn.execute(
                "SELECT conrelid::regclass::text, conname FROM pg_constraint WHERE contype = 'p' AND conrelid IN"
                " (format('%%I.%%I', %s::text, %s::text)::regclass, format('%%I.%%I', %s::text, %s::text)::regclass)",
                (schema, name, schema, f"{name}__pgmill_new"),
            ).fetchall()
            old_pk = next((c for t, c in pkeys if not str(t).endswith("__pgmill_new")), None)
            new_pk = next((c for t, c in pkeys if str(t).endswith("__pgmill_new")), None)
            self.conn.execute(sql.SQL("DROP TABLE {}").format(old))
            self.conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(new, sql.Identifier(name)))
            if old_pk and new_pk:
                self.conn.execute(sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
                    old, sql.Identifier(new_pk), sql.Identifier(old_pk)))
            for _iname, idef in indexes:
                self.conn.execute(str(idef).encode())  # pg_indexes gives complete, quoted DDL
        self.dest = qualified(self.table)

    def add_text_columns(self, names: list[str]) -> None:
        """Evolve the destination with source fields the contract does not name (extra_columns: evolve)."""
        new = [n for n in names if n not in self.columns]
        if not new:
            return
        for n in new:
            self.conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} text").format(
                self.dest, sql.Identifier(n)))
        self.conn.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(self.stage))  # re-made with them
        self.columns = [*self.columns, *new]
        self.cols_sql = sql.SQL(", ").join(map(sql.Identifier, self.columns))

    # ------------------------------------------------------------ batches

    def ensure_partitions(self, df: pl.DataFrame) -> list[str]:
        """Create the partitions the rows of `df` need that the table lacks, and `premake` ahead of
        max(newest row, now), in a transaction of their own when the connection is not in one; return
        their names."""
        if self.partition is None or df.height == 0 or self.partition[0].interval is None:
            return []  # hash and list partitions are all made with the table
        spec, column_type = self.partition
        days = df.get_column(spec.by).drop_nulls()
        if isinstance(days.dtype, pl.Datetime):
            if days.dtype.time_zone is not None:  # bounds of timestamptz partitions are in UTC
                days = days.dt.convert_time_zone("UTC")
            days = days.dt.date()
        starts = {partitions.period_start(d, spec.period) for d in days.unique().to_list()}
        if starts:  # and `premake` ahead of the newest row and of now (a no-op once they exist)
            starts.update(partitions.ahead(spec, newest=max(starts)))
        return partitions.ensure_partitions(self.conn, self.table, spec, column_type, starts, self._partitions)

    def write(self, df: pl.DataFrame, payload: CopyData | None = None) -> WriteResult:
        """Write `df` (typed, key-unique) or, when given, `payload`: the same rows as COPY bytes, which may
        hold columns `df` lacks (`df` then only counts and orders the rows)."""
        if df.height == 0:
            return WriteResult()
        self.ensure_partitions(df)  # a no-op when the caller made them before its transaction
        if payload is None and df.columns != self.columns:
            # evolved columns this batch does not carry arrive as NULL
            df = df.select([c for c in self.columns if c in df.columns])
        return self._write_or_bisect(df, 0, payload)

    def _write_or_bisect(self, df: pl.DataFrame, base: int, payload: CopyData | None = None) -> WriteResult:
        try:
            with self.conn.transaction():
                return self._write_once(df, payload)
        except (pgerr.DataError, pgerr.IntegrityError) as exc:
            if df.height == 1:
                msg = (exc.diag.message_primary or str(exc)).strip()
                detail = exc.diag.message_detail
                return WriteResult(rejected=[(base, f"rejected by PostgreSQL: {msg}" + (f" ({detail})" if detail else ""))])
            half = df.height // 2
            lines = payload if payload is not None and payload.by_line else None  # else re-encoded from df
            a = self._write_or_bisect(df.slice(0, half), base, lines.slice(0, half) if lines else None)
            b = self._write_or_bisect(df.slice(half), base + half, lines.slice(half, df.height) if lines else None)
            return WriteResult(a.inserted + b.inserted, a.updated + b.updated, a.unchanged + b.unchanged,
                               a.duplicate + b.duplicate, a.rejected + b.rejected)

    def _copy(self, dest: sql.Composable, df: pl.DataFrame, payload: CopyData | None = None) -> None:
        p = payload if payload is not None else CopyData.of(df)
        data = memoryview(p.data)
        stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, DELIMITER {}, QUOTE {}, NULL {})").format(
            dest, sql.SQL(", ").join(map(sql.Identifier, p.columns)),
            sql.Literal(p.delimiter), sql.Literal(p.quote), sql.Literal(p.null))
        with self.conn.cursor() as cur, cur.copy(stmt) as cp:
            for i in range(0, len(data), COPY_CHUNK):
                cp.write(data[i : i + COPY_CHUNK])

    def _ensure_stage(self) -> None:
        # created (again) inside the savepoint that uses it: a rolled-back savepoint takes it away
        self.conn.execute(sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        ).format(self.stage, self.dest))
        self.conn.execute(sql.SQL("TRUNCATE {}").format(self.stage))

    def _write_once(self, df: pl.DataFrame, payload: CopyData | None) -> WriteResult:
        if self.mode == "merge" and self.key:
            if self._keys_new:
                # the first load into a table: keys are new, so COPY straight in (the staging table and the
                # upsert would write every row twice). A conflict (a key repeated across a batch boundary)
                # sends that batch through the upsert; two conflicting batches in a row end the fast path.
                with contextlib.suppress(pgerr.UniqueViolation), self.conn.transaction():
                    self._copy(self.dest, df, payload)
                    self._conflicts = 0
                    return WriteResult(inserted=df.height)
                self._conflicts += 1
                self._keys_new = self._conflicts < 2
            return self._upsert(df, payload)
        if not self.key:
            self._copy(self.dest, df, payload)
            return WriteResult(inserted=df.height)
        with contextlib.suppress(pgerr.UniqueViolation):  # optimistic: the keys are new (usual for append)
            with self.conn.transaction():
                self._copy(self.dest, df, payload)
            return WriteResult(inserted=df.height)
        if self.mode == "replace":
            return self._upsert(df, payload)
        self._ensure_stage()
        self._copy(self.stage, df, payload)
        cur = self.conn.execute(sql.SQL(
            "INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING"
        ).format(self.dest, self.cols_sql, self.cols_sql, self.stage))
        inserted = cur.rowcount
        return WriteResult(inserted=inserted, duplicate=df.height - inserted)

    def _upsert(self, df: pl.DataFrame, payload: CopyData | None = None) -> WriteResult:
        self._ensure_stage()
        self._copy(self.stage, df, payload)
        non_key = [c for c in self.columns if c not in self.key]
        key_sql = sql.SQL(", ").join(map(sql.Identifier, self.key))
        if non_key:
            sets = sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in non_key)
            old = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in non_key)
            new = sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in non_key)
            cond = sql.SQL("ROW({}) IS DISTINCT FROM ROW({})").format(old, new)
            if self.soft_delete is not None:  # a key deleted at the source came back
                gone = sql.Identifier(self.soft_delete)
                sets = sql.SQL("{}, {} = NULL").format(sets, gone)
                cond = sql.SQL("({} OR t.{} IS NOT NULL)").format(cond, gone)
            if self.cursor and self.cursor in non_key:
                cond = sql.SQL("{} AND (t.{c} IS NULL OR EXCLUDED.{c} >= t.{c})").format(
                    cond, c=sql.Identifier(self.cursor))
            action: sql.Composable = sql.SQL("DO UPDATE SET {} WHERE {}").format(sets, cond)
        else:
            action = sql.SQL("DO NOTHING")
        if self.partition is not None:
            # a partitioned table cannot return xmax (PostgreSQL 15): count the new keys before the upsert
            new_keys = self.conn.execute(sql.SQL(
                "SELECT count(*) FROM {stage} s WHERE NOT EXISTS (SELECT 1 FROM {dest} t WHERE ({tk}) = ({sk}))"
            ).format(stage=self.stage, dest=self.dest,
                     tk=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(k)) for k in self.key),
                     sk=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(k)) for k in self.key))).fetchone()
            cur = self.conn.execute(sql.SQL(
                "INSERT INTO {dest} AS t ({cols}) SELECT {cols} FROM {stage} ON CONFLICT ({key}) {action}"
            ).format(dest=self.dest, cols=self.cols_sql, stage=self.stage, key=key_sql, action=action))
            changed = max(cur.rowcount, 0)
            ins = min(int(new_keys[0]) if new_keys else 0, changed)  # a concurrent load may have added some
            return WriteResult(inserted=ins, updated=changed - ins, unchanged=df.height - changed)
        stmt = sql.SQL(
            "WITH up AS (INSERT INTO {dest} AS t ({cols}) SELECT {cols} FROM {stage}"
            " ON CONFLICT ({key}) {action} RETURNING (xmax = 0) AS ins)"
            " SELECT count(*) FILTER (WHERE ins), count(*) FILTER (WHERE NOT ins) FROM up"
        ).format(dest=self.dest, cols=self.cols_sql, stage=self.stage, key=key_sql, action=action)
        row = self.conn.execute(stmt).fetchone()
        assert row is not None
        ins, upd = int(row[0]), int(row[1])
        return WriteResult(inserted=ins, updated=upd, unchanged=df.height - ins - upd)


def _is_empty(conn: psycopg.Connection[Any], table: sql.Composable) -> bool:
    row = conn.execute(sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(table)).fetchone()
    return bool(row and row[0])


def dedupe(df: pl.DataFrame, key: list[str], cursor: str | None) -> tuple[pl.DataFrame, pl.Series | None]:
    """Keep one row per key (the newest by cursor, else the last); return kept rows and their indices."""
    if not key or df.height < 2:
        return df, None
    if len(key) == 1:
        k = df.get_column(key[0])
        if k.null_count() == 0 and k.dtype.is_integer() and (k.diff().drop_nulls() > 0).all():
            return df, None  # strictly increasing: unique without hashing (the usual export order)
    else:
        k = df.select(pl.struct(key)).to_series()
    repeated = k.is_duplicated()
    if not repeated.any():
        return df, None
    # only the few rows whose key repeats are ordered (by cursor, then position); the batch is not sorted
    idx = repeated.arg_true()
    sub = df.select(key + ([cursor] if cursor and cursor not in key else [])).gather(idx).with_columns(__i=idx)
    if cursor:
        sub = sub.sort([cursor, "__i"], nulls_last=False)
    winners = sub.unique(subset=key, keep="last").get_column("__i")
    keep = (~repeated).scatter(winners, True)
    return df.filter(keep), keep.arg_true()


__all__ = ["CopyData", "TableWriter", "WriteResult", "create_table_sql", "dedupe", "to_copy_bytes"]
