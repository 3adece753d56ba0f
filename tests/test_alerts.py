"""Alert rules and their state machine on a real database, delivered to a webhook on 127.0.0.1: each rule kind
fires on a project state built for it and resolves when it is fixed; flapping, repeat, digests, the outbox."""

from __future__ import annotations

import http.server
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from pgmill.db.migrations import migrate
from pgmill.observe import alerts as alerts_module
from pgmill.observe.alerts import EvaluationReport, evaluate_alerts, list_alerts
from pgmill.observe.conditions import CONDITIONS, MonthCost
from pgmill.observe.deliver import DeliveryPolicy
from pgmill.project import ProjectContext, open_project
from tests.helpers import ProjectDir

Conn = psycopg.Connection[Any]
POLICY = DeliveryPolicy(attempts=2, timeout_s=2.0, backoff_initial_s=0.01, backoff_max_s=0.02)


class Receiver:
    """Webhooks on 127.0.0.1: a POST to `/NAME/...` answers per `modes[NAME]`: ok (records the message), fail
    (HTTP 500) or hang (no answer until released); a GET (the heartbeat) answers 200 or 500. Every request is
    counted by NAME."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str, str]] = []  # (path, title, body)
        self.hits: Counter[str] = Counter()
        self.modes: dict[str, str] = {}
        self.release = threading.Event()
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                name = self.path.strip("/").split("/")[0].split("?")[0]
                with outer.lock:
                    outer.hits[name] += 1
                mode = outer.modes.get(name, "ok")
                if mode == "hang":
                    outer.release.wait(15)
                    self.close_connection = True
                    return
                if mode == "ok":
                    with outer.lock:
                        outer.messages.append((self.path, body.get("title", ""), body.get("message", "")))
                self.send_response(200 if mode == "ok" else 500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # the heartbeat
                name = self.path.strip("/").split("/")[0].split("?")[0]
                with outer.lock:
                    outer.hits[name] += 1
                self.send_response(200 if outer.modes.get(name, "ok") == "ok" else 500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                """No request log: the receiver counts hits instead."""

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str, rest: str = "") -> str:
        return f"json://127.0.0.1:{self.port}/{name}{rest}"

    def titles(self, name: str | None = None) -> list[str]:
        with self.lock:
            return [t for p, t, _ in self.messages if name is None or p.strip("/").split("/")[0] == name]

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()
            self.hits.clear()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def alert_project(project: ProjectDir, channels: dict[str, str], rules: list[dict[str, Any]],
                  **alerts: Any) -> ProjectContext:
    """Two pipelines (orders -> orders, events -> analytics.events), the given alerts, pgmill's schema."""
    project.contract("orders", {"columns": {"id": {"type": "bigint", "primary_key": True}}})
    pipes = {name: {"source": {"kind": "csv", "path": f"data/{name}*.csv"}, "table": table,
                    "contract": "contracts/orders.yaml"}
             for name, table in (("orders", "orders"), ("events", "analytics.events"))}
    project.config(pipes, alerts={"channels": channels, "rules": rules, "resolve_after": "1m", **alerts})
    with psycopg.connect(project.db_url, autocommit=True) as c:
        migrate(c)
    return open_project()


def evaluate(ctx: ProjectContext, at: datetime, month_cost: MonthCost | None = None) -> EvaluationReport:
    return evaluate_alerts(ctx, at, month_cost=month_cost, policy=POLICY)


def run(conn: Conn, pipeline: str, status: str, finished: datetime, read: int = 0, quarantined: int = 0,
        error: str | None = None) -> int:
    row = conn.execute(
        "INSERT INTO pgmill.runs (pipeline, status, started_at, finished_at, rows_read, rows_quarantined, error)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING run_id",
        (pipeline, status, finished - timedelta(minutes=1), finished, read, quarantined, error)).fetchone()
    assert row is not None
    return int(row[0])


