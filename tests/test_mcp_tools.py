"""Every MCP tool, resource and prompt through the SDK's in-process client, on a loaded project."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import yaml
from mcp import Client
from psycopg import sql

from pgmill.mcp import NotReadOnly, build_server
from pgmill.project import ProjectContext, open_project
from tests.helpers import ProjectDir, execute
from tests.mcp_support import INJECTION, call, loaded_project, server, unwrap, with_client

READ_TOOLS = {"list_tables", "describe_table", "query", "explain", "pipeline_status", "quarantine_sample",
              "quality_report", "index_health"}


@pytest.fixture
def ctx(project: ProjectDir) -> ProjectContext:
    return loaded_project(project)


def test_tools_listed_read_only_by_default(ctx: ProjectContext) -> None:
    async def names(client: Client) -> dict[str, bool | None]:
        tools = (await client.list_tools()).tools
        return {t.name: t.annotations.read_only_hint if t.annotations else None for t in tools}

    listed = with_client(server(ctx), names)
    assert READ_TOOLS <= set(listed)
    assert "run_pipeline" not in listed
    assert all(listed[n] for n in READ_TOOLS)


def test_list_tables(ctx: ProjectContext) -> None:
    err, text = call(server(ctx), "list_tables")
    assert not err
    tables = {t["table"]: t for t in unwrap(text)}
    orders = tables["public.orders"]
    assert orders["row_estimate"] == 4 and orders["total_bytes"] > 0 and orders["readable"]
    [pipe] = orders["contract"]["pipelines"]
    assert pipe == {"pipeline": "orders", "mode": "merge", "contract_file": "contracts/orders.yaml",
                    "columns": 6, "primary_key": ["order_id"], "row_rules": 0, "partition": None}
    assert "pgmill.runs" in tables and "public.notes" in tables


def test_list_and_describe_show_partition_retain_and_archive(ctx: ProjectContext, project: ProjectDir) -> None:
    doc = yaml.safe_load((project.path / "contracts/orders.yaml").read_text())
    doc["columns"]["ordered_at"]["primary_key"] = True
    doc["partition"] = {"by": "ordered_at", "interval": "month", "retain": "24 months", "archive": "parquet",
                        "archive_dir": "s3://AKIDEXAMPLE:s3cr3t@cold-bucket/pgmill?token=t0ken"}
    project.contract("events", doc)
    pipes = yaml.safe_load((project.path / "pgmill.yaml").read_text())["pipelines"]
    pipes["events"] = {"source": {"kind": "csv", "path": "data/events.csv"}, "table": "public.events",
                       "contract": "contracts/events.yaml"}
    project.config(pipes)
    ctx = open_project(project.path)
    expected = {"by": "ordered_at", "interval": "month", "premake": 2, "retain": "24 months", "archive": "parquet",
                "archive_dir": "s3://AKIDEXAMPLE:***@cold-bucket/pgmill?token=***"}
    err, text = call(server(ctx), "list_tables")
    assert not err and "s3cr3t" not in text and "t0ken" not in text
    tables = {t["table"]: t for t in unwrap(text)}
    assert tables["public.events"]["contract"]["pipelines"][0]["partition"] == expected
    assert tables["public.orders"]["contract"]["pipelines"][0]["partition"] is None
    err, text = call(server(ctx), "describe_table", table="orders")
    assert not err and unwrap(text)["contracts"]["orders"]["partition"] is None


def test_describe_table(ctx: ProjectContext) -> None:
    err, text = call(server(ctx), "describe_table", table="orders")
    assert not err
    d = unwrap(text)
    assert d["table"] == "public.orders"
    assert [c["name"] for c in d["columns"]][:2] == ["order_id", "customer_id"]
    assert {"name": "order_id", "type": "bigint", "not_null": True, "default": None} in d["columns"]
    assert any(c["type"] == "primary key" and "order_id" in c["definition"] for c in d["constraints"])
    assert any(i["primary"] for i in d["indexes"])
    assert d["contracts"]["orders"]["columns"]["status"]["accepted_values"] == ["F", "O", "P"]


def test_describe_missing_table_is_a_clear_error(ctx: ProjectContext) -> None:
    err, text = call(server(ctx), "describe_table", table="public.nope")
    assert err and "no table named 'public.nope'" in text


def test_query_runs_as_reader_read_only_with_bound_params(ctx: ProjectContext) -> None:
    err, text = call(server(ctx), "query",
                     sql="SELECT current_user, current_setting('transaction_read_only'), order_id, status"
                         " FROM orders WHERE order_id = $1 OR status = $2 ORDER BY order_id",
                     params=[1, "P"])
    assert not err
    res = unwrap(text)
    assert res["columns"] == ["current_user", "current_setting", "order_id", "status"]
    assert res["rows"] == [["pgmill_reader", "on", 1, "F"], ["pgmill_reader", "on", 3, "P"]]
    assert res["truncated"] is False


def test_query_caps_rows_and_the_model_cannot_raise_them(ctx: ProjectContext) -> None:
    srv = server(ctx, max_rows=50)
    res = unwrap(call(srv, "query", sql="SELECT id FROM big ORDER BY id", max_rows=10_000)[1])
    assert len(res["rows"]) == 50 and res["truncated"] and "50 rows" in res["truncated_reason"]
    res = unwrap(call(srv, "query", sql="SELECT id FROM big ORDER BY id", max_rows=3)[1])
    assert res["rows"] == [[1], [2], [3]] and res["truncated"]


def test_query_caps_bytes_and_long_values(ctx: ProjectContext) -> None:
    srv = server(ctx, max_bytes=20_000, max_cell_chars=100)
    res = unwrap(call(srv, "query", sql="SELECT repeat('y', 100000) AS v FROM big")[1])
    assert res["truncated"] and "bytes" in res["truncated_reason"]
    assert 0 < len(res["rows"]) < 200
    assert res["rows"][0][0].startswith("y" * 100) and "99900 more chars" in res["rows"][0][0]


def test_table_data_is_wrapped_as_untrusted(ctx: ProjectContext) -> None:
    err, text = call(server(ctx), "query", sql="SELECT body FROM notes WHERE id = 1")
    assert not err
    assert unwrap(text)["rows"] == [[INJECTION]]
    # the data cannot close the envelope or open markup: < and > only appear escaped inside it
    body = text.split("\n", 3)[3]  # after the summary, the notice and the opening tag
    assert "</untrusted-data-x>" not in body and "<system>" not in body
    assert body.count("</untrusted-data-") == 1 and body.rstrip().endswith(">")


def test_explain(ctx: ProjectContext) -> None:
    srv = server(ctx)
    plan = unwrap(call(srv, "explain", sql="SELECT * FROM orders WHERE order_id = $1", params=[2])[1])["plan"]
    assert "orders" in plan and "cost=" in plan and "actual" not in plan
    plan = unwrap(call(srv, "explain", sql="SELECT count(*) FROM big", analyze=True)[1])["plan"]
    assert "actual" in plan
    err, text = call(srv, "explain", sql="DELETE FROM orders")
    assert err and "not DELETE" in text


def test_pipeline_status(ctx: ProjectContext) -> None:
    status = unwrap(call(server(ctx), "pipeline_status", pipeline="orders")[1])
    assert status["pipelines"] == {"orders": {"table": "public.orders", "mode": "merge"}}
    assert [r["status"] for r in status["runs"]] == ["succeeded"] and status["failures"] == []
    assert status["runs"][0]["rows_read"] == 6 and status["runs"][0]["rows_quarantined"] == 2
    rules = {(q["column"], q["rule"]): q["rows"] for q in status["quarantine"]}
    assert rules == {("status", "accepted_values"): 1, ("total", "min"): 1}


def test_pipeline_status_shows_failures(ctx: ProjectContext, project: ProjectDir) -> None:
    with project.connect() as c:
        c.execute("INSERT INTO pgmill.runs (pipeline, status, error) VALUES ('orders', 'failed',"
                  " 'cannot connect to postgresql://bob:hunter2@db/x')")
    status = unwrap(call(server(ctx), "pipeline_status")[1])
    [failure] = status["failures"]
    assert failure["status"] == "failed" and "hunter2" not in failure["error"] and "bob:***@" in failure["error"]


def test_quarantine_sample(ctx: ProjectContext) -> None:
    srv = server(ctx)
    rows = unwrap(call(srv, "quarantine_sample", pipeline="orders")[1])
    assert len(rows) == 2
    assert {r["record"]["order_id"] for r in rows} == {"5", "6"}
    assert rows[0]["source_location"].startswith("data/orders1.csv")
    only = unwrap(call(srv, "quarantine_sample", pipeline="orders", rule="min", limit=500)[1])
    assert [r["record"]["order_id"] for r in only] == ["6"]


def test_quality_report_and_describe_show_check_results(ctx: ProjectContext) -> None:
    srv = server(ctx)
    err, text = call(srv, "quality_report")
    assert not err and unwrap(text) == {} and "No quality check results yet" in text
    from pgmill.quality.checks import run_checks

    run_checks(ctx)
    report = unwrap(call(srv, "quality_report", table="orders")[1])
    [row_count] = [r for r in report["public.orders"] if r["rule"] == "row_count"]
    assert row_count["status"] == "pass" and row_count["value"] == 4
    described = unwrap(call(srv, "describe_table", table="orders")[1])
    assert any(r["rule"] == "row_count" for r in described["quality"])


def test_index_health(ctx: ProjectContext) -> None:
    health = unwrap(call(server(ctx), "index_health")[1])
    assert any(i["index"] == "public.orders_pkey" for i in health["indexes"])
    assert isinstance(health["findings"], list)


def test_run_pipeline_only_with_allow_writes(ctx: ProjectContext, project: ProjectDir) -> None:
    err, text = call(server(ctx), "run_pipeline", pipeline="orders")
    assert err and "run_pipeline" in text
    project.write("data/orders2.csv", "order_id,customer_id,status,total,ordered_at,updated_at\n"
                                      "7,16,F,1.00,2026-02-01,\n")
    srv = server(ctx, allow_writes=True)
    err, text = call(srv, "run_pipeline", pipeline="orders")
    assert not err
    [run] = unwrap(text)
    assert run["status"] == "succeeded" and run["rows_inserted"] == 1
    assert project.scalar("SELECT count(*) FROM orders") == 5


def test_resources(ctx: ProjectContext, project: ProjectDir) -> None:
    project.config({"orders": {"source": {"kind": "http", "url": "https://api.example.com/orders",
                                          "params": {"api_key": "s3cret-key"}, "auth_env": "API_TOKEN",
                                          "headers": {"X-Session": "abc123"}},
                               "table": "public.orders", "contract": "contracts/orders.yaml"}},
                   database={"url": "postgresql://loader:pa55word@db.internal/prod"})
    srv = server(ctx)

    async def read_all(client: Client) -> dict[str, str]:
        listed = (await client.list_resources()).resources
        out = {}
        for r in listed:
            res = await client.read_resource(str(r.uri))
            out[str(r.uri)] = "".join(getattr(c, "text", "") for c in res.contents)
        return out

    got = with_client(srv, read_all)
    assert set(got) == {"pgmill://schema", "pgmill://contracts", "pgmill://project"}
    schema = {t["table"]: t for t in unwrap(got["pgmill://schema"])}
    assert schema["public.orders"]["columns"]["order_id"] == "bigint"
    assert schema["public.orders"]["loaded_by"] == ["orders"]
    project_file = got["pgmill://project"]
    for secret in ("pa55word", "s3cret-key", "abc123"):
        assert secret not in project_file
    doc = yaml.safe_load(project_file)
    assert doc["database"]["url"] == "postgresql://loader:***@db.internal/prod"
    assert doc["pipelines"]["orders"]["source"]["auth_env"] == "API_TOKEN"
    assert '"accepted_values"' in got["pgmill://contracts"]


def test_prompts(ctx: ProjectContext) -> None:
    async def prompts(client: Client) -> tuple[set[str], str]:
        names = {p.name for p in (await client.list_prompts()).prompts}
        res = await client.get_prompt("why_is_this_query_slow", {"sql": "SELECT * FROM big WHERE id = 7"})
        return names, "".join(getattr(m.content, "text", "") for m in res.messages)

    names, text = with_client(server(ctx), prompts)
    assert names == {"investigate_failed_run", "why_is_this_query_slow", "explore_table"}
    assert "SELECT * FROM big WHERE id = 7" in text and "explain" in text


@pytest.fixture
def login_role(project: ProjectDir) -> Iterator[str]:
    name = "h_mcp_" + uuid.uuid4().hex[:8]
    with project.connect() as c:
        c.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        c.execute(sql.SQL("GRANT CREATE, USAGE ON SCHEMA public TO {}").format(sql.Identifier(name)))
    yield name
    with project.connect() as c:
        c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def _as(project: ProjectDir, role: str, monkeypatch: pytest.MonkeyPatch) -> ProjectContext:
    monkeypatch.setenv("PGMILL_DATABASE_URL", project.db_url.replace("postgres@", f"{role}@"))
    return open_project(project.path)


def test_refuses_to_start_as_table_owner_without_reader_role(
        ctx: ProjectContext, project: ProjectDir, login_role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    execute(project.db_url.replace("postgres@", f"{login_role}@"), "CREATE TABLE mine (x int)")
    with pytest.raises(NotReadOnly, match="owns tables.*cannot switch to the read-only role pgmill_reader"):
        build_server(_as(project, login_role, monkeypatch))


def test_unprivileged_user_reads_as_itself(
        ctx: ProjectContext, project: ProjectDir, login_role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = build_server(_as(project, login_role, monkeypatch))
    res = unwrap(call(srv, "query", sql="SELECT current_user")[1])
    assert res["rows"] == [[login_role]]


def test_table_owner_switches_to_reader_when_granted(
        ctx: ProjectContext, project: ProjectDir, login_role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    project.execute(f'GRANT pgmill_reader TO "{login_role}"')
    execute(project.db_url.replace("postgres@", f"{login_role}@"), "CREATE TABLE mine (x int)")
    srv = build_server(_as(project, login_role, monkeypatch))
    assert unwrap(call(srv, "query", sql="SELECT current_user")[1])["rows"] == [["pgmill_reader"]]
    err, text = call(srv, "query", sql="SELECT * FROM mine")
    assert err and "permission denied" in text
