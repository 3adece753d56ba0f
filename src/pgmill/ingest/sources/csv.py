"""CSV files, streamed in record-aligned chunks parsed by pyarrow.

pgmill cuts the file itself, at record boundaries, so that it knows the byte offset and physical line of
every chunk: a rerun resumes at the byte after the last committed record, and every record, good or bad, is
named by its file and line. A line is a record unless a quoted value opened on it is closed, into one
well-formed record, by the next line with an odd number of quotes; a line whose quote nothing closes is a
stray, quarantined alone with its text, so that one bad line costs one line (`_plan`). pyarrow parses each
chunk, stray lines cut out (all columns as raw bytes, so nothing is coerced behind the contract's back), and
hands over ragged records through its invalid-row handler: they are quarantined with their text, never
dropped.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Container, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pgmill.config.spec import CsvSource
from pgmill.errors import SourceError
from pgmill.ingest.sources.base import BadRecord, CsvText, RawBatch, Stream, StreamRequest
from pgmill.ingest.sources.files import FileTask, file_streams

MAX_RECORD_BYTES = 256 << 20  # a record larger than this ends the search for its closing quote
MAX_CHUNK_BYTES = 8 << 20  # a batch's text; with a few batches in flight this bounds the reader's memory


def _count(buf: bytes | bytearray, byte: int, start: int = 0, end: int | None = None) -> int:
    """Occurrences of `byte` in buf[start:end], vectorized (bytes.count is a byte-at-a-time loop)."""
    stop = len(buf) if end is None else end
    if stop <= start:
        return 0
    return int(np.count_nonzero(np.frombuffer(buf, np.uint8, stop - start, start) == byte))


@dataclass(frozen=True)
class _Plan:
    """Where a chunk ends and which of its lines are stray: what `_plan` found in a buffer."""

    end: int  # offset just past the chunk's last record
    stray: list[int]  # lines (0-based within the chunk) whose quotes open a record no later line closes
    spans: bool  # some record of the chunk spans lines (a quoted value with a newline)
    newlines: np.ndarray  # offsets of the chunk's newlines
    waits: bool = False  # the chunk ends before a line whose quote no line of the buffer closes yet


def _line_quotes(buf: bytes | bytearray | memoryview, quote: int, newlines: np.ndarray) -> np.ndarray:
    """Quote bytes on each line of `buf` (one entry per newline, and one for the text after the last)."""
    q = np.flatnonzero(np.frombuffer(buf, np.uint8) == quote)
    return np.bincount(np.searchsorted(newlines, q), minlength=len(newlines) + 1)


def _opens(line: bytes, spec: CsvSource) -> bool:
    """Whether `line` ends inside a quoted value that began at a field's start (a record may go on below)."""
    try:
        next(csv.reader(io.StringIO(line.decode("utf-8", "replace"), newline=""), delimiter=spec.delimiter,
                        quotechar=spec.quote, strict=True), None)
    except csv.Error:
        return True
    return False  # a quote inside a value is text to a CSV parser: the line is a record of its own


def _closes(line: bytes, spec: CsvSource) -> bool:
    """Whether `line` can end a quoted value opened above it: once that value's closing quote is met, the
    rest of the line parses as fields."""
    try:
        rows = list(csv.reader(io.StringIO((spec.quote + line.decode("utf-8", "replace")), newline=""),
                               delimiter=spec.delimiter, quotechar=spec.quote, strict=True))
    except csv.Error:
        return False
    return len(rows) == 1


def _one_record(text: bytes, spec: CsvSource) -> bool:
    """Whether `text` is exactly one well-formed record (it may still have too few or too many fields: then
    it is one bad record, quarantined whole with its text)."""
    try:
        rows = list(csv.reader(io.StringIO(text.decode("utf-8", "replace"), newline=""), delimiter=spec.delimiter,
                               quotechar=spec.quote, strict=True))
    except csv.Error:
        return False
    return len(rows) == 1


