"""Loading one stream: read and validate its batches (a thread ahead), write each in a checkpoint.

One checkpoint = one transaction that commits a batch's target rows, its quarantined rows, the source
position after it and the run's counts together. A crash anywhere loses at most the batch in flight, and
the rerun starts right after the last checkpoint: nothing is loaded twice, nothing is lost.

Reading and validating batch n+1 (pyarrow and polars, which release the GIL) overlaps with Postgres
writing batch n.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
import psycopg

from pgmill.config.base import is_identifier
from pgmill.db import ddl
from pgmill.errors import ContractError
from pgmill.ingest import quarantine, state
from pgmill.ingest.lock import check_owner
from pgmill.ingest.pipeline import PipelinePlan
from pgmill.ingest.quarantine import QuarantinedRow
from pgmill.ingest.sources import RawBatch, SourceState, Stream, open_streams
from pgmill.ingest.sources.base import DELETED_AT
from pgmill.ingest.sources.files import digest_pending
from pgmill.ingest.writer import CopyData, TableWriter, dedupe
from pgmill.observe import ledger
from pgmill.observe.ledger import Counts
from pgmill.project import ProjectContext
from pgmill.quality.validate import Violation
from pgmill.retry import describe

ProgressFn = Callable[["Progress"], None]
#: latency figures a `load` step keeps at most (every k-th batch's beyond that)
MAX_SAMPLES = 1000


@dataclass
class Phases:
    """Seconds one stream spent reading batches from its source, validating them (contract, dedupe,
    encoding) and writing them (COPY, merge, quarantine, checkpoint, commit). The phases interleave batch by
    batch, and reading and validating batch n+1 overlaps writing batch n, so their sum may exceed the
    stream's wall time: each is a share of the work, not an interval. Kept in the stream's `load` step."""

    read_s: float = 0.0
    validate_s: float = 0.0
    load_s: float = 0.0

    def as_detail(self) -> dict[str, float]:
        return {"read_s": round(self.read_s, 6), "validate_s": round(self.validate_s, 6),
                "load_s": round(self.load_s, 6)}


@dataclass
class Progress:
    pipeline: str
    rows: int
    bytes: int
    total_bytes: int | None
    quarantined: int
    started: float
    done: bool = False


@dataclass
class _Prepared:
    raw: RawBatch
    good: pl.DataFrame
    good_pos: list[int]  # row of `raw.table` for each row of `good`
    payload: CopyData | None
    records: int  # records read for this batch, good and bad
    quarantine_copy: bytes  # `quarantined`, encoded for COPY
    extra_columns: list[str]  # source fields added to the table (extra_columns: evolve)
    quarantined: list[QuarantinedRow]
    duplicates: int
    warned: int
    cursor_max: str | None


def open_pipeline_streams(ctx: ProjectContext, pipe: PipelinePlan, st: SourceState, parts: int, *,
                          only: str | None = None, listing: bool = False,
                          settled_before: float | None = None) -> list[Stream]:
    """The pipeline's streams still to load after state `st` (see sources.open_streams)."""
    return open_streams(ctx.dir, pipe.spec, pipe.source_columns, st,
                        dict(zip(pipe.columns, pipe.source_columns, strict=True)), pipe.needed, parts,
                        only=only, listing=listing, settled_before=settled_before)


