"""A detached partition written to a Parquet file, batch by batch, and the ledger row (pgmill.archives).

The rows come through a server-side cursor, `batch_rows` at a time, and go out as one row group each: memory
holds one batch, whatever the partition's size. In a local directory the file is written under a temporary
name, fsynced, then renamed (and the directory fsynced), so a file at the final path is always whole. At an
object store URL (`s3://bucket/prefix`, `gs://...`, `memory://...`: any filesystem fsspec knows, the
optional extra `pgmill[archive]`) it is written to its key directly: an object store publishes an object
only when its upload completes, so no reader sees half of it. Either way the sha256 and size are read back
from what was stored. Columns keep their types (integers, floats, decimals up to 38 digits, dates, timestamps in
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
from pgmill.errors import ConfigError


@dataclass(frozen=True)
class ArchiveFile:
    path: str  # a local path or a URL
    rows: int
    bytes: int
    sha256: str


def is_url(location: str) -> bool:
    """`scheme://...` (an fsspec filesystem), as opposed to a local directory."""
    return "://" in location


def location(project_dir: Path, archive_dir: str, schema: str, table: str, partition: str) -> tuple[str, str]:
    """Where a partition's archive goes, and how the ledger shows it: the URL itself, or for a local
    `archive_dir` the absolute path and the path relative to the project."""
    if is_url(archive_dir):
        url = f"{archive_dir.rstrip('/')}/{schema}.{table}/{partition}.parquet"
        return url, url
    shown = Path(archive_dir) / f"{schema}.{table}" / f"{partition}.parquet"
    return str(project_dir / shown), str(shown)


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) of `url`; fsspec imported only here, when a URL is used."""
    try:
        import fsspec
    except ImportError as exc:
        raise ConfigError(f"archive_dir {url}: archives at a URL need fsspec: pip install 'pgmill[archive]'") from exc
    try:
        fs, key = fsspec.core.url_to_fs(url)
        return fs, str(key)
    except ImportError as exc:  # fsspec knows the scheme but its package is missing (s3fs, gcsfs, adlfs, ...)
        raise ConfigError(f"archive_dir {url}: {exc}") from exc
    except ValueError as exc:  # an unknown scheme
        raise ConfigError(f"archive_dir {url}: {exc}") from exc


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


def write_parquet(conn: psycopg.Connection[Any], schema: str, name: str, path: str,
                  batch_rows: int = 50_000) -> ArchiveFile:
    """Write table `schema.name` to `path`, a local path or a URL (replacing a file there), and return what
    was stored."""
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
    query = sql.SQL("SELECT {} FROM {}").format(select, sql.Identifier(schema, name))
    if is_url(path):
        fs, key = filesystem(path)
        fs.makedirs(key.rpartition("/")[0], exist_ok=True)  # a no-op on object stores, needed on others
        with fs.open(key, "wb") as f:
            rows = _write(conn, query, arrow_schema, f, batch_rows)
        with fs.open(key, "rb") as f:
            return ArchiveFile(path, rows, int(fs.size(key)), _sha256(f))
    local = Path(path)
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(local.name + ".tmp")
    rows = _write(conn, query, arrow_schema, tmp, batch_rows)
    _fsync(tmp)
    os.replace(tmp, local)
    _fsync(local.parent)
    return ArchiveFile(path, rows, local.stat().st_size, sha256_of(local))


def _write(conn: psycopg.Connection[Any], query: sql.Composed, arrow_schema: pa.Schema, where: Any,
           batch_rows: int) -> int:
    """Stream `query`'s rows into a Parquet file at `where` (a path or a binary file object); the row count."""
    rows = 0
    with conn.transaction(), conn.cursor(name="pgmill_archive") as cur, pq.ParquetWriter(where, arrow_schema) as out:
        cur.execute(query)
        while batch := cur.fetchmany(batch_rows):
            out.write_table(pa.Table.from_arrays(
                [pa.array([r[i] for r in batch], type=f.type) for i, f in enumerate(arrow_schema)],
                schema=arrow_schema))
            rows += len(batch)
    return rows


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return _sha256(f)


def _sha256(f: Any) -> str:
    h = hashlib.sha256()
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
