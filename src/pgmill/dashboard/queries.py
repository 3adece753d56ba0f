"""The queries page: the declared queries' measured p50/p95 over the last tuning runs against their targets,
regressions marked, the index actions of those runs, and the top statements by total time.

Tuning (pgmill.tune.apply) measures every declared query before and after it changes indexes and keeps the
figures in pgmill.tuning_runs.report (`applied.before` / `applied.after`, `queries[].target_ms`). A query's
history is those measurements in order: each run's before, then its after. A measurement regressed when its
p95 is measurably worse than the one before it, by the rule tuning itself uses (pgmill.tune.measure:
more than 10% and more than 5 ms).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from pgmill.db.catalog import extension_schema
from pgmill.tune.measure import Latency, regressed

Conn = psycopg.Connection[Any]
MEASURED_RUNS = 30  # tuning runs that measured latency, newest first (index tuning_runs_measured)
MAX_ACTIONS = 1000  # index actions of those runs shown at most
TOP_STATEMENTS = 20

# the newest tuning runs that measured: only the declared queries' names and targets leave the report
_RUNS = (
    "SELECT run_id, mode, finished_at, rolled_back_by,"
    " (SELECT coalesce(jsonb_agg(jsonb_build_object('name', q -> 'name', 'target_ms', q -> 'target_ms')), '[]')"
    "  FROM jsonb_array_elements(CASE jsonb_typeof(report -> 'queries') WHEN 'array' THEN report -> 'queries'"
    "       ELSE '[]' END) q WHERE q ->> 'source' = 'declared'),"
    " report #> '{applied,before}', report #> '{applied,after}'"
    " FROM pgmill.tuning_runs WHERE status = 'succeeded' AND report ? 'applied'"
    " ORDER BY run_id DESC LIMIT %s"
)
_ACTIONS = (
    "SELECT action_id, run_id, at, action, schema_name, index_name, table_name, definition, size_bytes, reason,"
    " coalesce(detail -> 'queries', detail -> 'improved', '[]'), coalesce(detail -> 'slowed', '[]')"
    " FROM pgmill.index_actions WHERE run_id = ANY(%s) ORDER BY run_id DESC, action_id LIMIT %s"
)


@dataclass
class Measurement:
    run_id: int
    at: datetime | None  # when the tuning run finished
    phase: str  # "before" or "after" the run changed indexes
    p50_ms: float | None
    p95_ms: float
    regressed: bool = False  # p95 measurably worse than the measurement before it
    over_target: bool = False

    @property
    def label(self) -> str:
        return f"#{self.run_id} {self.phase}"


@dataclass
class QueryTrend:
    name: str
    target_ms: float | None  # as the newest run that measured it declared it
    points: list[Measurement] = field(default_factory=list)  # oldest first

    @property
    def latest(self) -> Measurement | None:
        return self.points[-1] if self.points else None

    @property
    def status(self) -> str:
        """over target, regressed, within target, or measured (no target)."""
        last = self.latest
        if last is None:
            return "not measured"
        if last.over_target:
            return "over target"
        if last.regressed:
            return "regressed"
        return "within target" if self.target_ms is not None else "measured"


@dataclass
class Change:
    """One query in one tuning run: measured before and after the run's index changes."""

    query: str
    target_ms: float | None
    before: Measurement | None
    after: Measurement | None

    @property
    def ratio(self) -> float | None:
        """after p95 / before p95."""
        if self.before is None or self.after is None or self.before.p95_ms <= 0:
            return None
        return self.after.p95_ms / self.before.p95_ms


@dataclass
class IndexAction:
    action_id: int
    run_id: int
    at: datetime
    action: str  # create, keep, drop, failed, drop_invalid, rollback_drop, trade
    index: str  # schema.name
    table: str
    definition: str | None
    size_bytes: int | None
    reason: str | None
    queries: list[str]  # the queries it was created for, or measured faster
    slowed: list[str]


@dataclass
class TuningRun:
    run_id: int
    mode: str
    finished_at: datetime | None
    rolled_back_by: int | None
    changes: list[Change] = field(default_factory=list)
    actions: list[IndexAction] = field(default_factory=list)

    @property
    def regressions(self) -> int:
        return sum(1 for c in self.changes if c.after is not None and (c.after.regressed or c.after.over_target))


@dataclass
class Statement:
    queryid: int | None
    calls: int
    total_ms: float
    mean_ms: float
    rows: int
    query: str


@dataclass
class Statements:
    rows: list[Statement]
    note: str | None  # why there are none: not installed, cannot be read


