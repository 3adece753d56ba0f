"""Running pipelines: lock, set up, load every stream (resuming), retry, account for every row.

A run holds its pipeline's lock, opens a run in the ledger and claims the pipeline for it, then loads
the source's streams (stream_load.py: each commits checkpoints of its own), retrying transient failures
from the last checkpoint, and closes the run once its counts add up. Streams load on threads of this
process, or as units on the project's executor (units.py: processes or a Dask cluster).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import psycopg

from pgmill.config.spec import follow_problem, is_cdc
from pgmill.db import ddl, roles
from pgmill.db.catalog import split_table
from pgmill.errors import AccountingError, ConfigError, ContractError, PgmillError
from pgmill.execute.executors import open_executor
from pgmill.ingest import state, units
from pgmill.ingest.allocator import return_freed_memory
from pgmill.ingest.follow import Follow, watched_folders
from pgmill.ingest.lock import PipelineLock
from pgmill.ingest.pipeline import PipelinePlan
from pgmill.ingest.sources import SourceState, Stream
from pgmill.ingest.stream_load import (
    Progress,
    ProgressFn,
    load_replace,
    load_stream,
    open_pipeline_streams,
)
from pgmill.observe import ledger
from pgmill.observe.ledger import RunRecord
from pgmill.project import ProjectContext
from pgmill.retry import RetryPolicy, as_pgmill, describe

__all__ = ["Progress", "ProgressFn", "run_pipeline", "run_pipelines"]


def run_pipelines(
    ctx: ProjectContext,
    names: list[str] | None = None,
    *,
    progress: ProgressFn | None = None,
    wait: bool = False,
    follow: Follow | None = None,
) -> list[RunRecord]:
    """Run the named pipelines (all by default), `ctx.config.workers` at a time; failures do not stop
    the others. Their streams load on the project's executor (`executor:`). With `follow`, each pipeline
    keeps loading what is new until `follow.stop` is set (follow.py; a Ctrl-C sets it). Returns one record
    per pipeline, in the order asked."""
    names = list(names or ctx.config.pipelines)
    for n in names:
        if n not in ctx.config.pipelines:
            PipelinePlan(ctx, n)  # raises the ConfigError listing the known pipelines
        if follow is not None:
            problem = follow_problem(ctx.config.pipelines[n])
            if problem:
                raise ConfigError(f"pipeline {n}: {problem}")
    ctx.target.ensure_running()
    return_freed_memory()  # freed batch buffers go back to the system: peak memory flat (allocator.py)
    with open_executor(ctx.config.executor, ctx.config.workers) as on:
        if len(names) <= 1 and follow is None:
            return [run_pipeline(ctx, n, progress=progress, wait=wait, units_on=on) for n in names]
        # followed pipelines all run at once, each until stopped; this thread waits, and a Ctrl-C stops them
        threads = len(names) if follow is not None else ctx.config.workers
        with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="pgmill") as pool:
            futures = [pool.submit(_run_catching, ctx, n, progress, wait, on, follow) for n in names]
            try:
                return [f.result() for f in futures]
            except KeyboardInterrupt:
                if follow is None:
                    raise
                follow.stop.set()  # each pass in flight finishes its checkpoint; each run closes as succeeded
                return [f.result() for f in futures]


def _run_catching(ctx: ProjectContext, name: str, progress: ProgressFn | None, wait: bool,
                  units_on: Executor | None, follow: Follow | None = None) -> RunRecord:
    try:
        return run_pipeline(ctx, name, progress=progress, wait=wait, units_on=units_on, follow=follow)
    except Exception as exc:  # one pipeline's failure must not hide the others' results
        exc = as_pgmill(exc)
        run_id = getattr(exc, "run_id", None)
        if run_id is None:
            return RunRecord(0, name, "failed", datetime.now(UTC), datetime.now(UTC), 0, str(exc))
        try:
            return RetryPolicy.of(ctx.config.retry).call(lambda: _read_run(ctx, run_id))
        except Exception:  # the ledger is out of reach: the run's own error still says what happened
            return RunRecord(run_id, name, "failed", datetime.now(UTC), datetime.now(UTC), 0, str(exc))


def _read_run(ctx: ProjectContext, run_id: int) -> RunRecord:
    with ctx.target.connect() as conn:
        return ledger.read_run(conn, run_id)


def run_pipeline(
    ctx: ProjectContext, name: str, *, progress: ProgressFn | None = None, wait: bool = False,
    workers: int | None = None, units_on: Executor | None = None, follow: Follow | None = None,
) -> RunRecord:
    """Run one pipeline to the end of its source (with `follow`: until `follow.stop`); raise a PgmillError
    (with `.run_id`) if it fails. `units_on`: the executor its streams load on as units (None: `workers`
    threads of this process)."""
    pipe = PipelinePlan(ctx, name)
    policy = RetryPolicy.of(ctx.config.retry)
    holder = PipelineLock(ctx, name, wait)
    try:
        try:
            run_id = _setup(ctx, pipe, holder, policy)
        except PgmillError:
            raise
        except Exception as exc:  # setup failed before a run existed: a clean error, no run row
            raise as_pgmill(exc) from exc
        try:
            _attempts(ctx, pipe, run_id, holder, policy, progress, workers or ctx.config.workers, units_on, follow)
            record = policy.call(lambda: ledger.read_run(holder.conn(), run_id), on_retry=holder.count_retry)
            if not record.counts.balanced():
                c = record.counts
                raise AccountingError(
                    f"pipeline {name}, run {run_id}: rows do not add up: read {c.rows_read} but inserted "
                    f"{c.rows_inserted} + updated {c.rows_updated} + unchanged {c.rows_unchanged} + quarantined "
                    f"{c.rows_quarantined} + duplicate {c.rows_duplicate} + deleted {c.rows_deleted} + superseded "
                    f"{c.rows_superseded} = {c.accounted}")
            policy.call(lambda: ledger.finish_run(holder.conn(), run_id, "succeeded", None, holder.retries),
                        on_retry=holder.count_retry)
        except BaseException as exc:
            err = as_pgmill(exc) if not isinstance(exc, KeyboardInterrupt) else PgmillError("interrupted")
            _record_failure(holder, policy, run_id, describe(err))
            err.run_id = run_id  # type: ignore[attr-defined]
            if err is exc:
                raise
            raise err from exc
        try:
            return policy.call(lambda: ledger.read_run(holder.conn(), run_id))
        except Exception:  # the run is closed in the ledger as succeeded; only reading it back failed
            return dataclasses.replace(record, status="succeeded", finished_at=datetime.now(UTC),
                                       retries=record.retries + holder.retries)
    finally:
        holder.close()


def _setup(ctx: ProjectContext, pipe: PipelinePlan, holder: PipelineLock, policy: RetryPolicy) -> int:
    """Lock, migrate, create or evolve the table, open a run and claim the pipeline for it. Every step
    may be done twice: the run's id is drawn first, so a retry opens (and keeps) that same run."""
    run_id = policy.call(lambda: ledger.new_run_id(holder.conn()), on_retry=holder.count_retry)

    def attempt() -> None:
        ledger.abandon_stale(holder.conn(), pipe.name, keep=run_id)
        with ctx.target.connect() as conn:
            try:
                added = ddl.ensure_table(conn, pipe.spec.table, pipe.contract)
            except ContractError as exc:  # the table and the contract disagree: a failed run, in the ledger
                conn.rollback()
                ledger.start_run(conn, pipe.name, pipe.spec.mode, pipe.spec.table, run_id)
                ledger.finish_run(conn, run_id, "failed", describe(exc))
                exc.run_id = run_id  # type: ignore[attr-defined]
                raise
            conn.commit()
            roles.ensure_roles(conn, [split_table(pipe.spec.table)[0]])
            ledger.start_run(conn, pipe.name, pipe.spec.mode, pipe.spec.table, run_id)
            if added:
                ledger.step(conn, run_id, "evolve", "succeeded", datetime.now(UTC), detail={"added_columns": added})
        holder.claim(run_id)

    policy.call(attempt, on_retry=holder.count_retry)
    return run_id


