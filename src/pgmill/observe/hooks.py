"""The alert evaluation and the heartbeat as hooks of the service loop behind `pgmill serve`:

    Service(ctx, hooks=service_hooks(month_cost=...))

The service calls its hooks after each tick, in its own thread. These return at once and work in a background
thread, one run at a time (a tick that comes while the previous run is still going skips its turn and is
counted), so a channel that hangs never holds up the schedule. `wait()` lets `pgmill serve --once` finish the
run in flight before it exits.
"""

from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg

from pgmill.db.connect import close_quietly
from pgmill.observe.alerts import EvaluationReport, evaluate_alerts
from pgmill.observe.conditions import MonthCost
from pgmill.observe.deliver import DeliveryPolicy, warm_up
from pgmill.observe.heartbeat import ping_heartbeat
from pgmill.project import ProjectContext
from pgmill.retry import describe

log = logging.getLogger("pgmill.alerts")

Hook = Callable[[ProjectContext, datetime], None]


class _Background(abc.ABC):
    """Runs `work(ctx, now)` in a thread, one at a time; failures are logged and counted."""

    def __init__(self, name: str) -> None:
        self.__name__ = name
        self.runs = 0
        self.skipped = 0
        self.failures = 0
        self.last_error: str | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __call__(self, ctx: ProjectContext, now: datetime) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self.skipped += 1
                return
            self._thread = threading.Thread(target=self._guarded, args=(ctx, now), daemon=True,
                                            name=f"pgmill-{self.__name__}")
            self._thread.start()

    def _guarded(self, ctx: ProjectContext, now: datetime) -> None:
        try:
            self.work(ctx, now)
            self.runs += 1
        except Exception as exc:  # a hook never stops the schedule; the failure is logged and counted
            self.failures += 1
            self.last_error = describe(exc)
            log.warning("%s failed: %s", self.__name__, self.last_error)

    @abc.abstractmethod
    def work(self, ctx: ProjectContext, now: datetime) -> None:
        """What the hook does, in its thread."""

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the run in flight; True when none is left."""
        t = self._thread
        if t is not None:
            t.join(timeout)
        return t is None or not t.is_alive()


class AlertHook(_Background):
    """Evaluates the alerts after a tick, on a connection it keeps (opened again after a failure)."""

    def __init__(self, *, month_cost: MonthCost | None = None, policy: DeliveryPolicy | None = None) -> None:
        super().__init__("alert evaluation")
        self.month_cost = month_cost
        self.policy = policy
        self.last_report: EvaluationReport | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._warm = False

    def work(self, ctx: ProjectContext, now: datetime) -> None:
        if not self._warm:
            warm_up()
            self._warm = True
        if self._conn is None or self._conn.closed:
            self._conn = ctx.target.connect(autocommit=True, application_name="pgmill alerts")
        try:
            self.last_report = evaluate_alerts(ctx, now, conn=self._conn, month_cost=self.month_cost,
                                               policy=self.policy)
        except BaseException:
            self.close()
            raise
        for err in self.last_report.errors:
            log.warning("alert rule %s", err)

    def close(self) -> None:
        close_quietly(self._conn)
        self._conn = None


class HeartbeatHook(_Background):
    """Pings `alerts.heartbeat_url` after a tick."""

    def __init__(self) -> None:
        super().__init__("heartbeat")

    def work(self, ctx: ProjectContext, now: datetime) -> None:
        ping_heartbeat(ctx)


def project_month_cost(conn: psycopg.Connection[Any], ctx: ProjectContext) -> tuple[float, float]:
    """Month to date and projected, in dollars, for the `cost_over_budget` rule (pgmill.observe.cost)."""
    from pgmill.observe.cost import month_cost

    return month_cost(conn, ctx.config.cost)


def service_hooks(*, month_cost: MonthCost | None = project_month_cost) -> list[Hook]:
    """The hooks `pgmill serve` passes to its Service: alert evaluation, then the heartbeat."""
    return [AlertHook(month_cost=month_cost), HeartbeatHook()]
