"""The MCP tuning tools through the SDK's in-process client: recommend_indexes, explain with hypothetical
indexes, apply_indexes. With HypoPG (the PostgreSQL 15 cluster) recommendations are what-if only and offered
read-only; without it (the embedded PostgreSQL 18) they need --allow-writes, like apply_indexes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp import Client
from mcp.server import MCPServer

from pgmill.mcp import hypo
from pgmill.project import ProjectContext, open_project
from pgmill.tune import advisor
from pgmill.tune.whatif import RealWhatIf
from tests.helpers import ORDERS_CONTRACT, ProjectDir, connect, execute, query
from tests.mcp_support import call, data_checksum, loaded_project, server, unwrap, with_client
from tests.pg15 import seeded

pytest_plugins = ["tests.pg15"]  # the pg15 fixture

QUERIES = {
    "point_lookup": ("-- params: [['user17@example.com'], ['user4242@example.com'], ['user999@example.com']]\n"
                     "SELECT id, country FROM app.customers WHERE email = $1"),
    "covering": "-- params: [[7], [111], [333]]\nSELECT sum(total) FROM app.orders WHERE shop_id = $1",
}
EMAIL_QUERY = "SELECT id, country FROM app.customers WHERE email = $1"


def index_set(url: str) -> list[tuple[str, str]]:
    """Every index outside the system schemas, with its definition."""
    return [(str(a), str(b)) for a, b in query(
        url, "SELECT format('%I.%I', schemaname, indexname), indexdef FROM pg_catalog.pg_indexes"
        " WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1")]


def tuning_runs(url: str) -> int:
    with connect(url) as c:
        if c.execute("SELECT to_regclass('pgmill.tuning_runs')").fetchone() == (None,):
            return 0
        return int(c.execute("SELECT count(*) FROM pgmill.tuning_runs").fetchone()[0])  # type: ignore[index]


def write_tune_project(project: ProjectDir, queries: dict[str, str], tune: dict[str, Any],
                       pipelines: dict[str, Any] | None = None) -> ProjectContext:
    for name, text in queries.items():
        project.write(f"queries/{name}.sql", f"-- name: {name}\n{text}\n")
    doc = yaml.safe_load((project.path / "pgmill.yaml").read_text()) if pipelines is None else {
        "pipelines": pipelines}
    doc["tune"] = tune
    project.write("pgmill.yaml", yaml.safe_dump(doc, sort_keys=False))
    return open_project(project.path)


def listed(srv: MCPServer) -> dict[str, Any]:
    async def go(client: Client) -> dict[str, Any]:
        return {t.name: t for t in (await client.list_tools()).tools}

    return with_client(srv, go)


# ---------------------------------------------------------------- PostgreSQL 15 with HypoPG


@pytest.fixture
def hypo_project(tmp_path: Path, pg15: str, monkeypatch: pytest.MonkeyPatch) -> ProjectDir:
    """A project on a seeded PG15 database (app.customers, app.orders, app.items) with declared queries."""
    url = seeded(pg15)
    monkeypatch.setenv("PGMILL_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)
    project = ProjectDir(tmp_path, url)
    project.contract("orders", ORDERS_CONTRACT)
    return project


def install_hypopg(url: str) -> None:
    """What the operator does once (or `pgmill tune`, or a server started with --allow-writes)."""
    execute(url, "CREATE EXTENSION hypopg")


@pytest.fixture
def hypo_ctx(hypo_project: ProjectDir) -> ProjectContext:
    # the pipeline (never run) puts schema `app` in the read-only role's grants
    pipelines = {"orders": {"source": {"kind": "csv", "path": "data/*.csv"}, "table": "app.orders",
                            "contract": "contracts/orders.yaml", "mode": "merge"}}
    ctx = write_tune_project(hypo_project, QUERIES, {"observed": 0}, pipelines)
    install_hypopg(hypo_project.db_url)
    return ctx


def test_with_hypopg_recommend_is_offered_read_only(hypo_ctx: ProjectContext) -> None:
    tools = listed(server(hypo_ctx))
    rec = tools["recommend_indexes"]
    assert rec.annotations is not None and rec.annotations.read_only_hint is True
    assert "HypoPG" in (rec.description or "") and "nothing is created" in (rec.description or "")
    assert "apply_indexes" not in tools and "run_pipeline" not in tools
    assert "hypothetical_indexes" in tools["explain"].input_schema["properties"]
    assert hypo.detect(hypo_ctx.target, install=False).hypopg_schema == "public"


def test_a_read_only_server_does_not_install_hypopg(hypo_project: ProjectDir) -> None:
    pipelines = {"orders": {"source": {"kind": "csv", "path": "data/*.csv"}, "table": "app.orders",
                            "contract": "contracts/orders.yaml", "mode": "merge"}}
    ctx = write_tune_project(hypo_project, QUERIES, {"observed": 0}, pipelines)
    srv = server(ctx)
    assert "recommend_indexes" not in listed(srv)
    assert "CREATE EXTENSION hypopg" in (srv.instructions or "")
    assert hypo_project.query("SELECT 1 FROM pg_extension WHERE extname = 'hypopg'") == []
    # a server allowed to write installs it (as `pgmill tune` does), and then recommends what-if only
    srv = server(ctx, allow_writes=True)
    rec = listed(srv)["recommend_indexes"]
    assert rec.annotations is not None and rec.annotations.read_only_hint is True
    before = index_set(hypo_project.db_url)
    err, text = call(srv, "recommend_indexes")
    assert not err and unwrap(text)["backend"] == "hypopg", text
    assert index_set(hypo_project.db_url) == before


def test_recommend_indexes_is_what_if_only(hypo_ctx: ProjectContext, hypo_project: ProjectDir) -> None:
    url = hypo_project.db_url
    srv = server(hypo_ctx)
    before, checksum = index_set(url), data_checksum(url)
    err, text = call(srv, "recommend_indexes")
    assert not err, text
    assert "nothing was created" in text
    advice = unwrap(text)
    assert advice["backend"] == "hypopg"
    assert {q["name"] for q in advice["queries"]} == set(QUERIES)
    labels = [r["label"] for r in advice["recommendations"]]
    assert any(lbl.startswith("app.customers (email") for lbl in labels), labels
    assert any(lbl.startswith("app.orders (shop_id") for lbl in labels), labels
    assert advice["estimated_cost_after"] < advice["estimated_cost_before"]
    # nothing real was built, kept or recorded
    assert index_set(url) == before
    assert data_checksum(url) == checksum
    assert tuning_runs(url) == 0


def test_recommend_cannot_build_real_indexes_even_if_the_advisor_tried(
        hypo_ctx: ProjectContext, hypo_project: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second layer alone: were the advisor to pick real indexes, the read-only session refuses them."""
    url = hypo_project.db_url
    srv = server(hypo_ctx)
    before = index_set(url)
    monkeypatch.setattr(advisor, "make_whatif",
                        lambda conn, catalog, backend="auto": RealWhatIf(conn, catalog))
    err, text = call(srv, "recommend_indexes")
    assert err and "read-only transaction" in text, text
    assert index_set(url) == before


