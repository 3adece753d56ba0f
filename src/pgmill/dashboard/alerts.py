"""The alerts page: `pgmill alerts` (pgmill.observe.alerts.list_alerts) over a window of 1, 7 or 30 days: the
alerts firing now and the events of the window, newest first, each with every delivery attempt and its result."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from pgmill.observe.alerts import list_alerts

Conn = psycopg.Connection[Any]
WINDOWS = {"1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}
DEFAULT_WINDOW = "7d"
MAX_EVENTS = 200
_TIMES = ("at", "since", "last_notified", "cleared_at")


@dataclass
class AlertsPage:
    window: str  # a key of WINDOWS
    since: datetime
    firing: list[dict[str, Any]]
    events: list[dict[str, Any]]  # each with its "deliveries"
    limit: int

    @property
    def truncated(self) -> bool:
        return len(self.events) >= self.limit

    def attempts(self, status: str) -> int:
        """Delivery attempts of the window's events with this status (sent, failed), digests' included."""
        return sum(1 for e in self.events for d in e["deliveries"] if d["status"] == status)


def alerts_page(conn: Conn, now: datetime, window: str = DEFAULT_WINDOW, *, limit: int = MAX_EVENTS) -> AlertsPage:
    """The alerts as of `now` over `window` (a key of WINDOWS; KeyError otherwise)."""
    since = now - WINDOWS[window]
    listed = list_alerts(conn, since, limit=limit)
    events = [_times(e) for e in listed.events]
    for e in events:
        e["deliveries"] = [_times(d) for d in e["deliveries"]]
    return AlertsPage(window, since, [_times(f) for f in listed.firing], events, limit)


def _times(row: dict[str, Any]) -> dict[str, Any]:
    """list_alerts gives timestamps as ISO text (for JSON): back to datetimes, for the page to format."""
    return {k: datetime.fromisoformat(v) if k in _TIMES and isinstance(v, str) else v for k, v in row.items()}
