"""Sources: CSV, NDJSON and Parquet files (a path or glob), an HTTP JSON API, a query on another PostgreSQL.

`open_streams` turns a pipeline's source spec and its committed state into independent streams of
batches: one per pending file for file sources (so files can load in parallel), one for the others. It
looks the spec's `kind` up in SOURCES and calls that kind's opener, `streams(spec, request)` in the
kind's module (see base.Opener); a module is imported the first time a pipeline reads its kind, so
start-up does not pay for httpx, pyarrow's readers or polars.

How to add a source kind, say `kafka`:

1. Its spec: a `KafkaSource(StrictModel)` in config/spec.py with `kind: Literal["kafka"]` and its
   settings, added to the `SourceSpec` union there. The project file's validation, JSON Schema and
   error messages follow from the union.
2. Its reader: a module ingest/sources/kafka.py with
   `def streams(spec: KafkaSource, request: StreamRequest) -> list[Stream]`. Each Stream's `open()`
   yields bounded RawBatches that carry their checkpoint (what to remember once the batch commits) and
   resumes from `request.state`; file kinds get pending files and resume points from files.file_streams.
   See base.py for what a batch holds.
3. One line in SOURCES below: `SourceKind(KafkaSource, "pgmill.ingest.sources.kafka")`.

Importing this package fails if a kind of the union has no line in SOURCES, or a line names no kind.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel

from pgmill.config.spec import (
    SOURCE_SPECS,
    CsvSource,
    HttpSource,
    NdjsonSource,
    ParquetSource,
    Pipeline,
    PostgresSource,
    source_kind,
)
from pgmill.ingest.sources.base import (
    BadRecord,
    FileMark,
    Opener,
    RawBatch,
    SourceState,
    Stream,
    StreamRequest,
)


@dataclass(frozen=True)
class SourceKind:
    """A source kind: the spec of its `source:` section and the module whose `streams` reads it."""

    spec: type[BaseModel]
    module: str

    @property
    def kind(self) -> str:
        return source_kind(self.spec)

    def opener(self) -> Opener[Any]:
        return cast(Opener[Any], importlib.import_module(self.module).streams)


def _registry(*kinds: SourceKind) -> dict[str, SourceKind]:
    out = {k.kind: k for k in kinds}
    if {k: v.spec for k, v in out.items()} != SOURCE_SPECS:
        missing = sorted(set(out) ^ set(SOURCE_SPECS))
        raise AssertionError(f"source kinds without a reader or a spec: {missing}")
    return out


SOURCES = _registry(
    SourceKind(CsvSource, "pgmill.ingest.sources.csv"),
    SourceKind(NdjsonSource, "pgmill.ingest.sources.ndjson"),
    SourceKind(ParquetSource, "pgmill.ingest.sources.parquet"),
    SourceKind(HttpSource, "pgmill.ingest.sources.http"),
    SourceKind(PostgresSource, "pgmill.ingest.sources.postgres"),
)


def open_streams(
    project_dir: Path, pipe: Pipeline, columns: list[str], state: SourceState,
    columns_by_name: dict[str, str] | None = None, needed: list[str] | None = None, parts: int = 1,
    *, only: str | None = None, listing: bool = False, settled_before: float | None = None,
) -> list[Stream]:
    """Streams for what is left to load from `pipe.source`, resuming after the committed state.
    `columns` are the source's names for the contract columns; `columns_by_name` maps contract names to them;
    `needed` (source names) are the columns the loader checks: a CSV source may parse only those (see
    sources.csv.CsvReader); `parts`: the ranges a large file may be cut into, where its source says `split` (0: none); `only`, `listing`, `settled_before`: see StreamRequest."""
    cursor = pipe.cursor
    if cursor is not None:
        cursor = (columns_by_name or {}).get(cursor, cursor)
    request = StreamRequest(project_dir, state, pipe.batch_rows, columns, needed, cursor, parts, only, listing,
                            settled_before)
    return SOURCES[pipe.source.kind].opener()(pipe.source, request)


__all__ = ["SOURCES", "BadRecord", "FileMark", "RawBatch", "SourceKind", "SourceState", "Stream",
           "StreamRequest", "open_streams"]
