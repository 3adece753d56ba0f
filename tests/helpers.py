"""Test helpers: write projects, contracts and data files; run pipelines; connect and read results back."""

from __future__ import annotations

import hashlib
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

from pgmill.db.embedded import EmbeddedServer
from pgmill.ingest.runner import run_pipelines
from pgmill.ingest.sources.files import FileTask, file_sha256
from pgmill.observe.ledger import RunRecord
from pgmill.project import open_project

ORDERS_CONTRACT: dict[str, Any] = {
    "columns": {
        "order_id": {"type": "bigint", "primary_key": True},
        "customer_id": {"type": "bigint", "not_null": True},
        "status": {"type": "text", "accepted_values": ["F", "O", "P"]},
        "total": {"type": "numeric(12,2)", "min": 0},
        "ordered_at": {"type": "date", "not_null": True},
        "updated_at": {"type": "timestamptz"},
    }
}
ORDERS_HEADER = "order_id,customer_id,status,total,ordered_at,updated_at"
SOURCE_ENV = "PGMILL_TEST_SOURCE_URL"  # the URL of the `source` fixture's database (conftest.py)


@dataclass
class ProjectDir:
    path: Path
    db_url: str

    def write(self, rel: str, content: str | bytes) -> Path:
        p = self.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
        return p

    def config(self, pipelines: dict[str, Any] | None = None, **extra: Any) -> None:
        doc: dict[str, Any] = {"pipelines": pipelines or {}}
        doc.update(extra)
        self.write("pgmill.yaml", yaml.safe_dump(doc, sort_keys=False))

    def contract(self, name: str, doc: dict[str, Any]) -> str:
        rel = f"contracts/{name}.yaml"
        self.write(rel, yaml.safe_dump(doc, sort_keys=False))
        return rel

    def orders_pipeline(self, mode: str = "merge", path: str = "data/orders*.csv", **kw: Any) -> None:
        self.contract("orders", ORDERS_CONTRACT)
        spec = {"source": {"kind": "csv", "path": path}, "table": "public.orders",
                "contract": "contracts/orders.yaml", "mode": mode}
        spec.update(kw)
        self.config({"orders": spec})

    def connect(self, *, autocommit: bool = True) -> psycopg.Connection[tuple[Any, ...]]:
        return connect(self.db_url, autocommit=autocommit)

    def execute(self, q: str | sql.Composable, params: Any = None) -> None:
        execute(self.db_url, q, params)

    def query(self, q: str | sql.Composable, params: Any = None) -> list[tuple[Any, ...]]:
        return query(self.db_url, q, params)

    def scalar(self, q: str | sql.Composable, params: Any = None) -> Any:
        return self.query(q, params)[0][0]


def connect(db_url: str, *, autocommit: bool = True) -> psycopg.Connection[tuple[Any, ...]]:
    """A connection for a test's own setup and checks (autocommit unless asked), to use in a `with` block."""
    return psycopg.connect(db_url, autocommit=autocommit)


def new_database(server: EmbeddedServer) -> str:
    """A fresh database on the test session's server: its URL."""
    name = "t_" + uuid.uuid4().hex[:12]
    with connect(server.url()) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server.url(name)


def drop_database(server: EmbeddedServer, url: str) -> None:
    """Drop a database `new_database` made, closing whatever still uses it."""
    name = str(psycopg.conninfo.conninfo_to_dict(url)["dbname"])
    with connect(server.url()) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def execute(db_url: str, q: str | sql.Composable, params: Any = None) -> None:
    with connect(db_url) as c:
        c.execute(q, params)


def query(db_url: str, q: str | sql.Composable, params: Any = None) -> list[tuple[Any, ...]]:
    with connect(db_url) as c:
        return c.execute(q, params).fetchall()


def pgmill_indexes(db_url: str, table: str) -> set[str]:
    """The indexes pgmill's tuning built on app.`table`."""
    return {str(r[0]) for r in query(db_url, "SELECT indexname FROM pg_indexes WHERE schemaname = 'app' AND "
                                             "tablename = %s AND indexname LIKE 'pgmill%%'", (table,))}


def script_p95(monkeypatch: pytest.MonkeyPatch, p95: Callable[[str], float]) -> list[tuple[str, ...]]:
    """`--apply`'s measurements with their p95 scripted: the queries still run (the real measure), then each
    query's p95 is `p95(name)`, asked when it is measured. Returns the names of each measurement, in turn."""
    from dataclasses import replace

    from pgmill.tune import apply as apply_module

    real = apply_module.measure
    calls: list[tuple[str, ...]] = []

    def measure(conn: Any, queries: Any, executions: int = 30) -> dict[str, Any]:
        out = real(conn, queries, executions)
        calls.append(tuple(sorted(out)))
        return {q: replace(v, p95_ms=p95(q)) for q, v in out.items()}

    monkeypatch.setattr(apply_module, "measure", measure)
    return calls


def fail_range_checkpoint(monkeypatch: pytest.MonkeyPatch, is_target: Callable[[Any], bool],
                          fail_at: int = 4) -> Callable[[], None]:
    """Make the `fail_at`-th checkpoint of the range whose file mark `is_target` selects raise
    RuntimeError("injected failure in the middle range") (so `fail_at - 1` of its batches commit); returns a
    function that puts the real checkpoint back."""
    from pgmill.ingest import stream_load

    real = stream_load._checkpoint
    seen = {"n": 0}

    def failing(conn: Any, pipe: Any, run_id: int, writer: Any, prep: Any) -> Any:
        if is_target(prep.raw.file_mark):
            seen["n"] += 1
            if seen["n"] == fail_at:
                raise RuntimeError("injected failure in the middle range")
        return real(conn, pipe, run_id, writer, prep)

    monkeypatch.setattr(stream_load, "_checkpoint", failing)
    return lambda: monkeypatch.setattr(stream_load, "_checkpoint", real)


def run_one(project_dir: Path | None = None, pipeline: str | None = None, *, ok: bool = True,
            **kw: Any) -> RunRecord:
    """Open the project (found from the current folder by default) and run one pipeline, `pipeline` or the
    project's only one; with `ok`, the run must have succeeded with every row accounted for."""
    [run] = run_pipelines(open_project(project_dir), [pipeline] if pipeline else None, **kw)
    if ok:
        assert run.status == "succeeded", run.error
        assert run.counts.balanced(), run.counts
    return run


def file_task(path: Path, **resume: int) -> FileTask:
    """A file source's task for `path`, resuming at `resume` (resume_offset, resume_line, records_done)."""
    return FileTask(path, path.name, path.stat().st_size, file_sha256(path), **resume)


def orders_csv(rows: list[tuple[Any, ...]], header: str = ORDERS_HEADER) -> str:
    lines = [header] + [",".join("" if v is None else str(v) for v in r) for r in rows]
    return "\n".join(lines) + "\n"


def table_checksum(db_url: str, table: str, order_by: str) -> tuple[int, str]:
    """Row count and an md5 over the table's rows in key order: equal tables, equal checksums."""
    with connect(db_url) as c:
        schema, _, name = table.rpartition(".")
        ident = sql.Identifier(schema, name) if schema else sql.Identifier(name)
        keys = sql.SQL(", ").join(sql.Identifier(k.strip()) for k in order_by.split(","))
        rows = c.execute(sql.SQL("SELECT t::text FROM {} t ORDER BY {}").format(ident, keys)).fetchall()
    h = hashlib.md5()
    for (r,) in rows:
        h.update(r.encode())
        h.update(b"\n")
    return len(rows), h.hexdigest()
