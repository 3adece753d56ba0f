"""`pgmill indexes`: unused, duplicate, prefix-redundant, invalid and bloated indexes; index utilization."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from pgmill.tune.snapshot import Index, load_snapshot

BIG_TABLE_ROWS = 10_000
BLOAT_REPORT = 0.3  # report an index whose estimated free space is over 30% of it ...
BLOAT_MIN_BYTES = 1 << 20  # ... and over 1 MB


@dataclass
class Finding:
    kind: str  # unused | duplicate | redundant | invalid | bloat
    index: str
    table: str
    size_bytes: int
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Health:
    findings: list[Finding]
    stats_since: datetime | None
    utilization_scans: float | None  # (i) idx_scan / (idx_scan + seq_scan), tables over 10k rows
    pgmill_indexes: int
    pgmill_used: int
    indexes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def utilization_pgmill(self) -> float | None:
        """(ii) the share of pgmill-created indexes read since they were created."""
        return self.pgmill_used / self.pgmill_indexes if self.pgmill_indexes else None

    def as_dict(self) -> dict[str, Any]:
        return {"findings": [f.as_dict() for f in self.findings],
                "stats_since": self.stats_since.isoformat() if self.stats_since else None,
                "utilization_scans": self.utilization_scans, "utilization_pgmill": self.utilization_pgmill,
                "pgmill_indexes": self.pgmill_indexes, "pgmill_indexes_used": self.pgmill_used,
                "indexes": self.indexes}


def _redundant(a: Index, b: Index) -> bool:
    """`a` is a key prefix of `b` (same directions, same predicate) and holds nothing `b` lacks."""
    if a.method != "btree" or b.method != "btree" or a.predicate != b.predicate or a.unique:
        return False
    if None in a.keys or None in b.keys or len(a.keys) > len(b.keys):
        return False
    if b.keys[: len(a.keys)] != a.keys or b.desc[: len(a.keys)] != a.desc:
        return False
    return {c for c in a.include if c} <= {c for c in (*b.keys, *b.include) if c}


def _bloat(ix: Index, rows: float, widths: dict[str, int]) -> float:
    """Estimated free share of a btree: 1 - (expected leaf size at 90% fill) / actual size."""
    if ix.method != "btree" or ix.size <= 0 or None in ix.keys:
        return 0.0
    width = sum(widths.get(c or "", 8) for c in (*ix.keys, *ix.include))
    tuple_bytes = math.ceil((8 + width) / 8) * 8 + 4
    expected = math.ceil(rows * tuple_bytes / (8192 * 0.9 - 40)) * 8192 + 8192
    return max(0.0, 1.0 - expected / ix.size)


def index_health(conn: psycopg.Connection[Any]) -> Health:
    catalog = load_snapshot(conn)
    since_row = conn.execute(
        "SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()").fetchone()
    since = since_row[0] if since_row else None
    findings: list[Finding] = []
    idx_scans = seq_scans = 0
    listing: list[dict[str, Any]] = []
    for t in catalog.tables.values():
        qualified = f"{t.schema}.{t.name}"
        if t.rows > BIG_TABLE_ROWS:
            idx_scans += t.idx_scan
            seq_scans += t.seq_scan
        widths = {c.name: c.width for c in t.columns.values()}
        for ix in t.indexes:
            name = f"{ix.schema}.{ix.name}"
            listing.append({"index": name, "table": qualified, "size_bytes": ix.size, "scans": ix.scans,
                            "valid": ix.valid, "definition": ix.definition})
            if not ix.valid:
                findings.append(Finding("invalid", name, qualified, ix.size,
                                        "INVALID (a failed concurrent build): unused by queries, still written"))
                continue
            if ix.scans == 0 and not ix.unique:
                findings.append(Finding("unused", name, qualified, ix.size,
                                        f"no scans since the statistics were reset ({since or 'never'})"))
            free = _bloat(ix, t.rows, widths)
            if free > BLOAT_REPORT and ix.size * free > BLOAT_MIN_BYTES:
                findings.append(Finding("bloat", name, qualified, ix.size, f"about {free:.0%} free space; "
                                        "REINDEX CONCURRENTLY would reclaim it"))
        valid = [ix for ix in t.indexes if ix.valid]
        for i, a in enumerate(valid):
            for b in valid[i + 1:]:
                if (a.keys, a.include, a.desc, a.predicate, a.method) == (b.keys, b.include, b.desc, b.predicate,
                                                                          b.method):
                    drop = b if not b.unique or a.unique else a
                    keep = a if drop is b else b
                    findings.append(Finding("duplicate", f"{drop.schema}.{drop.name}", qualified, drop.size,
                                            f"same definition as {keep.name}"))
                    continue
                for x, y in ((a, b), (b, a)):
                    if _redundant(x, y):
                        findings.append(Finding("redundant", f"{x.schema}.{x.name}", qualified, x.size,
                                                f"its keys are a prefix of {y.name}, which serves the same lookups"))
    total_scans = idx_scans + seq_scans
    pg_total, pg_used = _pgmill_usage(conn)
    findings.sort(key=lambda f: (f.kind, f.index))
    return Health(findings, since, idx_scans / total_scans if total_scans else None, pg_total, pg_used, listing)


def _pgmill_usage(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """pgmill-kept indexes that still exist, and how many of them have been scanned since creation (a
    partitioned table's index: through any of its partitions' indexes)."""
    if conn.execute("SELECT to_regclass('pgmill.index_actions')").fetchone() == (None,):
        return 0, 0
    row = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE (SELECT coalesce(sum(s.idx_scan), 0) FROM pg_stat_user_indexes s"
        "   WHERE s.indexrelid = c.oid OR s.indexrelid IN (SELECT relid FROM pg_partition_tree(c.oid))) > 0)"
        " FROM (SELECT DISTINCT schema_name, index_name FROM pgmill.index_actions WHERE action = 'keep') k"
        " JOIN pg_namespace n ON n.nspname = k.schema_name"
        " JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = k.index_name").fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)
