"""Measured latency: each query run many times over varied parameters on a warm cache; p50 and p95."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import psycopg

from pgmill.tune.workload import WorkloadQuery

REGRESSION_SHARE = 0.10  # a query is slower only if its p95 grew by more than 10% ...
REGRESSION_MS = 5.0  # ... and by more than 5 ms
IMPROVEMENT_SHARE = 0.10  # an index helped a query when its p95 dropped by at least 10%
LEAN_SHARE = 0.25  # a leaner index is as fast as the wider one unless its p95 is more than 25% higher ...
LEAN_MS = 1.0  # ... and more than 1 ms higher (a 5 ms floor let 0.4 -> 4.0 ms pass as "as fast")


@dataclass(frozen=True)
class Latency:
    query: str
    executions: int
    p50_ms: float
    p95_ms: float
    mean_ms: float
    max_ms: float

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (the same as numpy's default)."""
    xs = sorted(values)
    if not xs:
        return math.nan
    k = (len(xs) - 1) * p
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def _run(conn: psycopg.Connection[Any], q: WorkloadQuery, params: list[Any]) -> float:
    with psycopg.RawCursor(conn) as cur:
        started = time.perf_counter()
        cur.execute(q.sql.encode(), params or None)
        if cur.description is not None:
            cur.fetchall()
        return (time.perf_counter() - started) * 1000


def measure_query(conn: psycopg.Connection[Any], q: WorkloadQuery, executions: int = 30) -> Latency:
    """Warm the cache with one pass over (up to 10) parameter sets, then time `executions` runs."""
    sets = q.param_sets()
    for params in sets[:10]:
        _run(conn, q, params)
    times = [_run(conn, q, sets[i % len(sets)]) for i in range(executions)]
    return Latency(q.name, executions, percentile(times, 0.5), percentile(times, 0.95), sum(times) / len(times),
                   max(times))


def measure(conn: psycopg.Connection[Any], queries: list[WorkloadQuery], executions: int = 30,
            statement_timeout_ms: int = 60_000) -> dict[str, Latency]:
    """Latency of every runnable query (in a read-only transaction per query: measuring changes nothing)."""
    out: dict[str, Latency] = {}
    conn.execute("SELECT set_config('statement_timeout', %s, false)", (str(statement_timeout_ms),))
    for q in queries:
        if not q.runnable:
            continue
        with conn.transaction(force_rollback=True):
            conn.execute("SET TRANSACTION READ ONLY")
            out[q.name] = measure_query(conn, q, executions)
    conn.execute("RESET statement_timeout")
    return out


def regressed(before: Latency, after: Latency) -> bool:
    """Measurably slower: p95 up by more than 10% and by more than 5 ms."""
    grew = after.p95_ms - before.p95_ms
    return grew > REGRESSION_MS and after.p95_ms > before.p95_ms * (1 + REGRESSION_SHARE)


def as_fast(wide: Latency, lean: Latency) -> bool:
    """The leaner index serves the query as well as the wider one: p95 within 25% or within 1 ms of it.
    Stricter than `regressed`, whose 5 ms floor is about noise against no index, not about two indexes
    that both serve the query: a 10x slower lean index is no saving."""
    grew = lean.p95_ms - wide.p95_ms
    return grew <= LEAN_MS or lean.p95_ms <= wide.p95_ms * (1 + LEAN_SHARE)


def improved(before: Latency, after: Latency) -> bool:
    return after.p95_ms <= before.p95_ms * (1 - IMPROVEMENT_SHARE)
