"""The runs page and the run page, over a project with real runs: a load with quarantined rows and
duplicates (with its table checks and the models built after it), a failed load whose error holds
`<script>`, a retried run, a run days ago. Figures are read from the HTML and compared with the ledger."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql
from starlette.testclient import TestClient

from pgmill.db.embedded import EmbeddedServer
from pgmill.errors import ContractError
from pgmill.figures import usd
from pgmill.ingest.runner import run_pipelines
from pgmill.orchestrate import run_project
from pgmill.project import open_project
from pgmill.web.app import create_app
from pgmill.web.export import export_dashboard
from tests.helpers import ORDERS_CONTRACT, ProjectDir, drop_database, new_database, orders_csv

EVIL = "<script>alert(1)</script>"


@dataclass
class Runs:
    project: ProjectDir
    client: TestClient
    orders: int  # the load run with quarantine, duplicates, checks and models (retries set to 2)
    transform: int
    broken: int  # failed: its error names the column EVIL
    old: int  # started three days ago


@pytest.fixture(scope="module")
def runs(pg_server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    project = ProjectDir(tmp_path_factory.mktemp("runs"), new_database(pg_server))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PGMILL_DATABASE_URL", project.db_url)
        project.contract("orders", {**ORDERS_CONTRACT, "checks": {"row_count": {"min": 1}}})
        project.contract("broken", ORDERS_CONTRACT)
        csv = {"kind": "csv"}
        project.config({
            "orders": {"source": {**csv, "path": "data/orders.csv"}, "table": "public.orders",
                       "contract": "contracts/orders.yaml", "mode": "merge"},
            "broken": {"source": {**csv, "path": "data/broken.csv"}, "table": "public.broken",
                       "contract": "contracts/broken.yaml"},
        })
        project.write("data/orders.csv", orders_csv([
            (1, 7, "F", "10.00", "2024-01-01", None), (2, 7, "O", "5.00", "2024-01-02", None),
            (2, 7, "O", "6.00", "2024-01-02", None),  # a duplicate key in the batch
            (3, 8, "X", "1.00", "2024-01-02", None),  # status X is not accepted: quarantined
            (4, 9, "P", "-3", "2024-01-03", None),  # below min 0: quarantined
        ]))
        project.write("data/broken.csv", f"order_id,{EVIL}\n1,2\n")
        project.write("models/per_customer.sql",
                      "SELECT customer_id, count(*) AS n FROM public.orders GROUP BY 1\n")
        ctx = open_project(project.path)
        done = run_project(ctx, ["orders"])
        assert done.ok, done.notes
        with pytest.raises(ContractError) as failed:
            run_pipelines(ctx, ["broken"])
        broken = failed.value.run_id  # type: ignore[attr-defined]
        assert done.transform is not None and done.transform.run_id is not None
        orders = done.loads[0].run_id
        with project.connect() as conn:
            conn.execute("UPDATE pgmill.runs SET retries = 2 WHERE run_id = %s", (orders,))
            [(old,)] = conn.execute(
                "INSERT INTO pgmill.runs (pipeline, status, mode, started_at, finished_at)"
                " VALUES ('orders', 'succeeded', 'merge', now() - interval '3 days',"
                " now() - interval '3 days' + interval '5 seconds') RETURNING run_id").fetchall()
        with TestClient(create_app(ctx, token=None), base_url="http://localhost") as client:
            yield Runs(project, client, orders, done.transform.run_id, broken, old)
    drop_database(pg_server, project.db_url)


def get(r: Runs, path: str, status: int = 200) -> str:
    res = r.client.get(path)
    assert res.status_code == status, res.text
    return res.text


def bars(page: str) -> list[int]:
    return [int(x) for x in re.findall(r'<rect class="bar [a-z]+" data-run="(\d+)"', page)]


def rows(page: str) -> list[int]:
    return [int(x) for x in re.findall(r'<tr data-run="(\d+)"', page)]


def ledger_ids(r: Runs, where: str = "TRUE", params: Any = None) -> list[int]:
    q = sql.SQL("SELECT run_id FROM pgmill.runs WHERE {} ORDER BY started_at DESC, run_id DESC").format(sql.SQL(where))
    return [int(x) for (x,) in r.project.query(q, params)]


def test_phase_timings_are_recorded_after_a_real_load(runs: Runs) -> None:
    [(name, detail, step_rows)] = runs.project.query(
        "SELECT name, detail, rows FROM pgmill.run_steps WHERE run_id = %s AND name LIKE 'load %%'", (runs.orders,))
    assert name == "load data/orders.csv"
    phases = detail["phases"]
    assert set(phases) == {"read_s", "validate_s", "load_s"}
    assert all(isinstance(v, float) and v >= 0 for v in phases.values())
    assert phases["validate_s"] > 0 and phases["load_s"] > 0
    assert step_rows == detail["rows_read"] == runs.project.scalar(
        "SELECT rows_read FROM pgmill.runs WHERE run_id = %s", (runs.orders,)) == 5
    # what followed the load in the same `pgmill run` is recorded as steps of its run
    steps = dict(runs.project.query("SELECT name, detail FROM pgmill.run_steps WHERE run_id = %s", (runs.orders,)))
    assert steps["models"]["run_id"] == runs.transform and steps["models"]["built"] == 1
    assert steps["checks"]["quality_run"] == runs.project.scalar("SELECT max(run_id) FROM pgmill.quality_results")
    assert steps["checks"]["pass"] == 1


def test_runs_page_draws_every_run_of_the_window(runs: Runs) -> None:
    page = get(runs, "/runs")
    day = ledger_ids(runs, "started_at >= now() - interval '24 hours'")
    assert sorted(day) == sorted([runs.orders, runs.transform, runs.broken])
    assert sorted(bars(page)) == sorted(day)
    assert rows(page) == day  # newest first
    assert f"Showing {len(day)} of {len(day)} runs" in page
    for status in ("succeeded", "failed", "abandoned", "running"):
        n = runs.project.scalar("SELECT count(*) FROM pgmill.runs WHERE started_at >= now() - interval '24 hours'"
                                " AND status = %s", (status,))
        assert re.search(rf'id="count-{status}">{n}<', page)
    for pipeline in ("orders", "broken", "transform"):  # a lane per pipeline, the models' runs too
        assert f">{pipeline}</text>" in page
    week = get(runs, "/runs?window=7d")
    assert sorted(bars(week)) == sorted(ledger_ids(runs)) and runs.old in rows(week)


def test_bars_link_to_run_pages_and_mark_retries(runs: Runs) -> None:
    page = get(runs, "/runs")
    for run_id in (runs.orders, runs.broken):
        assert re.search(rf'<a href="/runs/{run_id}"><rect class="bar \w+" data-run="{run_id}"', page)
    retried = re.search(rf'<rect class="bar succeeded" data-run="{runs.orders}"[^>]*>', page)
    plain = re.search(rf'<rect class="bar succeeded" data-run="{runs.transform}"[^>]*>', page)
    assert retried and plain
    assert 'stroke="#0f172a"' in retried.group(0) and "stroke" not in plain.group(0)
    assert re.search(rf'data-run="{runs.orders}"[^>]*><title>[^<]*2 retries', page)


def test_filters_by_pipeline_and_status(runs: Runs) -> None:
    failed = get(runs, "/runs?status=failed&window=7d")
    assert bars(failed) == rows(failed) == ledger_ids(runs, "status = 'failed'") == [runs.broken]
    orders = get(runs, "/runs?pipeline=orders&window=7d")
    assert rows(orders) == ledger_ids(runs, "pipeline = 'orders'") == [runs.orders, runs.old]
    assert '<option value="orders" selected>' in orders
    both = get(runs, "/runs?pipeline=orders&status=failed")
    assert rows(both) == [] and "No runs in this window." in both
    # a filter the ledger does not know is no filter, not an error (nor a reflected value)
    odd = get(runs, f"/runs?pipeline={EVIL}&status=nope&window=1y")
    assert sorted(rows(odd)) == sorted(rows(get(runs, "/runs"))) and EVIL not in odd


def test_run_page_equation_gantt_steps_and_cost(runs: Runs) -> None:
    page = get(runs, f"/runs/{runs.orders}")
    [row] = runs.project.query(
        "SELECT rows_read, rows_inserted, rows_updated, rows_unchanged, rows_quarantined, rows_duplicate"
        " FROM pgmill.runs WHERE run_id = %s", (runs.orders,))
    terms = dict(re.findall(r'<span data-term="(\w+)">([\d,]+)</span>', page))
    shown = [int(terms[k].replace(",", "")) for k in ("rows_read", "rows_inserted", "rows_updated",
                                                       "rows_unchanged", "rows_quarantined", "rows_duplicate")]
    assert shown == list(row) == [5, 2, 0, 0, 2, 1]
    assert re.search(r'id="identity-verdict">holds<', page)
    for phase in ("read", "validate", "load"):
        assert f'<rect class="bar {phase}"' in page
    assert re.search(r'<tr data-step="checks">', page) and re.search(r'<tr data-step="models">', page)
    assert f'<a href="/runs/{runs.transform}">' in page  # the models' run
    assert 'href="/quarantine?pipeline=orders"' in page
    assert re.search(r'id="retries">2<', page)
    [(compute, database, invocation)] = runs.project.query(
        "SELECT compute_usd, database_usd, invocation FROM pgmill.run_costs WHERE run_id = %s", (runs.orders,))
    assert f'id="cost">{html.escape(usd(compute + (database or 0)))}<' in page
    same = [x for (x,) in runs.project.query("SELECT run_id FROM pgmill.run_costs WHERE invocation = %s"
                                              " AND run_id IS NOT NULL AND run_id <> %s", (invocation, runs.orders))]
    assert same == [runs.transform] and re.search(rf'<ul id="related">\s*<li><a href="/runs/{runs.transform}">', page)
    model = get(runs, f"/runs/{runs.transform}")
    assert '<tr data-step="public.per_customer">' in model and f'<a href="/runs/{runs.orders}">' in model
    assert 'id="identity"' not in model  # a transform run reads no source rows


def test_run_page_shows_the_error_in_full_and_escaped(runs: Runs) -> None:
    page = get(runs, f"/runs/{runs.broken}")
    error = runs.project.scalar("SELECT error FROM pgmill.runs WHERE run_id = %s", (runs.broken,))
    assert EVIL in error
    m = re.search(r'<pre id="error">(.*?)</pre>', page, re.S)
    assert m and html.unescape(m.group(1)) == error
    assert EVIL not in page and html.escape(EVIL) in page
    assert re.search(r'id="status">failed<', page)
    assert '<rect class="bar failed"' in page.split("load data/broken.csv", 1)[1]  # the failed load, in red


def test_unknown_run_is_404(runs: Runs) -> None:
    assert "run 987654321 is not in pgmill.runs" in get(runs, "/runs/987654321", 404)


def test_static_export_writes_run_pages_whose_links_resolve(runs: Runs, tmp_path: Path) -> None:
    report = export_dashboard(open_project(runs.project.path), tmp_path)
    names = {f.name for f in report.files}
    for run_id in (runs.orders, runs.transform, runs.broken):
        assert f"run-{run_id}.html" in names
    runs_page = (tmp_path / "runs.html").read_text()
    assert '<form class="filters"' not in runs_page and f'href="run-{runs.orders}.html"' in runs_page
    for f in tmp_path.glob("*.html"):
        for href in re.findall(r'<a [^>]*href="([^"]+)"', f.read_text()):
            assert "?" not in href and not href.startswith("/"), (f.name, href)
            path, _, fragment = html.unescape(href).partition("#")
            target = tmp_path / (path or f.name)
            assert target.is_file(), (f.name, href)
            assert not fragment or f'id="{fragment}"' in html.unescape(target.read_text()), (f.name, href)

