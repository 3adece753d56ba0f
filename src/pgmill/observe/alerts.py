"""Alerts: conditions -> a state machine per (rule, subject) -> messages -> deliveries. What the shells call:

    evaluate_alerts(ctx, now)   one evaluation (`pgmill serve` runs one after every tick, see observe.hooks)
    send_test(ctx)              a test message to every channel, each result recorded and returned
    list_alerts(conn, since)    the alerts firing now and the recent events, each with its delivery attempts
    delivery_health(conn)       (observe.deliver) each channel ok, failing or unknown: for /healthz and metrics

One evaluation runs at a time per database (an advisory lock; a second `pgmill serve` skips its turn). The
tables are the truth: state transitions and their events commit before anything is sent, each event naming
the channels it still owes (`undelivered`), and what is sent is read back from that outbox, so a process that
dies mid-delivery leaves messages the next evaluation sends. More than `digest_over` messages for one channel
in one evaluation go out as one digest. After the deliveries, a channel whose latest message failed raises
the built-in `channel_failing` alert, sent on the other channels.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgmill.config.alerts import CHANNEL_FAILING, Alerts
from pgmill.config.duration import parse_duration
from pgmill.db.migrations import migrate
from pgmill.observe import alert_state
from pgmill.observe.alert_state import AlertState, Timing, step
from pgmill.observe.conditions import CONDITIONS, Condition, MonthCost, Scope, ago, stamp
from pgmill.observe.deliver import (
    ChannelResult,
    DeliveryPolicy,
    Message,
    deliver,
    delivery_health,
    failing_channels,
)
from pgmill.project import ProjectContext
from pgmill.redact import redact
from pgmill.retry import describe

__all__ = ["AlertList", "EvaluationReport", "delivery_health", "evaluate_alerts", "list_alerts", "send_test"]

_LOCK_KEY = 0x70676D616C7274  # "pgmalrt": one evaluation at a time per database
_LABEL = {"firing": "FIRING", "renotify": "STILL FIRING", "resolved": "RESOLVED", "channel_failing": "FIRING"}
_LEVEL = {"firing": "failure", "channel_failing": "failure", "renotify": "warning", "digest": "warning",
          "resolved": "success", "test": "info"}


@dataclass
class EvaluationReport:
    """What one evaluation found and did."""

    at: datetime
    skipped: str | None = None
    fired: list[dict[str, Any]] = field(default_factory=list)
    renotified: list[dict[str, Any]] = field(default_factory=list)
    resolved: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[ChannelResult] = field(default_factory=list)
    digests: int = 0
    errors: list[str] = field(default_factory=list)  # rules that could not be evaluated (their alerts stay)
    notes: list[str] = field(default_factory=list)   # rules that could not say (e.g. cost not measured)

    @property
    def sent(self) -> list[ChannelResult]:
        return [d for d in self.deliveries if d.sent]

    @property
    def failed(self) -> list[ChannelResult]:
        return [d for d in self.deliveries if not d.sent]

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "skipped": self.skipped, "fired": self.fired,
                "renotified": self.renotified, "resolved": self.resolved, "digests": self.digests,
                "sent": [d.as_dict() for d in self.sent], "failed": [d.as_dict() for d in self.failed],
                "errors": self.errors, "notes": self.notes}


def _seconds(text: str) -> timedelta:
    return timedelta(seconds=parse_duration(text))


def _project(ctx: ProjectContext) -> str:
    return ctx.dir.name


# ------------------------------------------------------------------ events

def _record_event(conn: psycopg.Connection[Any], at: datetime, kind: str, rule: str | None, subject: str | None,
                  title: str, body: str, value: float | None, channels: list[str],
                  covers: list[int] | None = None) -> int:
    row = conn.execute(
        "INSERT INTO pgmill.alert_events (at, kind, rule, subject, title, message, value, channels, undelivered,"
        " covers) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING event_id",
        (at, kind, rule, subject, redact(title), redact(body), value, channels, channels, covers)).fetchone()
    assert row is not None
    return int(row[0])


def _texts(project: str, event: str, prev: AlertState | None, st: AlertState, now: datetime,
           resolve_after: str) -> tuple[str, str]:
    title = f"[pgmill {project}] {_LABEL[event]} {st.rule}: {st.subject}"
    if event == "resolved":
        began = prev.since if prev is not None else st.since
        return title, (f"No longer true (quiet for {resolve_after}), resolved at {stamp(now)}; "
                       f"it fired from {stamp(began)}.\nWas: {st.message}")
    if event == "renotify":
        return title, (f"{st.message}\n\nStill firing since {stamp(st.since)} ({ago((now - st.since).total_seconds())}"
                       f"), message {st.notifications}. {_rule(st)}.")
    return title, f"{st.message}\n\nSince {stamp(st.since)}. {_rule(st)}."


def _rule(st: AlertState) -> str:
    return f"Rule {st.rule}" + (f" ({st.kind})" if st.kind != st.rule else "")


@dataclass
class _Pending:
    event_id: int
    kind: str
    rule: str
    subject: str
    message: str
    channels: list[str]


def _transitions(conn: psycopg.Connection[Any], ctx: ProjectContext, now: datetime,
                 results: dict[str, tuple[str, list[str] | None, str | None, list[Condition]]],
                 gone: set[str], report: EvaluationReport) -> list[_Pending]:
    """Apply each rule's conditions to its alerts' states; record the events; return them."""
    cfg = ctx.config.alerts
    project = _project(ctx)
    states = alert_state.load(conn, [*results, *gone])
    pending: list[_Pending] = []
    by_rule: dict[str, list[AlertState]] = defaultdict(list)
    for st in states.values():
        by_rule[st.rule].append(st)
    for name, (kind, targets, repeat, conds) in results.items():
        timing = Timing(_seconds(repeat or cfg.repeat), _seconds(cfg.resolve_after))
        now_true = {c.subject: c for c in conds}
        seen: list[str] = []  # still firing, nothing else changed: one UPDATE for all of them
        for subject in sorted(now_true.keys() | {s.subject for s in by_rule[name]}):
            prev = states.get((name, subject))
            nxt, event = step(prev, now_true.get(subject), rule=name, kind=kind, now=now, timing=timing)
            if nxt is None or nxt == prev:
                continue
            if event is None and prev is not None and replace(nxt, last_seen=prev.last_seen) == prev:
                seen.append(subject)
                continue
            alert_state.save(conn, nxt)
            if event is None:
                continue
            if name == CHANNEL_FAILING and event == "firing":
                event = "channel_failing"
            title, body = _texts(project, event, prev, nxt, now, cfg.resolve_after)
            channels = [c for c in (list(cfg.channels) if targets is None else targets) if c in cfg.channels]
            if name == CHANNEL_FAILING:
                channels = [c for c in channels if c != subject]
            eid = _record_event(conn, now, event, name, subject, title, body, nxt.value, channels)
            pending.append(_Pending(eid, event, name, subject, nxt.message, channels))
            item = {"rule": name, "subject": subject, "message": nxt.message, "event_id": eid}
            if event == "resolved":
                report.resolved.append(item)
            elif event == "renotify":
                report.renotified.append(item)
            else:
                report.fired.append(item)
        if seen:
            conn.execute("UPDATE pgmill.alert_state SET last_seen = %s WHERE rule = %s AND subject = ANY(%s)",
                         (now, name, seen))
    for name in gone:  # the rule left pgmill.yaml: its alerts resolve, with nothing to send
        for st in by_rule[name]:
            if st.status == "firing":
                alert_state.save(conn, AlertState(st.rule, st.subject, st.kind, "resolved", now, st.last_seen,
                                                  st.message, st.value, last_notified=st.last_notified,
                                                  notifications=st.notifications))
                _record_event(conn, now, "resolved", st.rule, st.subject,
                              f"[pgmill {project}] RESOLVED {st.rule}: {st.subject}",
                              f"The rule {st.rule} is no longer in pgmill.yaml.\nWas: {st.message}", st.value, [])
    return pending


def _digest(conn: psycopg.Connection[Any], ctx: ProjectContext, now: datetime, pending: list[_Pending],
            report: EvaluationReport) -> None:
    """A channel owed more than `digest_over` messages by this evaluation gets one digest of them instead."""
    limit = ctx.config.alerts.digest_over
    per: dict[str, list[_Pending]] = defaultdict(list)
    for p in pending:
        for ch in p.channels:
            per[ch].append(p)
    for ch, items in per.items():
        if len(items) <= limit:
            continue
        title = f"[pgmill {_project(ctx)}] {len(items)} alert messages at {stamp(now)}"
        lines = [f"- {_LABEL.get(p.kind, p.kind.upper())} {p.rule}: {p.message.splitlines()[0]}" for p in items]
        body = "\n".join([*lines, "", f"(more than {limit} in one evaluation: one digest; pgmill.alert_events "
                                      "has each)"])
        ids = [p.event_id for p in items]
        _record_event(conn, now, "digest", None, None, title, body, float(len(items)), [ch], covers=ids)
        conn.execute("UPDATE pgmill.alert_events SET undelivered = array_remove(undelivered, %s)"
                     " WHERE event_id = ANY(%s)", (ch, ids))
        report.digests += 1


def _outbox(conn: psycopg.Connection[Any], channels: dict[str, str], since: datetime) -> dict[str, list[Message]]:
    """What is still owed, by channel, oldest first (tests are sent by send_test itself)."""
    out: dict[str, list[Message]] = defaultdict(list)
    rows = conn.execute(
        "SELECT event_id, kind, title, message, undelivered FROM pgmill.alert_events"
        " WHERE undelivered <> '{}' AND kind <> 'test' AND at > %s ORDER BY event_id", (since,)).fetchall()
    for eid, kind, title, body, owed in rows:
        for ch in owed:
            if ch in channels:
                out[ch].append(Message(eid, title, body, _LEVEL.get(kind, "warning")))
            else:  # the channel left pgmill.yaml
                conn.execute("UPDATE pgmill.alert_events SET undelivered = array_remove(undelivered, %s)"
                             " WHERE event_id = %s", (ch, eid))
    return out


def _round(conn: psycopg.Connection[Any], ctx: ProjectContext, now: datetime,
           results: dict[str, tuple[str, list[str] | None, str | None, list[Condition]]], gone: set[str],
           policy: DeliveryPolicy, report: EvaluationReport) -> None:
    cfg = ctx.config.alerts
    with conn.transaction():
        pending = _transitions(conn, ctx, now, results, gone, report)
        _digest(conn, ctx, now, pending, report)
        outgoing = _outbox(conn, cfg.channels, now - max(_seconds(cfg.repeat), timedelta(hours=1)))
    report.deliveries += deliver(conn, cfg.channels, outgoing, policy)


# ------------------------------------------------------------------ entry points

def evaluate_alerts(ctx: ProjectContext, now: datetime | None = None, *, conn: psycopg.Connection[Any] | None = None,
                    month_cost: MonthCost | None = None, policy: DeliveryPolicy | None = None) -> EvaluationReport:
    """Evaluate every rule, move each alert's state, send what that calls for, record every attempt.

    `conn` (autocommit) is reused when given; otherwise one is opened and pgmill's schema brought up to date.
    `month_cost` gives (month to date, projected) dollars for `cost_over_budget`; without it that rule does not
    fire and the report says so."""
    now = now or datetime.now(UTC)
    report = EvaluationReport(now)
    if conn is not None and not conn.autocommit:
        raise ValueError("evaluate_alerts needs an autocommit connection (it commits each step itself)")
    own = conn is None
    c = conn if conn is not None else ctx.target.connect(autocommit=True, application_name="pgmill alerts")
    try:
        if own:
            migrate(c)
        row = c.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,)).fetchone()
        if not (row and row[0]):
            report.skipped = "another evaluation of this database's alerts is running"
            return report
        try:
            _evaluate(c, ctx, now, month_cost, policy or DeliveryPolicy.from_config(ctx.config.alerts), report)
        finally:
            if not c.closed and not c.broken:
                c.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    finally:
        if own:
            c.close()
    return report


def _evaluate(conn: psycopg.Connection[Any], ctx: ProjectContext, now: datetime, month_cost: MonthCost | None,
              policy: DeliveryPolicy, report: EvaluationReport) -> None:
    cfg: Alerts = ctx.config.alerts
    scope = Scope(conn, now, ctx, month_cost)
    results: dict[str, tuple[str, list[str] | None, str | None, list[Condition]]] = {}
    for rule in cfg.rules:
        name = rule.name or rule.kind
        try:
            results[name] = (rule.kind, rule.channels, rule.repeat, CONDITIONS[rule.kind](rule, scope))
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:  # this rule's alerts stay as they are; the others go on
            report.errors.append(f"{name}: {describe(exc)}")
    report.notes += scope.notes
    configured = {r.name or r.kind for r in cfg.rules} | {CHANNEL_FAILING}
    gone = set(alert_state.firing_rules(conn)) - configured
    _round(conn, ctx, now, results, gone, policy, report)
    failing = failing_channels(conn, list(cfg.channels))
    _round(conn, ctx, now, {CHANNEL_FAILING: (CHANNEL_FAILING, None, None, failing)}, set(), policy, report)


def send_test(ctx: ProjectContext, *, conn: psycopg.Connection[Any] | None = None,
              policy: DeliveryPolicy | None = None) -> list[ChannelResult]:
    """A test message to every channel; each attempt recorded (kind `test`) and each channel's result returned."""
    cfg = ctx.config.alerts
    own = conn is None
    c = conn if conn is not None else ctx.target.connect(autocommit=True, application_name="pgmill alerts")
    try:
        if own:
            migrate(c)
        now = datetime.now(UTC)
        channels = list(cfg.channels)
        title = f"[pgmill {_project(ctx)}] test message"
        body = (f"A test message from pgmill at {stamp(now)}: this channel receives the project's alerts "
                f"({len(cfg.rules)} rules).")
        with c.transaction():
            eid = _record_event(c, now, "test", None, None, title, body, None, channels)
        msg = Message(eid, title, body, "info")
        return deliver(c, cfg.channels, {ch: [msg] for ch in channels}, policy or DeliveryPolicy.from_config(cfg))
    finally:
        if own:
            c.close()


