"""Applying recommendations with proof: build concurrently, measure before and after, keep what helped.

An index is kept only when a query whose plan reads it got measurably faster and none that reads it got
measurably slower; one that speeds a query and slows another is dropped and reported as a trade. When the
advisor names a much smaller alternative (fewer keys, no INCLUDE columns), its extra width must pay too:
the lean index is built in its place and measured, and the wide one comes back only if the lean one is
measurably slower (the same rule: p95 more than 10% and 5 ms higher) or no longer faster than before.
Every step lands in pgmill.index_actions, so a run can be rolled back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from pgmill.retry import RetryPolicy
from pgmill.tune import partitioned, store
from pgmill.tune.advisor import Advice, Recommendation
from pgmill.tune.candidates import Candidate
from pgmill.tune.measure import Latency, as_fast, improved, measure, regressed
from pgmill.tune.whatif import COST_SAMPLES, explain_json, plan_indexes
from pgmill.tune.workload import WorkloadQuery

Connect = Callable[[], psycopg.Connection[Any]]
# DROP INDEX CONCURRENTLY waits for every transaction that may read the index; when one holds it longer
# than lock_timeout, give way and try again (about 15 s at worst before it is left to the next tune)
_DROP = RetryPolicy(attempts=8, initial_s=0.25, max_s=4.0)
_LOCK_WAIT = (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled)


@dataclass
class Outcome:
    """What became of one recommended index."""

    name: str
    label: str
    table: str
    definition: str
    status: str  # kept | dropped | trade | failed
    reason: str
    size_bytes: int | None = None
    used_by: list[str] = field(default_factory=list)
    improved: list[str] = field(default_factory=list)
    slowed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Applied:
    before: dict[str, Latency]
    after: dict[str, Latency]
    outcomes: list[Outcome]
    invalid_dropped: list[str]
    slower: list[str]  # queries still measurably slower at the end (should stay empty)

    def as_dict(self) -> dict[str, Any]:
        return {
            "before": {k: v.as_dict() for k, v in self.before.items()},
            "after": {k: v.as_dict() for k, v in self.after.items()},
            "outcomes": [o.as_dict() for o in self.outcomes],
            "invalid_dropped": self.invalid_dropped, "slower": self.slower,
        }


def _set_lock_timeout(conn: psycopg.Connection[Any], lock_timeout: str) -> None:
    conn.execute("SELECT set_config('lock_timeout', %s, false)", (lock_timeout,))


def _invalid(conn: psycopg.Connection[Any], schema: str, name: str) -> bool:
    row = conn.execute(
        "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        (schema, name)).fetchone()
    return bool(row and row[0])


def drop_index(conn: psycopg.Connection[Any], schema: str, name: str, lock_timeout: str) -> bool:
    """DROP INDEX CONCURRENTLY (a partitioned table's index: DROP INDEX, which PostgreSQL cannot do
    concurrently; its partitions' indexes go with it), retried with backoff when a lock is not granted in
    time; False if it never was."""
    _set_lock_timeout(conn, lock_timeout)
    concurrently = sql.SQL("") if partitioned.relkind(conn, schema, name) == "I" else sql.SQL("CONCURRENTLY ")
    drop = sql.SQL("DROP INDEX {}IF EXISTS {}.{}").format(concurrently, sql.Identifier(schema),
                                                          sql.Identifier(name))
    try:
        _DROP.call(lambda: conn.execute(drop), retry_if=lambda exc: isinstance(exc, _LOCK_WAIT))
    except _LOCK_WAIT:
        return False
    return True


def create_index(conn: psycopg.Connection[Any], rec: Recommendation, lock_timeout: str) -> str | None:
    """CREATE INDEX CONCURRENTLY (on a partitioned table: ON ONLY, CONCURRENTLY per partition, ATTACH); on
    failure drop what it left. Returns the error, or None."""
    c = rec.candidate
    _set_lock_timeout(conn, lock_timeout)
    if partitioned.relkind(conn, c.schema, c.table) == "p":
        return _create_partitioned(conn, c, lock_timeout)
    try:
        conn.execute(c.ddl(concurrently=True))
        return None
    except psycopg.Error as exc:
        message = str(exc).strip().splitlines()[0]
    if _invalid(conn, c.schema, c.name) and not drop_index(conn, c.schema, c.name, lock_timeout):
        return f"{message}; the INVALID index it left could not be dropped yet (the next tune drops it)"
    return message


def _create_partitioned(conn: psycopg.Connection[Any], c: Candidate, lock_timeout: str) -> str | None:
    built: list[tuple[str, str]] = []
    try:
        partitioned.build(conn, c, built)
        return None
    except psycopg.Error as exc:
        message = str(exc).strip().splitlines()[0]
    # the parent's index first: the partition indexes attached to it go with it, the rest one by one
    left = [f"{s}.{n}" for s, n in built if not drop_index(conn, s, n, lock_timeout)]
    if left:
        return f"{message}; {', '.join(left)} could not be dropped yet (the next tune drops them)"
    return message


def drop_invalid_leftovers(conn: psycopg.Connection[Any], run_id: int, lock_timeout: str) -> list[str]:
    """INVALID indexes that an earlier interrupted pgmill build left behind, and a partition's pgmill index
    that was built but never attached to its parent's. Partitioned indexes go first (with what they hold)."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname, t.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relname LIKE 'pgmill\\_%%' AND (NOT i.indisvalid OR (t.relispartition AND NOT c.relispartition))"
        " ORDER BY c.relkind <> 'I', 1, 2").fetchall()
    dropped = []
    for schema, name, table in rows:
        if drop_index(conn, schema, name, lock_timeout):
            store.record(conn, run_id, "drop_invalid", schema, name, f"{schema}.{table}",
                         reason="INVALID index left by an interrupted build")
            dropped.append(f"{schema}.{name}")
    return dropped


