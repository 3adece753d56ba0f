"""Running the models: in dependency order, independent ones at once, each worker on its own connection.

The run is one row of pgmill.runs (pipeline "transform") and each model one row of pgmill.run_steps
(succeeded, failed or skipped, with its duration and rows). A model starts when every model it reads has
succeeded; a failed model stops its descendants and nothing else. The build heading the longest remaining
chain of models is planned to use the idle cores (see pgmill.transform.critical). Work goes through a
`concurrent.futures.Executor`, so the same code runs on threads or on a cluster's executor.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Literal

from psycopg import sql

from pgmill.db import roles
from pgmill.db.migrations import migrate
from pgmill.errors import ConfigError
from pgmill.observe import ledger
from pgmill.project import ProjectContext
from pgmill.retry import RetryPolicy, describe, reported
from pgmill.transform import critical
from pgmill.transform.graph import ExistingRelations, Graph, build_graph
from pgmill.transform.materialize import Built, Conn, build
from pgmill.transform.models import Model, discover_models

PIPELINE = "transform"
Status = Literal["succeeded", "failed", "skipped"]


@dataclass
class ModelResult:
    model: str
    file: str
    materialized: str
    status: Status
    rows: int | None = None
    seconds: float | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class TransformResult:
    """What a transform run did, model by model, in the order they finished (skipped ones last)."""

    run_id: int | None
    status: Literal["succeeded", "failed"]
    models: list[ModelResult]

    def _with(self, status: Status) -> list[str]:
        return [m.model for m in self.models if m.status == status]

    @property
    def ran(self) -> list[str]:
        return self._with("succeeded")

    @property
    def failed(self) -> list[str]:
        return self._with("failed")

    @property
    def skipped(self) -> list[str]:
        return self._with("skipped")

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": self.status, "ran": self.ran, "failed": self.failed,
                "skipped": self.skipped, "models": [asdict(m) for m in self.models]}


def read_catalog(conn: Conn) -> ExistingRelations:
    """The search_path and every table, view and materialized view in the database."""
    path = conn.execute("SELECT current_schemas(false)").fetchone()
    rels = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')").fetchall()
    return ExistingRelations(tuple(path[0]) if path else (), frozenset((str(s), str(n)) for s, n in rels))


def load_graph(ctx: ProjectContext, *, strict: bool = True) -> Graph:
    """The project's models and their dependencies, resolved against the database (which is not read
    when the project has no models)."""
    models = discover_models(ctx.dir, ctx.config.models)
    if not models:
        return build_graph([], ExistingRelations((), frozenset()), strict=strict)

    def catalog() -> ExistingRelations:
        with ctx.target.connect(autocommit=True) as conn:
            return read_catalog(conn)

    with reported():
        existing = RetryPolicy.of(ctx.config.retry).call(catalog)
    return build_graph(models, existing, strict=strict)


def run_transforms(ctx: ProjectContext, select: Iterable[str] | None = None, threads: int | None = None, *,
                   full_refresh: bool = False, executor: Executor | None = None) -> TransformResult:
    """Build the selected models (all by default), `threads` at a time (default: models.threads)."""
    models = discover_models(ctx.dir, ctx.config.models)
    if not models:
        return TransformResult(None, "succeeded", [])
    policy = RetryPolicy.of(ctx.config.retry)
    retries = [0]  # of the run's setup and ledger work; the builds' own are in their results

    def count(*_: object) -> None:
        retries[0] += 1

    reserved: list[int] = []

    def setup() -> tuple[Graph, list[str], dict[str, float], int]:
        with ctx.target.connect(autocommit=True) as conn:
            migrate(conn)
            catalog = read_catalog(conn)
            graph = build_graph(models, catalog)
            keys = graph.select(list(select) if select is not None else None)
            _check_unbuilt_parents(graph, keys, catalog)
            _ensure_schemas(conn, sorted({graph.models[k].schema for k in keys}))
            durations = critical.recent_durations(conn, PIPELINE) if ctx.config.models.critical_path_parallel else {}
            if not reserved:  # a retried setup opens the run it may have opened already, not a second one
                reserved.append(ledger.new_run_id(conn))
            run_id = ledger.start_run(conn, PIPELINE, "transform", ", ".join(keys)[:1000], reserved[0])
        return graph, keys, durations, run_id

    with reported():
        graph, keys, durations, run_id = policy.call(setup, on_retry=count)
    tail = critical.tails(keys, graph.children, durations)
    try:
        with reported():
            results = _schedule(ctx, graph, keys, run_id, threads or ctx.config.models.threads, full_refresh,
                                executor, tail)
    except BaseException as exc:
        message = describe(exc)
        with contextlib.suppress(Exception):  # the error that stopped the run is what the caller needs
            _in_ledger(ctx, policy, lambda c: ledger.finish_run(c, run_id, "failed", message, retries[0]), count)
        raise
    failed = [r for r in results if r.status == "failed"]
    status: Literal["succeeded", "failed"] = "failed" if failed else "succeeded"
    error = "; ".join(f"{r.model}: {r.error}" for r in failed)[:4000] or None
    build_retries = sum(int(r.detail.get("attempts", 1)) - 1 for r in results)
    with reported():
        _in_ledger(ctx, policy,
                   lambda c: ledger.finish_run(c, run_id, status, error, retries[0] + build_retries), count)
    return TransformResult(run_id, status, results)


def _in_ledger(ctx: ProjectContext, policy: RetryPolicy, write: Callable[[Conn], None],
               on_retry: Callable[..., None] | None = None) -> None:
    """One write to the ledger on a connection of its own, retried as the policy says."""

    def attempt() -> None:
        with ctx.target.connect(autocommit=True) as conn:
            write(conn)

    policy.call(attempt, on_retry=on_retry)


def _check_unbuilt_parents(graph: Graph, keys: list[str], catalog: ExistingRelations) -> None:
    """A selected model reading a model left out of the selection needs that model built already."""
    chosen = set(keys)
    errors = []
    for k in keys:
        for p in sorted(graph.parents[k] - chosen):
            pm = graph.models[p]
            if (pm.schema, pm.name) not in catalog.relations:
                errors.append(f"{graph.models[k].file}: reads {p} ({pm.file}), which is not built yet and not "
                              f"selected; select it too: --select +{graph.models[k].name}")
    if errors:
        raise ConfigError("\n".join(errors))


def _ensure_schemas(conn: Conn, schemas: list[str]) -> None:
    with conn.transaction():
        # concurrent CREATE SCHEMA IF NOT EXISTS races on the catalog; the ingest side takes the same lock
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('pgmill ddl'))")
        for s in schemas:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(s)))
    roles.ensure_roles(conn, schemas)


def _schedule(ctx: ProjectContext, graph: Graph, keys: list[str], run_id: int, threads: int,
              full_refresh: bool, executor: Executor | None, tail: dict[str, float]) -> list[ModelResult]:
    """Submit each model once all its selected parents succeeded; skip the descendants of failures.
    `tail`: each model's remaining chain in seconds (critical.tails); the one heading the longest leads."""
    chosen = set(keys)
    waiting = {k: graph.parents[k] & chosen for k in keys}
    later = {k: frozenset(graph.descendants(k) & chosen) for k in keys}
    own = executor is None
    pool = executor or ThreadPoolExecutor(max_workers=threads, thread_name_prefix="pgmill-model")
    sessions = _Sessions(ctx)
    results: list[ModelResult] = []
    skipped: dict[str, str] = {}
    running: dict[Future[ModelResult], str] = {}
    try:
        def submit_ready() -> None:
            ready = [k for k in keys if k in waiting and not waiting[k]]
            lead = critical.leads(ready, list(running.values()), tail)
            for k in ready:
                del waiting[k]
                running[pool.submit(_build_one, sessions, graph.models[k], run_id, later[k], full_refresh,
                                    k in lead)] = k

        submit_ready()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                key = running.pop(fut)
                res = fut.result()
                results.append(res)
                if res.status == "failed":
                    for d in later[key]:
                        if d in waiting:
                            del waiting[d]
                            skipped[d] = key
                if res.status == "succeeded":
                    for k in waiting:
                        waiting[k].discard(key)
            submit_ready()
    finally:
        if own:
            pool.shutdown()
        sessions.close()
    policy = RetryPolicy.of(ctx.config.retry)
    for k in keys:
        if k in skipped:
            m = graph.models[k]
            reason = f"upstream model {skipped[k]} failed"
            _in_ledger(ctx, policy, partial(_skip_step, run_id=run_id, key=k, detail={"file": m.file, "reason": reason}))
            results.append(ModelResult(k, m.file, m.materialized, "skipped", error=reason))
    return results


