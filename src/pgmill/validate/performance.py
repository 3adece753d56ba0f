"""Query performance: declared queries' p95, the reduction tuning measured, index utilization, parallel
throughput and performance at 10x data.

Latency comes from `pgmill tune --apply` (pgmill.tuning_runs.report -> 'applied'): each declared query
(queries/*.sql) run many times before and after the indexes changed. The newest such run gives the current
p95: its 'after' figures, or its 'before' ones if it was rolled back since (the rollback dropped what it
kept), as the Prometheus metrics read it (pgmill.observe.metrics.tuning_metrics).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgmill.figures import ms, pct
from pgmill.tune.health import BIG_TABLE_ROWS, index_health
from pgmill.validate.model import Criterion, judge, when

Conn = psycopg.Connection[Any]
AREA = "Query performance"
P95_MS = 100.0
REDUCTION = 0.60
UTILIZATION = 0.90
#: measured tuning runs looked back over for the latest one that kept an index
LOOK_BACK_RUNS = 500


@dataclass(frozen=True)
class QueryLatency:
    name: str
    target_ms: float | None
    before_ms: float | None
    after_ms: float | None
    rolled_back: bool

    @property
    def now_ms(self) -> float | None:
        return self.before_ms if self.rolled_back else self.after_ms


@dataclass(frozen=True)
class Measured:
    """One succeeded `tune --apply` run and its declared queries' latency."""

    run_id: int
    finished_at: datetime | None
    rolled_back_by: int | None
    kept: int  # indexes it kept
    queries: list[QueryLatency]

    def describe(self) -> str:
        rolled = f", rolled back by run {self.rolled_back_by}" if self.rolled_back_by else ""
        return f"tuning run {self.run_id}, finished {when(self.finished_at)}{rolled}"


# the measured runs, newest first (index tuning_runs_measured), with the number of indexes each kept
_RUNS = ("SELECT run_id, finished_at, rolled_back_by,"
         " (SELECT count(*) FROM jsonb_array_elements(coalesce(report #> '{applied,outcomes}', '[]')) o"
         "  WHERE o->>'status' = 'kept') AS kept"
         " FROM pgmill.tuning_runs WHERE status = 'succeeded' AND report ? 'applied' ORDER BY run_id DESC")


def _measured(conn: Conn, run: tuple[Any, ...] | None) -> Measured | None:
    if run is None:
        return None
    run_id, finished_at, rolled_back_by, kept = run
    rows = conn.execute(
        "SELECT q->>'name', (q->>'target_ms')::float8,"
        "  (t.report #>> ARRAY['applied', 'before', q->>'name', 'p95_ms'])::float8,"
        "  (t.report #>> ARRAY['applied', 'after', q->>'name', 'p95_ms'])::float8"
        " FROM pgmill.tuning_runs t CROSS JOIN LATERAL jsonb_array_elements(t.report -> 'queries') q"
        " WHERE t.run_id = %s AND q->>'source' = 'declared' ORDER BY 1", (run_id,)).fetchall()
    queries = [QueryLatency(n, tgt, b, a, rolled_back_by is not None) for n, tgt, b, a in rows]
    return Measured(int(run_id), finished_at, rolled_back_by, int(kept), queries)


def latest_measured(conn: Conn) -> Measured | None:
    """The newest succeeded tuning run that measured latency (index tuning_runs_measured)."""
    return _measured(conn, conn.execute(_RUNS + " LIMIT 1").fetchone())


def latest_optimization(conn: Conn) -> Measured | None:
    """The newest measured run that kept at least one index and was not rolled back (within the last
    LOOK_BACK_RUNS measured runs)."""
    run = conn.execute(sql.SQL("SELECT * FROM ({runs} LIMIT %s) r WHERE rolled_back_by IS NULL AND kept > 0"
                               " ORDER BY run_id DESC LIMIT 1").format(runs=sql.SQL(_RUNS)),
                       (LOOK_BACK_RUNS,)).fetchone()
    return _measured(conn, run)


def _per_query(m: Measured) -> list[dict[str, Any]]:
    return [{"query": q.name, "target_ms": q.target_ms, "before_ms": q.before_ms, "after_ms": q.after_ms,
             "now_ms": q.now_ms} for q in m.queries]


