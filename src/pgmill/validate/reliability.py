"""Pipeline reliability from the execution log (pgmill.runs): the success rate, the retries that saved a
run against the runs a transient failure still brought down, and the row accounting identity (no row lost).

Every figure covers the runs started in the window that have ended, as `pgmill status --since` counts them
(pgmill.observe.success); the accounting identity is also checked over all time on pgmill.run_totals.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from pgmill.figures import pct
from pgmill.observe.ledger import ACCOUNTED
from pgmill.observe.success import SuccessReport
from pgmill.retry import transient_sqlstate
from pgmill.validate.model import Criterion, judge

Conn = psycopg.Connection[Any]
AREA = "Pipeline reliability"
SUCCESS = 0.999
#: failed runs whose recorded error is read to tell transient from permanent
MAX_FAILED_READ = 10_000
_SQLSTATE = re.compile(r"\[SQLSTATE ([0-9A-Z]{5})\]")
# what pgmill writes in the ledger for the failures pgmill.retry.is_transient retries (retry.describe, the
# HTTP source, Target.connect): used only where the message carries no SQLSTATE
_TRANSIENT_WORDS = ("gave up after", "connection to the database was lost", "the database did not answer",
                    "server closed the connection", "the API asks to wait")
_CONNECT = "cannot connect to "
_PERMANENT_CONNECT = ("password authentication failed", "does not exist", "no pg_hba.conf entry", "role \"")
_ACCOUNTED = sql.SQL(" + ").join(sql.Identifier(c) for c in ACCOUNTED)


def transient_error(text: str) -> bool:
    """Whether a failed run's recorded error names a transient failure (one that retries are for)."""
    states = _SQLSTATE.findall(text)
    if states:
        return any(transient_sqlstate(s) for s in states)
    if text.startswith("PostgreSQL: "):  # a connection that died mid-statement has no SQLSTATE
        return True
    if _CONNECT in text:
        return not any(w in text for w in _PERMANENT_CONNECT)
    return any(w in text for w in _TRANSIENT_WORDS)


@dataclass(frozen=True)
class LedgerWindow:
    """Sums over the runs started since `start` that have ended."""

    start: datetime
    runs: int
    rows_read: int
    rows_quarantined: int
    rows_warned: int
    rows_duplicate: int
    unbalanced_runs: int
    rows_unaccounted: int  # sum over those runs of |read - accounted|
    unbalanced_ids: list[int]  # the newest few


def ledger_window(conn: Conn, start: datetime) -> LedgerWindow:
    row = conn.execute(sql.SQL(
        "SELECT count(*), coalesce(sum(rows_read), 0), coalesce(sum(rows_quarantined), 0),"
        " coalesce(sum(rows_warned), 0), coalesce(sum(rows_duplicate), 0),"
        " count(*) FILTER (WHERE rows_read <> {acc}), coalesce(sum(abs(rows_read - ({acc}))), 0),"
        " (array_agg(run_id ORDER BY run_id DESC) FILTER (WHERE rows_read <> {acc}))[1:10]"
        " FROM pgmill.runs WHERE started_at >= %s AND status <> 'running'").format(acc=_ACCOUNTED),
        (start,)).fetchone()
    assert row is not None
    return LedgerWindow(start, int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]), int(row[5]),
                        int(row[6]), list(row[7] or []))


def success(report: SuccessReport, window: str) -> Criterion:
    o = report.overall
    c = Criterion("pipeline_success", AREA, "Pipeline success rate > 99.9% (measured via execution logs)",
                  "> 99.9%", "not_measured", window=window,
                  source="pgmill.runs: runs succeeded / runs ended (loads and model builds), as `pgmill status "
                         "--since` counts them")
    c.detail = report.as_dict()
    if o.runs == 0 or o.success_rate is None:
        c.note = "no run ended in the window"
        return c
    c.value = o.success_rate
    c.status = judge(o.success_rate, o.success_rate > SUCCESS)
    c.figure = f"{pct(o.success_rate, 2)} ({o.successes:,} of {o.runs:,} runs)"
    if o.late or o.missed:
        c.figure += f"; schedule: {o.late or 0} late, {o.missed or 0} missed slots"
    if c.status == "pass" and o.runs < 1000:
        c.note = (f"{o.runs:,} runs: one failure among them would be {pct(1 / o.runs, 2)} of them, so this "
                  "figure cannot yet tell 99.9% from 100%")
    return c


