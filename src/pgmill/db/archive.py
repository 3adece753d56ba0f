"""A detached partition written to a Parquet file, batch by batch, and the ledger row (pgmill.archives).

The rows come through a server-side cursor, `batch_rows` at a time, and go out as one row group each: memory
holds one batch, whatever the partition's size. The file is written under a temporary name, fsynced, then
renamed (and the directory fsynced), so a file at the final path is always whole; its sha256 is read back
from the disk. Columns keep their types (integers, floats, decimals up to 38 digits, dates, timestamps in
UTC, booleans); any other type (numeric without precision, uuid, json, ...) is written as its text, which
the contract casts back when the file is loaded with `source: {kind: parquet}`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import sql

from pgmill.config.types import parse_type


@dataclass(frozen=True)
class ArchiveFile:
    path: Path
    rows: int
    bytes: int
    sha256: str


def _arrow(pg_type: str) -> pa.DataType | None:
    """The Arrow type a column of `pg_type` keeps; None: written as text."""
    try:
        t = parse_type(pg_type)
    except ValueError:
        return None
    if t.kind == "int":
        return {16: pa.int16(), 32: pa.int32()}.get(t.bits or 64, pa.int64())
    if t.kind == "float":
        return pa.float32() if t.bits == 32 else pa.float64()
    if t.kind == "numeric":
        return pa.decimal128(t.precision, t.scale or 0) if t.precision and t.precision <= 38 else None
    return {"text": pa.string(), "bool": pa.bool_(), "date": pa.date32(), "timestamp": pa.timestamp("us"),
            "timestamptz": pa.timestamp("us", tz="UTC")}.get(t.kind)


def write_parquet(conn: psycopg.Connection[Any], schema: str, name: str, path: Path,
                  batch_rows: int = 50_000) -> ArchiveFile:
    """Write table `schema.name` to `path` (replacing a file there) and return what was written."""
    cols = conn.execute(
        "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a"
        " WHERE a.attrelid = pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %s::text, %s::text))"
        " AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (schema, name),
    ).fetchall()
    if not cols:
        raise ValueError(f"{schema}.{name} does not exist")
    types = [_arrow(str(t)) for _, t in cols]
    arrow_schema = pa.schema([(str(c), t or pa.string()) for (c, _), t in zip(cols, types, strict=True)])
    select = sql.SQL(", ").join(
        sql.Identifier(c) if t is not None else sql.SQL("{}::text").format(sql.Identifier(c))
        for (c, _), t in zip(cols, types, strict=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    rows = 0
    with conn.transaction(), conn.cursor(name="pgmill_archive") as cur, pq.ParquetWriter(tmp, arrow_schema) as out:
        cur.execute(sql.SQL("SELECT {} FROM {}").format(select, sql.Identifier(schema, name)))
        while batch := cur.fetchmany(batch_rows):
            out.write_table(pa.Table.from_arrays(
                [pa.array([r[i] for r in batch], type=f.type) for i, f in enumerate(arrow_schema)],
                schema=arrow_schema))
            rows += len(batch)
    _fsync(tmp)
    os.replace(tmp, path)
    _fsync(path.parent)
    return ArchiveFile(path, rows, path.stat().st_size, sha256_of(path))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def record(conn: psycopg.Connection[Any], table: str, partition: str, bounds: str, archive: ArchiveFile,
           shown_path: str) -> None:
    """The ledger row of an archive (the caller's transaction: with the partition's DROP)."""
    conn.execute(
        "INSERT INTO pgmill.archives (table_name, partition_name, bounds, rows, bytes, sha256, path)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (table, partition, bounds, archive.rows, archive.bytes, archive.sha256, shown_path),
    )