def query_p95(latest: Measured | None) -> Criterion:
    c = Criterion("query_p95", AREA, "Query execution time < 100 ms p95 for optimized queries", "< 100 ms",
                  "not_measured", source="pgmill.tuning_runs: report -> applied -> after (or before, if rolled"
                  " back) -> p95_ms of each declared query (queries/*.sql)")
    measured = [q for q in (latest.queries if latest else []) if q.now_ms is not None]
    if latest is None or not measured:
        c.note = ("no latency measured: declare the queries that must be fast in queries/*.sql and run `pgmill "
                  "tune --apply`, which runs each one many times and records its p95" if latest is None else
                  f"{latest.describe()} measured no declared query (queries/*.sql)")
        return c
    worst = max(measured, key=lambda q: q.now_ms or 0.0)
    assert worst.now_ms is not None
    under = sum(1 for q in measured if (q.now_ms or 0.0) < P95_MS)
    c.value = worst.now_ms
    c.status = judge(worst.now_ms, worst.now_ms < P95_MS)
    c.figure = f"{ms(worst.now_ms)} worst ({worst.name}); {under} of {len(measured)} declared queries under 100 ms"
    c.window = latest.describe()
    c.detail = {"tuning_run": latest.run_id, "rolled_back_by": latest.rolled_back_by, "queries": _per_query(latest)}
    if latest.rolled_back_by:
        c.note = "the run was rolled back since: the latency before it is the current one"
    return c


def query_reduction(latest: Measured | None, optimization: Measured | None) -> Criterion:
    c = Criterion("query_reduction", AREA, "Query optimization reduces execution time by 60%", ">= 60%",
                  "not_measured", source="pgmill.tuning_runs: 1 - sum of p95 after / sum of p95 before, over "
                  "the declared queries of the newest tuning run that kept an index (not rolled back)")
    if optimization is None:
        c.note = ("no tuning run measured latency: run `pgmill tune --apply`" if latest is None else
                  f"no optimization to measure: {latest.describe()} measured the declared queries but no "
                  "tuning run kept an index that is still in place (see the p95 criterion for their latency)")
        return c
    pairs = [(q.before_ms, q.after_ms) for q in optimization.queries
             if q.before_ms is not None and q.after_ms is not None]
    before = sum(b for b, _ in pairs)
    if not pairs or before <= 0:
        c.note = f"{optimization.describe()} measured no declared query before and after"
        return c
    after = sum(a for _, a in pairs)
    reduction = 1 - after / before
    c.value = reduction
    c.status = judge(reduction, reduction >= REDUCTION)
    c.figure = (f"{pct(reduction)} ({len(pairs)} declared queries: p95 summed {ms(before)} before, "
                f"{ms(after)} after)")
    c.window = optimization.describe()
    c.detail = {"tuning_run": optimization.run_id, "indexes_kept": optimization.kept,
                "queries": _per_query(optimization)}
    return c


def index_utilization(conn: Conn) -> Criterion:
    c = Criterion("index_utilization", AREA, "Index utilization > 90%", "> 90%", "not_measured",
                  source=f"pg_stat_user_tables: idx_scan / (idx_scan + seq_scan) over the user tables of more "
                         f"than {BIG_TABLE_ROWS:,} rows (pgmill.tune.health.index_health); beside it, the share "
                         "of the indexes pgmill tuning kept that queries have read")
    health = index_health(conn)
    c.window = (f"since the statistics were reset, {when(health.stats_since)}" if health.stats_since else
                "since the statistics began (never reset)")
    c.detail = {"utilization_scans": health.utilization_scans, "pgmill_indexes": health.pgmill_indexes,
                "pgmill_indexes_read": health.pgmill_used, "stats_since": health.stats_since.isoformat()
                if health.stats_since else None}
    kept = (f"; {health.pgmill_used} of {health.pgmill_indexes} indexes kept by pgmill tuning were read"
            if health.pgmill_indexes else "")
    if health.utilization_scans is None:
        c.note = (f"no scan recorded yet on a user table of more than {BIG_TABLE_ROWS:,} rows (the planner's "
                  "estimate, as of the last ANALYZE)" + kept)
        return c
    u = health.utilization_scans
    c.value = u
    c.status = judge(u, u > UTILIZATION)
    c.figure = f"{pct(u)} of scans used an index" + kept
    if c.status == "fail":
        c.note = ("every scan since the statistics began counts, whole-table reads too (table checks, reports, "
                  "joins over most rows), for which a sequential scan is the right plan")
    return c


