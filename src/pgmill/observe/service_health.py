"""Is the service healthy (`GET /healthz`)? The database answers, the scheduler ticks, alerts get through.

- database: a connection opens and answers a query.
- scheduler: the service instance (this process's, when it runs one; otherwise the newest) ticked within
  `STALE_TICKS` tick intervals. No instance, or the newest stopped cleanly: "not running", which is
  healthy unless this process is meant to run one.
- alerts: no channel whose latest delivery failed (when pgmill.alert_deliveries is in place).

Each check names what is wrong; the report is healthy when every check passed.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import psycopg

from pgmill.errors import PgmillError
from pgmill.observe.metrics import STALE_TICKS

Conn = psycopg.Connection[Any]
Connect = Callable[[], AbstractContextManager[Conn]]


@dataclass(frozen=True)
class Check:
    name: str  # database | scheduler | alerts
    ok: bool | None  # None: not checked (the database did not answer)
    detail: str


@dataclass(frozen=True)
class HealthReport:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def problems(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if c.ok is False]

    def as_dict(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "unhealthy", "problems": self.problems,
                "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in self.checks}}


def check_health(connect: Connect, *, instance: str | None = None) -> HealthReport:
    """Run the checks; `instance` is the scheduler this process runs (it must be ticking), if any."""
    try:
        with connect() as conn, conn.transaction():
            conn.execute("SELECT set_config('statement_timeout', '5s', true)")
            checks = (Check("database", True, "answering"), _scheduler(conn, instance), _alerts(conn))
    except (PgmillError, psycopg.Error) as exc:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        unknown = "not checked: the database did not answer"
        checks = (Check("database", False, why), Check("scheduler", None, unknown), Check("alerts", None, unknown))
    return HealthReport(checks)


def _scheduler(conn: Conn, instance: str | None) -> Check:
    row = conn.execute(
        "SELECT instance, stopped_at IS NOT NULL, tick_seconds,"
        " extract(epoch FROM now() - coalesce(last_tick_at, started_at))::float8, last_tick_at IS NULL"
        " FROM pgmill.service_instances WHERE %(instance)s::text IS NULL OR instance = %(instance)s"
        " ORDER BY coalesce(last_tick_at, started_at) DESC LIMIT 1",
        {"instance": instance}).fetchone() if _exists(conn, "pgmill.service_instances") else None
    if row is None:
        return (Check("scheduler", True, "not running") if instance is None else
                Check("scheduler", False, f"this process's scheduler ({instance}) has not ticked yet"))
    name, stopped, tick_s, age, never = row
    if stopped:
        return (Check("scheduler", True, "not running (the last service stopped cleanly)") if instance is None
                else Check("scheduler", False, f"this process's scheduler ({name}) has stopped"))
    if age > STALE_TICKS * tick_s:
        last = "registered but never ticked" if never else f"last tick {age:.0f} s ago"
        return Check("scheduler", False, f"not ticking: {name} {last}, expected every {tick_s:g} s "
                     "(a service that died without stopping, or a database it cannot reach)")
    return Check("scheduler", True, f"ticking: {name}, last tick {max(age, 0):.1f} s ago, every {tick_s:g} s")


def _alerts(conn: Conn) -> Check:
    from pgmill.observe.deliver import delivery_health

    if not _exists(conn, "pgmill.alert_deliveries"):
        return Check("alerts", True, "no deliveries recorded")
    failing = [ch for ch, h in delivery_health(conn).items() if h["status"] == "failing"]
    if failing:
        return Check("alerts", False, "the latest delivery failed on " + ", ".join(failing))
    return Check("alerts", True, "every channel's latest delivery went through")


def _exists(conn: Conn, table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])
