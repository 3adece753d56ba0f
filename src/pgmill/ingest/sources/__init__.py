"""Sources: CSV, NDJSON and Parquet files (a path or glob), an HTTP JSON API, a query on another PostgreSQL.

`open_streams` turns a pipeline's source spec and its committed state into independent streams of
batches: one per pending file for file sources (so files can load in parallel), one for the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pgmill.config.spec import CsvSource, HttpSource, NdjsonSource, ParquetSource, Pipeline, PostgresSource
from pgmill.ingest.sources.base import BadRecord, FileMark, RawBatch, SourceState
from pgmill.ingest.sources.files import FileTask, pending_files


@dataclass(frozen=True)
class Stream:
    """One independently resumable sequence of batches."""

    label: str
    open: Callable[[], Iterator[RawBatch]]
    size_bytes: int | None  # bytes still to read, when known


def open_streams(
    project_dir: Path, pipe: Pipeline, columns: list[str], state: SourceState,
    columns_by_name: dict[str, str] | None = None, needed: list[str] | None = None,
) -> list[Stream]:
    """Streams for what is left to load from `pipe.source`, resuming after the committed state.
    `columns` are the source's names for the contract columns; `columns_by_name` maps contract names to them;
    `needed` (source names) are the columns the loader checks: a CSV source may parse only those (see
    sources.csv.CsvReader)."""
    columns_by_name = columns_by_name or {}
    spec = pipe.source
    rows = pipe.batch_rows
    if isinstance(spec, CsvSource | NdjsonSource | ParquetSource):
        tasks = pending_files(project_dir, spec.path, state.files)
        return [Stream(t.display, _file_opener(spec, t, columns, rows, needed), t.size - t.resume_offset) for t in tasks]
    if isinstance(spec, HttpSource):
        from pgmill.ingest.sources.http import read_http
        from pgmill.redact import redact_url

        return [Stream(redact_url(spec.url), lambda: read_http(spec, state, rows), None)]
    if isinstance(spec, PostgresSource):
        from pgmill.ingest.sources.postgres import read_postgres

        cursor = pipe.cursor
        if cursor is not None and cursor in columns_by_name:
            cursor = columns_by_name[cursor]
        return [Stream(spec.table or "query", lambda: read_postgres(spec, state, cursor, rows), None)]
    raise AssertionError(f"unknown source {spec!r}")  # pragma: no cover - pydantic rejects it first


def _file_opener(
    spec: CsvSource | NdjsonSource | ParquetSource, task: FileTask, columns: list[str], rows: int,
    needed: list[str] | None = None,
) -> Callable[[], Iterator[RawBatch]]:
    if isinstance(spec, CsvSource):
        from pgmill.ingest.sources.csv import read_csv_file

        return lambda: read_csv_file(spec, task, columns, rows, needed)
    if isinstance(spec, NdjsonSource):
        from pgmill.ingest.sources.ndjson import read_ndjson_file

        return lambda: read_ndjson_file(spec, task, rows, columns)
    from pgmill.ingest.sources.parquet import read_parquet_file

    return lambda: read_parquet_file(spec, task, rows)


__all__ = ["BadRecord", "FileMark", "RawBatch", "SourceState", "Stream", "open_streams"]
