"""Attacks on the `query` and `explain` tools: each is refused or harmless, and no data changes.

The database is primed the way an attacker would like it: functions with side effects in schema public
(callable from FROM, through attribute notation and through an operator), a shadow of a built-in and a
domain whose CHECK calls one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from mcp import Client

from pgmill.project import ProjectContext
from tests.helpers import ProjectDir, connect
from tests.mcp_support import data_checksum, loaded_project, server, unwrap, with_client

PWNED = Path("/tmp/h-mcp-pwned")
REFUSED, HARMLESS = "refused", "harmless"


@dataclass(frozen=True)
class Attack:
    kind: str
    sql: str
    expect: str = REFUSED
    params: tuple[Any, ...] = ()
    tool: str = "query"


SLEEP = "SELECT pg_sleep(5)"
ATTACKS: tuple[Attack, ...] = (
    # stacked statements and transaction escapes
    Attack("stacked", "SELECT 1; DROP TABLE orders"),
    Attack("stacked", "COMMIT; DROP TABLE orders"),
    Attack("stacked", "ROLLBACK; DELETE FROM orders"),
    Attack("stacked", "END; TRUNCATE orders"),
    Attack("stacked", "SELECT 1; COMMIT; INSERT INTO notes VALUES (9, 'x')"),
    Attack("stacked", "SELECT 1;\n;DROP TABLE orders"),
    Attack("stacked", "SELECT 1/*;*/; DROP TABLE orders"),
    Attack("stacked", "SELECT 'a'\n;\nDROP TABLE orders"),
    # plain writes, DDL and privileges
    Attack("write", "DROP TABLE orders"),
    Attack("write", "DELETE FROM orders"),
    Attack("write", "UPDATE orders SET total = 0"),
    Attack("write", "INSERT INTO notes VALUES (9, 'x')"),
    Attack("write", "TRUNCATE notes"),
    Attack("write", "MERGE INTO notes n USING (SELECT 1 AS id) s ON n.id = s.id WHEN MATCHED THEN DELETE"),
    Attack("write", "CREATE TABLE x (a int)"),
    Attack("write", "ALTER TABLE orders DROP COLUMN total"),
    Attack("write", "GRANT ALL ON orders TO PUBLIC"),
    Attack("write", "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'"),
    Attack("write", "SELECT * INTO stolen FROM orders"),
    Attack("write", "CREATE TABLE stolen AS SELECT * FROM orders"),
    Attack("write", "VACUUM orders"),
    Attack("write", "ANALYZE orders"),
    Attack("write", "ALTER SYSTEM SET work_mem = '1GB'"),
    Attack("write", "LOAD 'plpgsql'"),
    Attack("write", "NOTIFY pgmill"),
    # writable CTEs, also under EXPLAIN ANALYZE (which executes)
    Attack("writable cte", "WITH d AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM d"),
    Attack("writable cte", "WITH u AS (UPDATE orders SET total = 0 RETURNING 1) SELECT * FROM u"),
    Attack("writable cte", "WITH i AS (INSERT INTO notes VALUES (9, 'x') RETURNING 1) SELECT 1"),
    Attack("writable cte", "WITH a AS (SELECT 1), b AS (DELETE FROM notes RETURNING 1) SELECT * FROM a"),
    Attack("writable cte", "SELECT * FROM (WITH d AS (DELETE FROM notes RETURNING 1) SELECT * FROM d) s"),
    Attack("writable cte", "EXPLAIN ANALYZE WITH d AS (DELETE FROM orders RETURNING 1) SELECT * FROM d"),
    Attack("writable cte", "EXPLAIN ANALYZE DELETE FROM orders"),
    Attack("writable cte", "WITH d AS (DELETE FROM orders RETURNING 1) SELECT * FROM d", tool="explain"),
    # DO blocks, procedures, COPY
    Attack("do", "DO $$ BEGIN DELETE FROM orders; END $$"),
    Attack("do", "DO LANGUAGE plpgsql 'BEGIN EXECUTE ''DROP TABLE orders''; END'"),
    Attack("do", "CALL some_procedure()"),
    Attack("copy", f"COPY orders TO PROGRAM 'touch {PWNED}'"),
    Attack("copy", "COPY notes FROM PROGRAM 'echo 9,x'"),
    Attack("copy", f"COPY (SELECT 1) TO '{PWNED}'"),
    Attack("copy", "COPY orders TO STDOUT"),
    # side-effecting built-ins, wherever they are called
    Attack("function", SLEEP),
    Attack("function", "SELECT * FROM pg_sleep(5)"),
    Attack("function", "SELECT * FROM ROWS FROM (pg_sleep(5))"),
    Attack("function", "SELECT * FROM orders, LATERAL pg_sleep(5) s"),
    Attack("function", "SELECT pg_catalog.pg_sleep(5)"),
    Attack("function", 'SELECT "pg_sleep"(5)'),
    Attack("function", 'SELECT U&"pg\\005fsleep"(5)'),
    Attack("function", "SELECT (SELECT pg_sleep(5))"),
    Attack("function", "SELECT 1 WHERE EXISTS (SELECT pg_sleep(5))"),
    Attack("function", "SELECT count(*) FILTER (WHERE pg_sleep(1) IS NULL) FROM orders"),
    Attack("function", "SELECT 1 ORDER BY pg_sleep(1)"),
    Attack("function", "SELECT pg_sleep_for('5 seconds')"),
    Attack("function", "SELECT pg_read_file('/etc/passwd')"),
    Attack("function", "SELECT pg_read_binary_file('/etc/passwd')"),
    Attack("function", "SELECT * FROM pg_ls_dir('.')"),
    Attack("function", "SELECT lo_import('/etc/passwd')"),
    Attack("function", f"SELECT lo_export(1, '{PWNED}')"),
    Attack("function", "SELECT lo_from_bytea(0, 'x')"),
    Attack("function", "SELECT * FROM dblink('dbname=postgres', 'DROP TABLE orders') AS t(x text)"),
    Attack("function", "SELECT dblink_exec('DROP TABLE orders')"),
    Attack("function", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"),
    Attack("function", "SELECT pg_cancel_backend(pg_backend_pid())"),
    Attack("function", "SELECT pg_reload_conf()"),
    Attack("function", "SELECT pg_advisory_lock(42)"),
    Attack("function", "SELECT nextval('pgmill.runs_run_id_seq')"),
    Attack("function", "SELECT setval('pgmill.runs_run_id_seq', 1)"),
    Attack("function", "SELECT query_to_xml('DELETE FROM orders RETURNING 1', true, false, '')"),
    Attack("function", "SELECT * FROM ts_stat('DELETE FROM orders RETURNING ''a''::tsvector')"),
    Attack("function", "SELECT pg_notify('x', 'y')"),
    Attack("function", "SELECT txid_current()"),
    Attack("function", "SELECT pg_stat_reset()"),
    Attack("function", "SELECT pg_sleep(5)", tool="explain"),
    Attack("function", "EXPLAIN (ANALYZE) SELECT pg_sleep(5)"),
    # functions in an untrusted schema: direct, FROM, attribute notation, operators, shadows, casts
    Attack("untrusted schema", "SELECT o.evil FROM orders o"),
    Attack("untrusted schema", "SELECT (o).evil FROM orders o"),
    Attack("untrusted schema", "SELECT evil(o) FROM orders o"),
    Attack("untrusted schema", "SELECT public.evil(o) FROM orders o"),
    Attack("untrusted schema", "SELECT e FROM orders o, LATERAL evil(o) e"),
    Attack("untrusted schema", "SELECT orders.evil FROM orders"),
    Attack("untrusted schema", "SELECT lower(1)"),
    Attack("untrusted schema", "SELECT 1 OPERATOR(public.##) 2"),
    Attack("untrusted schema", "SELECT 1 ## 2"),
    Attack("untrusted schema", "SELECT 'x'::shout"),
    Attack("untrusted schema", "SELECT CAST('x' AS public.shout)"),
    Attack("untrusted schema", "SELECT otherdb.public.evil(o) FROM orders o"),
    # settings, roles and transaction control
    Attack("settings", "SELECT set_config('role', 'postgres', false)"),
    Attack("settings", "SELECT pg_catalog.set_config('statement_timeout', '0', false)"),
    Attack("settings", "SELECT * FROM set_config('transaction_read_only', 'off', true)"),
    Attack("settings", "SET ROLE postgres"),
    Attack("settings", "RESET ROLE"),
    Attack("settings", "SET statement_timeout = 0"),
    Attack("settings", "SET SESSION AUTHORIZATION postgres"),
    Attack("settings", "SET transaction_read_only = off"),
    Attack("transaction", "BEGIN"),
    Attack("transaction", "START TRANSACTION READ WRITE"),
    Attack("transaction", "COMMIT"),
    Attack("transaction", "SAVEPOINT a"),
    Attack("transaction", "LOCK TABLE orders"),
    Attack("transaction", "SELECT * FROM orders FOR UPDATE"),
    Attack("transaction", "SELECT * FROM orders FOR SHARE NOWAIT"),
    Attack("transaction", "SELECT * FROM (SELECT * FROM orders FOR KEY SHARE) s"),
    Attack("prepared", "PREPARE p AS DELETE FROM orders"),
    Attack("prepared", "EXECUTE p"),
    Attack("prepared", "DEALLOCATE ALL"),
    Attack("prepared", "DECLARE c CURSOR FOR SELECT 1"),
    # comments, quoting, dollar quoting and unicode escapes: either refused or a harmless SELECT
    Attack("comment", "SELECT 1 -- harmless\n; DROP TABLE orders"),
    Attack("comment", "/* SELECT */ DELETE FROM orders"),
    Attack("comment", "SELECT 1 /* nested /* comment */ ; DROP TABLE orders */", HARMLESS),
    Attack("quoting", "SELECT '; DROP TABLE orders; --'", HARMLESS),
    Attack("quoting", "SELECT $$; DROP TABLE orders; $$", HARMLESS),
    Attack("quoting", "SELECT $tag$ $$ ; DROP TABLE orders $tag$", HARMLESS),
    Attack("quoting", "SELECT E'\\'; DROP TABLE orders; --'", HARMLESS),
    Attack("quoting", "SELECT $1::text", HARMLESS, ("'; DROP TABLE orders; --",)),
    Attack("quoting", "SELECT * FROM orders WHERE status = $1", HARMLESS, ("F' OR 1=1; DELETE FROM orders; --",)),
    Attack("unicode", "SELECT U&'\\0027; DROP TABLE orders; --'", HARMLESS),
    Attack("unicode", "DELETE\u00a0FROM orders"),
    Attack("unicode", "SELECT 1\uff1b DROP TABLE orders"),
    Attack("unicode", 'SELECT U&"\\0070g_sleep"(5)'),
    # secrets the read-only role must not see
    Attack("privilege", "SELECT rolpassword FROM pg_authid"),
    Attack("privilege", "SELECT passwd FROM pg_shadow"),
    # huge results and long-running statements
    Attack("huge", "SELECT g FROM generate_series(1, 100000000) g", HARMLESS),
    Attack("huge", "SELECT repeat('x', 50000000)", HARMLESS),
    Attack("huge", "SELECT g, repeat('x', 10000) FROM generate_series(1, 1000000) g", HARMLESS),
    Attack("slow", "SELECT count(*) FROM generate_series(1, 100000) a, generate_series(1, 100000) b"),
    Attack("slow", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"),
)


def _prime(db_url: str) -> None:
    """What someone with CREATE on schema public could have planted for the model to trigger."""
    with connect(db_url) as c:
        c.execute("CREATE FUNCTION public.evil(o public.orders) RETURNS int LANGUAGE sql"
                  " AS $$ INSERT INTO public.notes VALUES (99, 'pwned') RETURNING 1 $$")
        c.execute("CREATE FUNCTION public.slow_eq(a int, b int) RETURNS bool LANGUAGE sql"
                  " AS $$ SELECT pg_sleep(5) IS NULL $$")
        c.execute("CREATE OPERATOR public.## (LEFTARG = int, RIGHTARG = int, FUNCTION = public.slow_eq)")
        c.execute("CREATE FUNCTION public.lower(int) RETURNS text LANGUAGE sql"
                  " AS $$ SELECT pg_advisory_lock(7)::text $$")
        c.execute("CREATE FUNCTION public.noisy(text) RETURNS bool LANGUAGE sql AS $$ SELECT pg_sleep(5) IS NULL $$")
        c.execute("CREATE DOMAIN public.shout AS text CHECK (public.noisy(VALUE))")


@pytest.fixture
def ctx(project: ProjectDir) -> ProjectContext:
    ctx = loaded_project(project)
    _prime(project.db_url)
    return ctx


def test_attack_suite(ctx: ProjectContext, project: ProjectDir) -> None:
    assert len(ATTACKS) >= 60
    PWNED.unlink(missing_ok=True)
    before = data_checksum(project.db_url)
    srv = server(ctx, statement_timeout_ms=1500, max_bytes=100_000)

    async def run_all(client: Client) -> list[tuple[Attack, bool, str]]:
        out = []
        for a in ATTACKS:
            args: dict[str, Any] = {"sql": a.sql}
            if a.params:
                args["params"] = list(a.params)
            res = await client.call_tool(a.tool, args)
            out.append((a, bool(res.is_error), "".join(getattr(c, "text", "") for c in res.content)))
        return out

    results = with_client(srv, run_all)
    not_refused = [(a.kind, a.sql, text[:200]) for a, err, text in results if a.expect == REFUSED and not err]
    assert not not_refused, not_refused
    for a, err, text in results:
        if a.expect == HARMLESS and not err and a.kind == "huge":
            assert len(text) < 200_000, a.sql  # capped, whatever the statement asked for
    assert data_checksum(project.db_url) == before
    assert not PWNED.exists()
    with project.connect() as c:
        assert c.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone() == (0,)
        assert c.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgmill-mcp'"
                         " AND state <> 'idle'").fetchone() == (0,)


def _outcome(ctx: ProjectContext, sql: str, **limits: Any) -> tuple[bool, str]:
    srv = server(ctx, **limits)

    async def go(client: Client) -> tuple[bool, str]:
        res = await client.call_tool("query", {"sql": sql})
        return bool(res.is_error), "".join(getattr(c, "text", "") for c in res.content)

    return with_client(srv, go)


@pytest.mark.parametrize(("sql", "reason"), [
    ("SELECT 1; DROP TABLE orders", "exactly one statement"),
    ("WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d", "data-modifying"),
    ("SELECT * FROM orders FOR UPDATE", "FOR UPDATE"),
    ("SELECT * FROM pg_sleep(5)", "pg_sleep() is refused"),
    ("SELECT o.evil FROM orders o", "attribute notation"),
    ("SELECT lower(1)", "also defined in schema public"),
    ("SELECT 1 ## 2", "operator ## is also defined in schema public"),
    ("SELECT 'x'::shout", "a cast to public.shout is refused"),
    ("SELECT clock_timestamp() < now() + interval '1 day', gen_random_uuid() IS NOT NULL", None),
])
def test_refusals_explain_themselves(ctx: ProjectContext, sql: str, reason: str | None) -> None:
    err, text = _outcome(ctx, sql)
    if reason is None:
        assert not err and unwrap(text)["rows"] == [[True, True]]
    else:
        assert err and reason in text


def test_timeout_stops_a_heavy_cross_join(ctx: ProjectContext) -> None:
    err, text = _outcome(ctx, "SELECT count(*) FROM generate_series(1, 100000) a, generate_series(1, 100000) b",
                         statement_timeout_ms=500)
    assert err and "statement timeout" in text


def test_huge_result_is_cut_not_buffered(ctx: ProjectContext) -> None:
    err, text = _outcome(ctx, "SELECT generate_series(1, 100000000)", max_rows=100)  # streams, unlike FROM
    res = unwrap(text)
    assert not err and len(res["rows"]) == 100 and res["truncated"]


def test_extended_protocol_carries_one_statement(project: ProjectDir) -> None:
    """The layer below the parser check: the protocol itself refuses a second statement."""
    with project.connect() as c, pytest.raises(psycopg.errors.SyntaxError):
        list(psycopg.RawCursor(c).stream("SELECT 1; SELECT 2", []))