def slow_load(conn: Conn, at: datetime, seconds: float) -> None:
    """A followed run's load step that measured `seconds` from the file's arrival to queryable."""
    run_id = run(conn, "orders", "running", at)
    conn.execute("INSERT INTO pgmill.run_steps (run_id, name, status, started_at, finished_at, rows, detail)"
                 " VALUES (%s, 'load inbox/a.csv', 'succeeded', clock_timestamp(), clock_timestamp(), 10, %s)",
                 (run_id, Jsonb({"arrival_to_queryable_s": seconds})))


def slot_health(conn: Conn, pipeline: str, at: datetime, retained: int | None, lag: int | None = 0,
                exists: bool = True, wal_status: str | None = "reserved") -> None:
    """The health of a CDC pipeline's slot as its loader stores it in pgmill.state (ingest/cdc/run.py)."""
    health = {"slot": f"pgmill_{pipeline}", "exists": exists, "active": exists, "wal_status": wal_status,
              "restart_lsn": 1000, "confirmed_lsn": 2000, "retained_bytes": retained, "lag_bytes": lag,
              "checked_at": at.isoformat()}
    conn.execute("INSERT INTO pgmill.state (pipeline, state) VALUES (%s, %s) ON CONFLICT (pipeline) DO UPDATE"
                 " SET state = pgmill.state.state || excluded.state",
                 (pipeline, Jsonb({"cdc": {"lsn": 2000, "slot": f"pgmill_{pipeline}"}, "cdc_slot": health})))


def resnapshot(conn: Conn, pipeline: str, at: datetime, status: str = "running") -> None:
    """The step the CDC loader records when it found its slot lost and loaded a new snapshot."""
    run_id = run(conn, pipeline, status, at)
    conn.execute("INSERT INTO pgmill.run_steps (run_id, name, status, started_at, finished_at, detail)"
                 " VALUES (%s, 'resnapshot shop.orders', 'succeeded', %s, %s, %s)",
                 (run_id, at, at, Jsonb({"reason": f"replication slot pgmill_{pipeline} no longer exists on the "
                                         "source", "stored_lsn": "0/16B3748",
                                         "slot": {"slot": f"pgmill_{pipeline}", "exists": False}})))


def slot(conn: Conn, job: str, at: datetime, state: str, finished: datetime | None = None,
         error: str | None = None, run_id: int | None = None) -> None:
    conn.execute("INSERT INTO pgmill.expected_runs (job, scheduled_for, state, finished_at, error, run_id)"
                 " VALUES (%s, %s, %s, %s, %s, %s)", (job, at, state, finished, error, run_id))


def tuning(conn: Conn, after: dict[str, float], targets: dict[str, float], source: str = "declared") -> None:
    report = {"queries": [{"name": q, "source": source, "target_ms": t} for q, t in targets.items()],
              "applied": {"before": {}, "after": {q: {"query": q, "p95_ms": p} for q, p in after.items()}}}
    conn.execute("INSERT INTO pgmill.tuning_runs (mode, status, finished_at, report) VALUES"
                 " ('apply', 'succeeded', now(), %s)", (Jsonb(report),))


def quality(conn: Conn, run_id: int, table: str, rule: str, status: str) -> None:
    conn.execute(
        "INSERT INTO pgmill.quality_results (run_id, table_name, rule, kind, rows_checked, rows_failed, pass_rate,"
        " threshold, severity, status, message) VALUES (%s, %s, %s, 'not_null', 100, %s, %s, 100, 'error', %s, %s)",
        (run_id, table, rule, 0 if status == "pass" else 7, 100 if status == "pass" else 93, status,
         "7 rows are null" if status != "pass" else ""))


# ------------------------------------------------------------------ each rule kind: fires, then resolves


@dataclass
class Case:
    """A rule, the subject it fires for, a state that makes it true (with others its filter leaves out), a fix."""

    rule: dict[str, Any]
    subject: str
    breaks: Callable[[Conn, datetime, dict[str, Any]], None]
    fixes: Callable[[Conn, datetime, dict[str, Any]], None]