def load_stream(conn: psycopg.Connection[Any], pipe: PipelinePlan, run_id: int, stream: Stream,
                progress: ProgressFn | None, prog: Progress, lock: threading.Lock | None = None,
                record_empty: bool = True, stop: threading.Event | None = None) -> Counts:
    """Load `stream` to its end in checkpoints; its counts (also added to the run, checkpoint by checkpoint).
    Its `load` step records them, and how long its data took from arrival to queryable when the stream knows
    when it arrived (a file); `record_empty`: also when it had nothing to read (a followed source polled);
    `stop`: once set, stop after the next checkpoint that commits (the rest resumes from it later)."""
    writer = TableWriter(conn, pipe.spec.table, pipe.columns, pipe.key, pipe.spec.mode, pipe.spec.cursor,
                         pipe.partition)
    writer.soft_delete = pipe.soft_delete
    started = datetime.now(UTC)
    total = Counts()
    phases = Phases()
    latencies: list[float] = []  # per batch that knows when its records arrived (change data capture)
    try:
        with contextlib.ExitStack() as tx:
            uncommitted: list[Counts] = []
            raws: list[RawBatch] = []

            def commit() -> None:
                tx.close()
                now = time.time()
                for c in uncommitted:
                    total.add(c)
                    report(progress, prog, c, lock)
                for r in raws:
                    if r.arrived is not None:
                        latencies.append(now - r.arrived)
                    if stream.committed is not None:
                        stream.committed(r)
                uncommitted.clear()
                raws.clear()

            for prep in _prefetch(_prepare(pipe, run_id, stream.open(), phases)):
                t = time.perf_counter()
                if not uncommitted:
                    # new partitions first, in a short transaction of their own: the checkpoint's must not
                    # hold the parent's partition lock while it writes
                    writer.ensure_partitions(prep.good)
                    tx.enter_context(conn.transaction())
                counts = _checkpoint(conn, pipe, run_id, writer, prep)
                ledger.add_counts(conn, run_id, counts)
                uncommitted.append(counts)
                raws.append(prep.raw)
                mark = prep.raw.file_mark
                if not (mark is not None and not mark.complete and digest_pending(mark.sha256)):
                    commit()  # else the file's digest is not known yet: this checkpoint takes the next batch too
                phases.load_s += time.perf_counter() - t
                if stop is not None and stop.is_set() and not uncommitted:
                    break
            t = time.perf_counter()
            commit()
            phases.load_s += time.perf_counter() - t
    except BaseException as exc:
        if not conn.closed and not conn.broken:
            conn.rollback()
            ledger.step(conn, run_id, f"load {stream.label}", "failed", started, total.rows_read,
                        {"error": describe(exc), **total.__dict__, "phases": phases.as_detail()})
        raise
    if total.rows_read or record_empty:
        latency: dict[str, Any] = ({} if stream.arrived is None
                                   else {"arrival_to_queryable_s": round(time.time() - stream.arrived, 3)})
        if latencies:  # the worst batch, and the batches' own figures for the percentiles (observe/latency.py)
            step = max(1, -(-len(latencies) // MAX_SAMPLES))
            latency = {"arrival_to_queryable_s": round(max(latencies), 3),
                       "arrival_samples_s": [round(x, 4) for x in latencies[::step]]}
        ledger.step(conn, run_id, f"load {stream.label}", "succeeded", started, total.rows_read,
                    {**total.__dict__, "phases": phases.as_detail(), **latency})
    return total


def load_replace(conn: psycopg.Connection[Any], pipe: PipelinePlan, run_id: int, streams: list[Stream],
                  progress: ProgressFn | None, prog: Progress,
                  before_commit: Callable[[psycopg.Connection[Any]], None] | None = None) -> None:
    """Replace: the whole load is one transaction that ends by swapping the new table in (and `before_commit`,
    say storing a source position); each stream's `load` step is recorded once it has committed (or, failed,
    once it has rolled back)."""
    writer = TableWriter(conn, pipe.spec.table, pipe.columns, pipe.key, "replace", pipe.spec.cursor)
    done: list[tuple[str, datetime, Counts, Phases]] = []
    try:
        with conn.transaction():
            writer.begin_replace(lambda t: ddl.create_table_sql(t, pipe.contract))
            total = Counts()
            for s in streams:
                mine = (s.label, datetime.now(UTC), Counts(), Phases())
                done.append(mine)
                for prep in _prefetch(_prepare(pipe, run_id, s.open(), mine[3])):
                    t = time.perf_counter()
                    counts = _checkpoint(conn, pipe, run_id, writer, prep)
                    mine[2].add(counts)
                    total.add(counts)
                    report(progress, prog, counts, None)
                    mine[3].load_s += time.perf_counter() - t
            t = time.perf_counter()
            writer.finish_replace()
            if before_commit is not None:
                before_commit(conn)
            ledger.add_counts(conn, run_id, total)
        if done:
            done[-1][3].load_s += time.perf_counter() - t  # the swap and the commit
    except BaseException as exc:
        if done and not conn.closed and not conn.broken:
            label, started, counts, phases = done[-1]
            ledger.step(conn, run_id, f"load {label}", "failed", started, counts.rows_read,
                        {"error": describe(exc), **counts.__dict__, "phases": phases.as_detail()})
        raise
    for label, started, counts, phases in done:
        ledger.step(conn, run_id, f"load {label}", "succeeded", started, counts.rows_read,
                    {**counts.__dict__, "phases": phases.as_detail()})


def _checkpoint(conn: psycopg.Connection[Any], pipe: PipelinePlan, run_id: int, writer: TableWriter,
                prep: _Prepared) -> Counts:
    """Write one prepared batch (inside the caller's transaction) and return its counts."""
    # The checkpoint's commit does not wait for its WAL to reach the disk (~8 ms per batch): rows and source
    # position commit or vanish together, so a server or OS crash can only lose the latest checkpoints, which
    # the rerun loads again, never twice. The run's end (ledger.finish_run) commits synchronously, which
    # flushes every checkpoint before it: a run reported finished is on disk.
    if not prep.raw.durable:
        conn.execute("SET LOCAL synchronous_commit TO off")
    check_owner(conn, pipe.name, run_id)
    if prep.extra_columns:
        writer.add_text_columns(prep.extra_columns)
    deleted = _apply_deletions(pipe, writer, prep.raw)
    result = writer.write(prep.good, prep.payload)
    quarantine.write_encoded(conn, prep.quarantine_copy)
    rows: list[QuarantinedRow] = []
    if result.rejected:
        if prep.payload is not None and prep.payload.by_line:  # the row as the source wrote it
            raw_rows = prep.payload.records([i for i, _ in result.rejected])
        else:
            raw_rows = [prep.good.row(i, named=True) for i, _ in result.rejected]
        for (i, msg), rec in zip(result.rejected, raw_rows, strict=True):
            rows.append(QuarantinedRow(prep.raw.location(prep.good_pos[i]), rec, None,
                                       [Violation(None, "database", msg)]))
    quarantine.write(conn, run_id, pipe.name, pipe.spec.table, rows)
    if prep.raw.file_mark is not None:
        state.save_file_mark(conn, pipe.name, run_id, prep.raw.file_mark)
    if prep.raw.checkpoint is not None or prep.cursor_max is not None:
        state.save_checkpoint(conn, pipe.name, run_id, prep.raw.checkpoint, prep.cursor_max, pipe.cursor_type)
    return Counts(
        rows_read=prep.records, rows_inserted=result.inserted, rows_updated=result.updated,
        rows_unchanged=result.unchanged + _not_found(prep.raw, deleted), rows_quarantined=len(prep.quarantined) + len(rows), rows_duplicate=prep.duplicates + result.duplicate,
        rows_warned=prep.warned, bytes_read=prep.raw.nbytes, batches=1, rows_deleted=deleted,
        rows_superseded=prep.raw.folded,
    )


def _not_found(raw: RawBatch, deleted: int) -> int:
    """Deletions whose row was not in the target (never loaded, quarantined, or already deleted)."""
    return (0 if raw.deletes is None else int(raw.deletes.num_rows)) - deleted


def _apply_deletions(pipe: PipelinePlan, writer: TableWriter, raw: RawBatch) -> int:
    """A change data capture batch's TRUNCATE and deletions, before its upserts (their keys differ); the
    deletions that found their row (the others count as unchanged)."""
    if raw.truncate:
        writer.delete_all()
    if raw.deletes is None or not raw.deletes.num_rows:
        return 0
    from pgmill.config.types import parse_type

    keys = {k: raw.deletes.column(pipe.compiled.source_name(k)).to_pylist() for k in pipe.key}
    types = [parse_type(pipe.contract.columns[k].type).sql for k in pipe.key]
    return writer.delete(keys, types, raw.deletes.column(DELETED_AT).to_pylist())


def report(progress: ProgressFn | None, prog: Progress, c: Counts, lock: threading.Lock | None) -> None:
    if lock:
        lock.acquire()
    try:
        prog.rows += c.rows_read
        prog.bytes += c.bytes_read
        prog.quarantined += c.rows_quarantined
        if progress is not None:
            progress(prog)
    finally:
        if lock:
            lock.release()


# ---------------------------------------------------------------- client side of a batch


def _prepare(pipe: PipelinePlan, run_id: int, batches: Iterator[RawBatch], phases: Phases) -> Iterator[_Prepared]:
    """Validate each batch; the time spent waiting for the source and validating goes into `phases`."""
    extra_policy = pipe.contract.extra_columns
    t = time.perf_counter()
    for raw in batches:
        t_read = time.perf_counter()
        phases.read_s += t_read - t
        table = raw.table
        names = raw.column_names
        extras = [c for c in names if c not in set(pipe.source_columns)]
        missing = [c for c in pipe.source_columns if c not in names]
        if names and missing:
            required = [c for c in pipe.columns if (pipe.contract.columns[c].not_null or
                        pipe.contract.columns[c].primary_key) and pipe.compiled.source_name(c) in missing]
            if required:
                raise ContractError(
                    f"{raw.origin}: the source has no column(s) {', '.join(required)} that "
                    f"{pipe.spec.contract} requires; it has: {', '.join(names)}"
                )
        # a narrow batch loads its original lines: of the typed rows only the key and cursor are still needed
        v = pipe.compiled.validate(table, extras if extra_policy == "quarantine" else None,
                                   pipe.checked if raw.narrow else None, pipe.row_identity if raw.narrow else None)
        if v.failures:
            pos, viol = v.failures[0]
            more = f" (and {len(v.failures) - 1} more)" if len(v.failures) > 1 else ""
            rule = f"{viol.column}.{viol.rule}" if viol.column else viol.rule
            raise ContractError(f"{raw.location(pos)}: {viol.message} [rule {rule}, policy fail]{more}")
        bad_pos = [p for p, _ in v.bad]
        q = [QuarantinedRow(b.location, None, b.raw_text, [Violation(None, "parse", b.reason)]) for b in raw.bad]
        as_json = raw.records_json_at(bad_pos)
        if as_json is not None:
            q += [QuarantinedRow(raw.location(p), None, None, viols, js)
                  for (p, viols), js in zip(v.bad, as_json, strict=True)]
        else:
            q += [QuarantinedRow(raw.location(p), rec, None, viols)
                  for (p, viols), rec in zip(v.bad, raw.records_at(bad_pos), strict=True)]
        good = v.good
        good_pos = v.good_rows.to_list()
        evolve = [c for c in extras if is_identifier(c, dollar=False)] if extra_policy == "evolve" else []
        if evolve:
            import pyarrow as pa

            taken = table.select(evolve).take(pa.array(good_pos, pa.int64()))
            good = good.with_columns(pl.from_arrow(taken).select(pl.all().cast(pl.Utf8)))  # type: ignore[union-attr]
        good, kept = dedupe(good, pipe.key, pipe.spec.cursor)
        dups = 0
        if kept is not None:
            dups = len(good_pos) - good.height
            good_pos = [good_pos[i] for i in kept.to_list()]
        cursor_max = None
        if pipe.spec.cursor and good.height:
            m = good.get_column(pipe.spec.cursor).max()
            cursor_max = None if m is None else (m.isoformat() if hasattr(m, "isoformat") else str(m))
        warned = sum(v.warnings.values())
        payload = None
        if good.height:
            payload = _original_lines(pipe, raw, good_pos) if not evolve else None
            if payload is None and raw.narrow:  # never load a narrow frame: its unread columns would be null
                raise AssertionError(f"{raw.origin}: a narrow read without its original lines")
            payload = payload or CopyData.of(good)
        records = raw.records
        # keep what the checkpoint needs (positions, marks); let the batch's text and table go now
        raw = dataclasses.replace(raw, table=raw.table.slice(0, 0), csv_text=None)
        encoded = quarantine.encode(run_id, pipe.name, pipe.spec.table, q)
        phases.validate_s += time.perf_counter() - t_read
        yield _Prepared(raw, good, good_pos, payload, records, encoded, evolve, q, dups, warned, cursor_max)
        t = time.perf_counter()  # not the time the batch waited for the writer
    phases.read_s += time.perf_counter() - t  # the source finding its end


def _original_lines(pipe: PipelinePlan, raw: RawBatch, good_pos: list[int]) -> CopyData | None:
    """The good rows' own CSV lines, when the file holds exactly the contract's columns: Postgres parses
    them as it would parse the file, and pgmill skips re-encoding every value (the largest client cost)."""
    text = raw.csv_text
    spec = pipe.spec.source
    if text is None or getattr(spec, "null_values", None) != [""]:
        return None
    if len(text.columns) != len(pipe.source_columns) or set(text.columns) != set(pipe.source_columns):
        return None
    if raw.positions is None:
        return None
    to_contract = dict(zip(pipe.source_columns, pipe.columns, strict=True))
    chunk = text.chunk
    ends = text.line_ends + 1  # one past each line's newline
    if not chunk.endswith(b"\n"):
        ends = np.append(ends, len(chunk))
    starts = np.concatenate(([0], ends[:-1]))
    lines = np.asarray(raw.positions, np.int64)[np.asarray(good_pos, np.int64)] - text.first_line
    # good lines come in long runs between the few bad ones: copy each run as one slice
    breaks = np.flatnonzero(np.diff(lines) != 1)
    run_first = np.concatenate(([0], breaks + 1))
    run_last = np.concatenate((breaks, [len(lines) - 1]))
    view = memoryview(chunk)
    parts = [view[starts[lines[a]]:ends[lines[b]]] for a, b in zip(run_first.tolist(), run_last.tolist(), strict=True)]
    data = b"".join(parts)
    row_ends = np.cumsum(ends[lines] - starts[lines])
    if not data.endswith(b"\n"):
        data += b"\n"
        row_ends[-1] += 1
    return CopyData(data, [to_contract[c] for c in text.columns], text.delimiter, text.quote, "", row_ends)


_END = object()


def _prefetch(items: Iterator[_Prepared], depth: int = 1) -> Iterator[_Prepared]:
    """Produce items on a background thread, `depth` ahead of the consumer."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # sources release files, connections and snapshots now, not at garbage collection

    t = threading.Thread(target=produce, name="pgmill-read", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.05)
