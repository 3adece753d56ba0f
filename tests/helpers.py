"""Test helpers: write projects, contracts and data files; read results back."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import sql

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

    def query(self, q: str | sql.Composable, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db_url) as c:
            return c.execute(q, params).fetchall()

    def scalar(self, q: str | sql.Composable, params: Any = None) -> Any:
        return self.query(q, params)[0][0]


def orders_csv(rows: list[tuple[Any, ...]], header: str = ORDERS_HEADER) -> str:
    lines = [header] + [",".join("" if v is None else str(v) for v in r) for r in rows]
    return "\n".join(lines) + "\n"


def table_checksum(db_url: str, table: str, order_by: str) -> tuple[int, str]:
    """Row count and an md5 over the table's rows in key order: equal tables, equal checksums."""
    with psycopg.connect(db_url) as c:
        schema, _, name = table.rpartition(".")
        ident = sql.Identifier(schema, name) if schema else sql.Identifier(name)
        keys = sql.SQL(", ").join(sql.Identifier(k.strip()) for k in order_by.split(","))
        rows = c.execute(sql.SQL("SELECT t::text FROM {} t ORDER BY {}").format(ident, keys)).fetchall()
    h = hashlib.md5()
    for (r,) in rows:
        h.update(r.encode())
        h.update(b"\n")
    return len(rows), h.hexdigest()
