"""The advisor finds the right index for each seeded query shape, with HypoPG and without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgmill.config.tune import TuneConfig
from pgmill.tune.advisor import Advice, advise
from pgmill.tune.candidates import Candidate, covers
from pgmill.tune.snapshot import load_snapshot
from pgmill.tune.workload import executable_text
from tests.helpers import connect, query

pytest_plugins = ["tests.pg15"]  # the pg15 and backend_url fixtures

SHAPES = {
    "point_lookup": ("-- params: [['user17@example.com'], ['user4242@example.com'], ['user999@example.com']]\n"
                     "SELECT id, country FROM app.customers WHERE email = $1"),
    "fk_join": ("-- params: [[3], [17], [41]]\n"
                "SELECT email, total FROM app.customers c JOIN app.orders o ON o.customer_id = c.id WHERE c.id = $1"),
    "date_range": ("-- params: [['2021-03-01', '2021-03-04'], ['2022-07-10', '2022-07-13'], ['2023-01-05', '2023-01-08']]\n"
                   "SELECT count(*), sum(total) FROM app.orders WHERE created_at BETWEEN $1 AND $2"),
    "top_n": "SELECT id, total FROM app.orders ORDER BY created_at DESC LIMIT 10",
    "eq_range": ("-- params: [[5, '2024-01-01'], [23, '2023-12-20'], [44, '2024-01-20']]\n"
                 "SELECT id, total FROM app.orders WHERE customer_id = $1 AND created_at >= $2"),
    "covering": ("-- params: [[7], [111], [333]]\n"
                 "SELECT sum(total) FROM app.orders WHERE shop_id = $1"),
}


def write_queries(root: Path, shapes: dict[str, str]) -> Path:
    (root / "queries").mkdir(parents=True, exist_ok=True)
    for name, text in shapes.items():
        (root / "queries" / f"{name}.sql").write_text(f"-- name: {name}\n{text}\n")
    return root


def run_advice(url: str, backend: str, root: Path, **kw: object) -> Advice:
    with connect(url) as conn:
        return advise(conn, root, TuneConfig(observed=0), backend=backend, **kw)  # type: ignore[arg-type]


def all_visible(url: str, table: str = "app.orders") -> bool:
    """The table has pages in the visibility map: index-only scans (the covering gain) need them."""
    [(visible,)] = query(url, "SELECT relallvisible > 0 FROM pg_class WHERE oid = %s::regclass", (table,))
    return bool(visible)


def serving(advice: Advice, query: str) -> list[Candidate]:
    return [r.candidate for r in advice.recommendations if query in r.queries]


def test_finds_the_index_for_each_shape(backend_url: tuple[str, str], tmp_path: Path) -> None:
    backend, url = backend_url
    advice = run_advice(url, backend, write_queries(tmp_path, SHAPES))
    assert advice.backend == backend
    got = {name: serving(advice, name) for name in SHAPES}
    recommended = [r.candidate for r in advice.recommendations]

    def leads(name: str, table: str, *keys: str) -> bool:
        """An index leading with `keys` is recommended, and the query gets cheaper with the selection."""
        return (any(c.table == table and c.keys[: len(keys)] == keys for c in recommended)
                and advice.cost_after[name] < advice.cost_before[name] * 0.9)

    assert leads("point_lookup", "customers", "email"), got["point_lookup"]
    assert leads("fk_join", "orders", "customer_id"), got["fk_join"]
    assert leads("date_range", "orders", "created_at"), got["date_range"]
    assert leads("top_n", "orders", "created_at"), got["top_n"]
    assert leads("eq_range", "orders", "customer_id", "created_at"), got["eq_range"]
    assert leads("covering", "orders", "shop_id"), got["covering"]
    if all_visible(url):  # an index-only scan needs the visibility map (the PG15 cluster may not set it)
        assert any(c.keys[0] == "shop_id" and "total" in (*c.keys, *c.include) for c in recommended), recommended
    for r in advice.recommendations:
        assert r.size_bytes > 0 and r.queries
        assert all(r.cost_after[q] < r.cost_before[q] for q in r.queries)


def test_never_recommends_what_an_existing_index_covers(backend_url: tuple[str, str], tmp_path: Path) -> None:
    backend, url = backend_url
    with connect(url) as conn:
        conn.execute("CREATE INDEX customers_email ON app.customers (email, country, id)")
        conn.execute("CREATE INDEX orders_cust_created ON app.orders (customer_id, created_at DESC) INCLUDE (total)")
        conn.execute("CREATE INDEX orders_created ON app.orders (created_at) INCLUDE (total, id)")
    advice = run_advice(url, backend, write_queries(tmp_path, SHAPES))
    with connect(url) as conn:
        existing = [ix for t in load_snapshot(conn).tables.values() for ix in t.indexes]
    for r in advice.recommendations:
        assert not any(covers(ix, r.candidate) for ix in existing), r.label
        assert r.candidate.keys[:1] != ("email",), r.label
    assert not serving(advice, "point_lookup") and not serving(advice, "date_range")
    assert not serving(advice, "top_n")


def test_unqualified_columns_in_a_join_are_resolved_to_their_table(backend_url: tuple[str, str],
                                                                 tmp_path: Path) -> None:
    backend, url = backend_url
    shapes = {"unqualified": ("-- params: [['user12@example.com'], ['user3001@example.com']]\n"
                              "SELECT email, total, created_at FROM app.customers JOIN app.orders"
                              " ON customer_id = customers.id WHERE email = $1 AND status = 'P'")}
    advice = run_advice(url, backend, write_queries(tmp_path, shapes))
    tables = {(c.table, c.keys[0]) for c in serving(advice, "unqualified")}
    assert ("customers", "email") in tables or ("orders", "customer_id") in tables, tables
    for r in advice.recommendations:
        cols = {*r.candidate.keys, *r.candidate.include}
        if r.candidate.table == "customers":
            assert cols <= {"id", "email", "country"}
        else:
            assert cols <= {"id", "customer_id", "shop_id", "status", "created_at", "total", "note"}


def test_a_query_without_values_for_its_parameters_is_costed_by_its_generic_plan(
        backend_url: tuple[str, str], tmp_path: Path) -> None:
    """A statement whose `$n` pgmill cannot fill (pg_stat_statements' text, a parameter inside arithmetic) is
    still costed, by the plan for any values: EXPLAIN (GENERIC_PLAN) on PostgreSQL 16+, a prepared statement's
    forced generic plan before (the PostgreSQL 15 cluster). It used to cost 0 there, and so got no index."""
    backend, url = backend_url
    shapes = {"no_values": "SELECT id, total FROM app.orders WHERE customer_id = $1 + 0",
              "typed_literals": executable_text("SELECT count(*) FROM app.orders WHERE created_at >= timestamptz $1"
                                                " AND created_at < timestamptz $1 + interval $2")}
    with connect(url) as conn:
        advice = advise(conn, write_queries(tmp_path, shapes), TuneConfig(observed=0), backend=backend)  # type: ignore[arg-type]
        # the session is left as it was: no prepared statement, the plan cache mode as before
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'pgmill%'").fetchone() == (0,)
        assert conn.execute("SELECT current_setting('plan_cache_mode')").fetchone() == ("auto",)
    assert [q.name for q in advice.workload] == ["no_values", "typed_literals"]
    assert all(not q.runnable for q in advice.workload)
    assert advice.cost_before["no_values"] > 0 and advice.cost_before["typed_literals"] > 0
    lead = {name: [c.keys[0] for c in serving(advice, name)] for name in shapes}
    assert "customer_id" in lead["no_values"], lead
    assert advice.cost_after["no_values"] < advice.cost_before["no_values"] * 0.9


def test_statement_text_from_pg_stat_statements_is_made_executable() -> None:
    assert executable_text("WHERE d >= date $2 AND d < date $2 + interval $3") == \
        "WHERE d >= $2::date AND d < $2::date + $3::interval"
    assert executable_text("WHERE t < now() - interval $1 day AT TIME ZONE $2") == \
        "WHERE t < now() - interval $1 day AT TIME ZONE $2"  # a field after the interval: left as it is


def test_budget_limits_the_storage(backend_url: tuple[str, str], tmp_path: Path) -> None:
    backend, url = backend_url
    root = write_queries(tmp_path, SHAPES)
    free = run_advice(url, backend, root, budget="unlimited")
    small = run_advice(url, backend, root, budget="600kB".replace("kB", "KB"))
    assert sum(r.size_bytes for r in small.recommendations) <= 600 * 1024
    assert len(small.recommendations) < len(free.recommendations)


@pytest.mark.parametrize("runs", [3])
def test_same_input_same_recommendations(backend_url: tuple[str, str], tmp_path: Path, runs: int) -> None:
    backend, url = backend_url
    root = write_queries(tmp_path, SHAPES)
    results = [[(r.definition, r.size_bytes, tuple(r.queries)) for r in run_advice(url, backend, root).recommendations]
               for _ in range(runs)]
    assert results[0] and all(r == results[0] for r in results)