def _plan(buf: bytes | bytearray, want: int, eof: bool, spec: CsvSource, stray_at: Container[int] = ()) -> _Plan | None:
    """The records of `buf` to hand over as one chunk of about `want` bytes; None: read more first (see
    `_plan_in`). Only the first ~2 x `want` bytes are scanned when they settle it: after a stray quote the
    reader holds a long stretch read ahead, and every chunk taken from it would scan all of it again."""
    view_end = buf.rfind(b"\n", 0, 2 * want) + 1 if len(buf) > 2 * want else 0
    if view_end > want:
        with memoryview(buf) as mv, mv[:view_end] as view:
            plan = _plan_in(view, want, False, spec, stray_at)
        if plan is not None and not plan.waits:
            return plan
    return _plan_in(buf, want, eof, spec, stray_at)


def _plan_in(buf: bytes | bytearray | memoryview, want: int, eof: bool, spec: CsvSource,
             stray_at: Container[int] = ()) -> _Plan | None:
    """The records of `buf` to hand over as one chunk of about `want` bytes; None: read more first (no whole
    line yet). A chunk that ends before a line whose quote nothing in `buf` closes yet `waits` (its `end` is
    0 when that is the first line): the caller looks further, or says the line is stray (`stray_at`: the
    offsets in `buf` of lines known to be stray).

    A line with an even number of quotes is a record of its own. A line with an odd number either opens a
    record that spans lines, closed by the next such line, or is stray: it is a spanning record only when
    that pair of lines and every line between parse, strictly, as one record. A stray
    line is one bad record; the lines after it are read as if it were not there (one bad line costs one
    line, never the rest of the file, as reading quotes by parity from the file's start would)."""
    nl = np.flatnonzero(np.frombuffer(buf, np.uint8) == 10)
    starts = np.concatenate(([0], nl + 1))
    ends = np.append(nl + 1, len(buf))  # one past each line's newline; the last: the text after it
    last = len(nl) if eof and starts[-1] < len(buf) else len(nl) - 1  # the last whole line
    if last < 0:
        return None if not eof else _Plan(len(buf), [], False, nl)
    # the chunk ends at the line that crosses `want` (or the last whole one)
    cut = min(int(np.searchsorted(ends, want)), last)
    quote = ord(spec.quote)
    odd = np.flatnonzero(_line_quotes(buf, quote, nl)[: last + 1] & 1).tolist()
    stray: list[int] = []
    spans = False
    i = 0
    while i < len(odd) and odd[i] <= cut:
        first = odd[i]
        line = bytes(buf[starts[first]:ends[first]])
        if int(starts[first]) in stray_at or not _opens(line, spec):
            stray.append(first)
            i += 1
            continue
        if i + 1 >= len(odd):  # nothing below closes it yet
            if eof or len(buf) - starts[first] >= MAX_RECORD_BYTES:
                stray.append(first)
                i += 1
                continue
            return _Plan(int(starts[first]), stray, spans, nl[:first], waits=True)
        close = odd[i + 1]
        if (_closes(bytes(buf[starts[close]:ends[close]]), spec)
                and _one_record(bytes(buf[starts[first]:ends[close]]), spec)):
            spans = True
            cut = max(cut, close)
            i += 2
            continue
        stray.append(first)
        i += 1
    return _Plan(int(ends[cut]), stray, spans, nl[: cut + 1] if cut < len(nl) else nl)


def _first_cut(buf: bytes, quote: int) -> int:
    """Offset just past the first newline in `buf` outside quotes; -1 when there is none."""
    q = bytes([quote])
    pos = buf.find(b"\n")
    while pos >= 0:
        if buf.count(q, 0, pos) % 2 == 0:
            return pos + 1
        pos = buf.find(b"\n", pos + 1)
    return -1


def _is_utf8(chunk: bytes | bytearray) -> bool:
    """Whether `chunk` is valid UTF-8. Only the stretch from its first non-ASCII byte to its last is checked
    (the bytes around it are ASCII, so the stretch starts and ends on whole characters), by Arrow's
    validator: ~3.5 ms for 10 MB of accented text, where decoding it to a str takes ~10 ms."""
    high = np.frombuffer(chunk, np.uint8) >= 0x80
    first = int(high.argmax()) if high.size else 0
    if not high.size or not high[first]:
        return True
    last = len(high) - 1 - int(high[::-1].argmax())
    stretch = pa.py_buffer(memoryview(chunk)[first : last + 1])
    offsets = pa.py_buffer(np.array([0, last + 1 - first], np.int32))
    try:
        pa.Array.from_buffers(pa.string(), 1, [None, offsets, stretch]).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


