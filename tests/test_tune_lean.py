"""Lean indexes: the width limit (keys + INCLUDE), covering columns as deduplicated keys, composite sizes from a
sample, the benefit-per-byte floor, and `--apply` measuring the lean alternative in place of the wide index."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql
from typer.testing import CliRunner

from pgmill.config.tune import TuneConfig
from pgmill.db.connect import Target
from pgmill.db.embedded import EmbeddedServer
from pgmill.tune import apply as apply_module
from pgmill.tune import store
from pgmill.tune.advisor import Advice, Recommendation, advise
from pgmill.tune.analyze import TableAccess
from pgmill.tune.apply import Outcome, _verdict, apply_advice
from pgmill.tune.candidates import Candidate, for_access
from pgmill.tune.measure import Latency, as_fast, regressed
from pgmill.tune.run import rollback_run
from pgmill.tune.snapshot import CatalogSnapshot, Column, Table, load_snapshot
from pgmill.tune.whatif import estimate_size, sample_distinct
from tests.helpers import connect, pgmill_indexes, query, script_p95
from tests.test_cli_tune import cli
from tests.test_tune_advisor import SHAPES, all_visible, run_advice, write_queries

pytest_plugins = ["tests.pg15"]  # the pg15 and backend_url fixtures


def seeded(server_url: str) -> str:
    from tests.pg15 import seeded as seed

    return seed(server_url)


def width(c: Candidate) -> int:
    return len(c.keys) + len(c.include)


def _catalog() -> CatalogSnapshot:
    cols = {n: Column(n, "bigint" if n != "quantity" else "integer", True, 8 if n != "quantity" else 4, d, 0.0,
                      True, "d" if n != "quantity" else "i")
            for n, d in (("order_id", -1.0), ("product_id", 500.0), ("quantity", 5.0))}
    t = Table(1, "shop", "order_items", 100_000, 600, 600 * 8192, 100_000, 100_000, 0, 0, 0, 0, False, cols)
    return CatalogSnapshot({t.key: t}, ["shop"], 150000)


def test_covering_columns_come_as_include_and_as_trailing_keys_within_the_width() -> None:
    catalog = _catalog()
    access = TableAccess(("shop", "order_items"), eq=["product_id"], used={"product_id", "quantity"})
    got = {(c.keys, c.include) for c in for_access(access, catalog, 3)}
    assert {(("product_id",), ()), (("product_id",), ("quantity",)), (("product_id", "quantity"), ())} <= got
    assert {(c.keys, c.include) for c in for_access(access, catalog, 3, max_width=1)} == {(("product_id",), ())}
    two = for_access(access, catalog, 1, max_width=2)  # one key column at most, two columns in all
    assert {(c.keys, c.include) for c in two} == {(("product_id",), ()), (("product_id",), ("quantity",))}
    # deduplication: few distinct (product_id, quantity) pairs make the two-key index far smaller
    t = catalog.tables[("shop", "order_items")]
    keys = Candidate("shop", "order_items", ("product_id", "quantity"), (False, False))
    include = Candidate("shop", "order_items", ("product_id",), (False,), ("quantity",))
    assert estimate_size(keys, t, 2500.0) * 2 < estimate_size(include, t)


def test_max_width_caps_keys_and_include_together(backend_url: tuple[str, str], tmp_path: Path) -> None:
    backend, url = backend_url
    root = write_queries(tmp_path, SHAPES)
    for limit in (1, 2):
        advice = run_advice(url, backend, root, max_width=limit)
        assert advice.recommendations
        assert all(width(r.candidate) <= limit for r in advice.recommendations), \
            [r.label for r in advice.recommendations]
        for name in ("point_lookup", "date_range", "covering", "top_n"):
            assert advice.cost_after[name] < advice.cost_before[name] * 0.9, name
    one = run_advice(url, backend, root, max_width=1)
    assert all(not r.candidate.include and len(r.candidate.keys) == 1 for r in one.recommendations)


def test_cli_max_width(pg_server: EmbeddedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGMILL_DATABASE_URL", seeded(pg_server.url()))
    monkeypatch.chdir(tmp_path)
    write_queries(tmp_path, SHAPES)
    (tmp_path / "pgmill.yaml").write_text("pipelines: {}\ntune: {observed: 0, max_width: 3}\n")
    runner = CliRunner()
    result = runner.invoke(cli(), ["tune", "--max-width", "1", "--json"])
    assert result.exit_code == 0, result.output
    recs = json.loads(result.output)["recommendations"]
    assert recs and all(" INCLUDE " not in r["label"] and ", " not in r["label"] for r in recs), recs
    bad = runner.invoke(cli(), ["tune", "--max-width", "0"])
    assert bad.exit_code != 0 and "--max-width 0" in bad.output


def test_composite_key_size_comes_from_a_sample_not_independence(pg_server: EmbeddedServer) -> None:
    url = seeded(pg_server.url())
    c = Candidate("app", "orders", ("customer_id", "created_at"), (False, False))
    with connect(url) as conn:
        t = load_snapshot(conn).tables[("app", "orders")]
        distinct = sample_distinct(conn, c, t)
        conn.execute(c.ddl())
        real = int(conn.execute("SELECT pg_relation_size(to_regclass(%s))", (f"app.{c.name}",)).fetchone()[0])  # type: ignore[index]
        conn.execute(sql.SQL("DROP INDEX app.{}").format(sql.Identifier(c.name)))
    # the seed gives each of the 50 customers the same 30 dates: 1500 pairs, not 50 x 1500
    assert distinct is not None and 1200 <= distinct <= 1800
    assert 0.75 * real <= estimate_size(c, t, distinct) <= 1.25 * real
    assert estimate_size(c, t) > 2.5 * real  # what assuming independent columns would have said


def test_a_cheap_lookup_gets_a_plain_index_unless_leanness_is_off(backend_url: tuple[str, str],
                                                                   tmp_path: Path) -> None:
    backend, url = backend_url
    root = write_queries(tmp_path, SHAPES)
    lean = run_advice(url, backend, root)
    [rec] = [r for r in lean.recommendations if "point_lookup" in r.queries]
    assert (rec.candidate.keys, rec.candidate.include) == (("email",), ())
    if all_visible(url, "app.customers"):  # index-only scans (the covering gain) need the visibility map
        with connect(url) as conn:
            wide = advise(conn, root, TuneConfig(observed=0, min_benefit=0.0), backend=backend)
        [w] = [r for r in wide.recommendations if "point_lookup" in r.queries]
        assert w.candidate.keys[0] == "email" and width(w.candidate) == 3, w.label
        assert sum(r.size_bytes for r in wide.recommendations) > sum(r.size_bytes for r in lean.recommendations)


# ---------------------------------------------------------------- --apply measures the lean alternative


def _advice_with(url: str, root: Path, wide: Candidate, lean: Candidate) -> tuple[Advice, int]:
    with connect(url) as conn:
        store.ensure_schema(conn)
        advice = advise(conn, root, TuneConfig(observed=0))
        run_id = store.start_run(conn, "apply", advice.backend)
    base = advice.recommendations[0]
    rec = Recommendation(wide.name, "app.orders", wide.text(), wide.label(), base.size_bytes, ["covering"],
                         base.cost_before, base.cost_after, wide, lean, base.size_bytes)
    return replace(advice, recommendations=[rec]), run_id


def _indexes(url: str) -> set[str]:
    return {str(r[0]) for r in query(url, "SELECT indexname FROM pg_indexes WHERE schemaname = 'app'")}


def _actions(url: str, run_id: int) -> list[tuple[str, str]]:
    rows = query(url, "SELECT action, index_name FROM pgmill.index_actions WHERE run_id = %s ORDER BY action_id",
                 (run_id,))
    return [(str(a), str(n)) for a, n in rows]


# a sum over the 150 orders of one shop: a sequential scan of 60,000 rows before, well under a millisecond
# with either index (the covering one reads no table pages)
WIDE = Candidate("app", "orders", ("shop_id",), (False,), ("total",))


def _apply(url: str, advice: Advice, run_id: int) -> list[dict[str, object]]:
    applied = apply_advice(lambda: connect(url), advice, run_id, executions=30,
                           lock_timeout="5s")
    assert not applied.slower
    return [o.as_dict() for o in applied.outcomes]


def test_apply_keeps_the_lean_index_when_it_measures_as_fast(pg_server: EmbeddedServer, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    url = seeded(pg_server.url())
    root = write_queries(tmp_path, {"covering": SHAPES["covering"]})
    lean = Candidate("app", "orders", ("shop_id",), (False,))
    advice, run_id = _advice_with(url, root, WIDE, lean)
    before = _indexes(url)
    # both indexes take well under a millisecond here, and on a loaded machine (CI's) the lean one's heap
    # reads measured over 1 ms slower now and then: the p95 is scripted (the queries still run)
    def p95(_query: str) -> float:
        built = pgmill_indexes(url, "orders")
        return 0.30 if WIDE.name in built else 0.45 if lean.name in built else 9.0

    script_p95(monkeypatch, p95)
    outcomes = _apply(url, advice, run_id)
    assert {o["name"]: o["status"] for o in outcomes} == {WIDE.name: "dropped", lean.name: "kept"}, outcomes
    kept = next(o for o in outcomes if o["status"] == "kept")
    assert kept["improved"] == ["covering"] and "leaner than" in str(kept["reason"])
    assert _indexes(url) - before == {lean.name}
    assert _actions(url, run_id) == [("create", WIDE.name), ("create", lean.name), ("drop", WIDE.name),
                                     ("keep", lean.name)]
    rollback_run(Target(url), TuneConfig(), run_id)
    assert _indexes(url) == before


def test_apply_builds_the_wide_index_again_when_the_lean_one_does_not_serve(pg_server: EmbeddedServer,
                                                                           tmp_path: Path) -> None:
    url = seeded(pg_server.url())
    root = write_queries(tmp_path, {"covering": SHAPES["covering"]})
    useless = Candidate("app", "orders", ("created_at",), (False,))  # a filter on shop_id cannot use it
    advice, run_id = _advice_with(url, root, WIDE, useless)
    before = _indexes(url)
    outcomes = _apply(url, advice, run_id)
    assert {o["name"]: o["status"] for o in outcomes} == {WIDE.name: "kept", useless.name: "dropped"}, outcomes
    reason = next(str(o["reason"]) for o in outcomes if o["name"] == useless.name)
    assert reason.startswith("measured ") and reason.endswith(": covering"), reason  # slower, or no longer faster
    assert _indexes(url) - before == {WIDE.name}
    assert [a for a, n in _actions(url, run_id) if n == WIDE.name] == ["create", "drop", "create", "keep"]
    rollback_run(Target(url), TuneConfig(), run_id)
    assert _indexes(url) == before


def _lat(p95_ms: float) -> Latency:
    return Latency("q", 30, p95_ms, p95_ms, p95_ms, p95_ms)


@pytest.mark.parametrize(("wide", "lean", "expected"), [
    (0.37, 4.0, False),  # bench_mixed: part (p_brand) for (p_size, p_brand, p_retailprice), once kept as "as fast"
    (0.20, 0.90, True),  # within 1 ms: noise at this size
    (10.0, 12.4, True),  # within 25%
    (10.0, 13.0, False),
    (50.0, 49.0, True),
])
def test_a_lean_index_is_as_fast_only_within_25_percent_or_1_ms(wide: float, lean: float, expected: bool) -> None:
    assert as_fast(_lat(wide), _lat(lean)) is expected
    assert not regressed(_lat(0.37), _lat(4.0))  # the floor of `regressed` (5 ms) would have let it pass


def test_an_index_only_unrunnable_statements_read_is_dropped_saying_so() -> None:
    o = Outcome("i", "public.part (p_type)", "public.part", "CREATE INDEX ...", "kept", "")
    status, reason = _verdict(o, ["q14"]) or ("kept", "")
    assert status == "dropped"
    assert reason.startswith("read only by statements pgmill cannot run (q14: parameters it cannot fill)"), reason
    assert _verdict(o, []) == ("dropped", "no workload query's plan reads it")
    o.used_by, o.improved = ["q14"], ["q14"]
    assert _verdict(o, ["q14"]) is None


def test_apply_builds_the_wide_index_again_when_the_lean_one_is_slower_under_the_noise_floor(
        pg_server: EmbeddedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lean index measured a few ms slower than the wide one (the trial's p95 raised to sit between
    `as_fast`'s 1 ms and `regressed`'s 5 ms floor, no index's p95 raised tenfold so that it is still an
    improvement on no index): the wide one comes back."""

    url = seeded(pg_server.url())
    root = write_queries(tmp_path, {"covering": SHAPES["covering"]})
    lean = Candidate("app", "orders", ("shop_id",), (False,))
    advice, run_id = _advice_with(url, root, WIDE, lean)
    real = apply_module.measure
    seen: list[dict[str, Latency]] = []

    def measure(conn: Any, queries: Any, executions: int = 30) -> dict[str, Latency]:
        out = real(conn, queries, executions)
        if not seen:  # no index yet: a table ten times as large, so that a few ms still beat no index
            out = {q: replace(v, p95_ms=v.p95_ms * 10) for q, v in out.items()}
        seen.append(out)
        lean_built = conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname = %s", (lean.name,)).fetchone()
        if lean_built[0] and not conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname = %s",
                                              (WIDE.name,)).fetchone()[0]:
            before, wide = seen[0]["covering"], seen[-2]["covering"]
            slower = wide.p95_ms + 3.0
            assert slower <= before.p95_ms * 0.8, (before, wide)  # still an improvement on no index
            assert not regressed(wide, _lat(slower)) and not as_fast(wide, _lat(slower))
            out = {"covering": replace(out["covering"], p95_ms=slower)}
        return out

    monkeypatch.setattr(apply_module, "measure", measure)
    outcomes = _apply(url, advice, run_id)
    assert {o["name"]: o["status"] for o in outcomes} == {WIDE.name: "kept", lean.name: "dropped"}, outcomes
    reason = next(str(o["reason"]) for o in outcomes if o["name"] == lean.name)
    assert reason == f"measured slower than {WIDE.label()}: covering", reason
