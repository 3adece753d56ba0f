"""Alert conditions: one plain function per rule kind, reading pgmill's tables, returning what is true now.

Each function takes its rule's settings and a `Scope` (the connection, the evaluation time, the project) and
returns one `Condition` per subject for which the rule holds. Subjects are bounded names, never run ids:

| kind                 | subject                          | true when                                            |
| -------------------- | -------------------------------- | ---------------------------------------------------- |
| run_failed           | pipeline or job                  | its latest finished run failed (or timed out)        |
| consecutive_failures | pipeline or job                  | its last `count` runs all failed                     |
| late_run             | job (`pipeline:NAME`, `models`)  | a slot is still unclaimed `after` its scheduled time |
| missed_run           | job                              | a slot was missed or skipped within `window`         |
| freshness            | pipeline                         | its last committed cursor or good load is too old    |
| quality_failed       | `table/rule`                     | the rule failed in its table's latest check run      |
| quarantine_rate      | pipeline                         | its latest run quarantined > `above` % of rows read  |
| query_p95            | declared query                   | p95 above target, or regressed against its baseline  |
| success_rate         | pipeline or job                  | successful runs over `window` < `below` %            |
| latency              | pipeline                         | p95 arrival to queryable over `window` > `above`     |
| cdc_slot             | pipeline                         | slot over its limits or lost; a re-snapshot in window|
| cost_over_budget     | `budget`                         | month-to-date (or projected) cost > cost.budget.month|

A run's outcome comes from pgmill.runs, joined to the expected run that started it; an expected run that
failed or timed out without a run row of its own (it could not start, its run ids live elsewhere) counts too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from pgmill.config.alerts import (
    ArrivalLatency,
    CdcSlot,
    ConsecutiveFailures,
    CostOverBudget,
    Freshness,
    LateRun,
    MissedRun,
    QualityFailed,
    QuarantineRate,
    QueryP95,
    RunFailed,
    SuccessRate,
    parse_size,
)
from pgmill.config.duration import parse_duration
from pgmill.figures import size
from pgmill.observe.cdc_health import slot_states
from pgmill.observe.latency import arrival_latency
from pgmill.project import ProjectContext
from pgmill.redact import redact

# the job id of a scheduled pipeline (pgmill.schedule.jobs, a layer above) and the ledger name of model builds
# (pgmill.transform.runner): the `models` job writes its runs as pipeline "transform"
PIPELINE_JOB = "pipeline:"
TRANSFORM = "transform"

# (month to date, month projected) in dollars: the cost module's answer, passed in by whoever has it
MonthCost = Callable[[psycopg.Connection[Any], ProjectContext], tuple[float, float]]


@dataclass(frozen=True)
class Condition:
    subject: str
    message: str
    value: float | None = None
    occurrence: str | None = None  # a new occurrence (another missed slot) notifies again while firing


@dataclass
class Scope:
    conn: psycopg.Connection[Any]
    now: datetime
    ctx: ProjectContext
    month_cost: MonthCost | None = None
    notes: list[str] = field(default_factory=list)  # why a rule could not say (cost not measured)


def canonical(name: str) -> str:
    """One name for a pipeline or job whichever table names it: `pipeline:orders` and `orders`, `models` and
    `transform` are the same thing."""
    name = name.removeprefix(PIPELINE_JOB)
    return TRANSFORM if name == "models" else name


def wanted(names: list[str] | None, subject: str) -> bool:
    return names is None or canonical(subject) in {canonical(n) for n in names}


def ago(seconds: float) -> str:
    s = int(max(seconds, 0))
    if s < 120:
        return f"{s}s"
    d, rest = divmod(s, 86400)
    h, rest = divmod(rest, 3600)
    m = rest // 60
    parts = [f"{d}d" if d else "", f"{h}h" if h else "", f"{m}m" if m and not d else ""]
    return " ".join(p for p in parts if p)


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def _one_line(text: str | None, limit: int = 300) -> str:
    line = " ".join((text or "").split())
    return redact(line if len(line) <= limit else line[: limit - 1] + "…")


# ------------------------------------------------------------------ runs
#
# These run after every tick, and pgmill.runs and pgmill.expected_runs only grow: the latest runs of each
# pipeline are read through the (pipeline, started_at) index and the latest slots of each job through the
# (job, scheduled_for) key, one pipeline or job at a time (a loose index scan), never the whole table. One
# writer per pipeline means its runs finish in the order they start.

# the same job as a run: `pipeline:NAME` for pipeline NAME, `models` for the transform runs
_SAME_JOB = sql.SQL("e.job IN ('pipeline:' || r.pipeline, CASE WHEN r.pipeline = 'transform' THEN 'models' END)")
_JOB_SUBJECT = sql.SQL("CASE WHEN starts_with(e.job, 'pipeline:') THEN substr(e.job, 10)"
                       " WHEN e.job = 'models' THEN 'transform' ELSE e.job END")

_LATEST = sql.SQL("""
WITH RECURSIVE pipes AS (
    SELECT min(pipeline) AS name FROM pgmill.runs
    UNION ALL
    SELECT (SELECT min(pipeline) FROM pgmill.runs WHERE pipeline > pipes.name) FROM pipes WHERE pipes.name IS NOT NULL
), jobs AS (
    SELECT min(job) AS name FROM pgmill.expected_runs
    UNION ALL
    SELECT (SELECT min(job) FROM pgmill.expected_runs WHERE job > jobs.name) FROM jobs WHERE jobs.name IS NOT NULL
), r AS (
    SELECT r.* FROM pipes p CROSS JOIN LATERAL (
        SELECT run_id, pipeline, status, finished_at, error FROM pgmill.runs
        WHERE pipeline = p.name AND status <> 'running' AND finished_at IS NOT NULL
        ORDER BY started_at DESC LIMIT %(k)s) r
), e AS (
    SELECT e.*, EXISTS (SELECT 1 FROM pgmill.runs r WHERE r.run_id = e.run_id AND {same_job}) AS has_run
    FROM jobs j CROSS JOIN LATERAL (
        SELECT job, run_id, state, finished_at, error FROM pgmill.expected_runs
        WHERE job = j.name AND state IN ('succeeded', 'failed', 'timed_out')
        ORDER BY scheduled_for DESC LIMIT %(k)s) e
), outcomes AS (
    SELECT r.pipeline AS subject, r.finished_at AS at,
           r.status = 'succeeded' AND coalesce(e.state, '') NOT IN ('failed', 'timed_out') AS ok,
           CASE WHEN e.state = 'timed_out' THEN 'timed out' ELSE r.status END AS status,
           coalesce(r.error, e.error) AS error
    FROM r LEFT JOIN e ON e.run_id = r.run_id AND {same_job}
    UNION ALL
    SELECT {job_subject}, e.finished_at, e.state = 'succeeded', replace(e.state, '_', ' '), e.error
    FROM e WHERE NOT e.has_run
), ranked AS (
    SELECT o.*, row_number() OVER (PARTITION BY subject ORDER BY at DESC) AS n FROM outcomes o
)
""").format(same_job=_SAME_JOB, job_subject=_JOB_SUBJECT)


def run_failed(rule: RunFailed, scope: Scope) -> list[Condition]:
    rows = scope.conn.execute(_LATEST + sql.SQL("SELECT subject, at, status, error FROM ranked"
                                                " WHERE n = 1 AND NOT ok ORDER BY subject"), {"k": 1}).fetchall()
    return [Condition(s, f"{s}: the run that ended {stamp(at)} {status}: {_one_line(err) or 'no error recorded'}")
            for s, at, status, err in rows if wanted(rule.pipelines, s)]


def consecutive_failures(rule: ConsecutiveFailures, scope: Scope) -> list[Condition]:
    rows = scope.conn.execute(
        _LATEST + sql.SQL("SELECT subject, min(at), (array_agg(error ORDER BY at DESC))[1] FROM ranked"
                          " WHERE n <= %(k)s GROUP BY subject HAVING count(*) = %(k)s AND bool_and(NOT ok)"
                          " ORDER BY subject"), {"k": rule.count}).fetchall()
    return [Condition(s, f"{s}: the last {rule.count} runs failed (since {stamp(first)}); the latest: "
                         f"{_one_line(err) or 'no error recorded'}", float(rule.count))
            for s, first, err in rows if wanted(rule.pipelines, s)]


# a run and its slot finish within a day of each other: the bound lets both tables be read by finished_at
_WINDOW = sql.SQL("""
WITH rw AS (
    SELECT run_id, pipeline, status, finished_at FROM pgmill.runs
    WHERE finished_at > %(since)s - interval '1 day' AND status <> 'running'
), ew AS (
    SELECT job, run_id, state, finished_at FROM pgmill.expected_runs
    WHERE finished_at > %(since)s - interval '1 day' AND state IN ('succeeded', 'failed', 'timed_out')
)
SELECT subject, count(*), count(*) FILTER (WHERE ok) FROM (
    SELECT r.pipeline AS subject, r.status = 'succeeded' AND e.run_id IS NULL AS ok
    FROM rw r LEFT JOIN (SELECT DISTINCT job, run_id FROM ew WHERE state <> 'succeeded' AND run_id IS NOT NULL) e
         ON e.run_id = r.run_id AND {same_job}
    WHERE r.finished_at > %(since)s
    UNION ALL
    SELECT {job_subject}, e.state = 'succeeded'
    FROM ew e LEFT JOIN rw r ON r.run_id = e.run_id AND {same_job}
    WHERE e.finished_at > %(since)s AND r.run_id IS NULL
) o GROUP BY subject ORDER BY subject
""").format(same_job=_SAME_JOB, job_subject=_JOB_SUBJECT)


def success_rate(rule: SuccessRate, scope: Scope) -> list[Condition]:
    since = scope.now - timedelta(seconds=parse_duration(rule.window))
    out = []
    for s, total, ok in scope.conn.execute(_WINDOW, {"since": since}).fetchall():
        rate = 100.0 * ok / total
        if rate < rule.below and wanted(rule.pipelines, s):
            out.append(Condition(s, f"{s}: {rate:.2f}% of runs succeeded over the last {rule.window} "
                                    f"({ok} of {total}; objective {rule.below}%)", round(rate, 3)))
    return out


def latency(rule: ArrivalLatency, scope: Scope) -> list[Condition]:
    limit = parse_duration(rule.above)
    return [Condition(lat.pipeline, f"{lat.pipeline}: data took {lat.p95_s:g} s from arrival to queryable at p95 "
                                    f"over the last {rule.window} ({lat.counted()}, max {lat.max_s:g} s; limit "
                                    f"{rule.above})", lat.p95_s)
            for lat in arrival_latency(scope.conn, timedelta(seconds=parse_duration(rule.window)))
            if lat.p95_s > limit and wanted(rule.pipelines, lat.pipeline)]


# the re-snapshots of the window: steps of the runs going on or ended in it (indexes runs_running, runs_finished)
_RESNAPSHOTS = """
SELECT r.pipeline, s.name, s.finished_at, s.detail->>'reason', s.detail->>'stored_lsn', s.detail->'slot'->>'slot'
FROM pgmill.runs r JOIN pgmill.run_steps s USING (run_id)
WHERE (r.status = 'running' OR r.finished_at >= %(since)s) AND s.name LIKE 'resnapshot %%'
  AND s.finished_at >= %(since)s
