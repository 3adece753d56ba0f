"""Files named by a path or glob: each one loaded once, remembered by path, size and content hash."""

from __future__ import annotations

import dataclasses
import functools
import glob
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pgmill.errors import SourceError
from pgmill.ingest.sources.base import ByteRange, FileMark, RangeState, RawBatch, Stream, StreamRequest

Splitter = Callable[[Path], list[ByteRange]]  # a file's ranges (one range: do not split it)


class Digest:
    """The SHA-256 of a file not seen before, computed in the background while the file loads: its first
    checkpoint, which records the digest, commits once the digest is known (a GB takes about a second)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._done = threading.Event()
        self._value: str | None = None
        self._error: OSError | None = None

    def compute(self) -> None:
        try:
            self._value = file_sha256(self.path, 1 << 20)
        except OSError as exc:
            self._error = exc
        finally:
            self._done.set()

    def ready(self) -> bool:
        return self._done.is_set()

    def value(self) -> str:
        self._done.wait()
        if self._error is not None:
            raise SourceError(f"cannot read {self.path}: {self._error.strerror}") from self._error
        assert self._value is not None
        return self._value


def _hash_in_order(digests: list[Digest]) -> None:
    """One thread hashes the new files one after another, in the order they load (not all at once)."""
    def run() -> None:
        for d in digests:
            d.compute()

    if digests:
        threading.Thread(target=run, name="pgmill-sha256", daemon=True).start()


def digest_of(d: str | Digest) -> str:
    """The hex digest, waiting for it if it is still being computed."""
    return d if isinstance(d, str) else d.value()


def digest_pending(d: str | Digest) -> bool:
    return not isinstance(d, str) and not d.ready()


@dataclass(frozen=True)
class FileTask:
    """One file to read, and where to resume in it."""

    path: Path  # absolute
    display: str  # as the user wrote it (relative to the project)
    size: int
    sha256: str | Digest  # a Digest while it is being computed
    resume_offset: int = 0  # byte offset of the first record not yet committed
    resume_line: int = 1  # physical line number at that offset
    records_done: int = 0
    end_offset: int | None = None  # read up to this byte only (a range of the file; see sources/split.py)
    range: ByteRange | None = None  # the range of a split file this task reads
    plan: tuple[ByteRange, ...] = ()  # every range of that file
    range_word: str = "bytes"  # what a range counts: bytes (CSV, NDJSON) or rows (Parquet's row groups)
    modified: float | None = None  # the file's modification time when it was listed (epoch seconds)

    @property
    def end(self) -> int:
        """Where reading stops: the range's end, or the size the file had when it was listed."""
        return self.size if self.end_offset is None else min(self.end_offset, self.size)

    @property
    def label(self) -> str:
        """The file as the user wrote it, and the range's bytes when it is one."""
        r = self.range
        return self.display if r is None else f"{self.display} {self.range_word} {r.start}-{r.end}"

    def for_range(self, r: ByteRange, plan: tuple[ByteRange, ...] = ()) -> FileTask:
        """This task restricted to range `r` of `plan`, from its start: its reader yields the range's
        records only."""
        return dataclasses.replace(self, resume_offset=r.start, resume_line=r.first_line, records_done=0,
                                   end_offset=r.end, range=r if plan else None, plan=plan)

    def mark(self, records_done: int, byte_offset: int, next_line: int, complete: bool) -> FileMark:
        """The progress to commit after a batch of this task."""
        return FileMark(self.display, self.size, self.sha256, records_done, byte_offset, next_line, complete,
                        self.range, self.plan)


