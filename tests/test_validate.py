"""`pgmill validate`: each success criterion of the brief from the project's own tables. A project built to
fail every criterion reports each one failed; one without data reports "not measured" (never "pass"); a
real load's figures equal the ledger's; the command's exit codes, --out file and --json; the dashboard page's
figures, read from its HTML, equal the ledger's."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from html import unescape
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from starlette.testclient import TestClient
from typer.testing import CliRunner

from pgmill.cli import app
from pgmill.db.embedded import EmbeddedServer
from pgmill.observe.cost import cost_report
from pgmill.project import open_project
from pgmill.validate import Validation, render_markdown, validate
from pgmill.validate.reliability import transient_error
from pgmill.web.app import create_app
from tests.helpers import ORDERS_CONTRACT, ProjectDir, drop_database, new_database, orders_csv, run_one
from tests.test_metrics import connect, insert_runs

runner = CliRunner()
QUERY_KEYS = ("query_p95", "query_reduction")
COST_KEYS = ("cost_processing", "cost_storage", "cost_month", "cost_per_gb")
# every criterion the failing project is built to fail
FAILING = ("query_p95", "index_utilization", "query_reduction", "pipeline_success", "retries", "data_loss",
           "validation_loads", "validation_checks", "schema_enforced", "completeness", "duplicates", "realtime",
           *COST_KEYS)
NEVER_MEASURED = ("parallel_throughput", "query_p95_at_10x")


def report_of(path: Path) -> Validation:
    ctx = open_project(path)
    with connect(ctx.target.url) as conn:
        return validate(conn, ctx)


def by_key(v: Validation) -> dict[str, Any]:
    return {c.key: c for c in v.criteria}


def tuning_run(conn: psycopg.Connection[Any], queries: dict[str, tuple[float, float]], *, kept: int = 1,
               rolled_back: bool = False) -> int:
    """A succeeded `tune --apply` run that measured each declared query (p95 before, after) and kept `kept`
    indexes."""
    report = {"mode": "apply",
              "queries": [{"name": n, "source": "declared", "target_ms": 100, "sql": "SELECT 1"} for n in queries]
              + [{"name": "pgss_1", "source": "observed", "target_ms": 100, "sql": "SELECT 2"}],
              "applied": {"before": {n: {"p95_ms": b} for n, (b, _) in queries.items()} | {"pgss_1": {"p95_ms": 900}},
                          "after": {n: {"p95_ms": a} for n, (_, a) in queries.items()} | {"pgss_1": {"p95_ms": 900}},
                          "outcomes": [{"name": f"ix{i}", "status": "kept"} for i in range(kept)]
                          + [{"name": "ix_dropped", "status": "dropped"}]}}
    row = conn.execute("INSERT INTO pgmill.tuning_runs (mode, status, finished_at, report) VALUES"
                       " ('apply', 'succeeded', now(), %s) RETURNING run_id", (Jsonb(report),)).fetchone()
    assert row is not None
    if rolled_back:
        conn.execute("UPDATE pgmill.tuning_runs SET rolled_back_by = run_id + 1000 WHERE run_id = %s", (row[0],))
    return int(row[0])


def quality_result(conn: psycopg.Connection[Any], run_id: int, rule: str, kind: str, checked: int, failed: int,
                   status: str, table: str = "public.orders") -> None:
    rate = 100.0 * (checked - failed) / checked if checked else 0.0
    conn.execute("INSERT INTO pgmill.quality_results (run_id, table_name, rule, kind, rows_checked, rows_failed,"
                 " pass_rate, threshold, severity, status) VALUES (%s, %s, %s, %s, %s, %s, %s, 99, 'error', %s)",
                 (run_id, table, rule, kind, checked, failed, rate, status))


# ---------------------------------------------------------------- a project built to fail every criterion


@dataclass
class Built:
    path: Path
    url: str


@pytest.fixture(scope="module")
def failing(pg_server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    url = new_database(pg_server)
    path = tmp_path_factory.mktemp("failing")
    p = ProjectDir(path, url)
    p.contract("orders", ORDERS_CONTRACT)
    p.config({"orders": {"source": {"kind": "csv", "path": "data/*.csv"}, "table": "public.orders",
                         "contract": "contracts/orders.yaml"},
              "lost": {"source": {"kind": "csv", "path": "data/*.csv"}, "table": "public.lost",
                       "contract": "contracts/lost.yaml"}},  # its contract file does not exist
             database={"url": url})
    with connect(url) as conn:
        # success 1 of 2; the failed run lost 3 rows to a serialization failure; 5 of 110 records quarantined
        ok, failed = insert_runs(conn, [("orders", "succeeded", 1, 100, 90, 0, 0, 5, 5, 1000, 0),
                                        ("orders", "failed", 1, 10, 7, 0, 0, 0, 0, 100, 3)])
        conn.execute("UPDATE pgmill.runs SET error = 'PostgreSQL: could not serialize access due to concurrent"
                     " update [SQLSTATE 40001]' WHERE run_id = %s", (failed,))
        # files that took 12 s and 2 s from arrival to queryable: p95 11.5 s, over the brief's 5 s
        conn.execute("INSERT INTO pgmill.run_steps (run_id, name, status, started_at, finished_at, detail)"
                     " SELECT %s, 'load f', 'succeeded', now(), now(), jsonb_build_object('arrival_to_queryable_s', s)"
                     " FROM unnest('{12, 2}'::float8[]) s", (ok,))
        # table checks: 5 nulls in 100 required values, 20 in 100 for completeness; the unique rule broke
        quality_result(conn, 1, "not_null(customer_id)", "not_null", 100, 5, "fail")
        quality_result(conn, 1, "completeness(total)", "completeness", 100, 20, "fail")
        quality_result(conn, 1, "unique(order_id)", "unique", 0, 0, "error")
        # p95 150 ms, down from 200 ms: 25%
        tuning_run(conn, {"orders_by_customer": (200.0, 150.0)})
        # an index-less big table read by sequential scans only
        conn.execute("CREATE TABLE big AS SELECT g AS id FROM generate_series(1, 20000) g")
        conn.execute("ANALYZE big")
        for _ in range(3):
            conn.execute("SELECT count(*) FROM big").fetchall()
        conn.execute("SELECT pg_stat_force_next_flush()")
        # a minute of a machine busy for 10 million CPU-seconds, 2 TB stored, 1 GB processed
        conn.execute("INSERT INTO pgmill.run_costs (invocation, run_id, job, started_at, finished_at, cpu_seconds,"
                     " bytes_processed, database_bytes, files_bytes, compute_usd) VALUES"
                     " (1, %s, 'orders', now() - interval '1 minute', now(), 1e7, %s, %s, 0, 0)",
                     (ok, 2**30, 2 * 2**40))
    with pytest.MonkeyPatch.context() as mp:  # PGMILL_DATABASE_URL would override the project's own URL
        mp.delenv("PGMILL_DATABASE_URL", raising=False)
        yield Built(path, url)
    drop_database(pg_server, url)


def test_a_project_built_to_fail_reports_each_criterion_failed(failing: Built) -> None:
    v = report_of(failing.path)
    got = by_key(v)
    assert {k: got[k].status for k in FAILING} == dict.fromkeys(FAILING, "fail")
    assert {k: got[k].status for k in NEVER_MEASURED} == dict.fromkeys(NEVER_MEASURED, "not_measured")
    assert not v.ok and v.exit_code == 1 and v.count("fail") == len(FAILING)
    # the figures behind the verdicts
    assert got["query_p95"].value == 150.0
    assert got["query_reduction"].value == pytest.approx(0.25)
    assert got["index_utilization"].value == 0.0
    assert got["pipeline_success"].value == 0.5
    assert got["retries"].figure == "0 runs saved by retry; 1 failed for a transient reason"
    assert got["data_loss"].value == 3.0 and got["data_loss"].detail["unbalanced_runs"] == 1
    assert got["validation_loads"].value == pytest.approx(105 / 110)
    assert got["validation_checks"].value == pytest.approx(0.95)
    assert got["schema_enforced"].figure.startswith("1 of 2 pipelines") and "lost:" in got["schema_enforced"].note
    assert got["completeness"].value == pytest.approx(175 / 200)
    assert got["duplicates"].figure == "1 duplicate rules could not run"
    assert got["realtime"].value == 11.5 and got["realtime"].figure.startswith("11.50 s p95 (orders, 2 measured)")


def test_cost_criteria_are_the_cost_reports_targets(failing: Built) -> None:
    ctx = open_project(failing.path)
    with connect(failing.url) as conn:
        v = validate(conn, ctx)
        cost = cost_report(conn, ctx.config.cost, now=v.as_of)
    targets = {c.name: c for c in cost.checks if c.source == "target"}
    got = by_key(v)
    for key, name in zip(COST_KEYS, ("processing a month (compute + database)", "storage a month", "total a month",
                                     "cost per GB processed"), strict=True):
        assert got[key].value == pytest.approx(targets[name].value)
        assert got[key].value > targets[name].limit


def test_cli_exit_code_out_file_and_json(failing: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGMILL_DATABASE_URL", failing.url)
    out = tmp_path / "validation.md"
    res = runner.invoke(app, ["validate", "--project", str(failing.path), "--out", str(out)])
    assert res.exit_code == 1, res.output
    assert res.stdout.startswith(f"wrote {out}: 0 passed, {len(FAILING)} failed")
    text = out.read_text()
    assert f"| result | **FAIL**: 0 passed, {len(FAILING)} failed, 2 not measured (exit code 1) |" in text
    assert "| database | `postgresql://" in text and f"| pgmill | {__import__('pgmill').__version__} |" in text
    rows = {r[0]: r for r in _markdown_rows(text)}
    assert rows["Pipeline success rate > 99.9% (measured via execution logs)"][1:4] == [
        "50.00% (1 of 2 runs)", "> 99.9%", "**FAIL**"]
    assert rows["Parallel processing improves throughput by 3x"][3] == "not measured"
    assert sum(1 for r in rows.values() if r[3] == "**FAIL**") == len(FAILING)

    res = runner.invoke(app, ["validate", "--project", str(failing.path), "--json", "--since", "7d"])
    assert res.exit_code == 1
    d = json.loads(res.stdout)
    assert d["ok"] is False and d["since_seconds"] == 7 * 86400
    assert d["counts"] == {"pass": 0, "fail": len(FAILING), "not_measured": 2}
    assert [c["key"] for c in d["criteria"]] == [
        "query_p95", "index_utilization", "query_reduction", "parallel_throughput", "pipeline_success", "retries",
        "data_loss", "validation_loads", "validation_checks", "schema_enforced", "completeness", "duplicates",
        *COST_KEYS, "realtime", "query_p95_at_10x"]
    assert set(d["criteria"][0]) == {"key", "area", "name", "threshold", "status", "figure", "value", "source",
                                     "window", "note", "detail"}
    assert all(c["source"] for c in d["criteria"])

    res = runner.invoke(app, ["validate", "--project", str(failing.path), "--since", "soon"])
    assert res.exit_code == 2 and "--since: 'soon' is not a duration" in res.stderr


def _markdown_rows(text: str) -> list[list[str]]:
    """The cells of every criterion row of the report's tables."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 6 and cells[0] not in ("criterion", "---"):
            rows.append(cells)
    return rows