@dataclass
class QueriesPage:
    queries: list[QueryTrend]
    runs: list[TuningRun]  # newest first
    statements: Statements

    @property
    def over_target(self) -> int:
        return sum(1 for q in self.queries if q.status == "over target")

    @property
    def regressed(self) -> int:
        return sum(1 for q in self.queries if q.status == "regressed")


def _float(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _measurement(run_id: int, at: datetime | None, phase: str, figures: Any) -> Measurement | None:
    if not isinstance(figures, dict) or _float(figures.get("p95_ms")) is None:
        return None
    return Measurement(run_id, at, phase, _float(figures.get("p50_ms")), float(figures["p95_ms"]))


def _latency(name: str, m: Measurement) -> Latency:
    return Latency(name, 0, m.p50_ms or 0.0, m.p95_ms, 0.0, 0.0)


def queries_page(conn: Conn, *, runs: int = MEASURED_RUNS, top: int = TOP_STATEMENTS) -> QueriesPage:
    """The last `runs` tuning runs that measured latency, their index actions, and the top `top` statements."""
    rows = conn.execute(_RUNS, (runs,)).fetchall()
    trends: dict[str, QueryTrend] = {}
    tuning: list[TuningRun] = []
    for run_id, mode, finished, rolled_back_by, declared, before, after in reversed(rows):  # oldest first
        run = TuningRun(int(run_id), str(mode), finished, rolled_back_by)
        for q in declared:
            name = str(q.get("name"))
            target = _float(q.get("target_ms"))
            trend = trends.setdefault(name, QueryTrend(name, target))
            trend.target_ms = target
            change = Change(name, target, None, None)
            for phase, figures in (("before", before), ("after", after)):
                m = _measurement(run.run_id, finished, phase, (figures or {}).get(name) if isinstance(figures, dict)
                                 else None)
                if m is None:
                    continue
                prev = trend.latest
                m.regressed = prev is not None and regressed(_latency(name, prev), _latency(name, m))
                m.over_target = target is not None and m.p95_ms > target
                trend.points.append(m)
                setattr(change, phase, m)
            if change.before is not None or change.after is not None:
                run.changes.append(change)
        tuning.append(run)
    tuning.reverse()
    by_run = {r.run_id: r for r in tuning}
    for (action_id, run_id, at, action, schema, index, table, definition, size, reason, queries,
         slowed) in conn.execute(_ACTIONS, (list(by_run), MAX_ACTIONS)).fetchall():
        by_run[int(run_id)].actions.append(IndexAction(
            int(action_id), int(run_id), at, str(action), f"{schema}.{index}", str(table), definition,
            None if size is None else int(size), reason, [str(q) for q in queries if isinstance(q, str)],
            [str(q) for q in slowed if isinstance(q, str)]))
    order = {"over target": 0, "regressed": 1}
    ordered = sorted((t for t in trends.values() if t.points), key=lambda t: (order.get(t.status, 2), t.name))
    return QueriesPage(ordered, tuning, top_statements(conn, top))


_UTILITY = (r"^\s*(create|alter|drop|analyze|vacuum|cluster|reindex|set|reset|begin|start|commit|end|rollback"
            r"|savepoint|release|prepare|lock|grant|revoke|comment|discard|show|listen|notify|deallocate)\M")


def top_statements(conn: Conn, limit: int = TOP_STATEMENTS) -> Statements:
    """This database's statements by total execution time, from pg_stat_statements where it is installed
    (read only: the extension is never created here): the application's work, so not utility statements
    (DDL, ANALYZE, SET, transaction control) nor pgmill's own bookkeeping on schema pgmill."""
    schema = extension_schema(conn, "pg_stat_statements")
    if schema is None:
        return Statements([], "pg_stat_statements is not installed in this database")
    query = sql.SQL(
        "SELECT queryid, calls, total_exec_time, mean_exec_time, rows, query FROM {}"
        " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND query !~* %s AND query !~ %s"
        " ORDER BY total_exec_time DESC LIMIT %s").format(sql.Identifier(schema, "pg_stat_statements"))
    try:
        rows = conn.execute(query, (_UTILITY, r"\mpgmill\.", limit)).fetchall()
    except psycopg.Error as exc:  # e.g. installed but not in shared_preload_libraries
        if not conn.autocommit:
            conn.rollback()
        return Statements([], f"pg_stat_statements cannot be read: {str(exc).strip().splitlines()[0]}")
    return Statements([Statement(None if r[0] is None else int(r[0]), int(r[1]), float(r[2]), float(r[3]),
                                 int(r[4]), str(r[5] or "")) for r in rows],
                      None if rows else "pg_stat_statements has recorded no statements yet")
