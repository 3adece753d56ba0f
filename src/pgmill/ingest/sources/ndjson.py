"""NDJSON files: one JSON object per line, streamed in line-aligned chunks parsed by polars.

pgmill cuts the file itself at newlines (a JSON string cannot hold a raw newline, so every newline ends a
record) and so knows the byte offset and physical line of every chunk: a rerun resumes at the byte after
the last committed line, and every record, good or bad, is named by its file and line.

Every value is read as text: strings as they are, numbers and booleans as JSON writes them, nested objects
and arrays as JSON text (for `json`/`jsonb` columns). The contract casts them, so nothing is coerced
behind its back, and two lines that disagree about a key's type never break a chunk. Fractional numbers
go through a 64-bit float, as in most JSON parsers: digits beyond what a double holds are lost; send such
decimals as strings.

A chunk polars rejects is checked line by line: lines that are not JSON objects are quarantined with their
text and the reason, the others are parsed as usual.
"""

from __future__ import annotations

import codecs
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import polars as pl
import pyarrow as pa

from pgmill.config.spec import NdjsonSource
from pgmill.errors import SourceError
from pgmill.ingest.sources.base import BadRecord, RawBatch, Stream, StreamRequest
from pgmill.ingest.sources.files import FileTask, file_streams
from pgmill.ingest.sources.split import splitter

MAX_LINE_BYTES = 256 << 20  # a longer line is quarantined unread rather than held in memory
MAX_CHUNK_BYTES = 64 << 20  # a batch holds fewer than `batch_rows` lines rather than more bytes than this
_RAW_TEXT_LIMIT = 64 << 10  # how much of an oversized line is kept as its raw text


@dataclass(frozen=True)
class _Chunk:
    data: bytes  # whole lines; for an oversized line, only its start
    first_line: int  # physical line number of the first byte
    lines: int  # physical lines covered
    end: int  # byte offset just past the chunk
    oversized: int = 0  # when non-zero: the chunk is one line of this many bytes, not read whole


@dataclass(frozen=True)
class _Parsed:
    table: pa.Table
    positions: list[int]
    bad: list[BadRecord]


