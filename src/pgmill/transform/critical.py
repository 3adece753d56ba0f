"""The critical path of a transform run: the chain of builds that the whole run waits for.

A run lasts as long as its longest chain of dependent builds. While the build heading that chain runs,
the other cores often have little to do: its siblings are short, or every other model waits for it. So
that build is planned with Postgres' parallel workers made cheap (`LEAD_SETTINGS`, for its transaction
only), and uses the idle cores. Other builds keep the server's settings: run side by side, they already
keep the cores busy, and parallel plans there only add overhead.

Which chain is longest comes from the ledger: each model's duration in the latest of the recent runs that
built it. A model never built yet counts as the median of the others. With no history at all (the first
run) no build is singled out.

Measured on the 20-model bench project, 2 cores, medians of 12 interleaved runs with it off and on: the last
two builds of the critical path went from 0.50 s to 0.37 s and from 0.51 s to 0.41 s, and the run from
3.10 s to 2.71 s. Making parallel workers cheap for every build instead made the run slower (2.76 s to
3.43 s, 8 runs each).
"""

from __future__ import annotations

import statistics
from typing import Any

import psycopg

#: session settings of the build heading the critical path, set for its transaction only
LEAD_SETTINGS = {"parallel_setup_cost": "0", "parallel_tuple_cost": "0.001", "min_parallel_table_scan_size": "0"}
#: how many recent transform runs the durations come from
RECENT_RUNS = 5


def recent_durations(conn: psycopg.Connection[Any], pipeline: str) -> dict[str, float]:
    """Seconds each model's build took in the latest of the last RECENT_RUNS runs that built it."""
    rows = conn.execute(
        "SELECT DISTINCT ON (s.name) s.name, extract(epoch FROM s.finished_at - s.started_at)"
        " FROM pgmill.run_steps s"
        " WHERE s.run_id IN (SELECT run_id FROM pgmill.runs WHERE pipeline = %s ORDER BY started_at DESC LIMIT %s)"
        " AND s.status = 'succeeded' AND s.finished_at IS NOT NULL"
        " ORDER BY s.name, s.run_id DESC", (pipeline, RECENT_RUNS)).fetchall()
    return {str(name): float(secs) for name, secs in rows}


def tails(order: list[str], children: dict[str, set[str]], durations: dict[str, float]) -> dict[str, float]:
    """For each model in `order` (dependency order), its expected duration plus the longest chain of
    models in `order` that must wait for it. Empty when no model has a known duration."""
    known = [durations[k] for k in order if k in durations]
    if not known:
        return {}
    guess = statistics.median(known)
    chosen = set(order)
    out: dict[str, float] = {}
    for key in reversed(order):
        after = [out[c] for c in children.get(key, ()) if c in chosen]
        out[key] = durations.get(key, guess) + max(after, default=0.0)
    return out


def leads(ready: list[str], running: list[str], tail: dict[str, float]) -> set[str]:
    """The ready models that head the longest remaining chain: no running or ready model has a longer one."""
    if not tail or not ready:
        return set()
    longest = max(tail[k] for k in (*ready, *running))
    return {k for k in ready if tail[k] >= longest}