def retries(conn: Conn, report: SuccessReport, window: str) -> Criterion:
    c = Criterion("retries", AREA, "Retry logic handles transient failures",
                  "no run lost to a transient failure", "not_measured", window=window,
                  source="pgmill.runs: succeeded runs with retries > 0 (saved by retry) against failed runs whose "
                         "recorded error is transient (a lost connection, SQLSTATE class 08, 40001, 40P01, 55P03, "
                         "57P0x, 53300, HTTP 429/5xx after its retries)")
    failed = conn.execute(
        "SELECT run_id, status, retries, error FROM pgmill.runs WHERE started_at >= %s"
        " AND status IN ('failed', 'abandoned') ORDER BY run_id DESC LIMIT %s",
        (report.as_of - report.since, MAX_FAILED_READ)).fetchall()
    lost = [(int(r), int(n), str(e)) for r, s, n, e in failed if s == "failed" and e and transient_error(str(e))]
    saved = report.overall.saved_by_retry
    c.detail = {"saved_by_retry": saved, "failed_runs": len(failed),
                "failed_transient": len(lost), "abandoned_runs": sum(1 for r in failed if r[1] == "abandoned"),
                "failed_transient_runs": [{"run_id": r, "retries": n, "error": e} for r, n, e in lost[:10]]}
    if report.overall.runs == 0:
        c.note = "no run ended in the window"
        return c
    if not saved and not lost:
        c.note = ("no transient failure happened in the window, so the runs did not exercise the retries "
                  "(pgmill's tests inject them: tests/test_faults.py)")
        return c
    c.value = saved / (saved + len(lost))
    c.status = judge(c.value, not lost)
    c.figure = f"{saved:,} runs saved by retry; {len(lost):,} failed for a transient reason"
    if lost:
        c.note = ("runs whose retries ran out on a transient failure: retry.attempts or max_s may be too low "
                  "for how long the outage lasted")
    return c


def data_loss(conn: Conn, w: LedgerWindow, window: str) -> Criterion:
    c = Criterion("data_loss", AREA, "Zero data loss in failures", "0 rows unaccounted", "not_measured",
                  window=window + "; and all time (pgmill.run_totals)",
                  source="pgmill.runs: each ended run's rows read = inserted + updated + unchanged + quarantined + "
                         "duplicate; and the same sums over every ended run kept by pgmill.run_totals")
    totals = conn.execute(sql.SQL(
        "SELECT coalesce(sum(runs), 0), coalesce(sum(rows_read), 0), coalesce(sum({acc}), 0)"
        " FROM pgmill.run_totals").format(acc=_ACCOUNTED)).fetchone()
    assert totals is not None
    all_runs, all_read, all_accounted = (int(x) for x in totals)
    c.detail = {"runs": w.runs, "rows_read": w.rows_read, "unbalanced_runs": w.unbalanced_runs,
                "rows_unaccounted": w.rows_unaccounted, "unbalanced_run_ids": w.unbalanced_ids,
                "all_time": {"runs": all_runs, "rows_read": all_read, "rows_accounted": all_accounted}}
    if w.rows_read == 0 and all_read == 0:
        c.note = "no run has read a row yet"
        return c
    gap = abs(all_read - all_accounted)
    c.value = float(max(w.rows_unaccounted, gap))
    c.status = judge(c.value, w.unbalanced_runs == 0 and gap == 0)
    c.figure = (f"{w.rows_unaccounted:,} rows unaccounted in {w.unbalanced_runs:,} of {w.runs:,} runs "
                f"({w.rows_read:,} rows read); all time: {all_read:,} read, {all_accounted:,} accounted")
    if w.unbalanced_ids:
        c.note = "runs where the identity does not hold: " + ", ".join(f"#{r}" for r in w.unbalanced_ids)
    return c
