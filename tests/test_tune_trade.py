"""No query ends slower: an index that speeds one query and, measured twice, slows another is a trade, and
`--apply` drops it (reporting both sides); one that only slows is dropped too."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pgmill.config.tune import TuneConfig
from pgmill.db.embedded import EmbeddedServer
from pgmill.tune import store
from pgmill.tune.advisor import Advice, advise
from pgmill.tune.apply import Applied, apply_advice
from tests.helpers import connect, pgmill_indexes, query, script_p95
from tests.test_tune_advisor import SHAPES, write_queries
from tests.test_tune_lean import seeded

pytest_plugins = ["tests.pg15"]


def _apply_scripted(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    with_index: dict[str, float]) -> tuple[Advice, Applied, int]:
    """Apply the advisor's orders (customer_id, ...) index alone, for fk_join and eq_range, with the
    measurement scripted: every query at 500 ms without a pgmill index on orders, `with_index` with one."""
    root = write_queries(tmp_path, {k: SHAPES[k] for k in ("fk_join", "eq_range")})
    with connect(url) as conn:
        store.ensure_schema(conn)
        advice = advise(conn, root, TuneConfig(observed=0, min_benefit=0.0, executions=5))
        run_id = store.start_run(conn, "apply", advice.backend)
    recs = [replace(r, lean=None) for r in advice.recommendations
            if r.candidate.table == "orders" and r.candidate.keys[0] == "customer_id"]
    assert recs, [r.label for r in advice.recommendations]
    calls = script_p95(monkeypatch, lambda q: with_index[q] if pgmill_indexes(url, "orders") else 500.0)
    one = replace(advice, recommendations=recs[:1])
    applied = apply_advice(lambda: connect(url), one, run_id, executions=5, lock_timeout="5s")
    assert ("eq_range",) in calls  # the slowdown was measured a second time before it was acted on
    return one, applied, run_id


def test_an_index_that_speeds_one_query_and_slows_another_is_a_trade_and_dropped(
        pg_server: EmbeddedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = seeded(pg_server.url())
    advice, applied, run_id = _apply_scripted(url, tmp_path, monkeypatch, {"fk_join": 5.0, "eq_range": 900.0})
    [o] = applied.outcomes
    assert o.name == advice.recommendations[0].name
    assert sorted(o.used_by) == ["eq_range", "fk_join"], o.as_dict()  # both plans read it
    assert (o.status, o.improved, o.slowed) == ("trade", ["fk_join"], ["eq_range"])
    assert o.reason == ("speeds fk_join but slows eq_range: not applied on its own; "
                        "create it by hand if the trade is worth it")
    assert pgmill_indexes(url, "orders") == set()
    # measured again without it: nothing ends slower than it started
    assert applied.slower == [] and applied.after["eq_range"].p95_ms == 500.0
    actions = query(url, "SELECT action, index_name, reason, detail FROM pgmill.index_actions WHERE run_id = %s"
                         " ORDER BY action_id", (run_id,))
    assert [(str(a), str(n)) for a, n, _, _ in actions] == [("create", o.name), ("trade", o.name)]
    assert actions[1][2] == o.reason and actions[1][3] == {"improved": ["fk_join"], "slowed": ["eq_range"]}


def test_an_index_that_only_slows_a_query_is_dropped(
        pg_server: EmbeddedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = seeded(pg_server.url())
    _, applied, run_id = _apply_scripted(url, tmp_path, monkeypatch, {"fk_join": 500.0, "eq_range": 900.0})
    [o] = applied.outcomes
    assert (o.status, o.reason, o.improved, o.slowed) == ("dropped", "slowed eq_range", [], ["eq_range"])
    assert pgmill_indexes(url, "orders") == set() and applied.slower == []
    assert [str(a) for (a,) in query(url, "SELECT action FROM pgmill.index_actions WHERE run_id = %s"
                                          " ORDER BY action_id", (run_id,))] == ["create", "drop"]