def _page_rows(html: str) -> dict[str, dict[str, str]]:
    """Each criterion row of the page: its figure, threshold, status and window, as the browser shows them."""
    rows = {}
    for key, body in re.findall(r'<tr data-key="([a-z_0-9]+)">(.*?)</tr>', html, re.S):
        cells = dict(re.findall(r'<td class="(?:small )?(figure|threshold|status|window)">(.*?)</td>', body, re.S))
        rows[key] = {k: unescape(re.sub(r"<[^>]+>", "", v)).strip() for k, v in cells.items()}
        badge = re.search(r'class="badge ([a-z_]+)"', cells["status"])
        assert badge, body
        rows[key]["badge"] = badge.group(1)
    return rows


def test_the_page_shows_the_ledgers_figures(failing: Built) -> None:
    ctx = open_project(failing.path)
    with TestClient(create_app(ctx, token=None), base_url="http://localhost") as client:
        res = client.get("/validation")
    assert res.status_code == 200
    rows = _page_rows(res.text)
    # the ledger, counted here independently
    with connect(failing.url) as conn:
        [(runs, ok, read, quarantined, lost)] = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded'), sum(rows_read), sum(rows_quarantined),"
            " sum(rows_read - rows_inserted - rows_updated - rows_unchanged - rows_quarantined - rows_duplicate)"
            " FROM pgmill.runs WHERE status <> 'running'").fetchall()
        [(nulls, checked)] = conn.execute("SELECT sum(rows_failed), sum(rows_checked) FROM pgmill.quality_results"
                                          " WHERE kind IN ('not_null', 'completeness')").fetchall()
    assert rows["pipeline_success"]["figure"] == f"{ok / runs:.2%} ({ok} of {runs} runs)"
    assert rows["validation_loads"]["figure"].startswith(
        f"{(read - quarantined) / read:.2%} ({read:,} records read, {quarantined:,} quarantined")
    assert rows["data_loss"]["figure"].startswith(f"{lost:,} rows unaccounted in 1 of {runs} runs")
    assert rows["completeness"]["figure"].startswith(f"{(checked - nulls) / checked:.2%} ({nulls} missing")
    assert rows["query_p95"]["figure"].startswith("150 ms worst (orders_by_customer)")
    assert {k: r["badge"] for k, r in rows.items()} == {c.key: c.status for c in report_of(failing.path).criteria}
    assert rows["parallel_throughput"]["status"] == "not measured"
    assert f'id="count-fail">{len(FAILING)}<' in res.text