def _late_fix(c: Conn, t: datetime, s: dict[str, Any]) -> None:
    c.execute("UPDATE pgmill.expected_runs SET state = 'running', started_at = %s", (t,))


def _success_fix(c: Conn, t: datetime, s: dict[str, Any]) -> None:
    for i in range(20):
        run(c, "orders", "succeeded", t - timedelta(minutes=i + 1))


def _set_cost(value: tuple[float, float]) -> Callable[[Conn, datetime, dict[str, Any]], None]:
    def set_cost(c: Conn, t: datetime, s: dict[str, Any]) -> None:
        s["cost"] = value
    return set_cost


CASES = {
    "run_failed": Case(
        {"kind": "run_failed", "pipelines": ["orders"]}, "orders",
        lambda c, t, s: (run(c, "orders", "failed", t - timedelta(minutes=1), error="source gone"),
                         run(c, "transform", "failed", t - timedelta(minutes=1))) and None,
        lambda c, t, s: run(c, "orders", "succeeded", t - timedelta(minutes=1)) and None,
    ),
    "consecutive_failures": Case(
        {"kind": "consecutive_failures", "count": 2}, "orders",
        lambda c, t, s: [run(c, "orders", "failed", t - timedelta(minutes=m)) for m in (1, 5)] and None,
        lambda c, t, s: run(c, "orders", "succeeded", t - timedelta(minutes=1)) and None),
    "late_run": Case(
        {"kind": "late_run", "after": "10m"}, "pipeline:orders",
        lambda c, t, s: (slot(c, "pipeline:orders", t - timedelta(minutes=15), "pending"),
                         slot(c, "models", t - timedelta(minutes=5), "pending")) and None,
        _late_fix),
    "missed_run": Case(
        {"kind": "missed_run", "window": "1h"}, "models",
        lambda c, t, s: slot(c, "models", t - timedelta(minutes=30), "missed", t - timedelta(minutes=1),
                             "started too late (misfire_grace 1m, misfire: skip)"),
        lambda c, t, s: None),  # two hours later the missed slot is out of the window
    "freshness": Case(
        {"kind": "freshness", "max_age": "1h", "pipelines": ["orders"]}, "orders",
        lambda c, t, s: c.execute("INSERT INTO pgmill.state (pipeline, cursor_value, updated_at)"
                                  " VALUES ('orders', '41', %s)", (t - timedelta(hours=3),)) and None,
        lambda c, t, s: c.execute("UPDATE pgmill.state SET updated_at = %s", (t,)) and None,
    ),
    "quality_failed": Case(
        {"kind": "quality_failed", "pipelines": ["orders"]}, "orders/not_null:id",
        lambda c, t, s: (quality(c, 1, "orders", "not_null:id", "fail"),
                         quality(c, 2, "analytics.events", "not_null:id", "fail")) and None,
        lambda c, t, s: quality(c, 3, "orders", "not_null:id", "pass"),
    ),
    "quarantine_rate": Case(
        {"kind": "quarantine_rate", "above": 5}, "orders",
        lambda c, t, s: run(c, "orders", "succeeded", t - timedelta(minutes=1), read=100, quarantined=10) and None,
        lambda c, t, s: run(c, "orders", "succeeded", t - timedelta(minutes=1), read=100, quarantined=1) and None),
    "query_p95": Case(
        {"kind": "query_p95"}, "top_customers",
        lambda c, t, s: tuning(c, {"top_customers": 80.0}, {"top_customers": 50.0}),
        lambda c, t, s: tuning(c, {"top_customers": 30.0}, {"top_customers": 50.0})),
    "success_rate": Case(
        {"kind": "success_rate", "below": 90, "window": "1d"}, "orders",
        lambda c, t, s: (run(c, "orders", "succeeded", t - timedelta(minutes=9)),
                         slot(c, "pipeline:orders", t - timedelta(minutes=20), "timed_out",
                              t - timedelta(minutes=5), "cancelled after its timeout (1h)")) and None,
        _success_fix),
    "latency": Case(
        {"kind": "latency", "above": "5s"}, "orders",
        lambda c, t, s: slow_load(c, t, 30.0),
        lambda c, t, s: c.execute("UPDATE pgmill.run_steps SET finished_at = finished_at - interval '1 hour'"
                                  " WHERE detail ? 'arrival_to_queryable_s'") and None),
    "cdc_slot": Case(
        {"kind": "cdc_slot", "retained_above": "1MB", "pipelines": ["orders"]}, "orders",
        lambda c, t, s: (slot_health(c, "orders", t, 5 << 20), slot_health(c, "events", t, 5 << 20)) and None,
        lambda c, t, s: slot_health(c, "orders", t, 1 << 20)),  # at the limit: not above it
    "cost_over_budget": Case(
        {"kind": "cost_over_budget"}, "budget", _set_cost((52.0, 90.0)), _set_cost((12.0, 30.0))),
}


