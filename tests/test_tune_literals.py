"""`pgmill tune --sample`: observed statements' literal texts from pg_stat_activity, so that a statement whose
constants pg_stat_statements replaced by `$n` (inside arithmetic, `<>`) can be executed and measured."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from typer.testing import CliRunner

from pgmill.tune.literals import can_sample, sample_literals
from pgmill.tune.snapshot import load_snapshot
from pgmill.tune.workload import observed
from tests.test_cli_tune import cli, shop  # noqa: F401  (the fixture)

LITERAL = "SELECT count(*) FROM app.orders WHERE total * 2 > 50 AND status <> 'void'"
PARAMETERIZED = "SELECT count(*) FROM app.orders WHERE total > %s"


@contextmanager
def running_app(url: str) -> Iterator[list[int]]:
    """An application running both statements in a loop until the block ends; yields [executions]."""
    stop, count = threading.Event(), [0]

    def loop() -> None:
        with psycopg.connect(url, autocommit=True) as c:
            while not stop.is_set():
                c.execute(LITERAL.encode())
                c.execute(PARAMETERIZED.encode(), (5,))
                count[0] += 1

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield count
    finally:
        stop.set()
        t.join(10)


def _reset(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        c.execute("SELECT pg_stat_statements_reset()")


def test_a_sampled_literal_text_makes_an_observed_statement_runnable(shop: str) -> None:  # noqa: F811
    _reset(shop)
    with psycopg.connect(shop, autocommit=True) as conn:
        assert can_sample(conn) is None
        with running_app(shop) as executions:
            samples = sample_literals(conn, 2.0)
        assert executions[0] >= 2
        catalog = load_snapshot(conn)
        plain = [q for q in observed(conn, catalog, 20, 2, 100.0) if "total *" in q.sql]
        literal = [q for q in observed(conn, catalog, 20, 2, 100.0, samples.texts) if "total *" in q.sql]
    assert LITERAL in samples.texts.values(), samples
    assert samples.parameterized >= 1 and samples.polls >= 10, samples  # `total > $1` is not kept: no values
    assert not any("total > $1" in t for t in samples.texts.values())
    [before], [after] = plain, literal
    assert before.n_params == 3 and not before.runnable, before.sql  # `total * $1 > $2 AND status <> $3`
    assert after.name == before.name and after.sql == LITERAL and after.runnable and after.n_params == 0


def test_sampling_needs_query_ids(shop: str) -> None:  # noqa: F811
    with psycopg.connect(shop, autocommit=True) as conn:
        conn.execute("SET compute_query_id = off")
        assert can_sample(conn) == ("compute_query_id is off on this server: set it to auto (with "
                                    "pg_stat_statements) or on")


def test_cli_tune_sample_measures_a_statement_it_could_not_run_before(shop: str) -> None:  # noqa: F811
    _reset(shop)
    runner = CliRunner()
    with running_app(shop):
        result = runner.invoke(cli(), ["tune", "--sample", "1.5", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["sampled"]["statements"] >= 1 and doc["sampled"]["parameterized"] >= 1, doc["sampled"]
    [q] = [q for q in doc["queries"] if "total *" in q["sql"]]
    assert q["source"] == "observed" and q["runnable"] and q["sql"] == LITERAL, q
    plain = runner.invoke(cli(), ["tune", "--json"])
    [q] = [q for q in json.loads(plain.output)["queries"] if "total *" in q["sql"]]
    assert not q["runnable"] and "$1" in q["sql"], q
    text = runner.invoke(cli(), ["tune", "--sample", "0.2"])
    assert text.exit_code == 0, text.output
    assert "watching the running workload for 0.2 s (pg_stat_activity)" in text.output
    assert "statement(s) with their constants from" in text.output