def file_sha256(path: Path, chunk: int = 8 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def expand(project_dir: Path, pattern: str) -> list[tuple[Path, str]]:
    """The files a path or glob names, sorted, as (absolute path, display path)."""
    base = project_dir / pattern if not os.path.isabs(pattern) else Path(pattern)
    matches = sorted(glob.glob(str(base), recursive=True)) if glob.has_magic(str(base)) else [str(base)]
    out = []
    for m in matches:
        p = Path(m)
        if not p.exists():
            raise SourceError(f"source file not found: {pattern} (looked in {project_dir})")
        if p.is_file():
            try:
                disp = str(p.relative_to(project_dir))
            except ValueError:
                disp = str(p)
            out.append((p.resolve(), disp))
    return out


def pending_files(
    project_dir: Path, pattern: str, done: dict[tuple[str, str], tuple[int, bool, int, int]],
    ranges: dict[tuple[str, str], list[RangeState]] | None = None, split: Splitter | None = None,
    only: str | None = None, listing: bool = False, range_word: str = "bytes", settled_before: float | None = None,
) -> list[FileTask]:
    """Files (or ranges of split files) not yet completely loaded, with resume points; `done` maps
    (display, sha256) to (records_done, complete, byte_offset, line), `ranges` to a split file's ranges.

    A path seen before is hashed now: its digest decides whether it is loaded, resumed or skipped. A path
    never seen is loaded from the start whatever its content, so its digest is computed alongside the load.
    A file with no committed progress is cut into ranges by `split`; a file with committed ranges resumes
    those same ranges, whatever `split` says now, and one with committed unsplit progress resumes unsplit.
    `only`: keep the task with this label alone (a unit loading one file or range elsewhere); `listing`: the
    tasks are handed out, not read, so new files are not hashed here; `settled_before`: a file modified later
    than this (epoch seconds) is left out, as one that may still be being written.
    """
    ranges = ranges or {}
    seen = {display for display, _ in done} | {display for display, _ in ranges}
    tasks = []
    later: list[Digest] = []
    for path, display in expand(project_dir, pattern):
        if only is not None and only != display and not only.startswith(f"{display} {range_word} "):
            continue  # another unit's file: not even hashed here
        st = path.stat()
        if settled_before is not None and st.st_mtime > settled_before:
            continue  # still changing: a later pass loads it whole
        size = st.st_size
        if display not in seen:
            later.append(Digest(path))
            tasks += _planned(FileTask(path, display, size, later[-1], range_word=range_word,
                                       modified=st.st_mtime), split)
            continue
        digest = file_sha256(path)
        prev = done.get((display, digest))
        if prev is not None and prev[1]:
            continue
        stored = ranges.get((display, digest))
        if stored:
            plan = tuple(s.range for s in stored)
            whole = FileTask(path, display, size, digest, range_word=range_word, modified=st.st_mtime)
            tasks += [dataclasses.replace(whole.for_range(s.range, plan), resume_offset=s.byte_offset,
                                          resume_line=s.next_line, records_done=s.records_done)
                      for s in stored if not s.complete]
        elif prev is not None:
            tasks.append(FileTask(path, display, size, digest, prev[2], prev[3], prev[0], range_word=range_word,
                                  modified=st.st_mtime))
        else:
            tasks += _planned(FileTask(path, display, size, digest, range_word=range_word, modified=st.st_mtime), split)
    if only is not None:
        tasks = [t for t in tasks if t.label == only]
    if not listing:
        mine = {id(t.sha256) for t in tasks}
        _hash_in_order([d for d in later if id(d) in mine])
    return tasks


def _planned(task: FileTask, split: Splitter | None) -> list[FileTask]:
    """The task, or one task per range when `split` cuts the file in more than one."""
    plan = tuple(split(task.path)) if split is not None else ()
    if len(plan) <= 1:
        return [task]
    return [task.for_range(r, plan) for r in plan]


def file_streams(request: StreamRequest, pattern: str, read: Callable[[FileTask], Iterator[RawBatch]],
                 split: Splitter | None = None, range_word: str = "bytes") -> list[Stream]:
    """One stream per file of `pattern` not completely loaded, or per range of a split one (so files and
    ranges load in parallel), each resuming where the committed state left it; `read` gives one file's (or
    range's) batches."""
    tasks = pending_files(request.project_dir, pattern, request.state.files, request.state.ranges, split,
                          request.only, request.listing, range_word, request.settled_before)
    return [Stream(t.label, functools.partial(read, t),
                   t.end - t.resume_offset if t.range is None or range_word == "bytes" else None,
                   t.modified) for t in tasks]
