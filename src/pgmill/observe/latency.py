"""Arrival to queryable: how long data took from reaching the source (a file's modification time) to the
commit that made it queryable, per pipeline, from the `load` steps that measured it
(`arrival_to_queryable_s` in pgmill.run_steps.detail; ingest/follow.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg


@dataclass(frozen=True)
class Latency:
    pipeline: str
    loads: int  # load steps measured in the window
    p50_s: float
    p95_s: float
    max_s: float

    def as_dict(self) -> dict[str, Any]:
        return {"pipeline": self.pipeline, "loads": self.loads, "p50_s": self.p50_s, "p95_s": self.p95_s,
                "max_s": self.max_s}


def arrival_latency(conn: psycopg.Connection[Any], since: timedelta) -> list[Latency]:
    """Per pipeline, over the load steps that finished in the last `since` (index run_steps_arrival)."""
    rows = conn.execute(
        "SELECT r.pipeline, count(*),"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY (s.detail->>'arrival_to_queryable_s')::float8),"
        " percentile_cont(0.95) WITHIN GROUP (ORDER BY (s.detail->>'arrival_to_queryable_s')::float8),"
        " max((s.detail->>'arrival_to_queryable_s')::float8)"
        " FROM pgmill.run_steps s JOIN pgmill.runs r USING (run_id)"
        " WHERE s.detail ? 'arrival_to_queryable_s' AND s.finished_at >= clock_timestamp() - %s"
        " GROUP BY r.pipeline ORDER BY r.pipeline", (since,)).fetchall()
    return [Latency(p, int(n), round(float(p50), 3), round(float(p95), 3), round(float(mx), 3))
            for p, n, p50, p95, mx in rows]