class NdjsonReader:
    """Reads one NDJSON file from a resume point, yielding RawBatches of at most `batch_rows` lines."""

    def __init__(self, task: FileTask, batch_rows: int, columns: Sequence[str] = ()) -> None:
        self.task = task
        self.batch_rows = batch_rows
        self.columns = columns

    def batches(self) -> Iterator[RawBatch]:
        t = self.task
        try:
            fh = t.path.open("rb")
        except OSError as exc:
            raise SourceError(f"cannot open {t.display}: {exc.strerror}") from exc
        with fh:
            offset, line, done = t.resume_offset, t.resume_line, t.records_done
            bom = 0
            if offset == 0 and fh.read(3) == codecs.BOM_UTF8:
                bom = offset = 3
            if offset >= t.end:
                # empty (or already fully read): nothing to load, but the file is remembered as loaded
                yield RawBatch(pa.table({}), t.display, [], [], 0,
                               file_mark=t.mark(done, t.end, line, True))
                return
            for chunk in self._chunks(fh, offset, line):
                parsed = self._parse(chunk)
                done += parsed.table.num_rows + len(parsed.bad)
                nbytes = chunk.end - offset + bom
                offset, bom = chunk.end, 0
                yield RawBatch(
                    _with_columns(parsed.table, self.columns), t.display, parsed.positions, parsed.bad, nbytes,
                    file_mark=t.mark(done, chunk.end, chunk.first_line + chunk.lines, chunk.end >= t.end),
                )

    # ------------------------------------------------------------ chunks

    def _read_size(self, fh: BinaryIO, offset: int) -> int:
        """Bytes that hold about `batch_rows` lines, judged by the lines near `offset`."""
        fh.seek(offset)
        sample = fh.read(256 << 10)
        per_line = max(1, len(sample) // max(1, sample.count(b"\n")))
        return int(min(MAX_CHUNK_BYTES, max(4 << 10, per_line * self.batch_rows * 1.05)))

    def _chunks(self, fh: BinaryIO, offset: int, line: int) -> Iterator[_Chunk]:
        """Chunks of whole lines, up to the size the file had when it was hashed, so that a file being
        appended to is read exactly as it was identified (or up to the task's `end_offset`: a range)."""
        read_size = self._read_size(fh, offset)
        fh.seek(offset)
        remaining = self.task.end - offset
        data = b""
        while True:
            data, remaining = self._fill(fh, data, remaining, read_size)
            if not data:
                return
            if b"\n" not in data and len(data) >= MAX_LINE_BYTES:
                chunk, remaining = self._skip_line(fh, data, offset, line, remaining)
                data = b""
            else:
                cut = _nth_newline_end(data, self.batch_rows)
                if cut == 0 or (not remaining and data.count(b"\n") < self.batch_rows):
                    cut = len(data)  # the last line of the file may have no newline
                piece, data = data[:cut], data[cut:]
                lines = piece.count(b"\n") + (0 if piece.endswith(b"\n") else 1)
                chunk = _Chunk(piece, line, lines, offset + len(piece))
            yield chunk
            offset, line = chunk.end, line + chunk.lines

    def _fill(self, fh: BinaryIO, data: bytes, remaining: int, read_size: int) -> tuple[bytes, int]:
        """Read until `data` holds `batch_rows` lines, the file ends, `data` is as large as a chunk may be,
        or its last line is oversized."""
        while remaining and data.count(b"\n") < self.batch_rows:
            last_nl = data.rfind(b"\n")
            if (last_nl >= 0 and len(data) >= MAX_CHUNK_BYTES) or len(data) - (last_nl + 1) >= MAX_LINE_BYTES:
                break
            more = fh.read(min(remaining, max(read_size, len(data)), MAX_LINE_BYTES))
            if not more:  # the file shrank since it was hashed: read what is there
                return data, 0
            remaining -= len(more)
            data += more
        return data, remaining

    def _skip_line(self, fh: BinaryIO, data: bytes, offset: int, line: int, remaining: int) -> tuple[_Chunk, int]:
        """Read past a line too long to hold, keeping its start as its raw text."""
        size = len(data)
        while remaining:
            more = fh.read(min(remaining, 8 << 20))
            if not more:
                remaining = 0
                break
            remaining -= len(more)
            nl = more.find(b"\n")
            if nl >= 0:
                unread = len(more) - nl - 1
                fh.seek(-unread, io.SEEK_CUR)
                size, remaining = size + nl + 1, remaining + unread
                break
            size += len(more)
        return _Chunk(data[:_RAW_TEXT_LIMIT], line, 1, offset + size, oversized=size), remaining

    # ------------------------------------------------------------ parse

    def _parse(self, chunk: _Chunk) -> _Parsed:
        if chunk.oversized:
            text = chunk.data.decode("utf-8", "backslashreplace")
            reason = f"line is {chunk.oversized} bytes, over the limit of {MAX_LINE_BYTES}; not parsed"
            return _Parsed(pa.table({}), [], [BadRecord(self._where(chunk.first_line), text, reason)])
        try:
            table = _read_frame(chunk.data).to_arrow()
        except pl.exceptions.PolarsError:
            return self._parse_lines(chunk)
        if table.num_rows == chunk.lines:
            return _Parsed(table, list(range(chunk.first_line, chunk.first_line + chunk.lines)), [])
        # blank lines were skipped: number the records by a scan
        positions = [chunk.first_line + i for i, ln in enumerate(chunk.data.split(b"\n")) if ln.strip()]
        if len(positions) != table.num_rows:  # pragma: no cover - defensive: let the line-by-line path decide
            return self._parse_lines(chunk)
        return _Parsed(table, positions, [])

    def _parse_lines(self, chunk: _Chunk) -> _Parsed:
        """The slow path for a chunk polars rejected: find the bad lines, parse the rest."""
        good: list[tuple[int, bytes]] = []
        bad: list[tuple[int, bytes, str]] = []
        for i, raw in enumerate(chunk.data.split(b"\n")):
            if raw.strip():
                reason = _why_not_object(raw)
                if reason is None:
                    good.append((chunk.first_line + i, raw))
                else:
                    bad.append((chunk.first_line + i, raw, reason))
        frames, kept = _parse_good(good, bad)
        table = pl.concat(frames, how="diagonal").to_arrow() if frames else pa.table({})
        records = [BadRecord(self._where(ln), _raw_text(raw), why) for ln, raw, why in sorted(bad)]
        return _Parsed(table, kept, records)

    def _where(self, line: int) -> str:
        return f"{self.task.display}:line {line}"


def _parse_good(lines: list[tuple[int, bytes]],
                bad: list[tuple[int, bytes, str]]) -> tuple[list[pl.DataFrame], list[int]]:
    """Parse (line number, text) pairs Python's json accepted. Polars is stricter in a few places (a number
    too large for 128 bits, say), so the lines it rejects are found by halving and quarantined with its
    reason; frames and line numbers come back in file order."""
    if not lines:
        return [], []
    try:
        return [_read_frame(b"\n".join(raw for _, raw in lines))], [ln for ln, _ in lines]
    except pl.exceptions.PolarsError as exc:
        if len(lines) == 1:
            bad.append((lines[0][0], lines[0][1], f"not readable as JSON: {exc}"))
            return [], []
    half = len(lines) // 2
    left, lpos = _parse_good(lines[:half], bad)
    right, rpos = _parse_good(lines[half:], bad)
    return left + right, lpos + rpos


def _with_columns(table: pa.Table, columns: Sequence[str]) -> pa.Table:
    """`table` with a null column for each expected key that no line of the batch has: a key a line leaves
    out is a null in that line, for the contract to judge row by row, not a column missing from the file."""
    if not table.num_rows:
        return table
    for name in columns:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
    return table


def _read_frame(data: bytes) -> pl.DataFrame:
    """Every key of every object in `data` as a text column (missing keys: null)."""
    keys = pl.scan_ndjson(io.BytesIO(data), infer_schema_length=None).collect_schema()
    return pl.read_ndjson(io.BytesIO(data), schema={k: pl.String for k in keys})


def _nth_newline_end(data: bytes, n: int) -> int:
    """Offset just past the n-th newline of `data`, or past its last one if it has fewer (0: none);
    searching from whichever end is nearer."""
    total = data.count(b"\n")
    if total <= n:
        return data.rfind(b"\n") + 1
    if n <= total - n:
        pos = -1
        for _ in range(n):
            pos = data.find(b"\n", pos + 1)
        return pos + 1
    pos = len(data)
    for _ in range(total - n + 1):
        pos = data.rfind(b"\n", 0, pos)
    return pos + 1


_KINDS: dict[type, str] = {list: "an array", str: "a string", bool: "true or false", int: "a number",
                           float: "a number", type(None): "null"}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# one decoder for every line: json.loads with keyword arguments builds a new one per call
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _why_not_object(raw: bytes) -> str | None:
    """Why a line is not one JSON object, or None when it is one."""
    try:
        value = _DECODER.decode(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return f"not valid UTF-8 ({exc.reason} at byte {exc.start})"
    except json.JSONDecodeError as exc:
        return f"not valid JSON: {exc.msg} at column {exc.colno}"
    except ValueError as exc:
        return f"not valid JSON: {exc}"
    if isinstance(value, dict):
        return None
    return f"not a JSON object (found {_KINDS.get(type(value), type(value).__name__)})"


def _raw_text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace").rstrip("\r")


def read_ndjson_file(
    spec: NdjsonSource, task: FileTask, batch_rows: int, columns: Sequence[str] = ()
) -> Iterator[RawBatch]:
    """Batches of the file's records; `columns` (the contract's source names) are always present."""
    return NdjsonReader(task, batch_rows, columns).batches()


def streams(spec: NdjsonSource, request: StreamRequest) -> list[Stream]:
    """One stream per file left to load, or per range of a large file (`split`)."""

    def read(task: FileTask) -> Iterator[RawBatch]:
        return read_ndjson_file(spec, task, request.batch_rows, request.columns)

    return file_streams(request, spec.path, read, splitter(spec, request.parts))
