"""Delivery: channels that fail (HTTP 500, a closed port, no answer, a missing ${VAR}) are retried, every attempt
recorded with its error, and the failure surfaces (channel_failing on the other channels, delivery_health);
secrets never reach pgmill's tables; send_test; the heartbeat; the hooks of the service loop."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgmill.observe import heartbeat
from pgmill.observe.alerts import evaluate_alerts, send_test
from pgmill.observe.deliver import DeliveryPolicy, delivery_health, expand, scrub, with_timeouts
from pgmill.observe.heartbeat import ping_heartbeat
from pgmill.observe.hooks import AlertHook, HeartbeatHook, service_hooks
from pgmill.project import open_project
from pgmill.schedule.service import Service
from tests.helpers import ProjectDir, closed_port
from tests.test_alerts import POLICY, Receiver, alert_project, run
from tests.test_schedule_service import FakeRunner

ONE_SECOND = DeliveryPolicy(attempts=2, timeout_s=1.0, backoff_initial_s=0.01, backoff_max_s=0.02)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def attempts(conn: psycopg.Connection[Any], event_id: int) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    for ch, n, status, final, error in conn.execute(
            "SELECT channel, attempt, status, final, error FROM pgmill.alert_deliveries WHERE event_id = %s"
            " ORDER BY delivery_id", (event_id,)):
        out.setdefault(ch, []).append((n, status, final, error))
    return out


def test_failing_channels_are_retried_recorded_and_reported_on_the_others(project: ProjectDir,
                                                                           receiver: Receiver) -> None:
    receiver.modes.update(five00="fail", slow="hang")
    ctx = alert_project(project, {"good": receiver.url("good"), "five00": receiver.url("five00"),
                                  "refused": f"json://127.0.0.1:{closed_port()}/x", "slow": receiver.url("slow")},
                        [{"kind": "run_failed"}])
    t = datetime.now(UTC)
    with psycopg.connect(project.db_url, autocommit=True) as c:
        run(c, "orders", "failed", t, error="boom")
        report = evaluate_alerts(ctx, t, policy=ONE_SECOND)
        first = report.fired[0]["event_id"]
        tried = attempts(c, first)
        assert tried["good"] == [(1, "sent", True, None)]
        for ch in ("five00", "refused", "slow"):  # two attempts each, the last one final, each with its error
            assert [(n, status, final) for n, status, final, _ in tried[ch]] == [
                (1, "failed", False), (2, "failed", True)], ch
            assert all(err for *_, err in tried[ch]), tried[ch]
        assert "500" in tried["five00"][0][3]
        assert "onnection" in tried["refused"][0][3]
        assert receiver.hits["five00"] >= 2 and receiver.hits["slow"] >= 2
        assert {(r.channel, r.event_id) for r in report.failed} >= {(ch, first) for ch in ("five00", "refused", "slow")}

        failing = sorted(f["subject"] for f in report.fired if f["rule"] == "channel_failing")
        assert failing == ["five00", "refused", "slow"]
        label = f"[pgmill {project.path.name}]"
        assert receiver.titles("good") == [f"{label} FIRING run_failed: orders"] + [
            f"{label} FIRING channel_failing: {ch}" for ch in failing]
        for ev in c.execute("SELECT channels, subject FROM pgmill.alert_events WHERE kind = 'channel_failing'"):
            assert ev[1] not in ev[0] and "good" in ev[0]  # reported on the others, never on itself

        health = delivery_health(c, ["good", "five00", "refused", "slow", "unused"])
        assert health["good"]["status"] == "ok" and health["unused"]["status"] == "unknown"
        for ch in failing:
            assert health[ch]["status"] == "failing" and health[ch]["messages_failed"] >= 1
            assert health[ch]["last_error"] and health[ch]["failing_since"]
        again = evaluate_alerts(ctx, t + timedelta(minutes=1), policy=ONE_SECOND)
        assert again.fired == []  # still failing: no new message until `repeat`


def test_a_channel_that_delivers_again_resolves_its_alert(project: ProjectDir, receiver: Receiver) -> None:
    receiver.modes["flaky"] = "fail"
    ctx = alert_project(project, {"good": receiver.url("good"), "flaky": receiver.url("flaky")},
                        [{"kind": "run_failed"}])
    t = datetime.now(UTC)
    with psycopg.connect(project.db_url, autocommit=True) as c:
        run(c, "orders", "failed", t)
        report = evaluate_alerts(ctx, t, policy=POLICY)
        assert [f["subject"] for f in report.fired if f["rule"] == "channel_failing"] == ["flaky"]
        receiver.modes["flaky"] = "ok"
        assert all(r.sent for r in send_test(ctx, policy=POLICY))
        assert delivery_health(c)["flaky"]["status"] == "ok"
        evaluate_alerts(ctx, t + timedelta(minutes=1), policy=POLICY)
        done = evaluate_alerts(ctx, t + timedelta(minutes=3), policy=POLICY)
    assert [(r["rule"], r["subject"]) for r in done.resolved] == [("channel_failing", "flaky")]
    assert receiver.titles("good")[-1] == f"[pgmill {project.path.name}] RESOLVED channel_failing: flaky"


def test_a_missing_variable_is_a_failed_delivery_naming_it(project: ProjectDir, receiver: Receiver,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGMILL_TEST_HOOK_TOKEN", raising=False)
    ctx = alert_project(project, {"hook": receiver.url("hook", "/${PGMILL_TEST_HOOK_TOKEN}")},
                        [{"kind": "run_failed"}])
    t = datetime.now(UTC)
    with psycopg.connect(project.db_url, autocommit=True) as c:
        run(c, "orders", "failed", t)
        report = evaluate_alerts(ctx, t, policy=POLICY)
        (failed,) = report.failed
        assert failed.attempts == 1  # retrying cannot set a variable
        assert failed.error == "channel hook: environment variable PGMILL_TEST_HOOK_TOKEN is not set"
        assert attempts(c, failed.event_id) == {"hook": [(1, "failed", True, failed.error)]}
        assert delivery_health(c)["hook"]["status"] == "failing"
    assert receiver.hits["hook"] == 0
    monkeypatch.setenv("PGMILL_TEST_HOOK_TOKEN", "tok-123456")
    (ok,) = send_test(ctx, policy=POLICY)
    assert ok.sent and receiver.messages[-1][0].startswith("/hook/tok-123456")


def test_secrets_never_reach_the_tables_or_the_log(project: ProjectDir, receiver: Receiver,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    token, password = "tok-S3cr3t-91a7/x+y", "pw-S3cr3t-77"
    monkeypatch.setenv("PGMILL_TEST_TOKEN", token)
    monkeypatch.setenv("PGMILL_TEST_PASSWORD", password)
    receiver.modes["five00"] = "fail"
    secret_path = "/${PGMILL_TEST_TOKEN}?secret=${PGMILL_TEST_TOKEN}"
    auth = "user:${PGMILL_TEST_PASSWORD}@"
    ctx = alert_project(project, {
        "ok": f"json://{auth}127.0.0.1:{receiver.port}/ok{secret_path}",
        "five00": f"json://{auth}127.0.0.1:{receiver.port}/five00{secret_path}",
        "refused": f"json://{auth}127.0.0.1:{closed_port()}/x{secret_path}",
        "bogus": "bogus://${PGMILL_TEST_PASSWORD}@${PGMILL_TEST_TOKEN}/x",
        "slack": "slack://${PGMILL_TEST_TOKEN}",  # apprise's error quotes the token's first part
    }, [{"kind": "run_failed"}])
    t = datetime.now(UTC)
    with psycopg.connect(project.db_url, autocommit=True) as c:
        run(c, "orders", "failed", t, error=f"lost postgresql://loader:{password}@db/prod")
        report = evaluate_alerts(ctx, t, policy=POLICY)
        send_test(ctx, policy=POLICY)
        assert {r.channel for r in report.failed} == {"five00", "refused", "bogus", "slack"}
        assert "apprise cannot use this URL" in next(r.error or "" for r in report.failed if r.channel == "bogus")
        stored = "\n".join(str(row) for table in ("alert_deliveries", "alert_events", "alert_state")
                           for row in c.execute(sql.SQL("SELECT t::text FROM {} t").format(
                               sql.Identifier("pgmill", table))))
        assert stored.count("failed") >= 3
    assert "Slack (first) Token (${PGMILL_TEST_TOKEN})" in stored
    assert "attempt 2 of 2 failed" in caplog.text
    for secret in (token, password, "tok-S3cr3t", "S3cr3t-77"):
        assert secret not in stored
        assert secret not in caplog.text
        assert all(secret not in t for t in receiver.titles())
    assert receiver.messages and receiver.messages[0][0].startswith("/ok/tok-S3cr3t")  # what was sent had it


def test_scrub_puts_each_secret_back_as_its_variable() -> None:
    template = "json://u:${P}@host/${T}"
    url, secrets = expand(template, {"P": "p@ss word", "T": "abc/def"})
    assert url == "json://u:p@ss word@host/abc/def"
    text = f"failed {url} (p%40ss%20word, abc%2Fdef, p@ss word, token abc)"
    assert scrub(text, template, url, secrets) == "failed json://u:***@host/${T} (${P}, ${T}, ${P}, token ${T})"
    assert with_timeouts("json://h/x", 2) == "json://h/x?cto=2&rto=2"
    assert with_timeouts("json://h/x?rto=9&a=b", 2.5) == "json://h/x?rto=9&a=b&cto=2.5"


def test_send_test_reports_each_channel(project: ProjectDir, receiver: Receiver) -> None:
    receiver.modes["five00"] = "fail"
    ctx = alert_project(project, {"a": receiver.url("a"), "five00": receiver.url("five00")}, [])
    results = {r.channel: r for r in send_test(ctx, policy=POLICY)}
    assert results["a"].sent and results["a"].attempts == 1 and results["a"].error is None
    assert not results["five00"].sent and results["five00"].attempts == 2 and "500" in (results["five00"].error or "")
    assert results["a"].as_dict()["channel"] == "a"
    assert receiver.titles("a") == [f"[pgmill {project.path.name}] test message"]
    with psycopg.connect(project.db_url) as c:
        assert c.execute("SELECT kind, channels, undelivered FROM pgmill.alert_events").fetchall() == [
            ("test", ["a", "five00"], [])]
        assert c.execute("SELECT count(*) FROM pgmill.alert_deliveries").fetchone() == (3,)


def test_heartbeat(project: ProjectDir, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGMILL_TEST_BEAT", "beat-token-123")
    url = f"http://127.0.0.1:{receiver.port}/beat/${{PGMILL_TEST_BEAT}}"
    ctx = alert_project(project, {}, [], heartbeat_url=url)
    before = heartbeat.STATS.as_dict()
    ok = ping_heartbeat(ctx)
    assert ok.ok and ok.status == 200 and receiver.hits["beat"] == 1

    receiver.modes["beat"] = "fail"
    assert ping_heartbeat(ctx).error == "HTTP 500"
    ctx = alert_project(project, {}, [], heartbeat_url=f"http://127.0.0.1:{closed_port()}/${{PGMILL_TEST_BEAT}}")
    refused = ping_heartbeat(ctx, timeout_s=2)
    assert refused.ok is False and refused.error and "beat-token-123" not in refused.error
    monkeypatch.delenv("PGMILL_TEST_BEAT")
    missing = ping_heartbeat(ctx)
    assert missing.error == "heartbeat_url: environment variable PGMILL_TEST_BEAT is not set"
    after = heartbeat.STATS.as_dict()
    assert after["pings"] - before["pings"] == 4 and after["failures"] - before["failures"] == 3
    assert ping_heartbeat(alert_project(project, {}, [])).ok is None  # no heartbeat_url: nothing to do


def test_the_service_runs_the_hooks(project: ProjectDir, receiver: Receiver) -> None:
    alert_project(project, {"hook": receiver.url("hook")}, [{"kind": "run_failed"}],
                  heartbeat_url=f"http://127.0.0.1:{receiver.port}/beat")
    with psycopg.connect(project.db_url, autocommit=True) as c:
        run(c, "orders", "failed", datetime.now(UTC))
    hooks = service_hooks()
    service = Service(open_project(), runner=FakeRunner(), hooks=hooks)
    try:
        assert not service.tick().skipped
        for h in hooks:
            assert isinstance(h, AlertHook | HeartbeatHook) and h.wait(30)
    finally:
        service.shutdown(grace_s=1)
    alert_hook = hooks[0]
    assert isinstance(alert_hook, AlertHook) and alert_hook.last_report is not None
    assert [f["subject"] for f in alert_hook.last_report.fired] == ["orders"]
    assert receiver.titles("hook") == [f"[pgmill {project.path.name}] FIRING run_failed: orders"]
    assert receiver.hits["beat"] == 1 and service.hook_failures == 0
    alert_hook.close()


def test_a_hook_still_running_skips_the_next_tick(project: ProjectDir, receiver: Receiver) -> None:
    receiver.modes["slow"] = "hang"
    ctx = alert_project(project, {"slow": receiver.url("slow")}, [{"kind": "run_failed"}])
    with psycopg.connect(project.db_url, autocommit=True) as c:
        run(c, "orders", "failed", datetime.now(UTC))
    hook = AlertHook(policy=DeliveryPolicy(attempts=1, timeout_s=1.0))
    now = datetime.now(UTC)
    hook(ctx, now)
    hook(ctx, now)  # the first is still waiting on the channel
    assert hook.skipped == 1
    assert hook.wait(30) and hook.failures == 0 and hook.last_report is not None
    assert [r.channel for r in hook.last_report.failed] == ["slow"]
    hook.close()
