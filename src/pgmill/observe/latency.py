"""Arrival to queryable: how long data took from reaching the source (a file's modification time, a change's
commit on a CDC source) to the commit that made it queryable, per pipeline, from the `load` steps that
measured it (pgmill.run_steps.detail).

A step carries `arrival_to_queryable_s`: a file's figure (ingest/follow.py), or the worst of its batches;
a step that loaded batches of their own (change data capture, ingest/stream_load.py) also carries
`arrival_samples_s`, one figure per batch (up to 1,000, evenly taken). The percentiles count each of those
figures, so a stream's p50 and p95 are over its batches, not over its steps; a step without samples counts
once. Every measured step has `arrival_to_queryable_s`, so the partial index run_steps_arrival (migration
14) finds them all; the maximum is the steps' own, which no sampling drops.
"""

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
    batches: int = 0  # the figures the percentiles are over: a step's batches, or the step itself

    def as_dict(self) -> dict[str, Any]:
        return {"pipeline": self.pipeline, "loads": self.loads, "batches": self.batches, "p50_s": self.p50_s,
                "p95_s": self.p95_s, "max_s": self.max_s}

    def counted(self) -> str:
        """What the percentiles are over, for people: '2 loads', or '480 batches in 3 loads'."""
        loads = f"{self.loads:,} load{'s' if self.loads != 1 else ''}"
        if self.batches == self.loads:
            return loads
        return f"{self.batches:,} batch{'es' if self.batches != 1 else ''} in {loads}"


# the measured steps of the window (by the partial index), then their figures: a step's batch samples, or its own
_LATENCY = """
WITH s AS (
    SELECT r.pipeline, s.detail, CASE WHEN jsonb_typeof(s.detail->'arrival_samples_s') = 'array'
                                      THEN s.detail->'arrival_samples_s' END AS samples
    FROM pgmill.run_steps s JOIN pgmill.runs r USING (run_id)
    WHERE s.detail ? 'arrival_to_queryable_s' AND s.finished_at >= clock_timestamp() - %s
), f AS (
    SELECT s.pipeline, e.v::float8 AS v FROM s CROSS JOIN LATERAL jsonb_array_elements_text(
        CASE WHEN coalesce(jsonb_array_length(s.samples), 0) > 0 THEN s.samples
             ELSE jsonb_build_array(s.detail->'arrival_to_queryable_s') END) e(v)
)
SELECT pipeline, (SELECT count(*) FROM s WHERE s.pipeline = f.pipeline), count(*),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY v), percentile_cont(0.95) WITHIN GROUP (ORDER BY v),
       (SELECT max((s.detail->>'arrival_to_queryable_s')::float8) FROM s WHERE s.pipeline = f.pipeline)
FROM f GROUP BY pipeline ORDER BY pipeline
"""


def arrival_latency(conn: psycopg.Connection[Any], since: timedelta) -> list[Latency]:
    """Per pipeline, over the load steps that finished in the last `since` (index run_steps_arrival): p50 and
    p95 over their batches' figures, the worst of them, how many steps and figures."""
    rows = conn.execute(_LATENCY, (since,)).fetchall()
    return [Latency(p, int(loads), round(float(p50), 3), round(float(p95), 3), round(float(mx), 3), int(n))
            for p, loads, n, p50, p95, mx in rows]
