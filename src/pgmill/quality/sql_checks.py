"""Custom SQL checks: the user's own query returns the failing rows; pgmill counts them and keeps a sample."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pgmill.quality.results import RuleResult, broken, judged
from pgmill.quality.rules import Rule


def custom_sql(conn: psycopg.Connection[Any], table: str, rule: Rule, n: int) -> RuleResult:
    """Run the rule's query as a subquery (inside the caller's read-only snapshot, under a savepoint so
    that a broken query fails only its own rule); rows checked is the table's row count."""
    text = str(rule.params["query"]).strip().rstrip(";").strip()
    # the user's own SQL, run as written: it is theirs, not a value to quote
    query = sql.SQL("SELECT count(*), pgmill.quality_sample(to_jsonb(f)) FROM ({}\n) AS f").format(sql.SQL(text))
    try:
        with conn.transaction():
            row = conn.execute(query).fetchone()
    except psycopg.Error as exc:
        return broken(table, rule, f"the query failed: {str(exc).strip().splitlines()[0]}")
    assert row is not None
    failed = int(row[0])
    checked = max(n, failed)  # a query that joins may return more rows than the table has
    pct = 100.0 * (checked - failed) / checked if checked else 100.0
    msg = (f"{failed:,} failing rows returned by the query; pass rate {pct:.2f}% (needs {rule.threshold:g}%)"
           if failed else "the query returned no rows")
    return judged(table, rule, checked, failed, msg, sample=list(row[1] or []))