def test_every_rule_kind_has_a_case() -> None:
    assert set(CASES) == set(CONDITIONS)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_rule_fires_and_resolves(project: ProjectDir, receiver: Receiver, kind: str) -> None:
    case = CASES[kind]
    ctx = alert_project(project, {"hook": receiver.url("hook")}, [case.rule])
    holder: dict[str, Any] = {"cost": (0.0, 0.0)}

    def month_cost(conn: Conn, ctx: ProjectContext) -> tuple[float, float]:
        return holder["cost"]  # type: ignore[no-any-return]

    t0 = datetime.now(UTC)
    with psycopg.connect(project.db_url, autocommit=True) as c:
        if kind != "freshness":  # a pipeline never loaded is stale from the start
            assert evaluate(ctx, t0, month_cost).fired == []
        case.breaks(c, t0, holder)
        fired = evaluate(ctx, t0, month_cost)
        assert [(f["rule"], f["subject"]) for f in fired.fired] == [(kind, case.subject)], fired.as_dict()
        assert receiver.titles() == [f"[pgmill {project.path.name}] FIRING {kind}: {case.subject}"]
        assert [(d.sent, d.attempts) for d in fired.deliveries] == [(True, 1)]
        assert evaluate(ctx, t0 + timedelta(seconds=30), month_cost).fired == []  # still true: no new message

        t1 = t0 + timedelta(hours=2)
        case.fixes(c, t1, holder)
        first = evaluate(ctx, t1, month_cost)
        assert first.resolved == [] and first.fired == []  # false once: not resolved yet (resolve_after 1m)
        done = evaluate(ctx, t1 + timedelta(minutes=2), month_cost)
        assert [(r["rule"], r["subject"]) for r in done.resolved] == [(kind, case.subject)], done.as_dict()
        assert receiver.titles()[-1] == f"[pgmill {project.path.name}] RESOLVED {kind}: {case.subject}"
        assert [s for (s,) in c.execute("SELECT subject FROM pgmill.alert_state")] == [case.subject]
        assert c.execute("SELECT status FROM pgmill.alert_state").fetchone() == ("resolved",)


