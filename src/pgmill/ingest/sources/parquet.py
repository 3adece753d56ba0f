"""Parquet files, streamed row group by row group with pyarrow.

Columns keep their Arrow types (integers, floats, decimals, dates, timestamps), which the contract casts
without going through text. Records are named by row number (1 = the file's first row). A rerun resumes
after the rows already committed: it starts at the row group that holds the next row and drops the rows
before it, so nothing is read twice into the table and nothing is skipped.

The committed byte offset is an estimate (the share of rows done, times the file size): Parquet has no
byte position per row, and the offset only feeds progress reporting; resuming uses the row count.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pgmill.config.spec import ParquetSource
from pgmill.errors import SourceError
from pgmill.ingest.sources.base import FileMark, RawBatch, Stream, StreamRequest
from pgmill.ingest.sources.files import FileTask, file_streams


class ParquetReader:
    """Reads one Parquet file from a resume point, yielding RawBatches of at most `batch_rows` rows."""

    def __init__(self, task: FileTask, batch_rows: int) -> None:
        self.task = task
        self.batch_rows = batch_rows

    def batches(self) -> Iterator[RawBatch]:
        t = self.task
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

    def _tables(self, pf: Any, skip: int) -> Iterator[pa.Table]:
        """Tables of up to `batch_rows` rows, after the first `skip` rows of the file."""
        groups, skip = _groups_after(pf.metadata, skip)
        if not groups:
            return
        try:
            for batch in pf.iter_batches(batch_size=self.batch_rows, row_groups=groups, use_threads=True):
                if skip >= batch.num_rows:
                    skip -= batch.num_rows
                    continue
                if skip:
                    batch, skip = batch.slice(skip), 0
                yield pa.Table.from_batches([batch])
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


def streams(spec: ParquetSource, request: StreamRequest) -> list[Stream]:
    """One stream per file left to load."""

    def read(task: FileTask) -> Iterator[RawBatch]:
        return read_parquet_file(spec, task, request.batch_rows)

    return file_streams(request, spec.path, read)
