"""The state of each alert, one row per (rule, subject) in pgmill.alert_state, and its transitions.

```
               condition true                        condition false for resolve_after
  (none) ─────────────────────────────▶ firing ────────────────────────────────────▶ resolved
  resolved ──── message "firing" ──────▶   │   ◀── true again before that: no message ──┘ (message "resolved")
                                           │
                 still true after `repeat` since the last message: message "renotify"
                 a new occurrence (another missed slot): message "firing"
```

A condition that flaps (true, false, true, ...) stays one firing alert: the false evaluations only start
the resolve clock (`cleared_at`), and a true one stops it again, so it sends one message when it starts,
re-notifies after `repeat`, and one "resolved" once it has stayed false for `resolve_after`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import psycopg

from pgmill.observe.conditions import Condition


@dataclass(frozen=True)
class AlertState:
    rule: str
    subject: str
    kind: str
    status: str  # firing | resolved
    since: datetime
    last_seen: datetime
    message: str
    value: float | None = None
    cleared_at: datetime | None = None
    last_notified: datetime | None = None
    notifications: int = 0
    occurrence: str | None = None


@dataclass(frozen=True)
class Timing:
    repeat: timedelta
    resolve_after: timedelta


def step(prev: AlertState | None, cond: Condition | None, *, rule: str, kind: str, now: datetime,
         timing: Timing) -> tuple[AlertState | None, str | None]:
    """The next state of one alert and the message it sends (firing, renotify, resolved), if any."""
    if cond is not None:
        if prev is None or prev.status == "resolved":
            return AlertState(rule, cond.subject, kind, "firing", now, now, cond.message, cond.value,
                              last_notified=now, notifications=1, occurrence=cond.occurrence), "firing"
        nxt = replace(prev, last_seen=now, cleared_at=None, message=cond.message, value=cond.value, kind=kind)
        if cond.occurrence is not None and cond.occurrence != prev.occurrence:
            event = "firing"
        elif prev.last_notified is None or now - prev.last_notified >= timing.repeat:
            event = "renotify"
        else:
            return replace(nxt, occurrence=cond.occurrence), None
        return replace(nxt, occurrence=cond.occurrence, last_notified=now,
                       notifications=prev.notifications + 1), event
    if prev is None or prev.status == "resolved":
        return prev, None
    cleared = prev.cleared_at or now
    if now - cleared >= timing.resolve_after:
        return replace(prev, status="resolved", since=now, cleared_at=None, last_notified=now,
                       notifications=prev.notifications + 1), "resolved"
    return (prev, None) if prev.cleared_at is not None else (replace(prev, cleared_at=now), None)


def load(conn: psycopg.Connection[Any], rules: list[str]) -> dict[tuple[str, str], AlertState]:
    """The alerts of these rules (firing, or resolved earlier), by (rule, subject)."""
    rows = conn.execute(
        "SELECT rule, subject, kind, status, since, last_seen, message, value, cleared_at, last_notified,"
        " notifications, occurrence FROM pgmill.alert_state WHERE rule = ANY(%s)", (rules,)).fetchall()
    return {(r[0], r[1]): AlertState(*r) for r in rows}


def save(conn: psycopg.Connection[Any], st: AlertState) -> None:
    conn.execute(
        "INSERT INTO pgmill.alert_state (rule, subject, kind, status, since, last_seen, message, value, cleared_at,"
        " last_notified, notifications, occurrence) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (rule, subject) DO UPDATE SET kind = excluded.kind, status = excluded.status,"
        " since = excluded.since, last_seen = excluded.last_seen, message = excluded.message,"
        " value = excluded.value, cleared_at = excluded.cleared_at, last_notified = excluded.last_notified,"
        " notifications = excluded.notifications, occurrence = excluded.occurrence",
        (st.rule, st.subject, st.kind, st.status, st.since, st.last_seen, st.message, st.value, st.cleared_at,
         st.last_notified, st.notifications, st.occurrence))


def firing_rules(conn: psycopg.Connection[Any]) -> list[str]:
    """Rules with an alert still firing (to resolve those whose rule left pgmill.yaml)."""
    return [str(r[0]) for r in conn.execute(
        "SELECT DISTINCT rule FROM pgmill.alert_state WHERE status = 'firing'").fetchall()]