def test_messages_say_what_is_wrong(project: ProjectDir, receiver: Receiver) -> None:
    ctx = alert_project(project, {"hook": receiver.url("hook")}, [
        {"kind": "run_failed"}, {"kind": "quarantine_rate", "above": 5}, {"kind": "query_p95", "regression": 50},
        {"kind": "freshness", "max_age": "1h"}])
    t = datetime.now(UTC)
    with psycopg.connect(project.db_url, autocommit=True) as c:
        run(c, "orders", "failed", t - timedelta(minutes=1), read=200, quarantined=30,
            error="could not read postgresql://loader:hunter2@db.internal/prod")
        tuning(c, {"q_fast": 10.0}, {"q_fast": 100.0})
        tuning(c, {"q_fast": 20.0, "observed_1": 500.0}, {"q_fast": 100.0})
        tuning(c, {"observed_1": 500.0}, {"observed_1": 100.0}, source="observed")
        report = evaluate(ctx, t)
    by = {(f["rule"], f["subject"]): f["message"] for f in report.fired}
    assert "could not read postgresql://loader:***@db.internal/prod" in by[("run_failed", "orders")]
    assert "15.0% of the rows it read (30 of 200; limit 5.0%)" in by[("quarantine_rate", "orders")]
    assert "p95 20.0 ms is 100% slower than its baseline 10.0 ms" in by[("query_p95", "q_fast")]
    assert "events: never loaded" in by[("freshness", "events")]
    assert ("query_p95", "observed_1") not in by  # observed queries are not the declared workload
    assert all("hunter2" not in t for t in receiver.titles())
    with psycopg.connect(project.db_url) as c:
        assert c.execute("SELECT count(*) FROM pgmill.alert_events WHERE message LIKE '%hunter2%'"
                         " OR title LIKE '%hunter2%'").fetchone() == (0,)


def test_cost_rule_without_a_cost_function_does_not_fire_and_says_so(project: ProjectDir,
                                                                        receiver: Receiver) -> None:
    ctx = alert_project(project, {"hook": receiver.url("hook")}, [{"kind": "cost_over_budget", "projected": True}])
    report = evaluate(ctx, datetime.now(UTC))
    assert report.fired == [] and report.notes == ["cost_over_budget: cost is not measured here: the rule does not fire"]
    projected = evaluate(ctx, datetime.now(UTC), month_cost=lambda conn, ctx: (10.0, 45.0))
    assert [f["message"] for f in projected.fired] == ["$45.00 projected for the month, over the budget of $40.00"]


def test_a_missed_slot_notifies_once_and_a_new_one_again(project: ProjectDir, receiver: Receiver) -> None:
    ctx = alert_project(project, {"hook": receiver.url("hook")}, [{"kind": "missed_run"}])
    t = datetime.now(UTC)
    with psycopg.connect(project.db_url, autocommit=True) as c:
        slot(c, "pipeline:orders", t - timedelta(minutes=10), "skipped", t, "the previous run was still going")
        assert len(evaluate(ctx, t).fired) == 1
        assert evaluate(ctx, t + timedelta(minutes=1)).fired == []
        slot(c, "pipeline:orders", t, "skipped", t + timedelta(minutes=10), "the previous run was still going")
        again = evaluate(ctx, t + timedelta(minutes=10))
    assert [f["subject"] for f in again.fired] == ["pipeline:orders"]
    assert "was skipped" in again.fired[0]["message"] and "(2 slots in the last 1h)" in again.fired[0]["message"]
    assert len(receiver.titles()) == 2


# ------------------------------------------------------------------ the state machine


def test_flapping_fires_once_renotifies_after_repeat_and_resolves_once(project: ProjectDir,
                                                                       receiver: Receiver) -> None:
    ctx = alert_project(project, {"hook": receiver.url("hook")}, [{"kind": "run_failed", "repeat": "1h"}],
                        resolve_after="5m")
    t0 = datetime.now(UTC)
    with psycopg.connect(project.db_url, autocommit=True) as c:
        for i in range(20):  # every minute the pipeline fails, then succeeds: one evaluation each
            t = t0 + timedelta(minutes=i)
            run(c, "orders", "failed" if i % 2 == 0 else "succeeded", t)
            evaluate(ctx, t)
        assert [k for (k,) in c.execute("SELECT kind FROM pgmill.alert_events ORDER BY event_id")] == ["firing"]
        t = t0 + timedelta(minutes=61)
        run(c, "orders", "failed", t)
        assert len(evaluate(ctx, t).renotified) == 1  # still firing after `repeat`: one reminder
        assert evaluate(ctx, t + timedelta(minutes=1)).renotified == []
        t = t0 + timedelta(minutes=63)
        run(c, "orders", "succeeded", t)
        for m in range(0, 12):  # false from here on: resolved once, 5 minutes after it went quiet
            evaluate(ctx, t + timedelta(minutes=m))
        kinds = [k for (k,) in c.execute("SELECT kind FROM pgmill.alert_events ORDER BY event_id")]
    assert kinds == ["firing", "renotify", "resolved"]
    label = f"[pgmill {project.path.name}]"
    assert receiver.titles() == [f"{label} FIRING run_failed: orders", f"{label} STILL FIRING run_failed: orders",
                                 f"{label} RESOLVED run_failed: orders"]