@dataclass
class AlertList:
    firing: list[dict[str, Any]]
    events: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"firing": self.firing, "events": self.events}


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def list_alerts(conn: psycopg.Connection[Any], since: datetime | None = None, *, limit: int = 200) -> AlertList:
    """The alerts firing now, and the events since `since` (default: the last day, newest first, at most
    `limit`), each with its delivery attempts, direct or through the digest that carried it."""
    since = since or datetime.now(UTC) - timedelta(days=1)
    with conn.cursor(row_factory=dict_row) as cur:
        firing = cur.execute(
            "SELECT rule, subject, kind, since, last_notified, notifications, message, value, cleared_at"
            " FROM pgmill.alert_state WHERE status = 'firing' ORDER BY since DESC, rule, subject").fetchall()
        events = cur.execute(
            "SELECT event_id, at, kind, rule, subject, title, message, value, channels, undelivered, covers"
            " FROM pgmill.alert_events WHERE at >= %s ORDER BY event_id DESC LIMIT %s", (since, limit)).fetchall()
        ids = [e["event_id"] for e in events]
        digests = cur.execute(
            "SELECT event_id, covers FROM pgmill.alert_events WHERE kind = 'digest' AND at >= %s AND covers && %s::bigint[]",
            (since, ids)).fetchall()
        via: dict[int, list[int]] = defaultdict(list)
        for d in digests:
            for covered in d["covers"]:
                via[covered].append(d["event_id"])
        attempts = cur.execute(
            "SELECT delivery_id, event_id, channel, attempt, status, final, error, latency_ms, at"
            " FROM pgmill.alert_deliveries WHERE event_id = ANY(%s) ORDER BY delivery_id",
            (ids + [d["event_id"] for d in digests],)).fetchall()
    by_event: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for a in attempts:
        by_event[a["event_id"]].append(_jsonable(a))
    out = []
    for e in events:
        e = _jsonable(e)
        e["deliveries"] = by_event[e["event_id"]] + [
            {**a, "digest": d} for d in via[e["event_id"]] for a in by_event[d]]
        out.append(e)
    return AlertList([_jsonable(f) for f in firing], out)