def plan_users(conn: psycopg.Connection[Any], queries: list[WorkloadQuery]) -> dict[str, set[str]]:
    """Index name -> the queries whose plan (for any of a few parameter sets) reads it. A plan reads a
    partitioned table's index through its partitions' indexes: those count for the parent's index."""
    users: dict[str, set[str]] = {}
    for q in queries:
        if not q.runnable:
            continue
        sets = q.param_sets()
        for i in range(min(COST_SAMPLES, len(sets))):
            for name in plan_indexes(explain_json(conn, q, sets[(i * len(sets)) // COST_SAMPLES])):
                users.setdefault(name, set()).add(q.name)
    roots = partitioned.root_names(conn, set(users))
    merged: dict[str, set[str]] = {}
    for name, qs in users.items():
        merged.setdefault(roots[name], set()).update(qs)
    return merged


def _confirmed_slower(conn: psycopg.Connection[Any], q: WorkloadQuery, before: Latency,
                      after: dict[str, Latency], executions: int) -> bool:
    """A regression is acted on only if a second measurement shows it too (a noisy neighbour is not one)."""
    if not regressed(before, after[q.name]):
        return False
    again = measure(conn, [q], executions)[q.name]
    after[q.name] = again
    return regressed(before, again)


def apply_advice(connect: Connect, advice: Advice, run_id: int, *, executions: int, lock_timeout: str,
                 before: dict[str, Latency] | None = None) -> Applied:
    """Create the recommended indexes, measure, keep the ones that proved themselves, drop the rest.
    `before`: the workload's latencies as it stands, when just measured (a refill pass); else measured here."""
    queries = [q for q in advice.workload if q.runnable]
    by_name = {q.name: q for q in queries}
    recs = {r.name: r for r in advice.recommendations}
    unrunnable = {q.name for q in advice.workload if not q.runnable}
    with connect() as ddl, connect() as mconn:
        invalid = drop_invalid_leftovers(ddl, run_id, lock_timeout)
        if before is None or any(q.name not in before for q in queries):
            before = measure(mconn, queries, executions)
        outcomes: list[Outcome] = []
        live: list[Outcome] = []
        for rec in advice.recommendations:
            o = Outcome(rec.name, rec.label, rec.table, rec.definition, "kept", "")
            error = create_index(ddl, rec, lock_timeout)
            if error is not None:
                o.status, o.reason = "failed", error
                store.record(ddl, run_id, "failed", rec.candidate.schema, rec.name, rec.table,
                             definition=rec.definition, reason=error)
            else:
                o.size_bytes = partitioned.index_bytes(ddl, rec.candidate.schema, rec.name)
                store.record(ddl, run_id, "create", rec.candidate.schema, rec.name, rec.table,
                             definition=rec.definition, size=o.size_bytes, reason="recommended",
                             detail={"queries": rec.queries})
                live.append(o)
            outcomes.append(o)
        for table in sorted({o.table for o in live}):
            schema, name = table.split(".", 1)
            ddl.execute(sql.SQL("ANALYZE {}.{}").format(sql.Identifier(schema), sql.Identifier(name)))
        after = measure(mconn, queries, executions) if live else dict(before)
        for _round in range(3):
            users = plan_users(mconn, queries)
            dropped = False
            for o in list(live):
                used = sorted(users.get(o.name, set()))
                o.used_by = used
                o.improved = [q for q in used if improved(before[q], after[q])]
                o.slowed = [q for q in used if _confirmed_slower(mconn, by_name[q], before[q], after, executions)]
                verdict = _verdict(o, [q for q in recs[o.name].queries if q in unrunnable])
                if verdict is None:
                    continue
                o.status, o.reason = verdict
                _drop(ddl, run_id, o, "trade" if o.status == "trade" else "drop", lock_timeout,
                      {"improved": o.improved, "slowed": o.slowed})
                live.remove(o)
                dropped = True
            if not dropped:
                break
            after = measure(mconn, queries, executions)
        for o in list(live):
            rec = recs[o.name]
            if rec.lean is not None and o.improved:
                lean = _try_lean(ddl, mconn, run_id, rec, o, before, after, by_name, executions, lock_timeout)
                outcomes.insert(outcomes.index(o) + 1, lean)
                if lean.status == "kept":
                    live[live.index(o)] = lean
        if advice.budget_bytes is not None and _fit_budget(ddl, run_id, live, before, after, by_name,
                                                           advice.budget_bytes, lock_timeout):
            after = measure(mconn, queries, executions)
            for o in live:
                o.improved = [q for q in o.used_by if improved(before[q], after[q])]
        for o in live:
            o.reason = "faster: " + ", ".join(o.improved) + (f"; {o.reason}" if o.reason else "")
            store.record(ddl, run_id, "keep", o.table.split(".", 1)[0], o.name, o.table, definition=o.definition,
                         size=o.size_bytes, reason=o.reason, detail={"improved": o.improved})
        slower = [q for q in sorted(after) if regressed(before[q], after[q])]
    return Applied(before, after, outcomes, invalid, slower)


def _fit_budget(ddl: psycopg.Connection[Any], run_id: int, live: list[Outcome], before: dict[str, Latency],
                after: dict[str, Latency], by_name: dict[str, WorkloadQuery], budget: int, lock_timeout: str) -> bool:
    """The budget holds for the indexes as built, not only as estimated: while the kept indexes' real size is
    over it, drop the one with the least measured gain per byte (p95 saved on the queries it made faster,
    weighted as the workload weighs them, shared among the kept indexes that made the same query faster).
    True if any was dropped."""
    dropped = False
    while live and (total := sum(o.size_bytes or 0 for o in live)) > budget:
        def gain_per_byte(o: Outcome) -> float:
            gain = 0.0
            for q in o.improved:
                sharers = sum(1 for x in live if q in x.improved)
                gain += max(before[q].p95_ms - after[q].p95_ms, 0.0) * by_name[q].weight / sharers
            return gain / (o.size_bytes or 1)

        victim = min(live, key=gain_per_byte)
        victim.status = "dropped"
        victim.reason = (f"over the storage budget as built ({total / 2**20:,.1f} MiB kept against "
                         f"{budget / 2**20:,.1f} MiB): the least measured gain per byte")
        _drop(ddl, run_id, victim, "drop", lock_timeout, {"improved": victim.improved})
        live.remove(victim)
        dropped = True
    return dropped


def _drop(ddl: psycopg.Connection[Any], run_id: int, o: Outcome, action: str, lock_timeout: str,
          detail: dict[str, Any]) -> None:
    """Drop a built index that is not kept, and record why (`o.reason`) as `action`."""
    schema = o.table.split(".", 1)[0]
    drop_index(ddl, schema, o.name, lock_timeout)
    store.record(ddl, run_id, action, schema, o.name, o.table, definition=o.definition, size=o.size_bytes,
                 reason=o.reason, detail=detail)


def _lean_rec(rec: Recommendation, lean: Candidate) -> Recommendation:
    return Recommendation(lean.name, rec.table, lean.text(), lean.label(), rec.lean_size_bytes or 0, rec.queries,
                          rec.cost_before, {}, lean)


def _try_lean(ddl: psycopg.Connection[Any], mconn: psycopg.Connection[Any], run_id: int, rec: Recommendation,
              wide: Outcome, before: dict[str, Latency], after: dict[str, Latency],
              by_name: dict[str, WorkloadQuery], executions: int, lock_timeout: str) -> Outcome:
    """Swap the kept index `wide` for its lean alternative and measure the queries that read it. Keep the
    lean one (and update `after` and `wide`) unless it is measurably slower than `wide` or no longer
    faster than no index; otherwise build `wide` again. Returns the lean index's outcome."""
    assert rec.lean is not None
    lrec = _lean_rec(rec, rec.lean)
    schema = rec.candidate.schema
    o = Outcome(lrec.name, lrec.label, lrec.table, lrec.definition, "kept", "")
    error = create_index(ddl, lrec, lock_timeout)
    if error is not None:
        o.status, o.reason = "failed", error
        store.record(ddl, run_id, "failed", schema, o.name, o.table, definition=o.definition, reason=error)
        return o
    o.size_bytes = partitioned.index_bytes(ddl, schema, o.name)
    store.record(ddl, run_id, "create", schema, o.name, o.table, definition=o.definition, size=o.size_bytes,
                 reason=f"leaner alternative to {wide.name}: measured in its place")
    drop_index(ddl, schema, wide.name, lock_timeout)
    store.record(ddl, run_id, "drop", schema, wide.name, wide.table, definition=wide.definition,
                 size=wide.size_bytes, reason=f"measuring its leaner alternative {o.name} in its place")
    users = [by_name[q] for q in wide.used_by if q in by_name]
    trial = measure(mconn, users, executions)
    plans = plan_users(mconn, users)
    o.used_by = sorted(plans.get(o.name, set()))
    o.improved = [q for q in o.used_by if improved(before[q], trial[q])]
    o.slowed = [q for q in trial if not as_fast(after[q], trial[q]) or regressed(before[q], trial[q])]
    lost = [q for q in wide.improved if q not in o.improved]
    if not o.slowed and not lost:
        after.update(trial)
        o.reason = f"leaner than {wide.label}, measured as fast"
        wide.status = "dropped"
        wide.reason = f"replaced by the leaner {o.label}: its extra width measured no faster"
        return o
    why = f"slower than {wide.label}: {', '.join(o.slowed)}" if o.slowed else \
        f"no longer faster: {', '.join(lost)}"
    error = create_index(ddl, rec, lock_timeout)
    if error is None:
        store.record(ddl, run_id, "create", schema, wide.name, wide.table, definition=wide.definition,
                     size=wide.size_bytes, reason=f"its leaner alternative measured {why}")
    else:
        wide.status, wide.reason = "dropped", f"could not be built again after measuring {o.label}: {error}"
        if not any(regressed(before[q], trial[q]) for q in trial):  # the lean one still beats no index
            after.update(trial)
            o.reason = f"kept instead of {wide.label}, which could not be built again"
            return o
    drop_index(ddl, schema, o.name, lock_timeout)
    o.status, o.reason = "dropped", f"measured {why}"
    store.record(ddl, run_id, "drop", schema, o.name, o.table, definition=o.definition, size=o.size_bytes,
                 reason=o.reason, detail={"slowed": o.slowed, "lost": lost})
    return o


def _verdict(o: Outcome, unmeasured: list[str]) -> tuple[str, str] | None:
    """None to keep the index; else (status, reason) for dropping it. `unmeasured`: the statements the
    advisor chose it for that pgmill cannot run (parameters it cannot fill)."""
    if not o.used_by and unmeasured:
        return "dropped", (f"read only by statements pgmill cannot run ({', '.join(unmeasured)}: parameters it "
                           "cannot fill), so its benefit could not be measured; declare them to tune them")
    if not o.used_by:
        return "dropped", "no workload query's plan reads it"
    if o.slowed and o.improved:
        return "trade", (f"speeds {', '.join(o.improved)} but slows {', '.join(o.slowed)}: "
                         "not applied on its own; create it by hand if the trade is worth it")
    if o.slowed:
        return "dropped", f"slowed {', '.join(o.slowed)}"
    if not o.improved:
        return "dropped", "measured latency did not improve"
    return None


def rollback(connect: Connect, run_id: int, target_run: int, lock_timeout: str) -> list[str]:
    """Drop the indexes `target_run` kept (newest first); the previous index set is back."""
    with connect() as conn:
        rows = conn.execute(
            "SELECT schema_name, index_name, table_name, definition FROM pgmill.index_actions"
            " WHERE run_id = %s AND action = 'keep' ORDER BY action_id DESC", (target_run,)).fetchall()
        done = []
        for schema, name, table, definition in rows:
            if drop_index(conn, schema, name, lock_timeout):
                store.record(conn, run_id, "rollback_drop", schema, name, table, definition=definition,
                             reason=f"rollback of tuning run {target_run}")
                done.append(f"{schema}.{name}")
        with conn.transaction():
            conn.execute("UPDATE pgmill.tuning_runs SET rolled_back_by = %s WHERE run_id = %s", (run_id, target_run))
    return done