#: where `validate` looks for the executor benchmark's figures (bench/bench_executor.py writes it)
EXECUTOR_RESULTS = Path("bench") / "results_executor.json"
PARALLEL = 3.0


def parallel_throughput(path: Path) -> Criterion:
    """The speed-up of waiting sources on 8 Dask workers against 1, from the executor benchmark's results
    file (its `parallel_throughput`): the lower of its HTTP and PostgreSQL workloads, judged against 3x."""
    c = Criterion(
        "parallel_throughput", AREA, "Parallel processing improves throughput by 3x", ">= 3x", "not_measured",
        source=f"{path}: parallel_throughput (bench/bench_executor.py, bench/RESULTS_executor.md)")
    head = _bench_head(c, path, "parallel_throughput", "the executor benchmark")
    worst = head.get("worst") if head else None
    if head is None or not isinstance(worst, int | float):
        c.note = c.note or ("the project's runs do not record a serial baseline (the same work on one worker), so "
                            "the speed-up comes from the executor benchmark, and none is found")
        return c
    c.value = float(worst)
    c.status = judge(c.value, c.value >= PARALLEL)
    by = head.get("speedups") or {}
    c.figure = (f"{c.value:.2f}x, the lower of " + ", ".join(f"{k} {v:.2f}x" for k, v in by.items())
                + f" ({head.get('workers')} Dask workers against 1)")
    cpu = head.get("cpu_bound")
    if isinstance(cpu, int | float):
        c.note = (f"CPU-bound parsing and validating: {cpu:.2f}x with 2 processes against 1, the database on the "
                  "same cores (bench/RESULTS_executor.md)")
    c.detail = {"file": str(path), **head}
    return c


#: where `validate` looks for the 10x benchmark's figures, in the project folder (bench/bench_scale.py writes it)
SCALE_RESULTS = Path("bench") / "results_scale.json"


def _bench_head(c: Criterion, path: Path, key: str, what: str) -> dict[str, Any] | None:
    """The `key` section of a benchmark's results file, setting `c`'s window; None (with `c.note` saying
    why) when the file is missing, unreadable or without it."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        c.note = f"no results of {what} found at {path}"
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        c.note = f"{path} could not be read: {e}"
        return None
    if not isinstance(doc, dict):
        c.note = f"{path} holds no {key}"
        return None
    measured_at = str(doc.get("measured_at", ""))
    c.window = f"benchmark of {measured_at}" if measured_at else ""
    head = doc.get(key)
    return {**head, "measured_at": measured_at} if isinstance(head, dict) else None


def scale_10x(path: Path) -> Criterion:
    """The worst declared query's p95 at 10x data, from the 10x benchmark's results file (its
    `query_p95_at_10x`: worst_p95_ms, query, variant), judged against 100 ms."""
    c = Criterion(
        "query_p95_at_10x", "Scalability", "Query performance maintained with 10x data growth",
        "p95 < 100 ms at 10x data", "not_measured",
        source=f"{path}: query_p95_at_10x -> worst_p95_ms (bench/bench_scale.py, bench/RESULTS_scale.md)")
    if not path.exists():
        c.note = (f"no 10x benchmark found at {path} (bench/bench_scale.py writes it); the p95 criterion is "
                  "measured at the data's current size")
        return c
    head = _bench_head(c, path, "query_p95_at_10x", "the 10x benchmark")
    if c.note:
        return c
    worst = head.get("worst_p95_ms") if head else None
    if head is None or not isinstance(worst, int | float):
        c.note = f"{path} holds no figure at 10x (a --quick run measures 1x and 2x only)"
        return c
    c.value = float(worst)
    c.status = judge(c.value, c.value < P95_MS)
    c.figure = (f"{ms(c.value)} worst ({head.get('query')}, {head.get('variant')}) of "
                f"{head.get('queries')} declared queries at 10x")
    c.detail = {"file": str(path), **head}
    return c
