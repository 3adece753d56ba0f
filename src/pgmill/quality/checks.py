"""Table checks inside Postgres: `run_checks(ctx)` checks the tables of a project and records every result.

Per table, all built-in rules cost at most two reads of the table, taken in one read-only snapshot:

1. one aggregate scan: row count, completeness of every column, not-null, accepted values, ranges,
   foreign keys (as a folded anti-join) and freshness (scan.py);
2. one GROUP BY scan with GROUPING SETS: every unique key and whole-row duplicates (groups.py), skipped
   for keys a unique index already guarantees.

Row count and volume come from the first scan and the table's history (history.py); custom SQL runs the
user's query (sql_checks.py); near-duplicates read the chosen columns once more (duplicates.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import psycopg

from pgmill.config.load import load_contract
from pgmill.config.spec import Contract
from pgmill.db.catalog import table_key
from pgmill.db.settings import set_local
from pgmill.errors import ConfigError, TransientError
from pgmill.project import ProjectContext
from pgmill.quality.duplicates import near_duplicates
from pgmill.quality.groups import compile_groups, run_groups
from pgmill.quality.history import new_run_id, row_count_result, volume_result, write_results
from pgmill.quality.results import CheckReport, RuleResult, TableResult, broken
from pgmill.quality.rules import GROUP_KINDS, SCAN_KINDS, Rule, flatten
from pgmill.quality.scan import compile_aggregate, read_aggregate
from pgmill.quality.schema import ensure_quality_schema
from pgmill.quality.sql_checks import custom_sql
from pgmill.quality.table_info import TableInfo, table_info
from pgmill.retry import RetryPolicy, is_transient, reported

#: work_mem of the check transaction (only); one check query runs at a time per connection
WORK_MEM = "64MB"
#: also for the check transaction only: a check is one big read at a time, so its scans may use the idle
#: cores; with the server's defaults the GROUP BY scan ran on one (5M rows: 15.3 s alone, 12.2 s parallel)
PARALLEL = {"parallel_setup_cost": "0", "parallel_tuple_cost": "0.001"}

__all__ = ["CheckReport", "CheckTarget", "check_table", "project_targets", "run_checks"]


@dataclass(frozen=True)
class CheckTarget:
    """A table and the contract whose `checks:` apply to it (a pipeline's target, or a model)."""

    table: str
    contract: Contract
    cursor: str | None = None  # the default freshness column
    name: str = ""  # the pipeline or model it comes from


def project_targets(ctx: ProjectContext) -> list[CheckTarget]:
    """Every pipeline's table with its contract, in the order of pgmill.yaml."""
    out = []
    for name, p in ctx.config.pipelines.items():
        out.append(CheckTarget(table_key(p.table), load_contract(ctx.dir, p.contract), p.cursor, name))
    return out


def _select(targets: Sequence[CheckTarget], names: Iterable[str] | None) -> list[CheckTarget]:
    if not names:
        return list(targets)
    chosen: list[CheckTarget] = []
    for want in names:
        hits = [t for t in targets if want in (t.table, t.name, t.table.split(".", 1)[1])]
        if not hits:
            known = ", ".join(t.table for t in targets) or "none: the project has no pipelines"
            raise ConfigError(f"no table or pipeline named {want!r} to check (tables: {known})")
        chosen += [h for h in hits if h not in chosen]
    return chosen


def run_checks(ctx: ProjectContext, tables: Iterable[str] | None = None, *,
               extra: Sequence[CheckTarget] = ()) -> CheckReport:
    """Check `tables` (names, schema.names or pipeline names; default: every pipeline's table, plus `extra`
    such as models), write every result to pgmill.quality_results, and return the report (`.ok` is false
    when an error-severity rule failed; `.raise_for_failures()` turns that into QualityCheckFailed).
    Each table's check and the writing of its results are retried together on a transient failure."""
    targets = _select([*project_targets(ctx), *extra], tables)
    policy = RetryPolicy.of(ctx.config.retry)
    session = _Session(ctx)
    try:
        with reported():
            run_id = policy.call(lambda: _start(session.get()))
            done = [policy.call(partial(_check_and_write, session, run_id, t)) for t in targets]
    finally:
        session.close()
    return CheckReport(run_id, done)


class _Session:
    """The check connection, opened again when a fault broke it."""

    def __init__(self, ctx: ProjectContext) -> None:
        self.ctx = ctx
        self.conn: psycopg.Connection[Any] | None = None

    def get(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.close()
            self.conn = self.ctx.target.connect(autocommit=True, application_name="pgmill check")
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None


def _start(conn: psycopg.Connection[Any]) -> int:
    ensure_quality_schema(conn)
    return new_run_id(conn)


def _check_and_write(session: _Session, run_id: int, target: CheckTarget) -> TableResult:
    conn = session.get()
    result = check_table(conn, target)
    if conn.closed or conn.broken:
        # a rule that guards its own query may have turned the lost connection into an 'error' result
        raise TransientError(f"checking {target.table}: the connection to the database was lost")
    with conn.transaction():
        # this table's results of an attempt whose commit was lost in transit: not twice
        conn.execute("DELETE FROM pgmill.quality_results WHERE run_id = %s AND table_name = ANY(%s)",
                     (run_id, sorted({r.table for r in result.results})))
        write_results(conn, run_id, result.results)
    return result


def check_table(conn: psycopg.Connection[Any], target: CheckTarget) -> TableResult:
    """Every rule of the target's contract on its table (an autocommit connection; results not written)."""
    checks = target.contract.checks
    rules = flatten(checks, target.cursor)
    info = table_info(conn, target.table)
    if info is None:
        table_rule = Rule("table", "table", (), 100.0, checks.severity)
        return TableResult(target.table, 0, [broken(target.table, table_rule, f"table {target.table} does not exist")])
    key = tuple(checks.sample_key or target.contract.primary_key)
    info.sample_key = tuple(c for c in key if c in info.columns)
    results: dict[int, RuleResult] = {}
    runnable: list[tuple[int, Rule]] = []
    for i, rule in enumerate(rules):
        problem = _problem(info, rule)
        if problem:
            results[i] = broken(info.name, rule, problem)
        else:
            runnable.append((i, rule))
    with conn.transaction():
        # one snapshot for every scan: the rules see the same rows, and custom SQL cannot write
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        # the GROUP BY scan hashes every key of the table: room in memory instead of spilling batches to disk
        set_local(conn, {"work_mem": WORK_MEM, **PARALLEL})
        n, profile, found = _aggregate(conn, info, [r for _, r in runnable if r.kind in SCAN_KINDS])
        group_rules = [r for _, r in runnable if r.kind in GROUP_KINDS]
        if group_rules:
            found += _guarded(conn, info, group_rules, lambda: run_groups(conn, info, compile_groups(info, group_rules), n))
        for _, rule in runnable:
            if rule.kind == "sql":
                found.append(custom_sql(conn, info.name, rule, n))
    by_name = {(r.kind, r.rule): r for r in found}
    for i, rule in runnable:
        if (rule.kind, rule.name) in by_name:
            results[i] = by_name[(rule.kind, rule.name)]
        elif rule.kind == "row_count":
            results[i] = row_count_result(info.name, rule, n, profile)
        elif rule.kind == "volume":
            results[i] = volume_result(conn, info.name, rule, n)
        elif rule.kind == "near_duplicates":
            results[i] = near_duplicates(conn, info, rule, n)
    return TableResult(info.name, n, [results[i] for i in sorted(results)])


def _problem(info: TableInfo, rule: Rule) -> str | None:
    if rule.kind == "freshness" and not rule.columns:
        return "freshness needs a column: set checks.freshness.column (the pipeline has no cursor)"
    return info.missing(rule.columns)


def _aggregate(conn: psycopg.Connection[Any], info: TableInfo,
               rules: list[Rule]) -> tuple[int, dict[str, int], list[RuleResult]]:
    """The one aggregate scan; if Postgres refuses it (a value that does not fit its column's type, say),
    each rule runs alone so that only the broken one fails, and by name."""
    try:
        with conn.transaction():
            scan = compile_aggregate(conn, info, rules)
            row = conn.execute(scan.query).fetchone()
        assert row is not None
        return read_aggregate(info.name, scan, row)
    except psycopg.Error as exc:
        if not rules or is_transient(exc):
            raise
    base = compile_aggregate(conn, info, [])
    row = conn.execute(base.query).fetchone()
    assert row is not None
    n, profile, _ = read_aggregate(info.name, base, row)
    out: list[RuleResult] = []
    for rule in rules:
        out += _guarded(conn, info, [rule], partial(_alone, conn, info, rule))
    return n, profile, out


def _alone(conn: psycopg.Connection[Any], info: TableInfo, rule: Rule) -> list[RuleResult]:
    scan = compile_aggregate(conn, info, [rule])
    row = conn.execute(scan.query).fetchone()
    assert row is not None
    return read_aggregate(info.name, scan, row)[2]


def _guarded(conn: psycopg.Connection[Any], info: TableInfo, rules: list[Rule],
             fn: Callable[[], list[RuleResult]]) -> list[RuleResult]:
    """Run `fn` under a savepoint; if Postgres refuses it, every rule of it becomes an 'error' result."""
    try:
        with conn.transaction():
            return fn()
    except psycopg.Error as exc:
        if is_transient(exc):  # a lost connection is no verdict on the rules: the check is retried
            raise
        msg = str(exc).strip().splitlines()[0]
        return [broken(info.name, r, f"Postgres refused the check: {msg}") for r in rules]
