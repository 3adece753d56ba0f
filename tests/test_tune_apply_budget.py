"""`--apply` holds the storage budget for the indexes as built: sizes are estimated before the indexes exist,
so when the kept ones take more room than the budget, the least measured gain per byte goes first."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from pgmill.config.tune import TuneConfig
from pgmill.db.embedded import EmbeddedServer
from pgmill.tune import apply as apply_module
from pgmill.tune import store
from pgmill.tune.advisor import advise
from pgmill.tune.apply import apply_advice
from pgmill.tune.measure import Latency
from tests.helpers import connect, query
from tests.test_tune_advisor import SHAPES, write_queries
from tests.test_tune_lean import seeded

pytest_plugins = ["tests.pg15"]


def test_apply_drops_the_least_gain_per_byte_until_the_built_indexes_fit_the_budget(
        pg_server: EmbeddedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = seeded(pg_server.url())
    root = write_queries(tmp_path, {k: SHAPES[k] for k in ("point_lookup", "covering")})
    with connect(url) as conn:
        store.ensure_schema(conn)
        advice = advise(conn, root, TuneConfig(observed=0, min_benefit=0.0))
        run_id = store.start_run(conn, "apply", advice.backend)
    recs = [replace(r, lean=None) for r in advice.recommendations]  # no lean swap: sizes stay as built here
    assert sorted(q for r in recs for q in r.queries) == ["covering", "point_lookup"], [r.label for r in recs]
    [keeper] = [r for r in recs if "covering" in r.queries]
    [other] = [r for r in recs if r is not keeper]
    with connect(url) as conn:  # the keeper's real size: the budget it alone fits in
        conn.execute(keeper.definition.replace(" CONCURRENTLY", "").encode())
        size = int(conn.execute("SELECT pg_relation_size(%s::regclass)", (f"app.{keeper.name}",)).fetchone()[0])
        conn.execute(sql.SQL("DROP INDEX app.{}").format(sql.Identifier(keeper.name)))
    real = apply_module.measure
    calls: list[int] = []

    def measure(conn: Any, queries: Any, executions: int = 30) -> dict[str, Latency]:
        out = real(conn, queries, executions)
        calls.append(1)
        if len(calls) == 1:  # before any index: `covering` saves far more time than `point_lookup`
            out = {q: replace(v, p95_ms=10_000.0 if q == "covering" else 50.0) for q, v in out.items()}
        return out

    monkeypatch.setattr(apply_module, "measure", measure)
    applied = apply_advice(lambda: connect(url), replace(advice, recommendations=recs, budget_bytes=size), run_id,
                           executions=10, lock_timeout="5s")
    status = {o.name: (o.status, o.reason) for o in applied.outcomes}
    assert status[keeper.name][0] == "kept", status
    assert status[other.name][0] == "dropped", status
    assert status[other.name][1].startswith("over the storage budget as built ("), status
    assert status[other.name][1].endswith(": the least measured gain per byte"), status
    left = {str(r[0]) for r in query(url, "SELECT indexname FROM pg_indexes WHERE schemaname = 'app'"
                                          " AND indexname LIKE 'pgmill%'")}
    assert left == {keeper.name}
    actions = [(str(a), str(n)) for a, n in query(
        url, "SELECT action, index_name FROM pgmill.index_actions WHERE run_id = %s ORDER BY action_id", (run_id,))]
    assert ("drop", other.name) in actions and ("keep", keeper.name) in actions, actions
