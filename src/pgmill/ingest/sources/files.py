"""Files named by a path or glob: each one loaded once, remembered by path, size and content hash."""

from __future__ import annotations

import functools
import glob
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pgmill.errors import SourceError
from pgmill.ingest.sources.base import RawBatch, Stream, StreamRequest


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

    @property
    def end(self) -> int:
        """Where reading stops: the range's end, or the size the file had when it was listed."""
        return self.size if self.end_offset is None else min(self.end_offset, self.size)


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
    project_dir: Path, pattern: str, done: dict[tuple[str, str], tuple[int, bool, int, int]]
) -> list[FileTask]:
    """Files not yet completely loaded, with resume points; `done` maps (display, sha256) to
    (records_done, complete, byte_offset, line).

    A path seen before is hashed now: its digest decides whether it is loaded, resumed or skipped. A path
    never seen is loaded from the start whatever its content, so its digest is computed alongside the load.
    """
    seen = {display for display, _ in done}
    tasks = []
    later: list[Digest] = []
    for path, display in expand(project_dir, pattern):
        size = path.stat().st_size
        if display not in seen:
            later.append(Digest(path))
            tasks.append(FileTask(path, display, size, later[-1]))
            continue
        digest = file_sha256(path)
        prev = done.get((display, digest))
        if prev is not None and prev[1]:
            continue
        if prev is not None:
            tasks.append(FileTask(path, display, size, digest, prev[2], prev[3], prev[0]))
        else:
            tasks.append(FileTask(path, display, size, digest))
    _hash_in_order(later)
    return tasks


def file_streams(request: StreamRequest, pattern: str,
                 read: Callable[[FileTask], Iterator[RawBatch]]) -> list[Stream]:
    """One stream per file of `pattern` not completely loaded (so files load in parallel), each resuming
    where the committed state left it; `read` gives one file's batches."""
    tasks = pending_files(request.project_dir, pattern, request.state.files)
    return [Stream(t.display, functools.partial(read, t), t.size - t.resume_offset) for t in tasks]