def test_recommend_budget_is_passed_and_checked(hypo_ctx: ProjectContext) -> None:
    srv = server(hypo_ctx)
    err, text = call(srv, "recommend_indexes", budget="1kB")
    assert not err, text
    advice = unwrap(text)
    assert advice["budget_bytes"] == 1024 and advice["recommendations"] == []
    assert advice["skipped_for_budget"]
    err, text = call(srv, "recommend_indexes", budget="lots")
    assert err and "budget" in text


def test_explain_with_hypothetical_indexes(hypo_ctx: ProjectContext, hypo_project: ProjectDir) -> None:
    url = hypo_project.db_url
    srv = server(hypo_ctx)
    before, checksum = index_set(url), data_checksum(url)
    err, text = call(srv, "explain", sql=EMAIL_QUERY, params=["user17@example.com"],
                     hypothetical_indexes=["app.customers (email)",
                                           "CREATE INDEX ix ON app.orders USING btree (customer_id DESC)"
                                           " INCLUDE (total) WHERE status = 'F';"])
    assert not err, text
    assert "nothing was created" in text and "1 used by the planner" in text
    res = unwrap(text)
    assert "Seq Scan on customers" in res["plan_without"]
    assert "Index" in res["plan_with"] and "btree_app_customers_email" in res["plan_with"]
    email, orders = res["hypothetical_indexes"]
    assert email["statement"] == "CREATE INDEX ON \"app\".\"customers\" USING btree (\"email\")"
    assert email["used_in_plan"] and email["estimated_size_bytes"] > 0
    assert orders["statement"] == ("CREATE INDEX ON \"app\".\"orders\" USING btree (\"customer_id\" DESC)"
                                   " INCLUDE (\"total\") WHERE status = 'F'")
    assert not orders["used_in_plan"]
    assert index_set(url) == before and data_checksum(url) == checksum
    # the hypothetical indexes lived in that session only: a plain explain plans without them
    plain = unwrap(call(srv, "explain", sql=EMAIL_QUERY, params=["user17@example.com"])[1])["plan"]
    assert "Seq Scan on customers" in plain