def _progress_from_ledger(conn: psycopg.Connection[Any], run_id: int, progress: ProgressFn | None,
                          prog: Progress) -> None:
    """Progress of units loading elsewhere: the run's counts so far, as their checkpoints committed them (the
    retry policy reads them too: committed work starts its count of failures over)."""
    try:
        c = ledger.read_run(conn, run_id).counts
    except psycopg.Error:  # only the display misses a beat; the units and their checkpoints are not affected
        return
    prog.rows, prog.bytes, prog.quarantined = c.rows_read, c.bytes_read, c.rows_quarantined
    if progress is not None:
        progress(prog)


def _record_failure(holder: PipelineLock, policy: RetryPolicy, run_id: int, message: str) -> None:
    """Mark the run failed; if even that is impossible, the next run marks it abandoned."""
    with contextlib.suppress(Exception):  # the original error is what the user needs to see
        policy.call(lambda: ledger.finish_run(holder.conn(), run_id, "failed", message, holder.retries),
                    on_retry=holder.count_retry)


def _attempts(ctx: ProjectContext, pipe: PipelinePlan, run_id: int, holder: PipelineLock, policy: RetryPolicy,
              progress: ProgressFn | None, workers: int, units_on: Executor | None, follow: Follow | None) -> None:
    """Load until the source is done (followed: pass after pass until stopped), resuming from the last
    checkpoint after each transient failure."""
    prog = Progress(pipe.name, 0, 0, None, 0, time.monotonic())
    folders = watched_folders(ctx.dir, pipe.spec) if follow is not None else []

    def count(*_: object) -> None:
        policy.call(lambda: ledger.add_retry(holder.conn(), run_id), on_retry=holder.count_retry)

    def passes() -> None:
        while True:
            _load(ctx, pipe, run_id, progress, prog, workers, units_on, follow)
            if follow is None or follow.stop.is_set():
                return
            follow.wait(folders)
            if follow.stop.is_set():
                return

    policy.call(passes, on_retry=count, progress=lambda: prog.rows)


