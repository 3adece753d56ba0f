"""Data quality: records passing validation (at load, and in the table checks), schema enforcement,
completeness and duplicate detection.

Two sources, each named in its criterion: the run ledger (pgmill.runs: every record a load read went
through the contract, bad ones to quarantine) and the table checks (pgmill.quality_results: the latest
`pgmill check` of each table, if it ran in the window).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from pgmill.config.load import load_contract
from pgmill.errors import ConfigError
from pgmill.figures import pct
from pgmill.project import ProjectContext
from pgmill.validate.model import Criterion, judge
from pgmill.validate.reliability import LedgerWindow

Conn = psycopg.Connection[Any]
AREA = "Data quality"
PASSING = 0.99
COMPLETE = 0.95
#: rules judged record by record (rows_failed of rows_checked); completeness has its own criterion
RECORD_KINDS = ("not_null", "accepted_values", "range", "foreign_key", "unique", "exact_rows", "sql")
COMPLETENESS_KINDS = ("not_null", "completeness")
DUPLICATE_KINDS = ("unique", "exact_rows", "near_duplicates")
#: (table, rule) pairs read at most to find each table's latest check run
MAX_RULES = 5_000


@dataclass(frozen=True)
class Result:
    table: str
    run_id: int
    rule: str
    kind: str
    rows_checked: int
    rows_failed: int
    status: str
    value: float | None
    detail: dict[str, Any] | None
    measured_at: datetime


def latest_checks(conn: Conn, start: datetime) -> list[Result]:
    """The results of each table's latest check run, where that run was since `start`. The tables and their
    rules are walked on the index quality_results_trend one key at a time, so the cost follows the number of
    rules, not of results."""
    rows = conn.execute(
        "WITH RECURSIVE pairs AS ("
        "  (SELECT table_name, rule FROM pgmill.quality_results ORDER BY table_name, rule LIMIT 1)"
        "  UNION ALL"
        "  SELECT n.table_name, n.rule FROM pairs p CROSS JOIN LATERAL ("
        "    SELECT q.table_name, q.rule FROM pgmill.quality_results q"
        "    WHERE (q.table_name, q.rule) > (p.table_name, p.rule) ORDER BY q.table_name, q.rule LIMIT 1) n),"
        " latest AS ("
        "  SELECT p.table_name, max(l.run_id) AS run_id FROM (SELECT * FROM pairs LIMIT %(max)s) p"
        "  CROSS JOIN LATERAL (SELECT q.run_id FROM pgmill.quality_results q WHERE q.table_name = p.table_name"
        "    AND q.rule = p.rule ORDER BY q.run_id DESC LIMIT 1) l GROUP BY p.table_name)"
        " SELECT r.table_name, r.run_id, r.rule, r.kind, r.rows_checked, r.rows_failed, r.status, r.value,"
        "  CASE WHEN r.kind = 'row_count' THEN r.detail END, r.measured_at"
        " FROM latest JOIN pgmill.quality_results r ON r.run_id = latest.run_id AND r.table_name = latest.table_name"
        " WHERE r.measured_at >= %(start)s ORDER BY r.table_name, r.id",
        {"max": MAX_RULES, "start": start}).fetchall()
    return [Result(t, int(run), rule, kind, int(n), int(f), s, v, d, at) for t, run, rule, kind, n, f, s, v, d, at in rows]


def _share(results: list[Result]) -> tuple[int, int]:
    """(rows checked, rows failed) summed over `results`."""
    return sum(r.rows_checked for r in results), sum(r.rows_failed for r in results)


def _tables(results: list[Result]) -> str:
    runs = sorted({(r.table, r.run_id) for r in results})
    return "; ".join(f"{t} check run {run}" for t, run in runs)


def validation_loads(w: LedgerWindow, window: str) -> Criterion:
    c = Criterion("validation_loads", AREA, "Data validation rules pass > 99% of records (at load)", "> 99%",
                  "not_measured", window=window,
                  source="pgmill.runs: (rows read - quarantined - warned) / rows read over the runs that ended; "
                         "every record a load reads is checked against its contract")
    c.detail = {"runs": w.runs, "rows_read": w.rows_read, "rows_quarantined": w.rows_quarantined,
                "rows_warned": w.rows_warned}
    if w.rows_read == 0:
        c.note = "no load read a record in the window"
        return c
    passed = max(0, w.rows_read - w.rows_quarantined - w.rows_warned)
    c.value = passed / w.rows_read
    c.status = judge(c.value, c.value > PASSING)
    c.figure = (f"{pct(c.value, 2)} ({w.rows_read:,} records read, {w.rows_quarantined:,} quarantined, "
                f"{w.rows_warned:,} warnings)")
    if w.rows_warned:
        c.note = ("warnings count each warn-policy rule a loaded record broke, so a record breaking two counts "
                  "twice: the figure is a lower bound")
    return c


def validation_checks(results: list[Result], window: str) -> Criterion:
    c = Criterion("validation_checks", AREA, "Data validation rules pass > 99% of records (table checks)",
                  "> 99%", "not_measured", window=window,
                  source="pgmill.quality_results, the latest check run of each table: rows passing / rows checked, "
                         "summed over the rules judged per record (" + ", ".join(RECORD_KINDS) + ")")
    rules = [r for r in results if r.kind in RECORD_KINDS]
    broken = [f"{r.table} {r.rule}" for r in rules if r.status == "error"]
    checked, failed = _share(rules)
    c.detail = {"rules": len(rules), "rows_checked": checked, "rows_failed": failed, "rules_not_run": broken}
    if not checked:
        c.note = "no table check judged records in the window: run `pgmill check`"
        return c
    c.value = (checked - failed) / checked
    c.status = judge(c.value, c.value > PASSING)
    c.figure = f"{pct(c.value, 2)} ({failed:,} failures in {checked:,} rule × record evaluations, {len(rules)} rules)"
    c.window = f"{window}: {_tables(rules)}"
    if broken:
        c.note = f"{len(broken)} rules could not run: " + ", ".join(broken[:10])
    return c


def schema_enforced(ctx: ProjectContext) -> Criterion:
    c = Criterion("schema_enforced", AREA, "Schema validation enforced", "every pipeline under a contract",
                  "not_measured", source="pgmill.yaml: each pipeline's contract file (contracts/*.yaml), loaded "
                  "and checked as `pgmill run` does before it reads a record", window="the project's files now")
    pipes = ctx.config.pipelines
    if not pipes:
        c.note = "the project has no pipelines"
        return c
    problems: list[str] = []
    columns = 0
    for name, pipe in sorted(pipes.items()):
        try:
            columns += len(load_contract(ctx.dir, pipe.contract).columns)
        except ConfigError as exc:
            problems.append(f"{name}: {str(exc).splitlines()[0]}")
    ok = len(pipes) - len(problems)
    c.value = ok / len(pipes)
    c.status = judge(c.value, not problems)
    c.figure = f"{ok} of {len(pipes)} pipelines load under a contract ({columns} typed columns)"
    c.detail = {"pipelines": len(pipes), "with_contract": ok, "columns": columns, "problems": problems}
    if problems:
        c.note = "; ".join(problems)
    return c


def completeness(results: list[Result], window: str) -> Criterion:
    c = Criterion("completeness", AREA, "Data completeness > 95%", "> 95%", "not_measured", window=window)
    declared = [r for r in results if r.kind in COMPLETENESS_KINDS and r.status != "error"]
    checked, failed = _share(declared)
    if checked:
        c.source = ("pgmill.quality_results, the latest check run of each table: non-null values / rows checked, "
                    "summed over the not_null and completeness rules of the contracts")
        c.value = (checked - failed) / checked
        c.figure = f"{pct(c.value, 2)} ({failed:,} missing of {checked:,} required values, {len(declared)} rules)"
        c.window = f"{window}: {_tables(declared)}"
        c.detail = {"rules": len(declared), "values": checked, "missing": failed}
    else:
        # no rule names the required columns: every column of each checked table (the row_count rule's profile)
        cells = filled = 0
        profiled = [r for r in results if r.kind == "row_count" and r.detail and r.detail.get("non_null")]
        for r in profiled:
            assert r.detail is not None
            counts = [int(n) for _, n in r.detail["non_null"]]
            cells += int(r.value or 0) * len(counts)  # the row count's value is the table's rows
            filled += sum(counts)
        c.source = ("pgmill.quality_results, the latest check run of each table: non-null values / all values of "
                    "every column (the row count's profile), since no contract declares not_null or completeness")
        c.detail = {"tables": len(profiled), "values": cells, "non_null": filled}
        if not cells:
            c.note = "no table check in the window: run `pgmill check`"
            return c
        c.value = filled / cells
        c.figure = f"{pct(c.value, 2)} ({filled:,} of {cells:,} values present, {len(profiled)} tables)"
        c.window = f"{window}: {_tables(profiled)}"
    c.status = judge(c.value, c.value > COMPLETE)
    return c


def duplicates(results: list[Result], w: LedgerWindow, window: str) -> Criterion:
    c = Criterion("duplicates", AREA, "Duplicate detection functional", "duplicates found and counted",
                  "not_measured", window=window,
                  source="pgmill.runs.rows_duplicate (records a load dropped as repeats of a key) and "
                         "pgmill.quality_results, the latest check run of each table (unique, exact_rows, "
                         "near_duplicates rules: rows beyond the first of each group)")
    rules = [r for r in results if r.kind in DUPLICATE_KINDS]
    broken = [f"{r.table} {r.rule}" for r in rules if r.status == "error"]
    skipped = [f"{r.table} {r.rule}" for r in rules if r.status == "skipped"]  # stopped at max_seconds
    found = sum(r.rows_failed for r in rules if r.status not in ("error", "skipped"))
    c.detail = {"load_runs": w.runs, "rows_duplicate": w.rows_duplicate, "rules": len(rules),
                "rows_in_duplicate_groups": found, "rules_not_run": broken, "rules_skipped": skipped}
    if broken:
        c.value = float(len(broken))
        c.status = "fail"
        c.figure = f"{len(broken)} duplicate rules could not run"
        c.note = ", ".join(broken[:10])
        return c
    if w.runs == 0 and not rules:
        c.note = "no load ended and no duplicate rule ran in the window"
        return c
    c.figure = (f"{w.rows_duplicate:,} duplicate records counted by {w.runs:,} runs; {found:,} duplicate rows "
                f"found by {len(rules) - len(skipped)} check rules")
    if skipped:  # a rule stopped at its time bound found nothing it can vouch for: say so, count it as not run
        c.figure += f"; {len(skipped)} stopped at max_seconds ({', '.join(skipped[:5])})"
    if w.rows_duplicate + found == 0:
        c.note = ("detection ran and found no duplicate, so this data does not show that it works "
                  "(a load counts repeats of a key only for pipelines with a primary key)")
        return c
    c.value = float(w.rows_duplicate + found)
    c.status = "pass"
    return c

