"""A CDC source for tests: a fresh database with shop.orders on the `pg15_logical` cluster, and a project
pipeline streaming it (`cdc:`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.helpers import ProjectDir, connect, query

ENV = "PGMILL_TEST_CDC_URL"

CONTRACT: dict[str, Any] = {
    "columns": {
        "id": {"type": "bigint", "primary_key": True},
        "customer": {"type": "text", "not_null": True},
        "total": {"type": "numeric(12,2)", "min": 0},
        "note": {"type": "text"},
        "updated_at": {"type": "timestamptz", "not_null": True},
    }
}

TABLE = """
CREATE SCHEMA shop;
CREATE TABLE shop.orders (id bigint PRIMARY KEY, customer text NOT NULL, total numeric(12,2), note text,
                          updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE shop.lines (order_id bigint, line int, qty int, PRIMARY KEY (order_id, line));
"""

#: the source's rows as the target must hold them, for comparing the two
ROWS = "SELECT id, customer, total::text, note, updated_at FROM {} ORDER BY id"


@pytest.fixture
def cdc_source(pg15_logical: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The URL of a fresh source database (in the test's environment as PGMILL_TEST_CDC_URL); its slots
    are dropped afterwards."""
    name = "cdc_" + uuid.uuid4().hex[:10]
    with connect(pg15_logical) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        # the cluster commits asynchronously: a stream sees a commit only once its WAL is flushed
        admin.execute(sql.SQL("ALTER DATABASE {} SET synchronous_commit = on").format(sql.Identifier(name)))
    url = pg15_logical.replace("/postgres?", f"/{name}?", 1)
    with connect(url) as c:
        c.execute(TABLE)
    monkeypatch.setenv(ENV, url)
    yield url
    with connect(pg15_logical) as admin:
        admin.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
                      " WHERE database = %s AND active_pid IS NOT NULL", (name,))
        for _ in range(50):
            try:
                admin.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                              " WHERE database = %s", (name,))
                break
            except psycopg.errors.ObjectInUse:
                import time

                time.sleep(0.1)
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def cdc_pipeline(project: ProjectDir, contract: dict[str, Any] | None = None, cdc: dict[str, Any] | None = None,
                 table: str = "shop.orders", name: str = "orders", **kw: Any) -> None:
    project.contract(name, contract or CONTRACT)
    spec = {"source": {"kind": "postgres", "url_env": ENV, "table": table, "cdc": cdc or {}},
            "table": f"public.{name}", "contract": f"contracts/{name}.yaml", "mode": "merge", **kw}
    project.config({name: spec}, retry={"attempts": 2, "initial_s": 0.1})


def same_rows(project: ProjectDir, source_url: str, target: str = "public.orders",
              source: str = "shop.orders") -> list[tuple[Any, ...]]:
    """The target's rows, asserted equal to the source's."""
    got = project.query(sql.SQL(ROWS).format(sql.Identifier(*target.split("."))))
    want = query(source_url, sql.SQL(ROWS).format(sql.Identifier(*source.split("."))))
    assert got == want
    return got