ORDER BY r.pipeline, s.finished_at
"""

_CDC_WHAT_TO_DO = ("A stalled consumer fills the source's disk: keep the pipeline following (`pgmill run --follow`, "
                   "or `follow: true` under `pgmill serve`) or run it often; `pgmill cdc status` shows the slot; "
                   "`pgmill cdc drop {p}` removes it if the pipeline is retired (its next run loads a new snapshot)")


def cdc_slot(rule: CdcSlot, scope: Scope) -> list[Condition]:
    """From the slot's health each CDC loader stores in pgmill.state (observe/cdc_health.py) and the ledger's
    `resnapshot TABLE` steps: one condition per pipeline, naming everything wrong with its slot."""
    retained_limit = parse_size(rule.retained_above)
    lag_limit = None if rule.lag_above is None else parse_size(rule.lag_above)
    since = scope.now - timedelta(seconds=parse_duration(rule.window))
    found: dict[str, tuple[list[str], float | None]] = {}
    latest: dict[str, str] = {}  # a new re-snapshot notifies again while the alert fires
    for st in slot_states(scope.conn):
        if not wanted(rule.pipelines, st.pipeline):
            continue
        seen = f" (as seen {stamp(st.checked_at)})" if st.checked_at is not None else ""
        what: list[str] = []
        if st.lost:
            what.append(f"replication slot {st.slot} is lost{seen}: "
                        + ("it no longer exists on the source" if not st.exists else
                           "the source removed WAL it needed (wal_status lost; max_slot_wal_keep_size?)")
                        + "; the changes since cannot be streamed and the next run loads a new snapshot")
        if st.retained_bytes is not None and st.retained_bytes > retained_limit:
            what.append(f"replication slot {st.slot} holds {size(st.retained_bytes)} ({st.retained_bytes:,} bytes) "
                        f"of WAL on the source{seen}, above {rule.retained_above}")
        if lag_limit is not None and st.lag_bytes is not None and st.lag_bytes > lag_limit:
            what.append(f"replication slot {st.slot} is {size(st.lag_bytes)} ({st.lag_bytes:,} bytes) of WAL "
                        f"behind the source{seen}, above {rule.lag_above}")
        if what:
            found[st.pipeline] = (what, float(st.retained_bytes) if st.retained_bytes is not None else None)
    for p, name, at, reason, lsn, slot_name in scope.conn.execute(_RESNAPSHOTS, {"since": since}).fetchall():
        if not wanted(rule.pipelines, p):
            continue
        table = name.removeprefix("resnapshot ")
        found.setdefault(p, ([], None))[0].append(
            f"loaded a new snapshot of {table} at {stamp(at)}: "
            f"{_one_line(reason) or f'replication slot {slot_name} was lost'}"
            + (f" (the target had applied changes up to {lsn}; the snapshot replaced the table)" if lsn else ""))
        latest[p] = at.isoformat()
    return [Condition(p, f"{p}: " + "; ".join(what) + ". " + _CDC_WHAT_TO_DO.format(p=p), value,
                      occurrence=latest.get(p))
            for p, (what, value) in sorted(found.items())]


def quarantine_rate(rule: QuarantineRate, scope: Scope) -> list[Condition]:
    rows = scope.conn.execute(
        "WITH RECURSIVE pipes AS ("
        "  SELECT min(pipeline) AS name FROM pgmill.runs"
        "  UNION ALL"
        "  SELECT (SELECT min(pipeline) FROM pgmill.runs WHERE pipeline > pipes.name) FROM pipes"
        "  WHERE pipes.name IS NOT NULL)"
        " SELECT p.name, r.rows_read, r.rows_quarantined, r.finished_at FROM pipes p CROSS JOIN LATERAL ("
        "  SELECT rows_read, rows_quarantined, finished_at FROM pgmill.runs WHERE pipeline = p.name"
        "  AND status <> 'running' AND finished_at IS NOT NULL ORDER BY started_at DESC LIMIT 1) r"
        " WHERE p.name <> %s ORDER BY p.name", (TRANSFORM,)).fetchall()
    out = []
    for s, read, quarantined, at in rows:
        rate = 100.0 * quarantined / read if read else 0.0
        if rate > rule.above and wanted(rule.pipelines, s):
            out.append(Condition(s, f"{s}: the run that ended {stamp(at)} quarantined {rate:.1f}% of the rows it "
                                    f"read ({quarantined:,} of {read:,}; limit {rule.above}%)", round(rate, 3)))
    return out


def freshness(rule: Freshness, scope: Scope) -> list[Condition]:
    names = [n for n in scope.ctx.config.pipelines if wanted(rule.pipelines, n)]
    if not names:
        return []
    max_age = parse_duration(rule.max_age)
    rows = scope.conn.execute(
        "SELECT p.name, greatest(s.updated_at, r.finished_at) FROM unnest(%s::text[]) AS p(name)"
        " LEFT JOIN pgmill.state s ON s.pipeline = p.name"
        " LEFT JOIN LATERAL (SELECT finished_at FROM pgmill.runs WHERE pipeline = p.name AND status = 'succeeded'"
        "                    ORDER BY started_at DESC LIMIT 1) r ON true ORDER BY p.name", (names,)).fetchall()
    out = []
    for name, fresh in rows:
        if fresh is None:
            out.append(Condition(name, f"{name}: never loaded (max_age {rule.max_age})"))
            continue
        age = (scope.now - fresh).total_seconds()
        if age > max_age:
            out.append(Condition(name, f"{name}: last loaded {ago(age)} ago, at {stamp(fresh)} "
                                       f"(max_age {rule.max_age})", round(age, 1)))
    return out


# ------------------------------------------------------------------ schedules

def late_run(rule: LateRun, scope: Scope) -> list[Condition]:
    after = parse_duration(rule.after)
    rows = scope.conn.execute(
        "SELECT job, min(scheduled_for), count(*) FROM pgmill.expected_runs"
        " WHERE state = 'pending' AND scheduled_for < %s GROUP BY job ORDER BY job",
        (scope.now - timedelta(seconds=after),)).fetchall()
    out = []
    for job, first, n in rows:
        if wanted(rule.pipelines, job):
            late = (scope.now - first).total_seconds()
            more = f" ({n} slots waiting)" if n > 1 else ""
            out.append(Condition(job, f"{job}: the run due at {stamp(first)} has not started {ago(late)} later"
                                      f"{more}; is `pgmill serve` running?", round(late, 1)))
    return out


def missed_run(rule: MissedRun, scope: Scope) -> list[Condition]:
    since = scope.now - timedelta(seconds=parse_duration(rule.window))
    rows = scope.conn.execute(
        "SELECT job, (array_agg(scheduled_for ORDER BY scheduled_for DESC))[1],"
        " (array_agg(state ORDER BY scheduled_for DESC))[1], (array_agg(error ORDER BY scheduled_for DESC))[1],"
        " count(*) FROM pgmill.expected_runs WHERE state IN ('missed', 'skipped') AND finished_at > %s"
        " GROUP BY job ORDER BY job", (since,)).fetchall()
    out = []
    for job, slot, state, why, n in rows:
        if wanted(rule.pipelines, job):
            more = f" ({n} slots in the last {rule.window})" if n > 1 else ""
            out.append(Condition(job, f"{job}: the run due at {stamp(slot)} was {state}: {_one_line(why)}{more}",
                                 float(n), occurrence=slot.isoformat()))
    return out


# ------------------------------------------------------------------ quality and queries

def _table_key(table: str) -> str:
    return table if "." in table else f"public.{table}"


_VERDICT = {"fail": "failed", "error": "could not run", "warn": "warned"}


def quality_failed(rule: QualityFailed, scope: Scope) -> list[Condition]:
    states = ["fail", "error", "warn"] if rule.severity == "warn" else ["fail", "error"]
    tables = None if rule.pipelines is None else {
        _table_key(p.table) for n, p in scope.ctx.config.pipelines.items() if wanted(rule.pipelines, n)}
    rows = scope.conn.execute(
        "WITH RECURSIVE t AS ("
        "  SELECT min(table_name) AS name FROM pgmill.quality_results"
        "  UNION ALL"
        "  SELECT (SELECT min(table_name) FROM pgmill.quality_results WHERE table_name > t.name) FROM t"
        "  WHERE t.name IS NOT NULL)"
        " SELECT q.table_name, q.rule, q.status, q.message, q.pass_rate FROM t"
        " CROSS JOIN LATERAL (SELECT run_id FROM pgmill.quality_results WHERE table_name = t.name"
        "                     ORDER BY run_id DESC LIMIT 1) l"
        " JOIN pgmill.quality_results q ON q.table_name = t.name AND q.run_id = l.run_id"
        " WHERE q.status = ANY(%s) ORDER BY q.table_name, q.rule", (states,)).fetchall()
    return [Condition(f"{table}/{name}", f"{table}: check {name} {_VERDICT[status]}"
                                         f" ({float(rate):g}% pass): {_one_line(msg)}", float(rate))
            for table, name, status, msg, rate in rows
            if tables is None or _table_key(table) in tables]


_P95 = """
WITH m AS (
    SELECT t.run_id, a.key AS query, (a.value->>'p95_ms')::float8 AS p95
    FROM pgmill.tuning_runs t, jsonb_each(t.report->'applied'->'after') a
    WHERE t.status = 'succeeded' AND jsonb_typeof(t.report->'applied'->'after') = 'object'
), d AS (
    SELECT DISTINCT ON (q->>'name') q->>'name' AS query, (q->>'target_ms')::float8 AS target_ms,
           q->>'source' AS source
    FROM pgmill.tuning_runs t, jsonb_array_elements(t.report->'queries') q
    WHERE t.status = 'succeeded' AND jsonb_typeof(t.report->'queries') = 'array'
    ORDER BY q->>'name', t.run_id DESC
)
SELECT m.query, (array_agg(m.p95 ORDER BY m.run_id DESC))[1], (array_agg(m.p95 ORDER BY m.run_id))[1],
       d.target_ms
