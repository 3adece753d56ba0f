"""Parquet files, streamed row group by row group with pyarrow.

Columns keep their Arrow types (integers, floats, decimals, dates, timestamps), which the contract casts
without going through text. Records are named by row number (1 = the file's first row). A rerun resumes
after the rows already committed: it starts at the row group that holds the next row and drops the rows
before it, so nothing is read twice into the table and nothing is skipped.

The committed byte offset is an estimate (the share of rows done, times the file size): Parquet has no
byte position per row, and the offset only feeds progress reporting; resuming uses the row count.

With `split:`, a large file is cut into ranges of whole row groups, rows [start, end) (`row_group_ranges`),
each a stream with its own checkpoint in pgmill.file_ranges, like a CSV file's byte ranges: there a range's
committed `byte_offset` is the next row to read (0-based), not a byte.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pgmill.config.spec import ParquetSource
from pgmill.errors import SourceError
from pgmill.ingest.sources.base import ByteRange, FileMark, RawBatch, Stream, StreamRequest
from pgmill.ingest.sources.files import FileTask, file_streams


class ParquetReader:
    """Reads one Parquet file from a resume point, yielding RawBatches of at most `batch_rows` rows."""

    def __init__(self, task: FileTask, batch_rows: int) -> None:
        self.task = task
        self.batch_rows = batch_rows

    def batches(self) -> Iterator[RawBatch]:
        t = self.task
        if t.range is not None:
            yield from self._range_batches()
            return
        done = t.records_done
        if t.size == 0:
            # an empty placeholder file: nothing to load, but it is remembered as loaded
            yield self._batch(pa.table({}), done, done, done)
            return
        with self._open() as pf:
            total = pf.metadata.num_rows
            if done >= total:
                yield self._batch(pa.table({}), done, done, total)
                return
            for table in self._tables(pf, done):
                start, done = done, done + table.num_rows
                yield self._batch(table, start, done, total)

    def _open(self) -> Any:
        try:
            return pq.ParquetFile(self.task.path)
        except OSError as exc:
            raise SourceError(f"cannot open {self.task.display}: {exc.strerror or exc}") from exc
        except (pa.ArrowInvalid, pa.ArrowException) as exc:
            raise SourceError(f"{self.task.display}: not a readable Parquet file ({exc})") from exc

    def _range_batches(self) -> Iterator[RawBatch]:
        """Rows [resume_offset, end_offset) of a range of whole row groups; each mark names the next row."""
        t = self.task
        assert t.range is not None and t.end_offset is not None
        row, end, done = t.resume_offset, t.end_offset, t.records_done
        if row >= end:
            yield self._range_batch(pa.table({}), row, done, end)
            return
        with self._open() as pf:
            for table in self._tables(pf, row, end - row):
                row, done = row + table.num_rows, done + table.num_rows
                yield self._range_batch(table, row - table.num_rows, done, end)

    def _range_batch(self, table: pa.Table, first: int, done: int, end: int) -> RawBatch:
        t = self.task
        nxt = first + table.num_rows
        rows_in_file = t.plan[-1].end if t.plan else end
        nbytes = t.size * table.num_rows // max(rows_in_file, 1)
        return RawBatch(table, t.display, list(range(first + 1, nxt + 1)), [], nbytes,
                        file_mark=t.mark(done, nxt, nxt + 1, nxt >= end), position_word="row")

    def _tables(self, pf: Any, skip: int, limit: int | None = None) -> Iterator[pa.Table]:
        """Tables of up to `batch_rows` rows, after the first `skip` rows of the file (at most `limit` rows)."""
        groups, skip = _groups_after(pf.metadata, skip)
        if not groups:
            return
        left = limit
        try:
            for batch in pf.iter_batches(batch_size=self.batch_rows, row_groups=groups, use_threads=True):
                if skip >= batch.num_rows:
                    skip -= batch.num_rows
                    continue
                if skip:
                    batch, skip = batch.slice(skip), 0
                if left is not None:
                    batch = batch.slice(0, left)
                    left -= batch.num_rows
                if batch.num_rows:
                    yield pa.Table.from_batches([batch])
                if left == 0:
                    return
        except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
            raise SourceError(f"{self.task.display}: cannot read Parquet data ({exc})") from exc

    def _batch(self, table: pa.Table, start: int, done: int, total: int) -> RawBatch:
        t = self.task

        def offset(rows: int) -> int:
            return t.size if rows >= total else t.size * rows // total

        return RawBatch(
            table, t.display, list(range(start + 1, done + 1)), [], offset(done) - offset(start),
            file_mark=FileMark(t.display, t.size, t.sha256, done, offset(done), done + 1, done >= total),
            position_word="row",
        )


def _groups_after(meta: Any, skip: int) -> tuple[list[int], int]:
    """The row groups from the one holding row `skip` (0-based) on, and the rows to drop from its start."""
    first = 0
    for g in range(meta.num_row_groups):
        rows = meta.row_group(g).num_rows
        if skip < first + rows:
            return list(range(g, meta.num_row_groups)), skip - first
        first += rows
    return [], 0


def read_parquet_file(spec: ParquetSource, task: FileTask, batch_rows: int) -> Iterator[RawBatch]:
    return ParquetReader(task, batch_rows).batches()


def row_group_ranges(path: Path, parts: int, min_bytes: int) -> list[ByteRange]:
    """The file's rows in at most `parts` ranges of whole row groups with about equal rows, in file order:
    rows [start, end), 0-based (`first_line`: the first row's number, 1-based). A file under `min_bytes`, or
    with fewer row groups than that, is one range (loaded unsplit)."""
    try:
        meta = pq.ParquetFile(path).metadata
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"{path}: not a readable Parquet file ({exc})") from exc
    total = meta.num_rows
    if parts < 2 or path.stat().st_size < min_bytes or meta.num_row_groups < 2:
        return [ByteRange(0, total, 1)]
    out: list[ByteRange] = []
    start = row = 0
    for g in range(meta.num_row_groups):
        row += meta.row_group(g).num_rows
        if row > start and row >= total * (len(out) + 1) / parts and row < total:  # never an empty range
            out.append(ByteRange(start, row, start + 1))
            start = row
    out.append(ByteRange(start, total, start + 1))
    return out


def streams(spec: ParquetSource, request: StreamRequest) -> list[Stream]:
    """One stream per file left to load, or per range of row groups of a large file (`split`)."""

    def read(task: FileTask) -> Iterator[RawBatch]:
        return read_parquet_file(spec, task, request.batch_rows)

    cfg = spec.split
    split = None
    if cfg is not None and request.parts >= 1:
        n = request.parts if cfg.parts is None else cfg.parts
        split = functools.partial(row_group_ranges, parts=n, min_bytes=cfg.min_bytes)
    return file_streams(request, spec.path, read, split, range_word="rows")
