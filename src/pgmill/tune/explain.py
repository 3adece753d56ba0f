"""`pgmill explain`: the executed plan with its slow parts marked."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import psycopg

from pgmill.tune.workload import WorkloadQuery

BIG_TABLE_ROWS = 10_000
MISESTIMATE = 10.0


@dataclass
class PlanLine:
    depth: int
    text: str
    marks: list[str] = field(default_factory=list)


@dataclass
class Explained:
    query: str
    sql: str
    analyzed: bool
    total_ms: float | None
    lines: list[PlanLine]

    @property
    def marks(self) -> list[str]:
        return [m for line in self.lines for m in line.marks]

    def as_dict(self) -> dict[str, Any]:
        return {"query": self.query, "sql": self.sql, "analyzed": self.analyzed, "total_ms": self.total_ms,
                "plan": [{"depth": x.depth, "node": x.text, "marks": x.marks} for x in self.lines]}

    def render(self) -> list[str]:
        out = [f"{self.query}: " + (f"{self.total_ms:.2f} ms" if self.total_ms is not None else "not executed")]
        for x in self.lines:
            flag = "  <-- " + "; ".join(x.marks) if x.marks else ""
            out.append("  " * x.depth + "-> " + x.text + flag)
        return out


def _marks(node: dict[str, Any], table_rows: dict[str, float]) -> list[str]:
    marks: list[str] = []
    rel = node.get("Relation Name")
    schema = node.get("Schema")
    if node.get("Node Type") == "Seq Scan" and rel:
        rows = table_rows.get(f"{schema}.{rel}", 0.0)
        if rows > BIG_TABLE_ROWS:
            marks.append(f"sequential scan of {schema}.{rel} ({rows:,.0f} rows)")
    if "Actual Rows" in node:
        est = float(node.get("Plan Rows", 0))
        actual = float(node["Actual Rows"])
        lo, hi = sorted((max(est, 1.0), max(actual, 1.0)))
        if hi / lo > MISESTIMATE:
            marks.append(f"estimated {est:,.0f} rows, got {actual:,.0f}")
    if node.get("Sort Space Type") == "Disk":
        marks.append(f"sort spilled to disk ({node.get('Sort Space Used', '?')} kB)")
    if int(node.get("Hash Batches", 1) or 1) > 1 or int(node.get("Original Hash Batches", 1) or 1) > 1:
        marks.append(f"hash spilled to disk ({node.get('Hash Batches')} batches)")
    if node.get("Disk Usage"):
        marks.append(f"used {node['Disk Usage']} kB of disk")
    return marks


def _label(node: dict[str, Any]) -> str:
    text = str(node.get("Node Type", "?"))
    if node.get("Index Name"):
        text += f" using {node['Index Name']}"
    if node.get("Relation Name"):
        text += f" on {node.get('Schema', '')}.{node['Relation Name']}"
    text += f" (cost={node.get('Total Cost', 0):.0f} rows={node.get('Plan Rows', 0)}"
    if "Actual Rows" in node:
        text += f" actual rows={node['Actual Rows']} loops={node.get('Actual Loops', 1)}"
        text += f" time={node.get('Actual Total Time', 0):.2f} ms"
    return text + ")"


def explain_query(conn: psycopg.Connection[Any], q: WorkloadQuery, *, analyze: bool = True) -> Explained:
    """Run EXPLAIN (ANALYZE, BUFFERS) with the query's first parameter set (GENERIC_PLAN without values)."""
    table_rows = {f"{s}.{t}": float(r) for s, t, r in conn.execute(
        "SELECT n.nspname, c.relname, greatest(c.reltuples, 0) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'm')").fetchall()}
    run = analyze and q.runnable
    # VERBOSE: the plan then names each relation's schema
    opts = "ANALYZE, BUFFERS, VERBOSE, FORMAT JSON" if run else (
        "GENERIC_PLAN, VERBOSE, FORMAT JSON" if q.n_params else "VERBOSE, FORMAT JSON")
    params = q.param_sets()[0] if run else None
    with conn.transaction(force_rollback=True), psycopg.RawCursor(conn) as cur:
        cur.execute(f"EXPLAIN ({opts}) {q.sql}".encode(), params or None)
        row = cur.fetchone()
    assert row is not None
    doc = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    lines: list[PlanLine] = []

    def walk(node: dict[str, Any], depth: int) -> None:
        lines.append(PlanLine(depth, _label(node), _marks(node, table_rows)))
        for child in node.get("Plans", []):
            walk(child, depth + 1)

    walk(doc[0]["Plan"], 0)
    total = float(doc[0]["Execution Time"]) if "Execution Time" in doc[0] else None
    return Explained(q.name, q.sql, run, total, lines)
