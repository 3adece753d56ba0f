"""What every source hands the loader: bounded batches of raw records, each with where it came from.

A source never decides what is valid: it reads, says where each record came from, hands over records it
could not even parse (with their raw text), and says what to remember once the batch is committed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import pyarrow as pa

if TYPE_CHECKING:
    from pgmill.ingest.sources.files import Digest


@dataclass(frozen=True)
class BadRecord:
    """A record the source could not parse: kept with its raw text, quarantined by the loader."""

    location: str  # e.g. "data/orders1.csv:line 17"
    raw_text: str
    reason: str


@dataclass(frozen=True)
class ByteRange:
    """Bytes [start, end) of a file: whole records, the first of them on physical line `first_line`."""

    start: int
    end: int  # exclusive
    first_line: int  # 1-based


@dataclass(frozen=True)
class RangeState:
    """A committed range of a split file (pgmill.file_ranges): where its next record starts."""

    range: ByteRange
    records_done: int
    complete: bool
    byte_offset: int
    next_line: int


@dataclass(frozen=True)
class FileMark:
    """Progress through one file, or through one range of a split file, committed with the batch, so that a
    rerun resumes right after it."""

    path: str  # as displayed (relative to the project)
    size: int
    sha256: str | Digest  # a Digest while it is being computed (see files.digest_of)
    records_done: int
    byte_offset: int  # where the next record starts
    next_line: int  # physical line number at byte_offset
    complete: bool  # the file (or the range) is read to its end
    range: ByteRange | None = None  # the range of a split file this mark is in
    plan: tuple[ByteRange, ...] = ()  # every range of that file, committed with its first checkpoint


@dataclass(frozen=True)
class CsvText:
    """The batch's original CSV text, one record per line, for loading good rows without re-encoding."""

    chunk: bytes | bytearray  # whole lines, no header
    first_line: int  # physical line number of the chunk's first line
    columns: list[str]  # the file's column names, in file order
    delimiter: str
    quote: str
    line_ends: Any  # numpy array: the offset of each newline in `chunk`
    null_values: tuple[str, ...] = ("",)

    def table(self, lines: list[int]) -> pa.Table:
        """The records on physical `lines` (each one line of this chunk), every column as text, parsed as
        the source parsed them."""
        import numpy as np

        ends = np.append(self.line_ends, len(self.chunk) - 1)  # a last line without its newline
        idx = np.asarray(lines, np.int64) - self.first_line
        starts = np.where(idx > 0, ends[np.maximum(idx - 1, 0)] + 1, 0)
        view = memoryview(self.chunk)
        text = b"".join(bytes(view[a : b + 1]).rstrip(b"\n") + b"\n"
                        for a, b in zip(starts.tolist(), ends[idx].tolist(), strict=True))
        return csv_lines_table(text, self.columns, self.delimiter, self.quote, list(self.null_values))


def csv_lines_table(text: bytes, columns: list[str], delimiter: str, quote: str, null_values: list[str]) -> pa.Table:
    """The records of CSV `text` (no header), every value as text; the empty unquoted field is null when ""
    is one of `null_values`, as in the sources' own parse."""
    import pyarrow.csv as pacsv

    return pacsv.read_csv(
        pa.BufferReader(pa.py_buffer(text)),
        read_options=pacsv.ReadOptions(column_names=columns, use_threads=False),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char=quote),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in columns}, null_values=null_values,
            strings_can_be_null=True, quoted_strings_can_be_null=False),
    )


def json_objects(table: pa.Table) -> list[str] | None:
    """One JSON object per row of a table of text columns, built in bulk (~6x faster than json.dumps of
    each row's dict); None when a column is not text (its values would need Python's conversions)."""
    import polars as pl

    if not table.num_columns or not all(pa.types.is_string(t) or pa.types.is_large_string(t)
                                        or pa.types.is_string_view(t) for t in table.schema.types):
        return None
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    return df.select(pl.struct(pl.all()).struct.json_encode()).to_series().to_list()


#: the column of RawBatch.deletes holding each deletion's commit time (for a soft delete)
DELETED_AT = "__pgmill_deleted_at"