FROM m JOIN d ON d.query = m.query AND d.source = 'declared'
GROUP BY m.query, d.target_ms ORDER BY m.query
"""


def query_p95(rule: QueryP95, scope: Scope) -> list[Condition]:
    """The latest measured p95 of each declared query (pgmill.tuning_runs reports, `applied.after`) against
    its target and against its baseline, the first measurement pgmill made after tuning it."""
    out = []
    for name, p95, baseline, target in scope.conn.execute(_P95).fetchall():
        if p95 is None:
            continue
        if target is not None and p95 > target:
            out.append(Condition(name, f"query {name}: p95 {p95:.1f} ms is above its target {target:g} ms", p95))
        elif baseline and p95 - baseline >= rule.min_ms and p95 > baseline * (1 + rule.regression / 100):
            slower = 100.0 * (p95 - baseline) / baseline
            out.append(Condition(name, f"query {name}: p95 {p95:.1f} ms is {slower:.0f}% slower than its baseline "
                                       f"{baseline:.1f} ms (limit {rule.regression:g}%)", p95))
    return out


# ------------------------------------------------------------------ cost

def cost_over_budget(rule: CostOverBudget, scope: Scope) -> list[Condition]:
    budget = scope.ctx.config.cost.budget.month
    label = rule.name or rule.kind
    if budget is None:
        scope.notes.append(f"{label}: no monthly budget (cost.budget.month): the rule does not fire")
        return []
    if scope.month_cost is None:
        scope.notes.append(f"{label}: cost is not measured here: the rule does not fire")
        return []
    to_date, projected = scope.month_cost(scope.conn, scope.ctx)
    spent = projected if rule.projected else to_date
    if spent <= budget:
        return []
    what = "projected for the month" if rule.projected else "spent this month so far"
    return [Condition("budget", f"${spent:,.2f} {what}, over the budget of ${budget:,.2f}", round(spent, 2))]


ConditionFn = Callable[[Any, Scope], list[Condition]]

CONDITIONS: dict[str, ConditionFn] = {
    "run_failed": run_failed,
    "consecutive_failures": consecutive_failures,
    "late_run": late_run,
    "missed_run": missed_run,
    "freshness": freshness,
    "quality_failed": quality_failed,
    "quarantine_rate": quarantine_rate,
    "query_p95": query_p95,
    "success_rate": success_rate,
    "latency": latency,
    "cdc_slot": cdc_slot,
    "cost_over_budget": cost_over_budget,
}