# ---------------------------------------------------------------- without data, and from real work


def test_without_data_every_criterion_is_not_measured(project: ProjectDir) -> None:
    project.config({})
    v = report_of(project.path)
    assert {c.status for c in v.criteria} == {"not_measured"}
    assert all(c.note and c.value is None for c in v.criteria)
    assert v.ok and v.exit_code == 0
    res = runner.invoke(app, ["validate"])
    assert res.exit_code == 0, res.output
    assert "| result | pass: 0 passed, 0 failed, 18 not measured (exit code 0) |" in res.stdout


def test_a_real_load_without_tuning(project: ProjectDir) -> None:
    project.orders_pipeline()
    project.write("data/orders1.csv", orders_csv([
        (1, 10, "F", "12.50", "2026-01-02", "2026-01-03T10:00:00Z"),
        (2, 11, "O", "7.00", "2026-01-05", "2026-01-05T10:00:00Z"),
        (2, 11, "P", "8.00", "2026-01-05", "2026-01-06T10:00:00Z"),  # the same key again, newer
        (3, 12, "X", "1.00", "2026-01-08", ""),  # status not accepted: quarantined
    ]))
    run_one(project.path, "orders")
    got = by_key(report_of(project.path))
    [(read, quarantined, duplicate)] = project.query(
        "SELECT rows_read, rows_quarantined, rows_duplicate FROM pgmill.runs")
    assert (read, quarantined, duplicate) == (4, 1, 1)
    assert got["pipeline_success"].status == "pass" and got["pipeline_success"].figure == "100.00% (1 of 1 runs)"
    assert got["data_loss"].status == "pass" and got["data_loss"].value == 0
    assert got["validation_loads"].status == "fail" and got["validation_loads"].value == 3 / 4
    assert got["duplicates"].status == "pass" and got["duplicates"].figure.startswith("1 duplicate records counted")
    assert got["schema_enforced"].status == "pass"
    assert got["retries"].status == "not_measured"  # nothing transient happened: the retries were not exercised
    for key in (*QUERY_KEYS, "validation_checks", "completeness", *COST_KEYS):
        assert got[key].status == "not_measured", key


