"""Real-time processing: the brief's "< 5 seconds", judged on the project's own loads that measured how long
their data took from arrival to queryable (followed folders: a file's modification time; change data
capture: the source's commit time) over the window (pgmill.observe.latency)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg

from pgmill.observe.latency import arrival_latency
from pgmill.validate.model import Criterion, judge

AREA = "Real-time processing"
LIMIT_S = 5.0


def realtime(conn: psycopg.Connection[Any], since: timedelta, window: str) -> Criterion:
    """The worst pipeline's p95 arrival to queryable over the window, judged against 5 s."""
    c = Criterion("realtime", AREA, "Real-time processing < 5 seconds", "p95 < 5 s from arrival to queryable",
                  "not_measured", window=window,
                  source="pgmill.run_steps: arrival_to_queryable_s (arrival_samples_s per batch) of the load steps, "
                         "p95 per pipeline (pgmill status shows the same)")
    per = arrival_latency(conn, since)
    if not per:
        c.note = ("no load measured arrival to queryable: follow a folder (`pgmill run --follow`) or stream a "
                  "PostgreSQL table (`cdc:`); bench/RESULTS_cdc.md and bench/RESULTS_follow.md have the benchmarks")
        return c
    worst = max(per, key=lambda x: x.p95_s)
    c.value = worst.p95_s
    c.status = judge(c.value, c.value < LIMIT_S)
    c.figure = (f"{worst.p95_s:.2f} s p95 ({worst.pipeline}, {worst.loads:,} measured), the worst of "
                f"{len(per)} pipeline(s)")
    c.detail = {"pipelines": [x.as_dict() for x in per]}
    return c