class CsvReader:
    """Reads one CSV file from a resume point, yielding RawBatches of about `chunk_bytes` each.

    `needed`: the columns the loader must check. When given, and the file holds exactly the columns asked
    for, in UTF-8 with empty fields as null, a chunk whose records are one line each is parsed for those
    columns only (a narrow read): the loader sends the good lines' own text to Postgres, so the others are
    never looked at, and the source's records are re-parsed in full only for the rows that are quarantined.
    """

    def __init__(self, spec: CsvSource, task: FileTask, columns_hint: list[str], batch_rows: int,
                 needed: list[str] | None = None) -> None:
        self.spec = spec
        self.task = task
        self.columns_hint = columns_hint
        self.needed = needed
        self.batch_rows = batch_rows
        self.chunk_bytes = 1 << 20
        self.encoding = codecs.lookup(spec.encoding).name
        self.names: list[str] = []

    # ------------------------------------------------------------ header

    def read_header(self, fh: io.BufferedReader) -> tuple[list[str], int, int]:
        """Column names, the byte offset after the header, and the line number that follows it."""
        start = 3 if fh.read(3) == codecs.BOM_UTF8 else 0
        fh.seek(start)
        if not self.spec.header:
            return list(self.columns_hint), start, 1
        head = b""
        while True:
            more = fh.read(64 << 10)
            head += more
            end = _first_cut(head, ord(self.spec.quote))
            if end > 0 or not more:
                break
            if len(head) > MAX_RECORD_BYTES:
                raise SourceError(f"{self.task.display}:line 1: header is larger than {MAX_RECORD_BYTES} bytes")
        if end <= 0:
            end = len(head)
        text = self._decode(head[:end], "line 1")
        if not text.strip():
            return [], start + end, 1 + head[:end].count(b"\n")
        row = next(csv.reader(io.StringIO(text), delimiter=self.spec.delimiter, quotechar=self.spec.quote))
        names = [c.strip() for c in row]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SourceError(f"{self.task.display}:line 1: header names {', '.join(dupes)} more than once")
        return names, start + end, 1 + head[:end].count(b"\n")

    def _decode(self, data: bytes | bytearray, where: str) -> str:
        try:
            return data.decode(self.encoding)
        except UnicodeDecodeError as exc:
            raise SourceError(
                f"{self.task.display}:{where}: not valid {self.encoding} ({exc.reason} at byte {exc.start}); "
                "set `encoding` on the source"
            ) from exc

    def _chunk_size(self, fh: io.BufferedReader, offset: int) -> int:
        """Bytes per chunk for about `batch_rows` records, from the line length near `offset`."""
        fh.seek(offset)
        sample = fh.read(256 << 10)
        lines = max(1, sample.count(b"\n"))
        per_line = max(1, len(sample) // lines)
        # capped in bytes too: memory stays bounded however wide the rows are
        return int(min(MAX_CHUNK_BYTES, max(4 << 10, per_line * self.batch_rows)))

    # ------------------------------------------------------------ chunks

    def _chunks(self, fh: io.BufferedReader, offset: int,
                line: int) -> Iterator[tuple[bytearray, int, int, bool, np.ndarray, _Plan]]:
        """(chunk, offset after it, physical line of its first byte, at end of file, offsets of its newlines,
        what `_plan` found in it).

        A chunk is about `chunk_bytes` of whole records; the bytes after it start the next one. A record
        that spans lines makes its chunk longer, a stray quote never does (see `_plan`). A task with an
        `end_offset` is read up to that byte only, as if the file ended there (a range cut at a record
        boundary: split.py)."""
        fh.seek(offset)
        limit = self.task.end_offset
        left = -1 if limit is None else max(0, limit - offset)  # bytes of the range not yet read; -1: no limit
        data = bytearray()
        eof = False

        def more(n: int) -> None:
            nonlocal left, eof
            got = fh.read(n if left < 0 else min(left, n)) if left != 0 else b""
            if left >= 0:
                left -= len(got)
            data.extend(got)
            if not got or left == 0 or fh.peek(1) == b"":
                eof = True

        stray_at: set[int] = set()  # offsets in `data` of lines found stray by looking ahead
        while True:
            if len(data) < self.chunk_bytes and not eof:
                more(self.chunk_bytes - len(data))
            while True:
                plan = _plan(data, self.chunk_bytes, eof, self.spec, stray_at)
                if plan is not None and not (plan.waits and plan.end == 0):
                    break
                if plan is not None:  # the first line opens a quoted value: does the next odd line close it?
                    closer = self._next_odd_line(fh, bytes(data[data.rfind(b"\n") + 1:]), left)
                    if closer is None or not _closes(closer, self.spec):
                        stray_at.add(0)  # stray: nothing more is read for it
                        continue
                more(max(len(data), self.chunk_bytes))  # a record that spans lines goes on below
            stray_at.clear()
            if plan.end <= 0:
                return
            # the chunk keeps the buffer (no copy of it); the few bytes after it start the next one
            chunk, data = data, data[plan.end:]
            del chunk[plan.end:]
            offset += len(chunk)
            done = eof and not data
            newlines = plan.newlines  # found once, used for line numbers and for cutting out good lines
            yield chunk, offset, line, done, newlines, plan
            line += len(newlines)
            if done:
                return

    def _next_odd_line(self, fh: io.BufferedReader, carry: bytes, left: int) -> bytes | None:
        """The first line with an odd number of quotes from `carry` (the text after the buffer's last
        newline) and the file after it, read up to `left` bytes (-1: no limit) and at most MAX_RECORD_BYTES;
        None: none. Scanned block by block and not kept: the file position is restored."""
        quote = ord(self.spec.quote)
        pos = fh.tell()
        seen = 0
        try:
            while True:
                n = 16 << 20 if left < 0 else min(16 << 20, left - seen)
                block = fh.read(n) if n > 0 else b""
                seen += len(block)
                buf = carry + block
                nl = np.flatnonzero(np.frombuffer(buf, np.uint8) == 10)
                end = not block or seen >= MAX_RECORD_BYTES
                counts = _line_quotes(buf, quote, nl)
                odd = np.flatnonzero(counts[: len(nl) + (1 if end else 0)] & 1)
                if odd.size:
                    i = int(odd[0])
                    return buf[0 if i == 0 else int(nl[i - 1]) + 1 : int(nl[i]) + 1 if i < len(nl) else len(buf)]
                if end:
                    return None
                carry = buf[int(nl[-1]) + 1:] if nl.size else buf
        finally:
            fh.seek(pos)

    # ------------------------------------------------------------ parse

    def _parse(self, chunk: bytes | bytearray, first_line: int, newlines: int, include: list[str] | None = None,
               lines: list[int] | None = None) -> tuple[pa.Table, list[int], list[BadRecord], bool]:
        """The chunk's records as a table of text columns, the physical line of each row, the records that
        could not be parsed, and whether every record is one line. `lines`: the physical line of each line of
        `chunk` when they are not consecutive from `first_line` (stray lines were cut out of it)."""
        bad_rows: list[tuple[int, str]] = []

        def on_bad(row: Any) -> str:
            bad_rows.append((row.number, row.text))
            return "skip"

        names = self.names
        if not chunk:  # every line of the chunk was stray
            return pa.table({n: pa.array([], pa.string()) for n in include or names}), [], [], True
        if self.encoding != "utf-8":
            chunk = self._decode(chunk, f"line {first_line}").encode("utf-8")
        try:
            table = pacsv.read_csv(
                pa.BufferReader(pa.py_buffer(chunk)),  # no copy of the chunk
                read_options=pacsv.ReadOptions(
                    column_names=names, use_threads=False, block_size=len(chunk) + 1
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter=self.spec.delimiter, quote_char=self.spec.quote,
                    newlines_in_values=True, invalid_row_handler=on_bad,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.binary() for n in names}, include_columns=include or names,
                    null_values=self.spec.null_values, strings_can_be_null=True, quoted_strings_can_be_null=False,
                ),
            )
        except pa.ArrowInvalid as exc:
            raise SourceError(f"{self.task.display}:line {first_line}: cannot parse CSV: {exc}") from exc
        table, utf8_bad = _to_utf8(table)
        # physical line of every record: records are numbered 1.. within the chunk, bad ones included
        total = table.num_rows + len(bad_rows)
        simple = newlines == total - (0 if chunk.endswith(b"\n") else 1)
        if simple:
            starts = lines[:total] if lines is not None else list(range(first_line, first_line + total))
        else:
            starts = _record_lines(chunk.decode("utf-8", "replace"), 0, self.spec)
            if len(starts) != total:  # pragma: no cover - defensive: fall back to record numbers
                starts = list(range(total))
            starts = [lines[i] for i in starts] if lines is not None else [first_line + i for i in starts]
        bad = [BadRecord(f"{self.task.display}:line {starts[num - 1]}", text, _why_bad(text, len(names), self.spec))
               for num, text in bad_rows]
        if bad_rows:
            gone = {num for num, _ in bad_rows}
            positions = [ln for num, ln in enumerate(starts, 1) if num not in gone]
        else:
            positions = starts  # the common case: no record pyarrow could not parse
        if utf8_bad:
            first_bad: dict[int, str] = {}
            for r, col in utf8_bad:
                first_bad.setdefault(r, col)
            rows = table.take(pa.array(sorted(first_bad), pa.int64())).to_pylist()
            for r, rec in zip(sorted(first_bad), rows, strict=True):
                raw = self.spec.delimiter.join("" if v is None else str(v) for v in rec.values())
                bad.append(BadRecord(f"{self.task.display}:line {positions[r]}", raw,
                                     f"column {first_bad[r]} is not valid {self.encoding}; "
                                     "set `encoding` on the source"))
            keep = pa.array([i for i in range(table.num_rows) if i not in first_bad], pa.int64())
            table = table.take(keep)
            positions = [positions[i] for i in keep.to_pylist()]
        return table, positions, bad, simple

    # ------------------------------------------------------------ entry point

    def batches(self) -> Iterator[RawBatch]:
        t = self.task
        try:
            fh = t.path.open("rb")
        except OSError as exc:
            raise SourceError(f"cannot open {t.display}: {exc.strerror}") from exc
        with fh:
            names, after_header, line_after = self.read_header(fh)
            self.names = names
            offset, line, done = (t.resume_offset, t.resume_line, t.records_done)
            if offset == 0:
                offset, line = after_header, line_after
            self.chunk_bytes = self._chunk_size(fh, offset)
            narrow = self._narrow_columns(names)
            if not names or offset >= t.size or (t.end_offset is not None and offset >= t.end_offset):
                # empty file or header only: nothing to load, but the file is remembered as loaded
                yield RawBatch(pa.table({}), t.display, [], [], 0,
                               file_mark=t.mark(done, t.end, line, True))
                return
            for chunk, end, first_line, last, line_ends, plan in self._chunks(fh, offset, line):
                newlines = len(line_ends)
                plain = self.encoding == "utf-8" and b"\r" not in chunk
                body, lines, stray = self._without_stray(chunk, line_ends, first_line, plan.stray)
                parsed = None
                # a chunk with a record over several lines is parsed in full (its good lines cannot be cut
                # out); the chunks after it are parsed narrow again
                if narrow is not None and plain and not plan.spans and _is_utf8(chunk):
                    parsed = self._parse(body, first_line, newlines - len(stray), narrow, lines)
                    if not parsed[3]:  # pragma: no cover - defensive: a record pyarrow read over lines
                        parsed = None
                is_narrow = parsed is not None
                table, positions, bad, simple = parsed or self._parse(body, first_line, newlines - len(stray),
                                                                      None, lines)
                if stray:
                    bad = sorted(bad + stray, key=lambda b: int(b.location.rsplit(" ", 1)[1]))
                done += table.num_rows + len(bad)
                text = None
                if simple and plain:
                    text = CsvText(chunk, first_line, names, self.spec.delimiter, self.spec.quote, line_ends,
                                   tuple(self.spec.null_values))
                yield RawBatch(
                    table, t.display, positions, bad, len(chunk) + (after_header if first_line == line_after else 0),
                    file_mark=t.mark(done, end, first_line + newlines, last or end >= t.end),
                    csv_text=text, narrow=is_narrow,
                )

    def _without_stray(self, chunk: bytearray, line_ends: np.ndarray, first_line: int, stray: list[int],
                       ) -> tuple[bytes | bytearray, list[int] | None, list[BadRecord]]:
        """The chunk without its stray lines (see `_plan`), the physical line of each line left (None: all
        are left), and the stray lines as bad records, each with its own text."""
        if not stray:
            return chunk, None, []
        starts = np.concatenate(([0], line_ends + 1))
        ends = np.append(line_ends + 1, len(chunk))
        view = memoryview(chunk)
        keep: list[memoryview] = []
        bad: list[BadRecord] = []
        prev = 0
        for i in stray:
            keep.append(view[prev:starts[i]])
            text = bytes(view[starts[i]:ends[i]]).rstrip(b"\r\n").decode(self.encoding, "replace")
            bad.append(BadRecord(f"{self.task.display}:line {first_line + i}", text,
                                 _why_bad(text, len(self.names), self.spec)))
            prev = int(ends[i])
        keep.append(view[prev:])
        gone = set(stray)
        total = len(line_ends) + (0 if chunk.endswith(b"\n") else 1)
        return b"".join(keep), [first_line + i for i in range(total) if i not in gone], bad

    def _narrow_columns(self, names: list[str]) -> list[str] | None:
        """The columns to parse when a chunk allows a narrow read (see the class); None: always all."""
        if self.needed is None or self.encoding != "utf-8" or list(self.spec.null_values) != [""]:
            return None
        if len(names) != len(self.columns_hint) or set(names) != set(self.columns_hint):
            return None
        cols = [n for n in names if n in set(self.needed)] or names[:1]  # a table without columns has no rows
        return cols if len(cols) < len(names) else None