def test_a_storm_goes_out_as_one_digest_per_channel(project: ProjectDir, receiver: Receiver) -> None:
    ctx = alert_project(project, {"a": receiver.url("a"), "b": receiver.url("b")}, [
        {"kind": "run_failed"}, {"kind": "late_run", "after": "1m", "channels": ["b"]},
        {"kind": "missed_run", "channels": []}], digest_over=5)
    t = datetime.now(UTC)
    with psycopg.connect(project.db_url, autocommit=True) as c:
        for i in range(7):
            run(c, f"p{i}", "failed", t - timedelta(minutes=1), error=f"broke {i}")
        slot(c, "models", t - timedelta(minutes=5), "pending")
        slot(c, "tune", t - timedelta(minutes=5), "missed", t, "started too late")  # recorded, sent nowhere
        report = evaluate(ctx, t)
        assert len(report.fired) == 9 and report.digests == 2
        (a,) = receiver.titles("a")
        assert a.endswith("7 alert messages at " + t.strftime("%Y-%m-%d %H:%M UTC"))
        (b,) = receiver.titles("b")
        assert "8 alert messages" in b
        body = next(m for p, _, m in receiver.messages if p.startswith("/a"))
        assert all(f"- FIRING run_failed: p{i}: the run that ended" in body for i in range(7)), body
        assert all(f"failed: broke {i}" in body for i in range(7)), body
        listed = json.loads(json.dumps(list_alerts(c).as_dict()))["events"]
        assert json.loads(json.dumps(report.as_dict()))["digests"] == 2
    firing = [e for e in listed if e["kind"] == "firing" and e["rule"] != "missed_run"]
    assert len(firing) == 8 and all(e["undelivered"] == [] for e in listed)
    assert [(e["channels"], e["deliveries"]) for e in listed if e["rule"] == "missed_run"] == [([], [])]
    for e in firing:  # each alert's deliveries are those of the digests that carried it
        assert {(d["channel"], d["status"]) for d in e["deliveries"]} == (
            {("b", "sent")} if e["rule"] == "late_run" else {("a", "sent"), ("b", "sent")})
        assert all(d["digest"] for d in e["deliveries"])


