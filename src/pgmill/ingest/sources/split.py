"""A large CSV or NDJSON file split into byte ranges cut at record boundaries, for parallel units.

Each range is read on its own (a FileTask with `resume_offset` = start, `resume_line` = first line and
`end_offset` = end) and yields exactly the records an unsplit read yields for those bytes, with the same
line numbers, so a quarantined row is named the same however the file was split.

A CSV cut is only at a record boundary as the reader sees it (csv._plan: a line is a record unless a
quoted value opened on it is closed, as one well-formed record, by the next line with an odd number of
quotes; a stray quote costs its own line). That depends on the lines before it, so the file is read once
from the end of its header with the reader's own planner, block by block: the cut is exact, not a guess from
a sample, and the newline count gives each range's first line number. In NDJSON every newline ends a
record.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from pgmill.config.spec import CsvSource, NdjsonSource
from pgmill.errors import SourceError
from pgmill.ingest.sources.base import ByteRange
from pgmill.ingest.sources.csv import CsvReader, _count, _plan
from pgmill.ingest.sources.files import FileTask, Splitter

MIN_SPLIT_BYTES = 64 << 20  # a smaller file is one range: a unit's fixed costs outweigh the parallelism
_BLOCK = 16 << 20


def split_file(path: Path, spec: CsvSource | NdjsonSource, parts: int, *,
               min_bytes: int = MIN_SPLIT_BYTES) -> list[ByteRange]:
    """`path`'s records in at most `parts` byte ranges of about equal size, in file order, covering every
    byte after the header (and BOM) exactly once. A file under `min_bytes` is one range; so is a file whose
    records are too few or too long to cut where asked (cuts that meet are merged). An empty or header-only
    file is one empty range, so that a unit still marks it loaded."""
    if parts < 1:
        raise ValueError("parts must be at least 1")
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise SourceError(f"cannot open {path}: {exc.strerror}") from exc
    with fh:
        size = path.stat().st_size
        if isinstance(spec, CsvSource):
            task = FileTask(path, str(path), size, "")
            _, start, first_line = CsvReader(spec, task, [], 1).read_header(fh)
        else:
            start = 3 if fh.read(3) == b"\xef\xbb\xbf" else 0
            first_line = 1
        start = min(start, size)
        if parts == 1 or size < min_bytes or size - start < 2:
            return [ByteRange(start, size, first_line)]
        step = (size - start) / parts
        targets = [start + round(step * k) for k in range(1, parts)]
        cuts = _csv_cuts(fh, start, targets, spec) if isinstance(spec, CsvSource) else _cuts(fh, start, targets, None)
    ranges: list[ByteRange] = []
    prev, line = start, first_line
    for cut, lines in cuts:
        if prev < cut < size:
            ranges.append(ByteRange(prev, cut, line))
            prev, line = cut, first_line + lines
    ranges.append(ByteRange(prev, size, line))
    return ranges


def splitter(spec: CsvSource | NdjsonSource, parts: int) -> Splitter | None:
    """How the source's files are cut into ranges: into `split.parts` (default: `parts`, the loader's
    workers) when at least `split.min_bytes`; None when the source is not split or `parts` is 0."""
    cfg = spec.split
    if cfg is None or parts < 1:
        return None
    n = parts if cfg.parts is None else cfg.parts
    if n <= 1:
        return None
    return lambda path: split_file(path, spec, n, min_bytes=cfg.min_bytes)


def range_task(task: FileTask, r: ByteRange) -> FileTask:
    """`task` restricted to the range: its reader yields the range's records only."""
    return task.for_range(r)


def _cuts(fh: BinaryIO, start: int, targets: list[int], quote: int | None) -> list[tuple[int, int]]:
    """For each target offset, the first record boundary at or after it: (offset, newlines between
    `start` and it). Reads the file once from `start`, sequentially."""
    fh.seek(start)
    cuts: list[tuple[int, int]] = []
    pos, parity, lines = start, 0, 0  # file offset of the block; quotes (mod 2) and newlines before pos + i
    ti, searching = 0, False
    while ti < len(targets) or searching:
        buf: bytes = fh.read(_BLOCK)
        if not buf:
            break
        i = 0
        while True:
            if not searching:
                while ti < len(targets) and targets[ti] < pos + i:
                    ti += 1  # passed already by a cut that came later than asked
                if ti >= len(targets) or targets[ti] >= pos + len(buf):
                    break
                t = targets[ti] - pos
                if quote is not None:
                    parity ^= _count(buf, quote, i, t) & 1
                lines += _count(buf, 10, i, t)
                i, searching = t, True
            j, parity, n = _boundary(buf, i, parity, quote)
            lines += n
            if j < 0:
                i = len(buf)  # the search goes on in the next block
                break
            i, searching = j, False
            cuts.append((pos + i, lines))
        if i < len(buf):
            if quote is not None:
                parity ^= _count(buf, quote, i) & 1
            lines += _count(buf, 10, i)
        pos += len(buf)
    return cuts


def _csv_cuts(fh: BinaryIO, start: int, targets: list[int], spec: CsvSource) -> list[tuple[int, int]]:
    """For each target offset, the first record boundary at or after it as the CSV reader cuts records:
    (offset, newlines between `start` and it). Reads the file once from `start`, sequentially, at most
    about two blocks in memory."""
    fh.seek(start)
    data = bytearray()
    pos, lines, eof = start, 0, False
    cuts: list[tuple[int, int]] = []
    ti = 0
    while ti < len(targets):
        if targets[ti] <= pos:  # pos is a boundary, the first at or after the target
            cuts.append((pos, lines))
            ti += 1
            continue
        want = min(targets[ti] - pos, _BLOCK)
        if len(data) <= want and not eof:  # a little past the target: each byte is scanned about once
            more = fh.read(max(want + (1 << 16) - len(data), 1 << 16))
            data += more
            eof = not more
            continue
        plan = _plan(data, want, eof, spec)
        if plan is None or plan.end == 0:  # a quoted value goes on below
            more = fh.read(max(_BLOCK, len(data)))
            data += more
            eof = not more
            continue
        if plan.end <= 0:
            break
        lines += len(plan.newlines)
        pos += plan.end
        del data[: plan.end]
        if eof and not data:
            break
    return cuts


def _boundary(buf: bytes, i: int, parity: int, quote: int | None) -> tuple[int, int, int]:
    """Offset just past the first newline at or after `i` that lies outside quotes (-1: none in `buf`), the
    quote parity there (or at the end of `buf`), and the newlines passed on the way (that one included).
    Jumps from quote to quote, so a long quoted field costs no more than scanning it."""
    if quote is None:
        nl = buf.find(b"\n", i)
        return (-1, 0, 0) if nl < 0 else (nl + 1, 0, 1)
    q = bytes([quote])
    n = 0
    while True:
        if parity:
            k = buf.find(q, i)
            if k < 0:
                return -1, 1, n + buf.count(b"\n", i)
            n += buf.count(b"\n", i, k)
            i, parity = k + 1, 0
        else:
            nl = buf.find(b"\n", i)
            k = buf.find(q, i, len(buf) if nl < 0 else nl)
            if k < 0:
                return (-1, 0, n) if nl < 0 else (nl + 1, 0, n + 1)
            i, parity = k + 1, 1


__all__ = ["ByteRange", "range_task", "split_file", "splitter"]