@pytest.mark.parametrize(("sql", "indexes", "analyze", "expected"), [
    (EMAIL_QUERY, ["app.customers (lower(email))"], False, "only plain columns"),
    (EMAIL_QUERY, ["CREATE INDEX ON app.customers (email) WHERE pg_sleep(1) IS NOT NULL"], False, "pg_sleep"),
    (EMAIL_QUERY, ["CREATE INDEX ON app.customers (email) WHERE public.hypopg_reset() IS NOT NULL"], False,
     "only built-in functions"),
    (EMAIL_QUERY, ["app.customers (email); DROP TABLE app.customers"], False, "one CREATE INDEX"),
    (EMAIL_QUERY, ["CREATE UNIQUE INDEX ON app.customers (email)"], False, "UNIQUE"),
    (EMAIL_QUERY, ["CREATE INDEX ON app.customers USING gin (email)"], False, "USING gin"),
    (EMAIL_QUERY, ["CREATE INDEX ON app.customers (email) WITH (fillfactor = 10)"], False, "WITH"),
    (EMAIL_QUERY, ["app.customers (email COLLATE \"C\")"], False, "COLLATE"),
    (EMAIL_QUERY, ["app.customers (nope)"], False, "nope"),
    (EMAIL_QUERY, ["app.customers (email)"], True, "cannot be combined with analyze"),
    (EMAIL_QUERY, [f"app.customers (c{i})" for i in range(11)], False, "at most 10"),
    ("SELECT public.hypopg_reset()", ["app.customers (email)"], False, "only built-in functions"),
    ("SELECT 1; DROP TABLE app.customers", ["app.customers (email)"], False, "exactly one statement"),
    ("DELETE FROM app.customers", ["app.customers (email)"], False, "not DELETE"),
])
def test_explain_hypothetical_refusals(hypo_ctx: ProjectContext, hypo_project: ProjectDir, sql: str,
                                       indexes: list[str], analyze: bool, expected: str) -> None:
    url = hypo_project.db_url
    srv = server(hypo_ctx)
    checksum = data_checksum(url)
    err, text = call(srv, "explain", sql=sql, params=["x"] if "$1" in sql else None, analyze=analyze,
                     hypothetical_indexes=indexes)
    assert err and expected in text, text
    assert data_checksum(url) == checksum


# ---------------------------------------------------------------- PostgreSQL 18 without HypoPG


EVENTS_QUERY = {"event_by_id": "-- params: [[17], [25000], [199999]]\nSELECT pad FROM public.events WHERE id = $1"}


@pytest.fixture
def ctx(project: ProjectDir) -> ProjectContext:
    loaded_project(project)
    # big enough that an index on id beats a sequential scan by far more than measurement noise
    with project.connect() as c:
        c.execute("CREATE TABLE public.events AS SELECT g AS id, repeat('x', 40) AS pad"
                  " FROM generate_series(1, 200000) g")
        c.execute("VACUUM ANALYZE public.events")
    return write_tune_project(project, EVENTS_QUERY, {"observed": 0, "executions": 5})


def test_without_hypopg_recommend_and_apply_are_not_offered_read_only(ctx: ProjectContext) -> None:
    srv = server(ctx)
    tools = listed(srv)
    assert "recommend_indexes" not in tools and "apply_indexes" not in tools
    assert "index_health" in tools and "explain" in tools
    assert "--allow-writes" in (srv.instructions or "") and "HypoPG" in (srv.instructions or "")
    assert "does not have" in (tools["explain"].description or "")
    err, text = call(srv, "recommend_indexes")
    assert err and "recommend_indexes" in text
    err, text = call(srv, "apply_indexes")
    assert err and "apply_indexes" in text
    err, text = call(srv, "explain", sql="SELECT pad FROM events WHERE id = $1", params=[3],
                     hypothetical_indexes=["events (id)"])
    assert err and "HypoPG" in text


def test_without_hypopg_recommend_needs_allow_writes_and_leaves_nothing(
        ctx: ProjectContext, project: ProjectDir) -> None:
    srv = server(ctx, allow_writes=True)
    assert "--allow-writes" not in (srv.instructions or "")
    rec = listed(srv)["recommend_indexes"]
    assert rec.annotations is not None and rec.annotations.read_only_hint is False
    assert "--allow-writes" in (rec.description or "") and "rolled back" in (rec.description or "")
    before = index_set(project.db_url)
    err, text = call(srv, "recommend_indexes")
    assert not err, text
    advice = unwrap(text)
    assert advice["backend"] == "real"
    assert [r["label"] for r in advice["recommendations"]] == ["public.events (id)"]
    assert index_set(project.db_url) == before


def test_apply_indexes_only_with_allow_writes(ctx: ProjectContext, project: ProjectDir) -> None:
    tools = listed(server(ctx, allow_writes=True))
    apply = tools["apply_indexes"]
    assert apply.annotations is not None and apply.annotations.read_only_hint is False
    before = index_set(project.db_url)
    err, text = call(server(ctx, allow_writes=True), "apply_indexes")
    assert not err, text
    report = unwrap(text)
    assert report["mode"] == "apply" and report["backend"] == "real"
    [outcome] = report["applied"]["outcomes"]
    assert outcome["label"] == "public.events (id)" and outcome["status"] == "kept", outcome
    added = sorted(set(index_set(project.db_url)) - set(before))
    assert [name for name, _ in added] == [f"public.{outcome['name']}"]
    assert tuning_runs(project.db_url) == 1
