"""The quality page's data, from pgmill.quality_results: per checked table its rules with their latest result
and pass rate over the last runs, completeness per column, duplicates with their samples; newly failing
rules (failing now, passing the time before) first.

Bounded however long the history: the tables are found by a skip scan of the index quality_results_trend
(table_name, rule, run_id DESC), one probe per table; each table's rules by a skip scan of the same index;
each rule's last RUNS results by one descending index range; the latest run's rows by (run_id).
Completeness per column is what every check records with the table's row count (the `row_count` result's
detail `non_null`: the column's non-null rows, from the check's one aggregate scan).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg.rows import dict_row

Conn = psycopg.Connection[Any]
RUNS = 30  # past results per rule in the trends
MAX_TABLES = 100
FAILING = ("fail", "error", "warn")
DUPLICATE_KINDS = ("unique", "exact_rows", "near_duplicates")

_TABLES = """
WITH RECURSIVE t(name) AS (
    (SELECT table_name FROM pgmill.quality_results ORDER BY table_name LIMIT 1)
    UNION ALL
    SELECT (SELECT table_name FROM pgmill.quality_results WHERE table_name > t.name ORDER BY table_name LIMIT 1)
    FROM t WHERE t.name IS NOT NULL
)
SELECT name FROM t WHERE name IS NOT NULL LIMIT %s
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
    columns: list[str]
    status: str
    pass_rate: float  # percent, latest run
    rows_checked: int
    rows_failed: int
    threshold: float
    severity: str
    message: str
    sample: list[Any]
    detail: dict[str, Any]
    history: list[Point]  # oldest first, the latest included

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
class TableQuality:
    table: str
    run_id: int  # the latest check run of the table
    measured_at: datetime
    rows: int | None
    rules: list[RuleRow]  # newly failing, then failing, then the rest
    completeness: list[Completeness]
    runs: list[tuple[int, int, int]] = field(default_factory=list)  # (run_id, rules passing, rules), oldest first

    @property
    def anchor(self) -> str:
        return anchor(self.table)

    @property
    def status(self) -> str:
        states = {r.status for r in self.rules}
        return "fail" if states & {"fail", "error"} else "warn" if "warn" in states else "pass"

    @property
    def duplicates(self) -> list[RuleRow]:
        return [r for r in self.rules if r.kind in DUPLICATE_KINDS]


@dataclass
class Quality:
    tables: list[TableQuality]
    truncated: bool  # more tables were checked than MAX_TABLES

    @property
    def newly_failing(self) -> list[RuleRow]:
        return [r for t in self.tables for r in t.rules if r.newly_failing]

    @property
    def failing(self) -> list[RuleRow]:
        return [r for t in self.tables for r in t.rules if r.failing]


def anchor(name: str) -> str:
    """An id for an HTML anchor, one per name: 'shop.orders' -> 'q-shop.orders' (a rule's adds '/' and the
    rule's name: percent-encoding leaves no space, and no '/' of its own)."""
    return "q-" + quote(name, safe="")


def quality(conn: Conn) -> Quality:
    """Every checked table (at most MAX_TABLES), failing ones first."""
    names = [str(r[0]) for r in conn.execute(_TABLES, (MAX_TABLES + 1,)).fetchall()]
    tables = [t for t in (table_quality(conn, n) for n in names[:MAX_TABLES]) if t is not None]
    order = {"fail": 0, "warn": 1, "pass": 2}
    tables.sort(key=lambda t: (order[t.status], t.table))
    return Quality(tables, len(names) > MAX_TABLES)


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
    rules = [RuleRow(table, r["rule"], r["kind"], list(r["columns"]), r["status"], float(r["pass_rate"]),
                     int(r["rows_checked"]), int(r["rows_failed"]), float(r["threshold"]), r["severity"],
                     r["message"] or "", list(r["sample"] or []), dict(r["detail"] or {}),
                     history.get(r["rule"], [])) for r in latest]
    rules.sort(key=lambda r: (not r.newly_failing, not r.failing))  # stable: the contract's order otherwise
    count = next((r for r in latest if r["kind"] == "row_count"), None)
    rows = int(count["value"]) if count is not None and count["value"] is not None else None
    non_null = (count["detail"] or {}).get("non_null", []) if count is not None else []
    return TableQuality(table, run_id, latest[0]["measured_at"], rows, rules,
                        [Completeness(str(c), int(n), rows or 0) for c, n in non_null],
                        _runs(rules))


def _runs(rules: list[RuleRow]) -> list[tuple[int, int, int]]:
    """Rules passing per run over the last RUNS runs of the current rules (from their histories)."""
    per: dict[int, list[int]] = {}
    for r in rules:
        for p in r.history:
            seen = per.setdefault(p.run_id, [0, 0])
            seen[0] += p.status in ("pass", "skipped")
            seen[1] += 1
    return [(run, ok, n) for run, (ok, n) in sorted(per.items())[-RUNS:]]
