"""Units: a pipeline's streams loaded on an executor elsewhere, a pool of processes or a Dask cluster.

A unit names its stream (project folder, pipeline, run, stream label, how files are split), never its
data. The worker opens the project, reads the committed state and loads what is left of that one stream,
committing checkpoints under the run's fencing exactly as the run's own threads do (stream_load.py). It
sends back counts, nothing else.

Exactly once when a unit runs twice (Dask runs a task again when its worker dies, even a finished one
whose result sat there): the unit first takes a session advisory lock on (pipeline, stream), so a twin
waits for the first to finish or die, then reads the state the first committed and loads only what is
left, or nothing. A worker that dies takes its connection, its transaction and its lock with it.

So the workers reach the same database and the same files: the project folder at the same path (a shared
filesystem beyond one machine) and the same environment (PGMILL_DATABASE_URL, the sources' variables).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from pgmill import errors
from pgmill.errors import PgmillError
from pgmill.ingest import state
from pgmill.ingest.allocator import return_freed_memory
from pgmill.ingest.pipeline import PipelinePlan
from pgmill.ingest.stream_load import Progress, load_stream, open_pipeline_streams
from pgmill.observe.ledger import Counts
from pgmill.project import ProjectContext, open_project
from pgmill.retry import as_pgmill, describe

_UNIT_LOCK_NAMESPACE = 0x7075  # "pu": advisory locks of units, one per (pipeline, stream)

#: the errors a unit's failure comes back as, by name (exceptions are not sent across: not all pickle)
_ERRORS: dict[str, type[PgmillError]] = {
    c.__name__: c for c in (errors.ConfigError, errors.ContractError, errors.SourceError, errors.TransientError,
                            errors.DatabaseError, errors.DatabaseUnavailable, errors.PipelineLocked,
                            errors.AccountingError)
}


@dataclass(frozen=True)
class LoadUnit:
    """One stream of one run, to load wherever the executor runs it."""

    project_dir: str
    pipeline: str
    run_id: int
    label: str  # the stream's label: a file, or a file's byte range
    parts: int  # the ranges a new split file is cut into (the same plan as the run's listing)
    record_empty: bool = True  # record the unit's step even when it found nothing (not in a followed pass)


@dataclass(frozen=True)
class UnitResult:
    label: str
    counts: Counts
    error: str | None = None
    error_kind: str = ""  # the class of the PgmillError it failed with
    loaded: bool = True  # False: nothing was left of the stream (a twin or an earlier attempt loaded it)


def run_unit(unit: LoadUnit) -> UnitResult:
    """Load what is left of the unit's stream (on a worker); its failure comes back as a result."""
    try:
        return _run(unit)
    except Exception as exc:
        err = as_pgmill(exc)
        return UnitResult(unit.label, Counts(), describe(err), type(err).__name__)


def _run(unit: LoadUnit) -> UnitResult:
    return_freed_memory()  # a worker's memory stays flat as units come and go, as the run's does
    ctx = open_project(unit.project_dir)
    pipe = PipelinePlan(ctx, unit.pipeline)
    with ctx.target.connect(application_name=f"pgmill unit {unit.pipeline}") as conn:
        conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))",
                     (_UNIT_LOCK_NAMESPACE, f"{unit.pipeline}\n{unit.label}"))
        conn.commit()  # the lock is the session's: it is held until this connection closes
        st = state.load_state(conn, pipe.name)
        mine = [s for s in open_pipeline_streams(ctx, pipe, st, unit.parts, only=unit.label)
                if s.label == unit.label]
        if not mine:
            return UnitResult(unit.label, Counts(), loaded=False)
        prog = Progress(pipe.name, 0, 0, None, 0, time.monotonic())
        return UnitResult(unit.label, load_stream(conn, pipe, unit.run_id, mine[0], None, prog,
                                                  record_empty=unit.record_empty))


_BROKEN = ("a process of the pool died (killed, or out of memory), which breaks the pool the run's pipelines "
           "share; rerun: each unit resumes from its last checkpoint")

#: seconds between two progress reports while units run elsewhere
TICK_S = 1.0


def load_units(on: Executor, ctx: ProjectContext, pipe: PipelinePlan, run_id: int, labels: list[str], parts: int,
               tick: Callable[[], None], record_empty: bool = True) -> None:
    """Load the streams `labels` of run `run_id` as units on `on`, calling `tick` every TICK_S seconds and as
    each unit finishes (the units' progress is in the ledger: their checkpoints add to the run's counts).
    After a unit fails, the others are cancelled and the first failure is raised, as the error the unit failed
    with; a unit still running elsewhere stops at its next checkpoint once the run is closed (lock.check_owner).
    `record_empty`: a unit that found nothing records its step too (not in a followed pass)."""
    try:
        futures: dict[Future[UnitResult], str] = {
            on.submit(run_unit, LoadUnit(str(ctx.dir), pipe.name, run_id, label, parts, record_empty)): label
            for label in labels}
    except BrokenProcessPool:
        raise PgmillError(f"{pipe.name}: {_BROKEN}") from None
    failed: PgmillError | None = None
    try:
        for f in _as_completed(futures, tick):
            try:
                r = f.result()
            except BrokenProcessPool:
                r = UnitResult(futures[f], Counts(), _BROKEN, "PgmillError")
            except Exception as exc:  # the executor's own failure: Dask lost the workers that ran it, ...
                r = UnitResult(futures[f], Counts(), f"the executor failed to run it: {describe(exc)}", "PgmillError")
            tick()
            if r.error is not None and failed is None:
                failed = _ERRORS.get(r.error_kind, PgmillError)(f"{pipe.name}, {r.label}: {r.error}")
                for other in futures:
                    other.cancel()
    except BaseException:
        for other in futures:
            other.cancel()
        raise
    if failed is not None:
        raise failed


def _as_completed(futures: dict[Future[UnitResult], str], tick: Callable[[], None]) -> Iterator[Future[UnitResult]]:
    """The futures as they complete, calling `tick` every TICK_S seconds while none does."""
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=TICK_S, return_when=FIRST_COMPLETED)
        if not done:
            tick()
        yield from done
