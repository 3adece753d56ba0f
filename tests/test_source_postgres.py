"""A table or query on another PostgreSQL database: exact loads, incremental reruns, exact resume points,
type fidelity, and clear errors that carry no secret."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from psycopg import sql

from pgmill.config.spec import PostgresSource
from pgmill.errors import DatabaseUnavailable, SourceError
from pgmill.ingest.sources.base import RawBatch, SourceState
from pgmill.ingest.sources.postgres import _cut, read_postgres, single_select
from tests.helpers import SOURCE_ENV, ProjectDir, connect, execute, query, run_one

ENV = SOURCE_ENV  # the `source` fixture (conftest.py) puts its URL there

ORDERS_CONTRACT: dict[str, Any] = {
    "columns": {
        "id": {"type": "bigint", "primary_key": True},
        "customer": {"type": "text", "not_null": True},
        "total": {"type": "numeric(12,2)", "min": 0},
        "updated_at": {"type": "timestamptz", "not_null": True},
    }
}


def pipeline(project: ProjectDir, source: dict[str, Any], contract: dict[str, Any] = ORDERS_CONTRACT,
             retry: dict[str, Any] | None = None, **kw: Any) -> None:
    project.contract("orders", contract)
    spec = {"source": {"kind": "postgres", "url_env": ENV, **source}, "table": "public.orders",
            "contract": "contracts/orders.yaml", "mode": "merge", "cursor": "updated_at", **kw}
    project.config({"orders": spec}, retry=retry or {"attempts": 1})


def last_run(project: ProjectDir) -> tuple[Any, ...]:
    return project.query(
        "SELECT rows_read, rows_inserted, rows_updated, rows_unchanged, rows_quarantined, batches"
        " FROM pgmill.runs ORDER BY run_id DESC LIMIT 1"
    )[0]


def test_incremental_merge_reads_only_new_and_changed_rows(project: ProjectDir, source: str) -> None:
    execute(source, "INSERT INTO shop.orders VALUES"
            " (1, 'ann', 10.50, '2024-01-01 10:00Z'), (2, 'bob', 20.00, '2024-01-01 11:00Z'),"
            " (3, 'cy', 30.00, '2024-01-01 11:00Z'), (4, 'di', 40.00, '2024-01-01 11:00Z'),"
            " (5, 'ed', -5.00, '2024-01-01 12:00Z')")
    pipeline(project, {"table": "shop.orders"}, batch_rows=2)

    run_one()
    # the three rows at 11:00 share one batch: a batch never ends inside a run of equal cursor values
    assert last_run(project) == (5, 4, 0, 0, 1, 3)
    assert project.query("SELECT id, customer, total::text, updated_at::text FROM orders ORDER BY id") == [
        (1, "ann", "10.50", "2024-01-01 10:00:00+00"), (2, "bob", "20.00", "2024-01-01 11:00:00+00"),
        (3, "cy", "30.00", "2024-01-01 11:00:00+00"), (4, "di", "40.00", "2024-01-01 11:00:00+00"),
    ]
    assert project.query("SELECT source_location FROM pgmill.quarantine") == [("postgres:shop.orders:row 5",)]

    # the quarantined row was the last one read: the rerun starts after it, not after the last loaded row
    run_one()
    assert last_run(project) == (0, 0, 0, 0, 0, 0)

    execute(source, "UPDATE shop.orders SET total = 11.00, updated_at = '2024-01-02 09:00Z' WHERE id = 1")
    execute(source, "INSERT INTO shop.orders VALUES (6, 'fay', 60.00, '2024-01-02 09:00Z'),"
            " (7, 'gus', NULL, '2024-01-02 10:00Z')")
    run_one()
    assert last_run(project)[:5] == (3, 2, 1, 0, 0)
    assert project.query("SELECT id, customer, total::text, updated_at::text FROM orders ORDER BY id") == [
        (1, "ann", "11.00", "2024-01-02 09:00:00+00"), (2, "bob", "20.00", "2024-01-01 11:00:00+00"),
        (3, "cy", "30.00", "2024-01-01 11:00:00+00"), (4, "di", "40.00", "2024-01-01 11:00:00+00"),
        (6, "fay", "60.00", "2024-01-02 09:00:00+00"), (7, "gus", None, "2024-01-02 10:00:00+00"),
    ]
    assert project.scalar("SELECT cursor_value::timestamptz = '2024-01-02 10:00Z' FROM pgmill.state")


def read_all(spec: PostgresSource, state: SourceState, batch_rows: int) -> list[RawBatch]:
    return list(read_postgres(spec, state, "k", batch_rows))


def test_every_checkpoint_is_an_exact_resume_point(source: str) -> None:
    execute(source, "CREATE TABLE shop.events (id int, k numeric)")
    # ties, a value written two ways (1.0 = 1.00), and NULL cursors, which come first
    keys = [None, None, "1", "1.0", "1.00", "2", "3", "3", "3", "3", "3", "4", "5", "5", "6"]
    for i, k in enumerate(keys):
        execute(source, "INSERT INTO shop.events VALUES (%s, %s)", (i, k))
    spec = PostgresSource(kind="postgres", url_env=ENV, table="shop.events")
    everything = sorted(r["id"] for b in read_all(spec, SourceState({}, None, {}), 1000) for r in b.table.to_pylist())
    assert everything == list(range(len(keys)))
    for batch_rows in (1, 2, 3, 4):
        batches = read_all(spec, SourceState({}, None, {}), batch_rows)
        ids = [[r["id"] for r in b.table.to_pylist()] for b in batches]
        assert sorted(sum(ids, [])) == everything
        for n, b in enumerate(batches):
            assert b.checkpoint is not None
            rest = read_all(spec, SourceState(b.checkpoint, None, {}), batch_rows)
            done = sum(ids[: n + 1], [])
            after = [r["id"] for x in rest for r in x.table.to_pylist()]
            assert sorted(done + after) == everything, (batch_rows, n, b.checkpoint)
    first = read_all(spec, SourceState({}, None, {}), 5)[0].checkpoint
    assert first is not None and first["postgres"]["cursor"] == "k"
    assert Decimal(first["postgres"]["last_cursor"]) == 1  # the two NULLs and all three spellings of 1


def test_cut_never_splits_a_cursor_value() -> None:
    assert _cut([1, 2, 3], 2, False) == 2
    assert _cut([1, 2, 2], 2, False) == 1
    assert _cut([2, 2, 2], 2, False) is None
    assert _cut([2, 2, 2], 2, True) == 3
    assert _cut([2, 2, 2, 3], 2, False) == 3
    assert _cut([1, 2], 2, False) is None
    assert _cut([1, 2], 2, True) == 2


def test_query_source_appends_by_cursor(project: ProjectDir, source: str) -> None:
    execute(source, "INSERT INTO shop.orders VALUES (1, 'ann', 1, '2024-01-01Z'), (2, 'bob', 2, '2024-01-02Z'),"
            " (3, 'al', 3, '2024-01-03Z')")
    query = ("-- the a-customers, with a % in a literal\n"
             "SELECT id, customer || '%' AS customer, total, updated_at FROM shop.orders"
             " WHERE customer LIKE 'a%' ORDER BY id DESC; -- trailing comment")
    pipeline(project, {"query": query}, mode="append")
    run = run_one()
    assert project.query("SELECT id, customer FROM orders ORDER BY id") == [(1, "ann%"), (3, "al%")]

    execute(source, "INSERT INTO shop.orders VALUES (4, 'amy', 4, '2024-01-04Z'), (5, 'bo', 5, '2024-01-05Z')")
    run = run_one()
    assert (run.counts.rows_read, run.counts.rows_inserted, run.counts.rows_duplicate) == (1, 1, 0)
    assert project.query("SELECT id FROM orders ORDER BY id") == [(1,), (3,), (4,)]


@pytest.mark.parametrize(("query", "message"), [
    ("DELETE FROM shop.orders", "must be a SELECT, not Delete"),
    ("SELECT 1; SELECT 2", "one SELECT statement, it has 2"),
    ("SELECT * INTO copy FROM shop.orders", "INTO creates a table"),
    ("SELECT * FROM shop.orders FOR UPDATE", "locks rows"),
    ("WITH gone AS (DELETE FROM shop.orders RETURNING *) SELECT * FROM gone", "contains DELETE"),
    ("SELEC 1", "does not parse"),
])
def test_only_a_single_plain_select_is_accepted(query: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        single_select(query)


def test_refused_query_fails_the_run_and_leaves_the_source_alone(project: ProjectDir, source: str) -> None:
    execute(source, "INSERT INTO shop.orders VALUES (1, 'ann', 1, '2024-01-01Z')")
    pipeline(project, {"query": "WITH gone AS (DELETE FROM shop.orders RETURNING *) SELECT * FROM gone"})
    with pytest.raises(SourceError, match="contains DELETE"):
        run_one()
    assert query(source, "SELECT count(*) FROM shop.orders") == [(1,)]


def test_missing_table_or_cursor_column_is_named(project: ProjectDir, source: str) -> None:
    pipeline(project, {"table": "shop.nope"})
    with pytest.raises(SourceError, match=r'postgres:shop.nope: PostgreSQL: relation "shop.nope" does not exist'):
        run_one()
    execute(source, "ALTER TABLE shop.orders RENAME COLUMN updated_at TO changed_at")
    pipeline(project, {"table": "shop.orders"})
    with pytest.raises(SourceError, match=r"cursor column 'updated_at' is not in the source's columns "
                                          r"\(id, customer, total, changed_at\)"):
        run_one()


def test_missing_url_variable_is_named(project: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    pipeline(project, {"table": "shop.orders"})
    with pytest.raises(SourceError, match=f"environment variable {ENV} is not set"):
        run_one()
    assert project.scalar("SELECT status FROM pgmill.runs") == "failed"


def test_dead_source_is_retried_and_its_password_never_shown(project: ProjectDir,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "postgresql://loader:s3cret-pw@127.0.0.1:1/shop?connect_timeout=2")
    pipeline(project, {"table": "shop.orders"}, retry={"attempts": 2, "initial_s": 0.01, "max_s": 0.01})
    with pytest.raises(DatabaseUnavailable) as info:
        run_one()
    msg = str(info.value)
    assert msg.startswith(f"source database ({ENV}): cannot connect to postgresql://loader:***@127.0.0.1:1/shop")
    status, error, retries = project.query("SELECT status, error, retries FROM pgmill.runs")[0]
    assert (status, retries) == ("failed", 1)
    assert "s3cret" not in msg and "s3cret" not in error


TYPES_CONTRACT: dict[str, Any] = {
    "columns": {
        "id": {"type": "integer", "primary_key": True},
        "amount": {"type": "numeric(20,6)"},
        "ratio": {"type": "double precision"},
        "flag": {"type": "boolean"},
        "day": {"type": "date"},
        "updated_at": {"type": "timestamptz"},
        "doc": {"type": "jsonb"},
        "ref": {"type": "uuid"},
        "note": {"type": "varchar(20)"},
        "tags": {"type": "text"},
    }
}


def test_types_survive_exactly(project: ProjectDir, source: str) -> None:
    execute(source, "CREATE TABLE shop.things (id int, amount numeric, ratio float8, flag bool, day date,"
            " local_ts timestamp, updated_at timestamptz, doc jsonb, ref uuid, note varchar(40), tags text[])")
    execute(source, "SET TIME ZONE 'America/New_York';"
            " INSERT INTO shop.things VALUES"
            " (1, 12345678901234.123456, 0.1, true, '2024-02-29', '2024-02-29 23:59:59.999999',"
            "  '2024-03-10 01:30:00.123456-05', '{\"a\": [1, 2.5, null], \"b\": {\"c\": \"ü\"}}',"
            "  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'naïve ☃', '{x,\"y z\"}'),"
            " (2, -0.000001, -1e300, false, '0001-01-01', '1999-12-31 00:00', '1970-01-01 00:00Z', '[]',"
            "  '00000000-0000-0000-0000-000000000000', '', '{}'),"
            " (3, NULL, NULL, NULL, NULL, NULL, '2024-06-01Z', NULL, NULL, NULL, NULL),"
            " (4, 1, 1, true, 'infinity', '2024-01-01', '2024-06-02Z', '{}', NULL, NULL, NULL)")
    pipeline(project, {"table": "shop.things"}, contract=TYPES_CONTRACT, batch_rows=2)
    run_one()

    cols = sql.SQL("id, amount::text, ratio::text, flag, day::text, updated_at::text,"
                   " doc::text, ref::text, note, tags::text")
    with connect(source) as c:
        c.execute("SET TIME ZONE 'UTC'")
        expected = c.execute(sql.SQL("SELECT {} FROM shop.things WHERE id < 4 ORDER BY id").format(cols)).fetchall()
    with project.connect() as c:
        c.execute("SET TIME ZONE 'UTC'")
        got = c.execute(sql.SQL("SELECT {} FROM orders ORDER BY id").format(cols)).fetchall()
    assert got == expected
    assert got[0][1:3] == ("12345678901234.123456", "0.1")
    assert got[0][5] == "2024-03-10 06:30:00.123456+00"
    assert got[2][1:] == (None,) * 4 + ("2024-06-01 00:00:00+00",) + (None,) * 4
    # a date Python cannot hold reaches the contract as text and is quarantined, not a failed read
    [(location, violations)] = project.query("SELECT source_location, violations FROM pgmill.quarantine")
    assert location == "postgres:shop.things:row 4"
    assert violations == [{"column": "day", "rule": "type", "message": "day = 'infinity' is not a valid date"}]


def test_without_a_cursor_every_run_reads_everything(project: ProjectDir, source: str) -> None:
    execute(source, "INSERT INTO shop.orders SELECT i, 'c' || i, i, '2024-01-01Z' FROM generate_series(1, 5) i")
    pipeline(project, {"table": "shop.orders"}, mode="replace", cursor=None, batch_rows=2)
    run = run_one()
    assert (run.counts.rows_read, run.counts.batches) == (5, 3)
    execute(source, "DELETE FROM shop.orders WHERE id > 2")
    run = run_one()
    assert run.counts.rows_read == 2
    assert project.query("SELECT id, customer FROM orders ORDER BY id") == [(1, "c1"), (2, "c2")]
    assert project.query("SELECT state FROM pgmill.state") in ([], [({},)])


def test_partitions_load_as_units_each_with_its_own_resume_point(project: ProjectDir, source: str) -> None:
    execute(source, "CREATE TABLE shop.events (id bigint, customer text, total numeric(12,2),"
            " updated_at timestamptz NOT NULL) PARTITION BY RANGE (id)")
    for name, lo, hi in (("events_a", 0, 100), ("events_b", 100, 200), ("events_c", 200, 300)):
        execute(source, sql.SQL("CREATE TABLE shop.{} PARTITION OF shop.events FOR VALUES FROM ({}) TO ({})").format(
            sql.Identifier(name), sql.Literal(lo), sql.Literal(hi)))
    # partition c holds the newest cursor values; a and b older ones
    execute(source, "INSERT INTO shop.events SELECT i, 'c' || i, i, timestamptz '2024-01-01' + i * interval '1 hour'"
            " FROM generate_series(1, 250) i")
    pipeline(project, {"table": "shop.events", "partitions": True}, batch_rows=20)
    first = run_one()
    assert (first.counts.rows_read, first.counts.rows_inserted) == (250, 250)
    steps = project.query("SELECT name FROM pgmill.run_steps WHERE run_id = %s AND name LIKE 'load %%' ORDER BY name",
                          (first.run_id,))
    assert [s[0] for s in steps] == [f"load shop.events partition shop.events_{p}" for p in "abc"]
    # new rows in partition a, newer than its own last cursor value but older than partition c's: still read
    execute(source, "INSERT INTO shop.events VALUES (0, 'late', 1, '2024-01-06'), (99, 'late', 1, '2024-01-06')")
    execute(source, "UPDATE shop.events SET updated_at = '2024-03-01', total = 7 WHERE id = 150")
    second = run_one()
    assert (second.counts.rows_read, second.counts.rows_inserted, second.counts.rows_updated) == (3, 1, 2)
    assert project.query("SELECT count(*), sum(total) FROM orders") == [
        (251, Decimal(sum(range(1, 251)) - 150 + 7 - 99 + 1 + 1))]
    assert run_one().counts.rows_read == 0


def test_partitions_of_a_plain_table_is_a_clear_error(project: ProjectDir, source: str) -> None:
    pipeline(project, {"table": "shop.orders", "partitions": True})
    with pytest.raises(SourceError, match="postgres:shop.orders: partitions: true, but the table is not partitioned"):
        run_one()
    assert project.query("SELECT status, error LIKE '%not partitioned%' FROM pgmill.runs") == [("failed", True)]