def _load(ctx: ProjectContext, pipe: PipelinePlan, run_id: int, progress: ProgressFn | None, prog: Progress,
          workers: int, units_on: Executor | None, follow: Follow | None = None) -> None:
    if is_cdc(pipe.spec):  # a snapshot, then a stream of changes (cdc/run.py)
        from pgmill.ingest.cdc.run import load_cdc

        load_cdc(ctx, pipe, run_id, progress, prog, follow)
        return
    # a replace loads its streams one after another in one transaction: nothing to gain from ranges
    parts = 0 if pipe.spec.mode == "replace" else workers
    on = units_on if pipe.spec.mode != "replace" else None
    with ctx.target.connect() as conn:
        st = state.load_state(conn, pipe.name)
        if pipe.spec.mode == "replace":
            st = SourceState({}, None, {})  # a replace rebuilds the table from the whole source, every run
        streams = open_pipeline_streams(ctx, pipe, st, parts, listing=on is not None,
                                        settled_before=follow.settled_before() if follow else None)
        sizes = [s.size_bytes for s in streams]
        if follow is None and all(s is not None for s in sizes) and prog.total_bytes is None:  # followed: no end
            prog.total_bytes = prog.bytes + sum(s or 0 for s in sizes)
        if pipe.spec.mode == "replace":
            load_replace(conn, pipe, run_id, streams, progress, prog)
            return
        if on is None and (workers <= 1 or len(streams) <= 1):
            for s in streams:
                if follow is not None and follow.stop.is_set():
                    break
                load_stream(conn, pipe, run_id, s, progress, prog, record_empty=follow is None,
                            stop=follow.stop if follow else None)
            return
    lock = threading.Lock()
    if on is not None:
        with ctx.target.connect(autocommit=True, application_name=f"pgmill progress {pipe.name}") as watch:
            units.load_units(on, ctx, pipe, run_id, [s.label for s in streams], parts,
                             lambda: _progress_from_ledger(watch, run_id, progress, prog), record_empty=follow is None)
        return

    def one(s: Stream) -> None:
        with ctx.target.connect() as c:
            load_stream(c, pipe, run_id, s, progress, prog, lock, record_empty=follow is None,
                        stop=follow.stop if follow else None)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"pgmill-{pipe.name}") as pool:
        for f in [pool.submit(one, s) for s in streams]:
            f.result()
