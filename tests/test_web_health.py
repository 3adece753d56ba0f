"""The web app of `pgmill serve`: /healthz says what is wrong (503) or that all is well (200); /metrics and
/healthz sit behind the same token, origin and host rules as `pgmill mcp --http`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from pgmill.db.connect import Target
from pgmill.errors import ConfigError
from pgmill.project import ProjectContext, open_project
from pgmill.web import create_app, serve_http, stop_http
from pgmill.web.server import bound_port
from tests.helpers import ProjectDir
from tests.test_metrics import RUNS, connect, insert_runs

TOKEN = "h-web-test-token-0123456789abcdef"
LOCAL = "http://127.0.0.1"


@dataclass
class InProcessService:
    """What `pgmill serve` hands create_app: the scheduler it runs (pgmill.schedule.service.Service)."""

    instance: str


@pytest.fixture
def ctx(project: ProjectDir) -> Iterator[ProjectContext]:
    project.config()
    with connect(project.db_url) as conn:
        insert_runs(conn, RUNS)
    yield open_project(project.path)


def service_row(db_url: str, instance: str, ago_s: float, tick_s: float = 5, stopped: bool = False) -> None:
    with connect(db_url) as conn:
        conn.execute("INSERT INTO pgmill.service_instances (instance, host, pid, last_tick_at, tick_seconds, ticks,"
                     " stopped_at) VALUES (%s, 'h', 1, now() - make_interval(secs => %s), %s, 10,"
                     " CASE WHEN %s THEN now() END)", (instance, ago_s, tick_s, stopped))


def alert_deliveries(db_url: str, rows: list[tuple[str, str, str]]) -> None:
    """Delivery attempts (channel, sent | failed, how long ago) as the alerts record them."""
    with connect(db_url) as conn:
        [(event,)] = conn.execute("INSERT INTO pgmill.alert_events (kind, title, message) VALUES ('test', 't', 'm')"
                                  " RETURNING event_id").fetchall()
        for channel, status, ago in rows:
            conn.execute("INSERT INTO pgmill.alert_deliveries (event_id, channel, attempt, status, final, latency_ms,"
                         " at) VALUES (%s, %s, 1, %s, true, 5, now() - %s::interval)", (event, channel, status, ago))


def healthz(ctx: ProjectContext, **kw: Any) -> httpx.Response:
    with TestClient(create_app(ctx, token=None, **kw), base_url=LOCAL) as client:
        return client.get("/healthz")


def test_healthy(ctx: ProjectContext, project: ProjectDir) -> None:
    r = healthz(ctx)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok" and body["problems"] == []
    assert body["checks"]["scheduler"] == {"ok": True, "detail": "not running"}
    service_row(project.db_url, "h:1:a", ago_s=2)
    alert_deliveries(project.db_url, [("email", "failed", "2 hours"), ("email", "sent", "1 hour")])
    r = healthz(ctx, service_state=InProcessService("h:1:a"))
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["scheduler"]["detail"].startswith("ticking: h:1:a")
    assert r.json()["checks"]["alerts"]["ok"] is True


def test_a_stale_scheduler_is_unhealthy(ctx: ProjectContext, project: ProjectDir) -> None:
    service_row(project.db_url, "h:1:old", ago_s=3600, stopped=True)
    service_row(project.db_url, "h:2:dead", ago_s=60)  # no tick for 12 intervals of 5 s, never stopped
    r = healthz(ctx)
    assert r.status_code == 503
    [problem] = r.json()["problems"]
    assert problem.startswith("scheduler: not ticking: h:2:dead last tick 60 s ago, expected every 5 s")
    assert r.json()["checks"]["database"]["ok"] is True


def test_this_process_scheduler_must_tick(ctx: ProjectContext, project: ProjectDir) -> None:
    service_row(project.db_url, "h:1:other", ago_s=1)  # another service ticks; ours never did
    r = healthz(ctx, service_state=InProcessService("h:9:ours"))
    assert r.status_code == 503
    assert r.json()["problems"] == ["scheduler: this process's scheduler (h:9:ours) has not ticked yet"]


def test_an_unreachable_database_is_unhealthy(ctx: ProjectContext) -> None:
    dead = ProjectContext(ctx.dir, ctx.config, Target("postgresql://pgmill:secret@127.0.0.1:9/nowhere"))  # nothing listens
    r = healthz(dead)
    assert r.status_code == 503
    body = r.json()
    assert body["checks"]["database"]["ok"] is False
    assert body["checks"]["scheduler"]["ok"] is None
    assert [p.split(":")[0] for p in body["problems"]] == ["database"]
    assert "secret" not in r.text  # the password is redacted
    with TestClient(create_app(dead, token=None), base_url=LOCAL) as client:
        m = client.get("/metrics")
    assert m.status_code == 503 and "cannot read its tables" in m.text and "secret" not in m.text


def test_a_failing_alert_channel_is_unhealthy(ctx: ProjectContext, project: ProjectDir) -> None:
    alert_deliveries(project.db_url, [("slack", "sent", "2 hours"), ("slack", "failed", "5 min"),
                                      ("email", "sent", "1 min")])
    r = healthz(ctx)
    assert r.status_code == 503
    assert r.json()["problems"] == ["alerts: the latest delivery failed on slack"]
    alert_deliveries(project.db_url, [("slack", "sent", "1 min")])  # it recovered
    assert healthz(ctx).status_code == 200


def test_metrics_endpoint(ctx: ProjectContext) -> None:
    with TestClient(create_app(ctx, token=None), base_url=LOCAL) as client:
        r = client.get("/metrics")
        om = client.get("/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    runs = {tuple(sorted(s.labels.items())): s.value for s in families["pgmill_runs"].samples}
    assert runs[(("pipeline", "orders"), ("status", "succeeded"))] == 3
    assert om.status_code == 200 and om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")


def test_token_required_when_configured(ctx: ProjectContext) -> None:
    app = create_app(ctx, token=TOKEN)
    with TestClient(app, base_url=LOCAL) as client:
        for path in ("/metrics", "/healthz"):
            r = client.get(path)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), path
            assert client.get(path, headers={"authorization": "Bearer not-the-token-at-all"}).status_code == 401
            assert client.get(path, headers={"authorization": TOKEN}).status_code == 401
            assert client.get(path, headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_cross_origin_and_foreign_host_are_refused(ctx: ProjectContext) -> None:
    auth = {"authorization": f"Bearer {TOKEN}"}
    app = create_app(ctx, token=TOKEN, allow_origins=["https://grafana.example.com"])
    with TestClient(app, base_url=LOCAL) as client:
        for path in ("/metrics", "/healthz"):
            assert client.get(path, headers={**auth, "origin": "https://evil.example"}).status_code == 403
            assert client.get(path, headers={"origin": "http://localhost.evil.example"}).status_code == 403
            assert client.get(path, headers={**auth, "origin": "http://localhost:3000"}).status_code == 200
            assert client.get(path, headers={**auth, "origin": "https://grafana.example.com"}).status_code == 200
            # DNS rebinding: a page on evil.example, resolved to 127.0.0.1
            assert client.get(path, headers={**auth, "host": "evil.example"}).status_code == 421
    # without a token, on loopback, the origin and host rules still hold
    with TestClient(create_app(ctx, token=None), base_url=LOCAL) as client:
        assert client.get("/metrics", headers={"origin": "https://evil.example"}).status_code == 403
        assert client.get("/healthz", headers={"host": "evil.example:8080"}).status_code == 421
        assert client.get("/healthz", headers={"host": "localhost:8080"}).status_code == 200


def test_bind_rules(ctx: ProjectContext) -> None:
    with pytest.raises(ConfigError, match="without a bearer token"):
        create_app(ctx, token=None, host="0.0.0.0")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        create_app(ctx, token="short", host="127.0.0.1")
    app = create_app(ctx, token=TOKEN, host="0.0.0.0")  # routable with a token: any Host name
    with TestClient(app, base_url="http://metrics.internal:9100") as client:
        assert client.get("/healthz", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
    with pytest.raises(ConfigError, match="built for 127.0.0.1"):
        serve_http(create_app(ctx, token=TOKEN), "0.0.0.0", 0)


def test_real_server_on_an_ephemeral_port(ctx: ProjectContext) -> None:
    server, thread = serve_http(create_app(ctx, token=TOKEN), "127.0.0.1", 0)
    try:
        port = bound_port(server)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/metrics", timeout=10).status_code == 401
        r = httpx.get(f"{base}/metrics", headers={"authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert r.status_code == 200 and "pgmill_runs_total" in r.text
        r = httpx.get(f"{base}/healthz", headers={"authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "ok"
        with pytest.raises(ConfigError, match="cannot listen"):
            serve_http(create_app(ctx, token=TOKEN), "127.0.0.1", port)  # the port is taken
    finally:
        stop_http(server, thread)
    assert not thread.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