def _skip_step(conn: Conn, *, run_id: int, key: str, detail: dict[str, Any]) -> None:
    ledger.step(conn, run_id, key, "skipped", _now(conn), None, detail)


class _Sessions:
    """A connection per worker thread, kept from one model to the next: no connection set-up per model,
    and the server process keeps its catalog caches warm. A connection that saw an error is not reused."""

    def __init__(self, ctx: ProjectContext) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        self._conns: dict[int, Conn] = {}

    def __getstate__(self) -> dict[str, Any]:  # sent to another process: connections stay behind
        return {"ctx": self.ctx}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["ctx"])  # type: ignore[misc]

    def get(self) -> Conn:
        tid = threading.get_ident()
        with self._lock:
            conn = self._conns.get(tid)
        if conn is None or conn.closed or conn.broken:
            conn = self.ctx.target.connect(autocommit=True, application_name="pgmill transform")
            with self._lock:
                self._conns[tid] = conn
        return conn

    def discard(self) -> None:
        with self._lock:
            conn = self._conns.pop(threading.get_ident(), None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        with self._lock:
            conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()


def _build_one(sessions: _Sessions, model: Model, run_id: int, rebuilt_later: frozenset[str],
               full_refresh: bool, lead: bool = False) -> ModelResult:
    """Build one model on this worker's connection, then record it, each retried on transient failures;
    never raises. `lead`: it heads the run's critical path, and is planned with critical.LEAD_SETTINGS."""
    ctx = sessions.ctx
    policy = RetryPolicy.of(ctx.config.retry)
    t0 = time.perf_counter()
    attempts = [1]
    started: list[datetime | None] = [None]

    def again(*_: object) -> None:
        attempts[0] += 1

    def build_it() -> Built:
        started[0] = None
        try:
            conn = sessions.get()
            row = conn.execute("SELECT clock_timestamp(), set_config('application_name', %s, false)",
                               (f"pgmill transform {model.key}"[:63],)).fetchone()
            assert row is not None
            started[0] = row[0]
            return build(conn, model, rebuilt_later, full_refresh, critical.LEAD_SETTINGS if lead else None)
        except Exception:
            sessions.discard()  # a connection that saw an error is not reused
            raise

    def record(detail: dict[str, Any], rows: int | None) -> None:
        try:
            assert started[0] is not None
            ledger.step(sessions.get(), run_id, model.key, "succeeded", started[0], rows, detail)
        except Exception:
            sessions.discard()
            raise

    try:
        built = policy.call(build_it, on_retry=again)
        secs = time.perf_counter() - t0
        detail = {"file": model.file, **built.detail, **({"critical_path": True} if lead else {}),
                  **({"attempts": attempts[0]} if attempts[0] > 1 else {})}
        # the build is committed: only its record is tried again (a rebuild would report other rows)
        policy.call(lambda: record(detail, built.rows), on_retry=again)
        result = ModelResult(model.key, model.file, model.materialized, "succeeded", built.rows,
                             round(secs, 3), None, detail)
        if attempts[0] > 1:  # the run's retries are summed from these, the record's own included
            result.detail = {**detail, "attempts": attempts[0]}
        return result
    except Exception as exc:
        message = describe(exc)
        _record_failure(ctx, policy, model, run_id, started[0], message)
        return ModelResult(model.key, model.file, model.materialized, "failed", None,
                           round(time.perf_counter() - t0, 3), f"{model.file}: {message}",
                           {"file": model.file, **({"attempts": attempts[0]} if attempts[0] > 1 else {})})


def _record_failure(ctx: ProjectContext, policy: RetryPolicy, model: Model, run_id: int,
                    started: datetime | None, message: str) -> None:
    # the model's own error is what the result reports; the ledger is best effort here
    with contextlib.suppress(Exception):
        _in_ledger(ctx, policy, lambda c: ledger.step(c, run_id, model.key, "failed", started or _now(c), None,
                                                      {"file": model.file, "error": message}))


def _now(conn: Conn) -> datetime:
    """The database's clock, so a step's start and end (clock_timestamp() in the ledger) share one clock."""
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    value: datetime = row[0]
    return value