def test_a_rule_that_cannot_be_evaluated_leaves_its_alerts_as_they_are(project: ProjectDir, receiver: Receiver,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = alert_project(project, {"hook": receiver.url("hook")}, [{"kind": "run_failed"}])
    t = datetime.now(UTC)
    with psycopg.connect(project.db_url, autocommit=True) as c:
        run(c, "orders", "failed", t)
        assert len(evaluate(ctx, t).fired) == 1

        def broken(rule: Any, scope: Any) -> Any:
            raise psycopg.errors.UndefinedColumn("column \"nope\" does not exist")

        monkeypatch.setitem(CONDITIONS, "run_failed", broken)
        for m in (1, 10):
            report = evaluate(ctx, t + timedelta(minutes=m))
            assert report.resolved == [] and report.errors and "nope" in report.errors[0]
        assert c.execute("SELECT status FROM pgmill.alert_state").fetchone() == ("firing",)


def test_a_rule_removed_from_the_project_resolves_its_alerts_without_a_message(project: ProjectDir,
                                                                                 receiver: Receiver) -> None:
    ctx = alert_project(project, {"hook": receiver.url("hook")}, [{"kind": "run_failed", "name": "loads"}])
    t = datetime.now(UTC)
    with psycopg.connect(project.db_url, autocommit=True) as c:
        run(c, "orders", "failed", t)
        evaluate(ctx, t)
        ctx = alert_project(project, {"hook": receiver.url("hook")}, [])
        evaluate(ctx, t + timedelta(minutes=1))
        assert c.execute("SELECT status FROM pgmill.alert_state").fetchone() == ("resolved",)
        assert c.execute("SELECT kind, channels FROM pgmill.alert_events ORDER BY event_id DESC LIMIT 1"
                         ).fetchone() == ("resolved", [])
    assert len(receiver.titles()) == 1


def test_what_a_crash_left_unsent_is_sent_by_the_next_evaluation(project: ProjectDir, receiver: Receiver,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = alert_project(project, {"hook": receiver.url("hook")}, [{"kind": "run_failed"}])
    t = datetime.now(UTC)

    def crash(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("the process died here")

    with psycopg.connect(project.db_url, autocommit=True) as c:
        run(c, "orders", "failed", t)
        monkeypatch.setattr(alerts_module, "deliver", crash)
        with pytest.raises(RuntimeError):
            evaluate(ctx, t)
        assert c.execute("SELECT kind, undelivered FROM pgmill.alert_events").fetchall() == [("firing", ["hook"])]
        monkeypatch.undo()
        report = evaluate(ctx, t + timedelta(seconds=5))
        assert report.fired == [] and [d.sent for d in report.deliveries] == [True]
        assert c.execute("SELECT undelivered FROM pgmill.alert_events").fetchall() == [([],)]
    assert receiver.titles() == [f"[pgmill {project.path.name}] FIRING run_failed: orders"]


def test_one_evaluation_at_a_time(project: ProjectDir, receiver: Receiver) -> None:
    ctx = alert_project(project, {"hook": receiver.url("hook")}, [{"kind": "run_failed"}])
    with psycopg.connect(project.db_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (alerts_module._LOCK_KEY,))
        report = evaluate(ctx, datetime.now(UTC))
    assert report.skipped and "another evaluation" in report.skipped


def test_rule_names_must_be_unique(project: ProjectDir) -> None:
    from pgmill.errors import ConfigError

    project.config({}, alerts={"rules": [{"kind": "run_failed"}, {"kind": "run_failed"}]})
    with pytest.raises(ConfigError, match="give one a `name:`"):
        open_project()
    project.config({}, alerts={"rules": [{"kind": "run_failed", "name": "channel_failing"}]})
    with pytest.raises(ConfigError, match="pgmill's own"):
        open_project()


def test_a_run_and_the_slot_that_started_it_are_one_outcome(project: ProjectDir, receiver: Receiver) -> None:
    ctx = alert_project(project, {"hook": receiver.url("hook")}, [
        {"kind": "run_failed"}, {"kind": "consecutive_failures", "count": 2}])
    t = datetime.now(UTC)
    with psycopg.connect(project.db_url, autocommit=True) as c:
        rid = run(c, "orders", "failed", t - timedelta(minutes=2), error="source gone")
        slot(c, "pipeline:orders", t - timedelta(minutes=3), "failed", t - timedelta(minutes=1), "source gone", rid)
        # `pgmill check` numbers its runs in another sequence: the same id is not the orders run
        slot(c, "checks", t - timedelta(minutes=3), "failed", t - timedelta(minutes=1), "exited with code 4", rid)
        tid = run(c, "transform", "succeeded", t - timedelta(minutes=2))
        slot(c, "models", t - timedelta(minutes=3), "timed_out", t - timedelta(minutes=1),
             "cancelled after its timeout (10m)", tid)
        report = evaluate(ctx, t)
    fired = sorted((f["rule"], f["subject"]) for f in report.fired)
    assert fired == [("run_failed", "checks"), ("run_failed", "orders"), ("run_failed", "transform")]
    messages = {f["subject"]: f["message"] for f in report.fired}
    assert "timed out: cancelled after its timeout (10m)" in messages["transform"]
    assert "exited with code 4" in messages["checks"]


# ------------------------------------------------------------------ change data capture's slots


def test_cdc_slot_names_the_slot_the_bytes_and_what_to_do(project: ProjectDir, receiver: Receiver) -> None:
    """Held-back WAL, lag, a lost slot and a re-snapshot: one alert per pipeline naming each; a later
    re-snapshot notifies again while it fires; the default limit is 1GB."""
    ctx = alert_project(project, {"hook": receiver.url("hook")}, [
        {"kind": "cdc_slot", "retained_above": "100 kB", "lag_above": 2048, "window": "30m"}])
    t = datetime.now(UTC)
    with psycopg.connect(project.db_url, autocommit=True) as c:
        slot_health(c, "orders", t, 3 * 2**20, lag=4096)
        slot_health(c, "events", t, 50 * 2**10)  # under both limits
        slot_health(c, "lines", t, None, lag=None, wal_status="lost")
        resnapshot(c, "shop", t - timedelta(hours=2), "succeeded")  # before the window
        report = evaluate(ctx, t)
        by = {f["subject"]: f["message"] for f in report.fired}
        assert sorted(by) == ["lines", "orders"]
        assert by["orders"].startswith(
            f"orders: replication slot pgmill_orders holds 3.0 MB (3,145,728 bytes) of WAL on the source (as seen "
            f"{t.strftime('%Y-%m-%d %H:%M UTC')}), above 100 kB; replication slot pgmill_orders is 4.0 kB (4,096 "
            "bytes) of WAL behind the source")
        assert "A stalled consumer fills the source's disk" in by["orders"]
        assert "`pgmill cdc status`" in by["orders"] and "`pgmill cdc drop orders`" in by["orders"]
        assert "replication slot pgmill_lines is lost" in by["lines"] and "wal_status lost" in by["lines"]
        assert "the next run loads a new snapshot" in by["lines"]

        resnapshot(c, "orders", t + timedelta(minutes=1))
        again = evaluate(ctx, t + timedelta(minutes=1))
        [msg] = [f["message"] for f in again.fired]
        assert msg.startswith("orders: replication slot pgmill_orders holds 3.0 MB")
        assert ("; loaded a new snapshot of shop.orders at " in msg
                and ": replication slot pgmill_orders no longer exists on the source (the target had applied "
                    "changes up to 0/16B3748; the snapshot replaced the table)." in msg)

        # the slot is fine again, the re-snapshot older than the window: resolved (resolve_after 1m)
        slot_health(c, "orders", t, 10, lag=0)
        slot_health(c, "lines", t, 10, lag=0)
        later = t + timedelta(minutes=40)
        evaluate(ctx, later)
        done = evaluate(ctx, later + timedelta(minutes=2))
        assert sorted(r["subject"] for r in done.resolved) == ["lines", "orders"]

    # the default: 1GB (1024-based); sizes as bytes or with a unit; anything else is refused
    from pgmill.config.alerts import CdcSlot, parse_size
    from pgmill.errors import ConfigError

    assert parse_size(CdcSlot(kind="cdc_slot").retained_above) == 2**30
    assert [parse_size(v) for v in (512, "512", "1.5kB", "2 MB", "1gb", "1TB")] == [
        512, 512, 1536, 2 * 2**20, 2**30, 2**40]
    for bad in ("1 GiB", "lots", "-1", "1e9"):
        with pytest.raises(ValueError, match="is not a size"):
            parse_size(bad)
    project.config({}, alerts={"rules": [{"kind": "cdc_slot", "retained_above": "ten GB"}]})
    with pytest.raises(ConfigError, match="'ten GB' is not a size"):
        open_project()
