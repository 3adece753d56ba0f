"""Storage that `--apply` freed within a budget, offered to the candidates not tried yet.

With a storage budget the advisor fills it by estimated cost; `--apply` then drops what measurement does not
support (no faster, a trade, a leaner index in a wide one's place, over the budget as built). The room that
frees would otherwise stay empty: the advisor is asked again for that room, with the kept indexes in place
and every index already built left out, and its answer is applied with the same proof (measured before and
after, kept only if faster and nothing slower), in the same tuning run, up to PASSES times.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import psycopg

from pgmill.config.tune import TuneConfig
from pgmill.tune.advisor import Advice, advise_workload
from pgmill.tune.apply import Applied, Connect, Outcome, apply_advice
from pgmill.tune.measure import regressed
from pgmill.tune.snapshot import load_snapshot

PASSES = 2


def kept_bytes(outcomes: list[Outcome]) -> int:
    return sum(o.size_bytes or 0 for o in outcomes if o.status == "kept")


def refill(conn: psycopg.Connection[Any], connect: Connect, advice: Advice, applied: Applied, run_id: int,
           cfg: TuneConfig, backend: str) -> tuple[Advice, Applied]:
    """Advise and apply again for the budget left once `applied` dropped what did not prove itself; the
    passes' advice and outcomes together (`before`: the latencies before the first pass)."""
    assert advice.budget_bytes is not None
    tried = {o.name for o in applied.outcomes}
    last = applied.outcomes
    for _ in range(PASSES):
        room = advice.budget_bytes - kept_bytes(applied.outcomes)
        if room <= 0 or all(o.status == "kept" for o in last):
            break
        more = advise_workload(conn, load_snapshot(conn), advice.workload, cfg, budget=str(room), backend=backend,
                               exclude=frozenset(tried))
        if not more.recommendations:
            break
        step = apply_advice(connect, more, run_id, executions=cfg.executions, lock_timeout=cfg.lock_timeout,
                            before=applied.after)  # measured at the end of the last pass, with what it kept
        tried |= {o.name for o in step.outcomes}
        last = step.outcomes
        advice = replace(advice, recommendations=advice.recommendations + more.recommendations,
                         cost_after=more.cost_after, skipped_for_budget=more.skipped_for_budget,
                         seconds=advice.seconds + more.seconds, explains=advice.explains + more.explains)
        after = {**applied.after, **step.after}
        applied = Applied(applied.before, after, applied.outcomes + step.outcomes,
                          applied.invalid_dropped + step.invalid_dropped,
                          [q for q in sorted(after) if regressed(applied.before[q], after[q])])
    return advice, applied
