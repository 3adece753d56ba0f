"""The quality page's data, from pgmill.quality_results: per checked table its rules with their latest result
and pass rate over the last runs, completeness per column, duplicates with their samples; newly failing
rules (failing now, passing the time before) first.

Bounded however long the history and however many tables: every (table, rule) is found by a skip scan of
the index quality_results_trend (table_name, rule, run_id DESC), one probe per rule, with its last two
results (enough for the summary and for "newly failing"), in one statement. Only the tables shown in
detail (`detail`: the ones asked for, or the first few that fail) read each rule's last RUNS results and
the latest run's rows (samples, completeness) by (run_id).
Completeness per column is what every check records with the table's row count (the `row_count` result's
detail `non_null`: the column's non-null rows, from the check's one aggregate scan).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg.rows import dict_row

from pgmill.quality.results import worst_status

Conn = psycopg.Connection[Any]
RUNS = 30  # past results per rule in the trends
MAX_TABLES = 100
MAX_RULES = 5_000  # (table, rule) pairs read for the summary
DETAIL_TABLES = 3  # tables shown in detail when none is asked for: the first ones, failing first
FAILING = ("fail", "error", "warn")
DUPLICATE_KINDS = ("unique", "exact_rows", "near_duplicates")

_LATEST_TWO = """
WITH RECURSIVE k(t, r, n) AS (
    (SELECT table_name, rule, 1 FROM pgmill.quality_results ORDER BY table_name, rule LIMIT 1)
    UNION ALL
    SELECT nx.table_name, nx.rule, k.n + 1 FROM k CROSS JOIN LATERAL (
        SELECT table_name, rule FROM pgmill.quality_results q WHERE (q.table_name, q.rule) > (k.t, k.r)
        ORDER BY table_name, rule LIMIT 1) nx
    WHERE k.n < %(max)s
)
SELECT k.t, k.r, h.run_id, h.status, h.pass_rate, h.measured_at, h.message, h.kind
FROM k CROSS JOIN LATERAL (
    SELECT run_id, status, pass_rate, measured_at, message, kind FROM pgmill.quality_results q
    WHERE q.table_name = k.t AND q.rule = k.r ORDER BY run_id DESC LIMIT 2
) h
ORDER BY k.t, k.r, h.run_id
"""

_HISTORY = """
WITH RECURSIVE r(rule) AS (
    (SELECT rule FROM pgmill.quality_results WHERE table_name = %(t)s ORDER BY rule LIMIT 1)
    UNION ALL
    SELECT (SELECT rule FROM pgmill.quality_results WHERE table_name = %(t)s AND rule > r.rule
            ORDER BY rule LIMIT 1)
    FROM r WHERE r.rule IS NOT NULL
)
SELECT r.rule, h.run_id, h.status, h.pass_rate, h.measured_at
FROM r CROSS JOIN LATERAL (
    SELECT run_id, status, pass_rate, measured_at FROM pgmill.quality_results q
    WHERE q.table_name = %(t)s AND q.rule = r.rule ORDER BY run_id DESC LIMIT %(n)s
) h
WHERE r.rule IS NOT NULL
ORDER BY r.rule, h.run_id
"""


@dataclass(frozen=True)
class Point:
    run_id: int
    status: str
    pass_rate: float  # percent
    measured_at: datetime


@dataclass
class RuleRow:
    table: str
    rule: str
    kind: str
    status: str
    pass_rate: float  # percent, latest run
    message: str
    history: list[Point]  # oldest first, the latest included (the summary's: the last two)
    columns: list[str] = field(default_factory=list)  # the rest: read for the tables shown in detail
    rows_checked: int = 0
    rows_failed: int = 0
    threshold: float = 0.0
    severity: str = ""
    sample: list[Any] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def failing(self) -> bool:
        return self.status in FAILING

    @property
    def previous(self) -> Point | None:
        return self.history[-2] if len(self.history) > 1 else None

    @property
    def newly_failing(self) -> bool:
        """Failing now, passing the run before."""
        prev = self.previous
        return self.failing and prev is not None and prev.status == "pass"

    @property
    def table_anchor(self) -> str:
        return anchor(self.table)

    @property
    def anchor(self) -> str:
        return f"{anchor(self.table)}/{quote(self.rule, safe='')}"


@dataclass(frozen=True)
class Completeness:
    column: str
    non_null: int
    rows: int

    @property
    def complete(self) -> float:
        """Share of rows with a value (1.0 for an empty table: nothing is missing)."""
        return self.non_null / self.rows if self.rows else 1.0


@dataclass
class TableSummary:
    """A checked table's latest check, from its rules' last two results."""

    table: str
    run_id: int  # the latest check run of the table
    measured_at: datetime
    rules: list[RuleRow]  # the rules of the latest check run

    @property
    def anchor(self) -> str:
        return anchor(self.table)

    @property
    def status(self) -> str:
        return worst_status(r.status for r in self.rules)

    @property
    def failing(self) -> list[RuleRow]:
        return [r for r in self.rules if r.failing]


@dataclass
class TableQuality(TableSummary):
    """A table shown in detail: its rules' trends (newly failing first, then failing, then the rest), row
    count, completeness per column, and rules passing per run."""

    rows: int | None = None
    completeness: list[Completeness] = field(default_factory=list)
    runs: list[tuple[int, int, int]] = field(default_factory=list)  # (run_id, rules passing, rules), oldest first

    @property
    def duplicates(self) -> list[RuleRow]:
        return [r for r in self.rules if r.kind in DUPLICATE_KINDS]


@dataclass
class Quality:
    tables: list[TableSummary]  # every checked table (at most MAX_TABLES), failing first
    details: list[TableQuality]  # the tables shown in detail, in the same order
    truncated: bool  # more tables (or rules) were checked than MAX_TABLES (MAX_RULES)

    @property
    def newly_failing(self) -> list[RuleRow]:
        return [r for t in self.tables for r in t.rules if r.newly_failing]

    @property
    def failing(self) -> list[RuleRow]:
        return [r for t in self.tables for r in t.failing]

    def detailed(self, table: str) -> bool:
        return any(d.table == table for d in self.details)


def anchor(name: str) -> str:
    """An id for an HTML anchor, one per name: 'shop.orders' -> 'q-shop.orders' (a rule's adds '/' and the
    rule's name: percent-encoding leaves no space, and no '/' of its own)."""
    return "q-" + quote(name, safe="")


def quality(conn: Conn, detail: Collection[str] | None = None, *, all_tables: bool = False) -> Quality:
    """Every checked table (at most MAX_TABLES) summed up, failing ones first; in detail the tables named in
    `detail` (None: the first DETAIL_TABLES of that order; a name never checked is left out), or every
    table with `all_tables` (the static export, which has no links to ask for one)."""
    rules: dict[str, dict[str, RuleRow]] = {}
    rows = conn.execute(_LATEST_TWO, {"max": MAX_RULES + 1}).fetchall()
    pairs = {(t, r) for t, r, *_ in rows}
    for t, r, run_id, status, rate, at, message, kind in rows:
        row = rules.setdefault(t, {}).setdefault(r, RuleRow(t, r, kind, status, float(rate), message or "", []))
        row.history.append(Point(int(run_id), status, float(rate), at))
        row.status, row.pass_rate, row.message, row.kind = status, float(rate), message or "", kind
    summaries = []
    for t, by_rule in list(rules.items())[:MAX_TABLES]:
        run_id = max(r.history[-1].run_id for r in by_rule.values())
        current = [r for r in by_rule.values() if r.history[-1].run_id == run_id]  # dropped rules: gone
        summaries.append(TableSummary(t, run_id, current[0].history[-1].measured_at, current))
    order = {"fail": 0, "warn": 1, "pass": 2}
    summaries.sort(key=lambda s: (order[s.status], s.table))
    names = [s.table for s in summaries]
    chosen = names if all_tables else names[:DETAIL_TABLES] if detail is None else [n for n in names if n in detail]
    details = [d for d in (table_quality(conn, n) for n in chosen) if d is not None]
    return Quality(summaries, details, len(rules) > MAX_TABLES or len(pairs) > MAX_RULES)


def table_quality(conn: Conn, table: str) -> TableQuality | None:
    """The latest check of `table`: the rules measured in it (a rule dropped from the contract is no longer
    shown), each with its last RUNS results."""
    history: dict[str, list[Point]] = {}
    for rule, run_id, status, rate, at in conn.execute(_HISTORY, {"t": table, "n": RUNS}).fetchall():
        history.setdefault(rule, []).append(Point(int(run_id), status, float(rate), at))
    if not history:
        return None
    run_id = max(h[-1].run_id for h in history.values())
    with conn.cursor(row_factory=dict_row) as cur:
        latest = cur.execute(
            "SELECT rule, kind, columns, status, pass_rate, rows_checked, rows_failed, threshold, severity, message,"
            " sample, detail, value, measured_at FROM pgmill.quality_results WHERE run_id = %s AND table_name = %s"
            " ORDER BY id", (run_id, table)).fetchall()
    if not latest:  # the run's rows went while we read (a retried check rewrites its table's rows)
        return None
    rules = [RuleRow(table, r["rule"], r["kind"], r["status"], float(r["pass_rate"]), r["message"] or "",
                     history.get(r["rule"], []), list(r["columns"]), int(r["rows_checked"]), int(r["rows_failed"]),
                     float(r["threshold"]), r["severity"], list(r["sample"] or []), dict(r["detail"] or {}))
             for r in latest]
    rules.sort(key=lambda r: (not r.newly_failing, not r.failing))  # stable: the contract's order otherwise
    count = next((r for r in latest if r["kind"] == "row_count"), None)
    rows = int(count["value"]) if count is not None and count["value"] is not None else None
    non_null = (count["detail"] or {}).get("non_null", []) if count is not None else []
    return TableQuality(table, run_id, latest[0]["measured_at"], rules, rows,
                        [Completeness(str(c), int(n), rows or 0) for c, n in non_null], _runs(rules))


def _runs(rules: list[RuleRow]) -> list[tuple[int, int, int]]:
    """Rules passing per run over the last RUNS runs of the current rules (from their histories)."""
    per: dict[int, list[int]] = {}
    for r in rules:
        for p in r.history:
            seen = per.setdefault(p.run_id, [0, 0])
            seen[0] += p.status in ("pass", "skipped")
            seen[1] += 1
    return [(run, ok, n) for run, (ok, n) in sorted(per.items())[-RUNS:]]