@dataclass
class RawBatch:
    """One batch of records, all from one origin (a file, an API page run, a query)."""

    table: pa.Table  # the parsed records; column names as the source names them
    origin: str  # file path, URL or query label
    positions: list[int] | None  # per row of `table`: line number (files) or record number; None: 1..n
    bad: list[BadRecord] = field(default_factory=list)
    nbytes: int = 0  # bytes read from the source for this batch
    checkpoint: dict[str, Any] | None = None  # source state to commit with the batch (JSON-able)
    file_mark: FileMark | None = None  # for file sources: progress to commit with the batch
    position_word: str = "line"  # how a position is named in a location
    csv_text: CsvText | None = None  # set when every record is exactly one line of UTF-8 text
    # `table` holds only the columns the loader must check (a narrow read); `csv_text` has every column
    narrow: bool = False
    # change data capture (ingest/cdc): `table` is the rows to upsert; these are the keys to delete (source
    # names, text), whether to empty the target first, and the changes folded into later ones
    deletes: pa.Table | None = None
    truncate: bool = False
    folded: int = 0
    arrived: float | None = None  # when its oldest record reached the source (epoch seconds), if known
    # its commit must be on disk before anyone is told (change data capture confirms it to the source's slot,
    # which then forgets it): no asynchronous commit for this checkpoint
    durable: bool = False

    @property
    def records(self) -> int:
        return int(self.table.num_rows) + len(self.bad) + self.changes_without_rows

    @property
    def changes_without_rows(self) -> int:
        """Records read that hold no row to load: deletions, and changes folded into later ones."""
        return (0 if self.deletes is None else int(self.deletes.num_rows)) + self.folded

    @property
    def column_names(self) -> list[str]:
        """The source's column names, including those a narrow read left unparsed."""
        if self.narrow and self.csv_text is not None:
            return list(self.csv_text.columns)
        return list(self.table.column_names)

    def records_json_at(self, rows: list[int]) -> list[str] | None:
        """records_at, as JSON objects, when every column is text (None: use records_at)."""
        return json_objects(self._records_table(rows)) if rows else []

    def records_at(self, rows: list[int]) -> list[dict[str, Any]]:
        """The records at rows of `table`, with every column of the source."""
        return self._records_table(rows).to_pylist() if rows else []

    def _records_table(self, rows: list[int]) -> pa.Table:
        if self.narrow and self.csv_text is not None and self.positions is not None:
            return self.csv_text.table([self.positions[r] for r in rows])  # re-parsed whole from its lines
        return self.table.take(pa.array(rows, pa.int64()))

    def location(self, row: int) -> str:
        pos = self.positions[row] if self.positions is not None else row + 1
        if self.position_word == "lsn":  # a WAL position, written as PostgreSQL does
            return f"{self.origin}:lsn {pos >> 32:X}/{pos & 0xFFFFFFFF:X}"
        return f"{self.origin}:{self.position_word} {pos}"


@dataclass(frozen=True)
class SourceState:
    """What was committed last time: the source's own checkpoint and the newest cursor value loaded."""

    checkpoint: dict[str, Any]
    cursor_value: str | None
    # (path, sha256) -> (records_done, complete, byte_offset, next_line)
    files: dict[tuple[str, str], tuple[int, bool, int, int]]
    # (path, sha256) -> the ranges a split file was planned as, in file order
    ranges: dict[tuple[str, str], list[RangeState]] = field(default_factory=dict)


@dataclass(frozen=True)
class Stream:
    """One independently resumable sequence of batches."""

    label: str
    open: Callable[[], Iterator[RawBatch]]
    size_bytes: int | None  # bytes still to read, when known
    arrived: float | None = None  # when its data arrived (a file's modification time, epoch seconds)
    committed: Callable[[RawBatch], None] | None = None  # told of each batch once its checkpoint committed


@dataclass(frozen=True)
class StreamRequest:
    """What the loader asks of a source: the streams of what is left to load after the committed state."""

    project_dir: Path  # file paths and globs are relative to it
    state: SourceState
    batch_rows: int
    columns: list[str]  # the source's names of the contract's columns
    needed: list[str] | None = None  # the source names the loader checks: a reader may parse only these
    cursor: str | None = None  # the source's name of the pipeline's cursor column
    # ranges a large file is split into unless its `split` setting says; 0: never split (a replace)
    parts: int = 1
    # the one stream wanted (by label) by a unit running elsewhere: other files are not hashed for it
    only: str | None = None
    # the streams are only listed (to hand them out as units), never opened: new files are not hashed
    listing: bool = False
    # files modified after this time (epoch seconds) are left for a later pass: they may still be written
    settled_before: float | None = None


SpecT = TypeVar("SpecT", contravariant=True)


class Opener(Protocol[SpecT]):
    """What every source module exposes as `streams`: its spec and the request in, its streams out. Opening
    reads nothing yet (beyond listing files); a stream reads when its `open` is called."""

    def __call__(self, spec: SpecT, request: StreamRequest, /) -> list[Stream]: ...
