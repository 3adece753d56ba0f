"""The indexes page: `pgmill indexes` (pgmill.tune.health.index_health) for the browser: the findings
(unused, duplicate, redundant, invalid, bloated), utilization, the age of the statistics they rest on, and the
largest indexes. index_health only reads the catalog and the statistics views."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from pgmill.tune.health import Finding, Health, index_health

Conn = psycopg.Connection[Any]
LARGEST = 100  # indexes listed, largest first
KINDS = ("invalid", "duplicate", "redundant", "unused", "bloat")  # the order the findings are shown in


@dataclass
class IndexRow:
    index: str  # schema.name
    table: str
    size_bytes: int
    scans: int
    valid: bool
    definition: str
    findings: list[str]  # the kinds of finding about it


@dataclass
class IndexesPage:
    health: Health
    findings: list[Finding]  # in the order of KINDS, then by size, largest first
    largest: list[IndexRow]
    total: int  # indexes on user tables
    total_bytes: int
    stats_age: timedelta | None  # since the statistics were reset; None: never reset

    def count(self, kind: str) -> int:
        return sum(1 for f in self.findings if f.kind == kind)

    @property
    def reclaimable_bytes(self) -> int:
        """What dropping the unused, duplicate, redundant and invalid indexes would free (each counted once)."""
        seen = {f.index: f.size_bytes for f in self.findings if f.kind != "bloat"}
        return sum(seen.values())


def indexes_page(conn: Conn, now: datetime, *, largest: int = LARGEST) -> IndexesPage:
    health = index_health(conn)
    rank = {k: i for i, k in enumerate(KINDS)}
    findings = sorted(health.findings, key=lambda f: (rank.get(f.kind, len(KINDS)), -f.size_bytes, f.index))
    about: dict[str, list[str]] = {}
    for f in findings:
        about.setdefault(f.index, []).append(f.kind)
    listing = sorted(health.indexes, key=lambda i: (-int(i["size_bytes"]), str(i["index"])))
    rows = [IndexRow(str(i["index"]), str(i["table"]), int(i["size_bytes"]), int(i["scans"]), bool(i["valid"]),
                     str(i["definition"]), about.get(str(i["index"]), [])) for i in listing[:largest]]
    age = now - health.stats_since if health.stats_since is not None else None
    return IndexesPage(health, findings, rows, len(listing), sum(int(i["size_bytes"]) for i in listing), age)