def test_latency_passes_and_a_rollback_brings_back_the_before(project: ProjectDir) -> None:
    project.config({})
    with connect(project.db_url) as conn:
        run = tuning_run(conn, {"a": (300.0, 20.0), "b": (100.0, 40.0)})
    got = by_key(report_of(project.path))
    assert got["query_p95"].status == "pass" and got["query_p95"].value == 40.0
    assert got["query_p95"].figure == "40.0 ms worst (b); 2 of 2 declared queries under 100 ms"
    assert got["query_reduction"].status == "pass" and got["query_reduction"].value == pytest.approx(1 - 60 / 400)
    assert runner.invoke(app, ["validate"]).exit_code == 0  # every measured criterion passes
    with connect(project.db_url) as conn:
        conn.execute("UPDATE pgmill.tuning_runs SET rolled_back_by = 99 WHERE run_id = %s", (run,))
    got = by_key(report_of(project.path))
    assert got["query_p95"].status == "fail" and got["query_p95"].value == 300.0
    assert got["query_reduction"].status == "not_measured" and "no tuning run kept an index" in got[
        "query_reduction"].note
    assert runner.invoke(app, ["validate"]).exit_code == 1


def test_a_run_saved_by_retry_passes(project: ProjectDir) -> None:
    project.config({})
    with connect(project.db_url) as conn:
        insert_runs(conn, [("orders", "succeeded", 1, 10, 10, 0, 0, 0, 0, 100, 2)])
    got = by_key(report_of(project.path))["retries"]
    assert (got.status, got.figure) == ("pass", "1 runs saved by retry; 0 failed for a transient reason")


