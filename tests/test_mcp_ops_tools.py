"""The MCP tools of running in production: alerts, schedules, success rate and cost, read-only, on a project
with real runs, slots, alerts and costs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from mcp import Client

from pgmill.project import ProjectContext
from tests.helpers import ProjectDir
from tests.mcp_support import call, loaded_project, server, unwrap, with_client

OPS_TOOLS = {"alerts", "schedules", "success_rate", "cost"}


@pytest.fixture
def ctx(project: ProjectDir) -> ProjectContext:
    c = loaded_project(project)  # one successful load of `orders` through pgmill run
    now = datetime.now(UTC)
    project.execute(
        "INSERT INTO pgmill.expected_runs (job, scheduled_for, state, run_id, error) VALUES"
        " ('pipeline:orders', %(a)s, 'succeeded', 1, NULL), ('pipeline:orders', %(b)s, 'missed', NULL, 'too late'),"
        " ('pipeline:orders', %(c)s, 'pending', NULL, NULL), ('pipeline:orders', %(d)s, 'pending', NULL, NULL)",
        {"a": now - timedelta(hours=2), "b": now - timedelta(hours=1), "c": now - timedelta(minutes=10),
         "d": now + timedelta(minutes=5)})
    [(event,)] = project.query(
        "INSERT INTO pgmill.alert_events (kind, rule, subject, title, message, channels) VALUES"
        " ('firing', 'late_run', 'pipeline:orders', 'late', 'pipeline:orders is late', '{oncall}') RETURNING event_id")
    project.execute("INSERT INTO pgmill.alert_state (rule, subject, kind, status, since, last_seen, message)"
                    " VALUES ('late_run', 'pipeline:orders', 'late_run', 'firing', now(), now(), 'late')")
    project.execute("INSERT INTO pgmill.alert_deliveries (event_id, channel, attempt, status, final, error,"
                    " latency_ms) VALUES (%s, 'oncall', 1, 'failed', false, 'HTTP 500', 12),"
                    " (%s, 'oncall', 2, 'sent', true, NULL, 9)", (event, event))
    project.execute("INSERT INTO pgmill.run_costs (invocation, run_id, job, started_at, finished_at, cpu_seconds,"
                    " bytes_processed, compute_usd) VALUES (1, 1, 'orders', now(), now(), 2.0, 1073741824, 0.25)")
    return c


def test_ops_tools_are_listed_read_only(ctx: ProjectContext) -> None:
    async def names(client: Client) -> dict[str, bool | None]:
        return {t.name: t.annotations.read_only_hint if t.annotations else None
                for t in (await client.list_tools()).tools}

    listed = with_client(server(ctx), names)
    assert OPS_TOOLS <= set(listed) and all(listed[n] for n in OPS_TOOLS)


def test_schedules_show_next_late_and_missed(ctx: ProjectContext) -> None:
    err, text = call(server(ctx), "schedules")
    assert not err, text
    [job] = unwrap(text)
    assert job["job"] == "pipeline:orders" and job["missed_24h"] == 1 and job["running"] == 0
    assert len(job["late"]) == 1 and job["next_run"] is not None
    assert "missed" in job["last"]


def test_alerts_show_firing_and_deliveries(ctx: ProjectContext) -> None:
    err, text = call(server(ctx), "alerts", hours=2)
    assert not err, text
    d = unwrap(text)
    assert [(f["rule"], f["subject"]) for f in d["firing"]] == [("late_run", "pipeline:orders")]
    [event] = d["events"]
    assert [(a["attempt"], a["status"], a["error"]) for a in event["deliveries"]] == [
        (1, "failed", "HTTP 500"), (2, "sent", None)]


def test_success_rate_from_the_ledger(ctx: ProjectContext) -> None:
    err, text = call(server(ctx), "success_rate", days=7)
    assert not err, text
    d = unwrap(text)
    assert d["overall"]["runs"] >= 1 and d["overall"]["successes"] == d["overall"]["runs"]


def test_cost_reports_what_was_measured(ctx: ProjectContext) -> None:
    err, text = call(server(ctx), "cost")
    assert not err, text
    d = unwrap(text)
    [orders] = [j for j in d["jobs"] if j["job"] == "orders"]
    assert orders["cpu_seconds"] == 2.0 and orders["runs"] == 1
