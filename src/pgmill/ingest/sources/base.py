"""What every source hands the loader: bounded batches of raw records, each with where it came from.

A source never decides what is valid: it reads, says where each record came from, hands over records it
could not even parse (with their raw text), and says what to remember once the batch is committed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

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
class FileMark:
    """Progress through one file, committed with the batch, so that a rerun resumes right after it."""

    path: str  # as displayed (relative to the project)
    size: int
    sha256: str | Digest  # a Digest while it is being computed (see files.digest_of)
    records_done: int
    byte_offset: int  # where the next record starts
    next_line: int  # physical line number at byte_offset
    complete: bool


@dataclass(frozen=True)
class CsvText:
    """The batch's original CSV text, one record per line, for loading good rows without re-encoding."""

    chunk: bytes | bytearray  # whole lines, no header
    first_line: int  # physical line number of the chunk's first line
    columns: list[str]  # the file's column names, in file order
    delimiter: str
    quote: str
    line_ends: Any  # numpy array: the offset of each newline in `chunk`


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

    @property
    def records(self) -> int:
        return int(self.table.num_rows) + len(self.bad)

    def location(self, row: int) -> str:
        pos = self.positions[row] if self.positions is not None else row + 1
        return f"{self.origin}:{self.position_word} {pos}"


@dataclass(frozen=True)
class SourceState:
    """What was committed last time: the source's own checkpoint and the newest cursor value loaded."""

    checkpoint: dict[str, Any]
    cursor_value: str | None
    # (path, sha256) -> (records_done, complete, byte_offset, next_line)
    files: dict[tuple[str, str], tuple[int, bool, int, int]]


class Source(Protocol):
    """A readable source. `batches` resumes from `state` and yields bounded batches."""

    def describe(self) -> str: ...

    def estimated_bytes(self, state: SourceState) -> int | None: ...

    def batches(self, state: SourceState, batch_rows: int) -> Iterator[RawBatch]: ...