@pytest.mark.parametrize(("error", "transient"), [
    ("PostgreSQL: could not serialize access [SQLSTATE 40001]", True),
    ("PostgreSQL: terminating connection due to administrator command [SQLSTATE 57P01]", True),
    ("PostgreSQL: server closed the connection unexpectedly", True),
    ("cannot connect to postgresql://u:***@db/x: connection refused", True),
    ("cannot connect to postgresql://u:***@db/x: password authentication failed for user \"u\"", False),
    ("GET https://api.example/x: HTTP 503 Service Unavailable (gave up after 5 attempts)", True),
    ("PostgreSQL: division by zero [SQLSTATE 22012]", False),
    ("m1: PostgreSQL: division by zero [SQLSTATE 22012]; m2: PostgreSQL: deadlock detected [SQLSTATE 40P01]", True),
    ("data/t.csv:line 3: v = '-3' is below the minimum 0 [rule v.min, policy fail]", False),
    ("interrupted", False),
])
def test_transient_errors_are_told_from_permanent_ones(error: str, transient: bool) -> None:
    assert transient_error(error) is transient


def test_markdown_escapes_table_cells(project: ProjectDir) -> None:
    project.config({})
    v = report_of(project.path)
    v.criteria[0].figure = "a | b"
    text = render_markdown(v)
    assert text.startswith("# Validation")
    assert "| a \\| b |" in text



def test_a_near_duplicate_rule_stopped_at_max_seconds_is_not_counted_as_finding_none() -> None:
    from datetime import datetime

    from pgmill.validate.data_quality import Result, duplicates
    from pgmill.validate.reliability import LedgerWindow

    now = datetime.now(UTC)
    w = LedgerWindow(now, 1, 100, 0, 0, 2, 0, 0, [])
    done = Result("shop.customers", 1, "email_unique", "unique", 100, 3, "fail", None, None, now)
    stopped = Result("shop.customers", 1, "name_near", "near_duplicates", 0, 0, "skipped", None,
                     {"seconds": 300.2}, now)
    c = duplicates([done, stopped], w, "7d")
    assert c.status == "pass" and c.value == 5.0
    assert c.figure == ("2 duplicate records counted by 1 runs; 3 duplicate rows found by 1 check rules; "
                        "1 stopped at max_seconds (shop.customers name_near)")
    assert c.detail["rules_skipped"] == ["shop.customers name_near"]
