"""Literal texts of observed statements, sampled from pg_stat_activity while the workload runs.

pg_stat_statements keeps a statement with its constants replaced by `$n`; pgmill can fill a `$n` compared
with a column, but not one inside arithmetic, CASE, LIKE or a function call, so such a statement cannot be
executed, and `--apply` cannot measure it. pg_stat_activity shows a running statement as it was sent, with
the same `query_id` as pg_stat_statements' `queryid` (PostgreSQL 14+, `compute_query_id` on or set by
pg_stat_statements). Sampling it while the workload runs catches the slow statements, the ones that matter,
with their constants; a statement shorter than the sampling interval is caught less often.

Nothing is stored: the texts live for one `pgmill tune --sample` call (they can hold values from the data).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from pgmill.tune.workload import has_params


@dataclass
class LiteralSamples:
    """What one sampling window saw: the first complete literal text per query id."""

    texts: dict[int, str] = field(default_factory=dict)
    polls: int = 0
    seen: int = 0  # active statements seen (of this database, other sessions)
    truncated: int = 0  # longer than track_activity_query_size: unusable
    parameterized: int = 0  # sent with parameters ($n): pg_stat_activity has no values either
    hidden: int = 0  # another role's statement without pg_read_all_stats: text not visible

    def as_dict(self) -> dict[str, Any]:
        return {"statements": len(self.texts), "polls": self.polls, "seen": self.seen,
                "truncated": self.truncated, "parameterized": self.parameterized, "hidden": self.hidden}


def can_sample(conn: psycopg.Connection[Any]) -> str | None:
    """None if pg_stat_activity gives query ids here; else why not, in words a user can act on."""
    if conn.info.server_version < 140000:
        return "sampling statements needs PostgreSQL 14 or later (pg_stat_activity.query_id)"
    row = conn.execute("SELECT current_setting('compute_query_id')").fetchone()
    setting = str(row[0]) if row else "off"
    if setting == "off":
        return "compute_query_id is off on this server: set it to auto (with pg_stat_statements) or on"
    return None


def sample_literals(conn: psycopg.Connection[Any], seconds: float, *, interval: float = 0.05) -> LiteralSamples:
    """Poll pg_stat_activity every `interval` seconds for `seconds`; keep each query id's first literal text."""
    out = LiteralSamples()
    limit_row = conn.execute("SELECT setting::int FROM pg_settings WHERE name = 'track_activity_query_size'"
                             ).fetchone()  # in bytes (current_setting says '1kB')
    limit = int(limit_row[0]) if limit_row else 1024
    poll = ("SELECT query_id, query FROM pg_stat_activity"
            " WHERE datid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND state = 'active'")
    end = time.monotonic() + seconds
    while True:
        out.polls += 1
        for query_id, text in conn.execute(poll).fetchall():
            out.seen += 1
            if text == "<insufficient privilege>":
                out.hidden += 1
                continue
            if query_id is None or not text:
                continue
            qid = int(query_id)
            if qid in out.texts:
                continue
            if len(text.encode()) >= limit - 1:
                out.truncated += 1
            elif has_params(text):
                out.parameterized += 1
            else:
                out.texts[qid] = str(text)
        if not conn.autocommit:
            conn.rollback()  # pg_stat_activity is a snapshot per transaction
        if time.monotonic() >= end:
            return out
        time.sleep(interval)
