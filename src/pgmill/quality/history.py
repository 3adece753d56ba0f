"""The history of checks in pgmill.quality_results: writing a run, row-count and volume rules, trends."""

from __future__ import annotations

import statistics
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pgmill.quality.results import RuleResult, verdict
from pgmill.quality.rules import Rule

#: a change within this share of the usual change is never flagged: a perfectly regular history has a MAD
#: of zero, and one row more than usual is not an anomaly
MIN_RELATIVE_BAND = 0.10
#: MAD -> standard deviation of a normal distribution, so `k` reads like "k sigmas"
MAD_SCALE = 1.4826


def new_run_id(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT nextval('pgmill.quality_run_id')").fetchone()
    assert row is not None
    return int(row[0])


def row_count_result(table: str, rule: Rule, n: int, profile: dict[str, int]) -> RuleResult:
    """The table's size, recorded on every run (volume history is made of these), bounded if asked."""
    lo, hi = rule.params.get("min"), rule.params.get("max")
    ok = (lo is None or n >= lo) and (hi is None or n <= hi)
    bounds = " and ".join(x for x in (f"at least {lo:,}" if lo is not None else "",
                                      f"at most {hi:,}" if hi is not None else "") if x)
    msg = f"{n:,} rows" + (f"; expected {bounds}" if bounds else "")
    return verdict(table, rule, ok, msg, value=float(n), detail={"non_null": list(profile.items())})


def past_counts(conn: psycopg.Connection[Any], table: str, limit: int) -> list[int]:
    """Row counts of the last `limit` checks of `table`, oldest first."""
    rows = conn.execute(
        "SELECT value FROM pgmill.quality_results WHERE table_name = %s AND kind = 'row_count'"
        " AND value IS NOT NULL ORDER BY run_id DESC LIMIT %s",
        (table, limit),
    ).fetchall()
    return [int(r[0]) for r in reversed(rows)]


def volume_result(conn: psycopg.Connection[Any], table: str, rule: Rule, n: int) -> RuleResult:
    """Rows added since the last check against median +- k*MAD of the rows added between the last checks."""
    runs, k, min_runs = int(rule.params["runs"]), float(rule.params["k"]), int(rule.params["min_runs"])
    counts = past_counts(conn, table, runs + 1)
    deltas = [b - a for a, b in zip(counts, counts[1:], strict=False)]
    if not counts or len(deltas) < min_runs:
        r = verdict(table, rule, True, f"learning the usual volume: {len(deltas)} of {min_runs} past changes seen")
        r.status = "skipped"
        return r
    change = n - counts[-1]
    med = statistics.median(deltas)
    mad = statistics.median(abs(d - med) for d in deltas)
    half = max(k * MAD_SCALE * mad, MIN_RELATIVE_BAND * abs(med), 1.0)
    lo, hi = med - half, med + half
    ok = lo <= change <= hi
    msg = (f"{change:+,} rows since the last check; usual {lo:+,.0f} to {hi:+,.0f} "
           f"(median {med:+,.0f}, MAD {mad:,.0f}, last {len(deltas)} changes)")
    return verdict(table, rule, ok, msg, value=float(change),
                   detail={"median": med, "mad": mad, "low": lo, "high": hi, "changes": deltas})


_INSERT = (
    "INSERT INTO pgmill.quality_results (run_id, table_name, rule, kind, columns, rows_checked, rows_failed,"
    " pass_rate, threshold, severity, status, value, message, sample, detail)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def write_results(conn: psycopg.Connection[Any], run_id: int, results: list[RuleResult]) -> None:
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(_INSERT, [
            (run_id, r.table, r.rule, r.kind, list(r.columns), r.rows_checked, r.rows_failed, r.pass_rate,
             r.threshold, r.severity, r.status, r.value, r.message, Jsonb(r.sample),
             Jsonb(r.detail) if r.detail is not None else None)
            for r in results
        ])


def latest_run(conn: psycopg.Connection[Any], table: str) -> list[dict[str, Any]]:
    """Every result of the latest check run of `table`."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT * FROM pgmill.quality_results WHERE table_name = %s AND run_id ="
            " (SELECT max(run_id) FROM pgmill.quality_results WHERE table_name = %s) ORDER BY id",
            (table, table),
        )
        return cur.fetchall()


def checked_tables(conn: psycopg.Connection[Any]) -> list[str]:
    return [str(r[0]) for r in conn.execute(
        "SELECT DISTINCT table_name FROM pgmill.quality_results ORDER BY 1").fetchall()]


def trend(conn: psycopg.Connection[Any], table: str, runs: int = 30) -> list[dict[str, Any]]:
    """Per past run of `table` (oldest first): when, rows, rules passing, and each rule's pass rate."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT run_id, min(measured_at) AS measured_at,"
            "  max(value) FILTER (WHERE kind = 'row_count') AS rows,"
            "  count(*) FILTER (WHERE status IN ('pass', 'skipped')) AS passed, count(*) AS rules,"
            "  jsonb_object_agg(rule, pass_rate) AS rates"
            " FROM pgmill.quality_results WHERE table_name = %s"
            " AND run_id IN (SELECT DISTINCT run_id FROM pgmill.quality_results WHERE table_name = %s"
            "                ORDER BY run_id DESC LIMIT %s)"
            " GROUP BY run_id ORDER BY run_id",
            (table, table, runs),
        )
        return cur.fetchall()
