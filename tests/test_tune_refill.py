"""Budget that `--apply` freed goes to the candidates not tried yet: when measurement drops an index the advisor
chose within the budget, the advisor is asked again for the room left, and its answer is applied with the
same proof, in the same tuning run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pgmill.config.tune import TuneConfig
from pgmill.db.embedded import EmbeddedServer
from pgmill.tune import store
from pgmill.tune.advisor import advise
from pgmill.tune.apply import apply_advice
from pgmill.tune.refill import refill
from tests.helpers import connect, pgmill_indexes, query, script_p95
from tests.test_tune_advisor import SHAPES, write_queries
from tests.test_tune_lean import seeded

pytest_plugins = ["tests.pg15"]
BUDGET = 64 * 2**20


def test_room_an_unproven_index_freed_goes_to_the_next_candidate(
        pg_server: EmbeddedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = seeded(pg_server.url())
    root = write_queries(tmp_path, {k: SHAPES[k] for k in ("point_lookup", "covering")})
    cfg = TuneConfig(observed=0, min_benefit=0.0, executions=5)
    with connect(url) as conn:
        store.ensure_schema(conn)
        advice = advise(conn, root, cfg)
        run_id = store.start_run(conn, "apply", advice.backend)
    [first] = [r for r in advice.recommendations if r.queries == ["covering"]]
    # `covering` never gets faster, whatever is built; `point_lookup` does once customers has an index
    script_p95(monkeypatch, lambda q: 50.0 if q == "covering" else 5.0 if pgmill_indexes(url, "customers") else 500.0)
    # the first pass: the budget spent on the orders index alone, which measurement then drops
    one = replace(advice, recommendations=[first], budget_bytes=BUDGET)
    with connect(url) as conn:
        applied = apply_advice(lambda: connect(url), one, run_id, executions=5, lock_timeout="5s")
        assert [(o.name, o.status) for o in applied.outcomes] == [(first.name, "dropped")]
        assert pgmill_indexes(url, "customers") == set()
        merged, done = refill(conn, lambda: connect(url), one, applied, run_id, cfg, "auto")
    status = {o.name: o.status for o in done.outcomes}
    assert status.pop(first.name) == "dropped"
    kept = [name for name, s in status.items() if s == "kept"]
    assert len(kept) == 1 and pgmill_indexes(url, "customers") == set(kept), done.outcomes
    assert pgmill_indexes(url, "orders") == set()  # the dropped index was not tried again
    assert [r.name for r in merged.recommendations][0] == first.name and len(merged.recommendations) >= 2
    assert done.before["point_lookup"].p95_ms == 500.0 and done.after["point_lookup"].p95_ms == 5.0
    assert done.slower == []
    actions = [(str(a), str(n)) for a, n in query(
        url, "SELECT action, index_name FROM pgmill.index_actions WHERE run_id = %s ORDER BY action_id", (run_id,))]
    assert ("keep", kept[0]) in actions and actions.index(("drop", first.name)) < actions.index(("keep", kept[0]))


def test_nothing_is_refilled_when_every_index_proved_itself(
        pg_server: EmbeddedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = seeded(pg_server.url())
    root = write_queries(tmp_path, {"point_lookup": SHAPES["point_lookup"]})
    cfg = TuneConfig(observed=0, min_benefit=0.0, executions=5)
    with connect(url) as conn:
        store.ensure_schema(conn)
        advice = replace(advise(conn, root, cfg), budget_bytes=BUDGET)
        run_id = store.start_run(conn, "apply", advice.backend)
    calls: list[int] = []

    def advise_workload(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        raise AssertionError("refill advised although nothing was dropped")

    monkeypatch.setattr("pgmill.tune.refill.advise_workload", advise_workload)
    script_p95(monkeypatch, lambda q: 5.0 if pgmill_indexes(url, "customers") else 500.0)
    recs = [replace(r, lean=None) for r in advice.recommendations]
    with connect(url) as conn:
        applied = apply_advice(lambda: connect(url), replace(advice, recommendations=recs), run_id, executions=5,
                               lock_timeout="5s")
        assert [o.status for o in applied.outcomes] == ["kept"]
        merged, done = refill(conn, lambda: connect(url), replace(advice, recommendations=recs), applied, run_id,
                              cfg, "auto")
    assert done is applied and calls == []
    assert [r.name for r in merged.recommendations] == [r.name for r in recs]