def _to_utf8(table: pa.Table) -> tuple[pa.Table, list[tuple[int, str]]]:
    """Binary columns to strings; (row, column) of every value that is not valid UTF-8."""
    cols = []
    bad: list[tuple[int, str]] = []
    for name in table.column_names:
        col = table.column(name)
        try:
            cols.append(pc.cast(col, pa.string()))
        except pa.ArrowInvalid:
            values = col.to_pylist()
            for i, v in enumerate(values):
                if v is not None:
                    try:
                        v.decode("utf-8")
                    except UnicodeDecodeError:
                        bad.append((i, name))
            cols.append(pa.array([None if v is None else v.decode("utf-8", "backslashreplace") for v in values],
                                 pa.string()))
    return pa.table(cols, names=table.column_names) if table.num_columns else table, bad


def _record_lines(text: str, first_line: int, spec: CsvSource) -> list[int]:
    """Starting line of each non-empty record, by a quote-aware scan (only when records span lines)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=spec.delimiter, quotechar=spec.quote, strict=False)
    starts: list[int] = []
    prev = 0
    try:
        for row in reader:
            if row:
                starts.append(first_line + prev)
            prev = reader.line_num
    except csv.Error:  # pragma: no cover - unterminated quote at the end: the rest is one record
        starts.append(first_line + prev)
    return starts


def _why_bad(text: str, expected: int, spec: CsvSource) -> str:
    try:
        fields = next(csv.reader(io.StringIO(text), delimiter=spec.delimiter, quotechar=spec.quote, strict=True))
        n = len(fields)
    except (csv.Error, StopIteration):
        return f"unterminated quote ({spec.quote}) or malformed quoting; expected {expected} fields"
    if text.count(spec.quote) % 2:
        return f"unterminated quote ({spec.quote}); expected {expected} fields"
    return f"has {n} fields, expected {expected}"


def read_csv_file(spec: CsvSource, task: FileTask, columns_hint: list[str], batch_rows: int,
                  needed: list[str] | None = None) -> Iterator[RawBatch]:
    return CsvReader(spec, task, columns_hint, batch_rows, needed).batches()


def streams(spec: CsvSource, request: StreamRequest) -> list[Stream]:
    """One stream per file left to load, or per range of a large file (`split`)."""

    from pgmill.ingest.sources.split import splitter  # split.py reads headers with this module's reader

    def read(task: FileTask) -> Iterator[RawBatch]:
        return read_csv_file(spec, task, request.columns, request.batch_rows, request.needed)

    return file_streams(request, spec.path, read, splitter(spec, request.parts))
