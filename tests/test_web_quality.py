"""The dashboard's quarantine and quality pages against a project with real loads (bad rows quarantined) and
real checks run twice: every figure read from the HTML equals pgmill's tables; quarantined values are text,
never markup; replay is a POST offered only with --allow-writes and refused without the CSRF token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from psycopg import sql
from starlette.testclient import TestClient

from pgmill.db.embedded import EmbeddedServer
from pgmill.project import open_project
from pgmill.quality.checks import run_checks
from tests.helpers import ProjectDir, connect, drop_database, new_database, run_one
from tests.html_support import Page

SCRIPT = "<script>alert('x')</script>"
HEADER = "order_id,customer,status,total,ordered_at,note"
CONTRACT: dict[str, Any] = {
    "columns": {
        "order_id": {"type": "bigint", "primary_key": True},
        "customer": {"type": "text", "not_null": True},
        "status": {"type": "text", "accepted_values": ["F", "O", "P"]},
        "total": {"type": "numeric(12,2)", "min": 0},
        "ordered_at": {"type": "date", "not_null": True},
        "note": {"type": "text"},
    },
    "checks": {
        "unique": ["customer"],
        "completeness": {"note": 50},
        "ranges": {"total": {"min": 0, "max": 1000}},
        "duplicates": {"near": {"columns": ["customer"], "similarity": 0.8, "severity": "warn"}},
    },
}


def csv(rows: list[tuple[Any, ...]]) -> str:
    return "\n".join([HEADER, *(",".join("" if v is None else str(v) for v in r) for r in rows)]) + "\n"


def write_project(project: ProjectDir, *, database: bool = False) -> None:
    project.contract("orders", CONTRACT)
    pipes = {name: {"source": {"kind": "csv", "path": f"data/{name}/*.csv"}, "table": f"public.{name}",
                    "contract": "contracts/orders.yaml", "mode": "merge"} for name in ("orders", "orders_eu")}
    project.config(pipes, **({"database": {"url": project.db_url}} if database else {}))


# --- reading the HTML -------------------------------------------------------------------------------------

def number(text: str) -> int:
    return int(text.replace(",", ""))


def section(html: str, table: str) -> str:
    m = re.search(rf'<section class="card quality-table" id="[^"]+" data-table="{re.escape(table)}">(.*?)</section>',
                  html, re.S)
    assert m, table
    return m.group(1)


# --- the shared project: loads with bad rows, checks run twice ---------------------------------------------

@dataclass
class Site:
    project: ProjectDir
    client: TestClient

    def get(self, path: str) -> str:
        res = self.client.get(path)
        assert res.status_code == 200, res.text
        return res.text

    def query(self, q: str | sql.Composable, params: Any = None) -> list[tuple[Any, ...]]:
        return self.project.query(q, params)


@pytest.fixture(scope="module")
def site(pg_server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    from pgmill.web.app import create_app

    project = ProjectDir(tmp_path_factory.mktemp("webq"), new_database(pg_server))
    write_project(project, database=True)
    project.write("data/orders/1.csv", csv([
        (1, "José García", "F", "10.00", "2024-01-01", "a"),
        (2, "jose  garcia", "O", "20.00", "2024-01-02", None),
        (3, "Ann Lee", "P", "30.00", "2024-01-03", None),
        (4, "Ann Lee", "F", "40.00", "2024-01-04", "b"),
        (5, "Bo", "Z", "1.00", "2024-01-05", None),  # status not accepted
        (6, SCRIPT, "F", "-3", "2024-01-06", SCRIPT),  # negative total
        (7, None, "Q", "2.00", "2024-01-07", None),  # two rules broken
    ]))
    project.write("data/orders_eu/1.csv", csv([
        (1, "Eve", "F", "5.00", "2024-02-01", "x"),
        (2, "Max", "X", "6.00", "2024-02-02", "y"),
        (3, "Kim", "O", "7.00", "2024-02-03", "z"),
    ]))
    ctx = open_project(project.path)
    assert run_one(project.path, "orders").counts.rows_quarantined == 3
    assert run_one(project.path, "orders_eu").counts.rows_quarantined == 1
    first = run_checks(ctx)
    assert {r.rule: r.status for r in first.results if r.table == "public.orders"}["range(total)"] == "pass"
    # the data changes between the checks: a total out of range makes range(total) newly failing
    project.execute("UPDATE orders SET total = 5000 WHERE order_id = 3")
    second = run_checks(ctx)
    assert {r.rule: r.status for r in second.results if r.table == "public.orders"}["range(total)"] == "fail"
    # days in the past (and one row beyond the window), so that the per-day table has several rows
    project.execute("UPDATE pgmill.quarantine SET quarantined_at = now() - interval '3 days'"
                    " WHERE source_location LIKE '%%line 6'")
    project.execute("UPDATE pgmill.quarantine SET quarantined_at = now() - interval '45 days'"
                    " WHERE pipeline = 'orders_eu'")
    project.execute("INSERT INTO pgmill.quarantine (run_id, pipeline, target_table, source_location, record, raw_text,"
                    " violations, quarantined_at) SELECT run_id, pipeline, target_table, source_location || ' (again)',"
                    " record, raw_text, violations, now() - interval '1 day' FROM pgmill.quarantine"
                    " WHERE pipeline = 'orders_eu'")
    client = TestClient(create_app(ctx, token=None), base_url="http://localhost")
    yield Site(project, client)
    client.close()
    drop_database(pg_server, project.db_url)


# --- quarantine ------------------------------------------------------------------------------------------

def test_quarantine_counts_per_table_per_day_equal_the_table(site: Site) -> None:
    html = site.get("/quarantine")
    expected = {(str(d), t): int(n) for d, t, n in site.query(
        "SELECT (quarantined_at AT TIME ZONE 'UTC')::date, target_table, count(*) FROM pgmill.quarantine"
        " WHERE quarantined_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '29 days'"
        " GROUP BY 1, 2")}
    assert len({d for d, _ in expected}) == 3 and {t for _, t in expected} == {"public.orders", "public.orders_eu"}
    rows = Page(html).tables["per-day"]
    head = rows[0].cells
    tables = head[1:-1]
    shown: dict[tuple[str, str], int] = {}
    for r in [r for r in rows if r.attrs]:
        values = [number(c) for c in r.cells[1:]]
        assert values[-1] == sum(values[:-1])  # the day's total
        shown.update({(r.cells[0], t): v for t, v in zip(tables, values[:-1], strict=True) if v})
    assert shown == expected
    foot = rows[-1].cells
    assert number(foot[-1]) == sum(expected.values())
    assert re.search(rf'id="tile-total">{sum(expected.values())}<', html)
    assert number(re.findall(r'id="tile-today">([\d,]+)<', html)[0]) == sum(
        n for (d, _), n in expected.items() if d == str(datetime.now(UTC).date()))
    assert "<svg" in html and "rows quarantined per day" in html


def test_quarantine_top_rules_equal_the_table(site: Site) -> None:
    rows = Page(site.get("/quarantine")).rows("rules")
    shown = {(r.attrs["data-pipeline"], r.attrs["data-column"], r.attrs["data-rule"]): number(r.cells[-1]) for r in rows}
    expected = {(p, c, rule): int(n) for p, c, rule, n in site.query(
        "SELECT q.pipeline, coalesce(v->>'column', ''), v->>'rule', count(*) FROM pgmill.quarantine q,"
        " jsonb_array_elements(q.violations) v WHERE q.quarantined_at > now() - interval '29 days' GROUP BY 1, 2, 3")}
    assert shown == expected
    assert ("orders", "status", "accepted_values") in shown and ("orders", "customer", "not_null") in shown
    counts = [number(r.cells[-1]) for r in rows]
    assert counts == sorted(counts, reverse=True)


def test_quarantine_samples_have_source_line_rules_and_escaped_values(site: Site) -> None:
    html = site.get("/quarantine")
    assert SCRIPT not in html and "<script" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    rows = Page(html).rows("samples")
    ids = [int(r.attrs["data-id"]) for r in rows]
    expected = site.query("SELECT id, source_location, violations FROM pgmill.quarantine ORDER BY id DESC LIMIT 20")
    assert ids == [int(e[0]) for e in expected]
    for r, (_, location, violations) in zip(rows, expected, strict=True):
        assert r.cells[1] == location
        for v in violations:
            assert v["message"] in r.cells[2]
    assert any(re.fullmatch(r"data/orders/1\.csv:line \d+", r.cells[1]) for r in rows)


def test_quarantine_filters_by_pipeline_and_rule(site: Site) -> None:
    html = site.get("/quarantine?pipeline=orders&rule=accepted_values")
    rows = Page(html).rows("samples")
    expected = site.query(
        "SELECT id FROM pgmill.quarantine WHERE pipeline = 'orders' AND violations @> '[{\"rule\": \"accepted_values\"}]'"
        " ORDER BY id DESC")
    assert [int(r.attrs["data-id"]) for r in rows] == [int(e[0]) for e in expected] and len(expected) == 2
    per_day = Page(html).rows("per-day")
    assert sum(number(r.cells[-1]) for r in per_day) == site.query(
        "SELECT count(*) FROM pgmill.quarantine WHERE pipeline = 'orders'")[0][0]
    assert {r.attrs["data-pipeline"] for r in Page(html).rows("rules")} == {"orders"}


def test_quarantine_is_read_only_without_allow_writes(site: Site) -> None:
    before = site.query("SELECT count(*), coalesce(sum(id), 0) FROM pgmill.quarantine")
    html = site.get("/quarantine")
    assert "<form" in html and 'method="post"' not in html and 'name="csrf"' not in html
    res = site.client.post("/quarantine/replay", data={"csrf": "x", "pipeline": "orders"})
    assert res.status_code == 403 and "without --allow-writes" in res.text
    site.get("/quarantine?pipeline=orders_eu")
    site.get("/quality")
    assert site.query("SELECT count(*), coalesce(sum(id), 0) FROM pgmill.quarantine") == before


def test_static_export_has_no_forms(site: Site, tmp_path: Path) -> None:
    from pgmill.web.export import export_dashboard

    export_dashboard(open_project(site.project.path), tmp_path)
    for page in ("quarantine.html", "quality.html"):
        html = (tmp_path / page).read_text(encoding="utf-8")
        assert "<form" not in html and "<script" not in html
    assert 'href="quality.html"' in (tmp_path / "quarantine.html").read_text(encoding="utf-8")


# --- quality ---------------------------------------------------------------------------------------------

def latest(site: Site, table: str) -> dict[str, tuple[Any, ...]]:
    return {r[0]: r for r in site.query(
        "SELECT rule, status, pass_rate, rows_failed, rows_checked, kind, detail, value, sample FROM pgmill.quality_results"
        " WHERE table_name = %s AND run_id = (SELECT max(run_id) FROM pgmill.quality_results WHERE table_name = %s)",
        (table, table))}


def test_quality_rules_and_pass_rates_equal_the_table(site: Site) -> None:
    html = site.get("/quality")
    for table in ("public.orders", "public.orders_eu"):
        want = latest(site, table)
        rows = Page(section(html, table)).rows("rules")
        shown = {r.attrs["data-rule"]: (r.attrs["data-status"], r.cells[2], r.cells[3]) for r in rows}
        assert shown == {rule: (w[1], f"{float(w[2]):.2f}%", f"{w[3]:,} / {w[4]:,}") for rule, w in want.items()}
    # rules failing now, from the table
    failing = site.query(
        "SELECT count(*) FROM pgmill.quality_results q WHERE status IN ('fail', 'error', 'warn') AND run_id ="
        " (SELECT max(run_id) FROM pgmill.quality_results WHERE table_name = q.table_name)")[0][0]
    assert re.search(rf'id="tile-failing">{failing}<', html)
    assert re.search(r'id="tile-tables">2<', html)


def test_quality_newly_failing_first_with_links(site: Site) -> None:
    html = site.get("/quality")
    # from the table: rules whose latest result fails and whose previous result passed
    newly = {(t, r) for t, r in site.query(
        "SELECT table_name, rule FROM (SELECT table_name, rule, status, lag(status) OVER w AS before,"
        " row_number() OVER (PARTITION BY table_name, rule ORDER BY run_id DESC) AS n FROM pgmill.quality_results"
        " WINDOW w AS (PARTITION BY table_name, rule ORDER BY run_id)) x"
        " WHERE n = 1 AND status IN ('fail', 'error', 'warn') AND before = 'pass'")}
    assert ("public.orders", "range(total)") in newly
    rows = Page(html).rows("newly-failing")
    assert {(r.attrs["data-table"], r.attrs["data-rule"]) for r in rows} == newly
    row = next(r for r in rows if r.attrs["data-rule"] == "range(total)")
    rates = [float(x) for (x,) in site.query(
        "SELECT pass_rate FROM pgmill.quality_results WHERE table_name = 'public.orders' AND rule = 'range(total)'"
        " ORDER BY run_id DESC LIMIT 2")]
    assert row.cells[3] == f"{rates[0]:.2f}%" and row.cells[4].startswith(f"{rates[1]:.2f}%")
    assert html.index('id="newly-failing"') < html.index('data-table="public.orders">')
    # the rule links to its row in the table's section, which exists, and the section lists it first
    anchors = re.findall(r'<a href="#([^"]+)">range\(total\)</a>', html)
    assert anchors and f'id="{anchors[0]}"' in html
    first = Page(section(html, "public.orders")).rows("rules")
    assert first[0].attrs["data-rule"] in {r for t, r in newly if t == "public.orders"}
    assert html.count("<polyline") >= 6  # the trend chart and sparklines of two runs


def test_quality_completeness_per_column_equals_the_table(site: Site) -> None:
    html = site.get("/quality")
    for table in ("public.orders", "public.orders_eu"):
        ident = sql.Identifier(*table.split("."))
        n, *_ = site.query(sql.SQL("SELECT count(*) FROM {}").format(ident))[0]
        nulls = dict(site.query(sql.SQL(
            "SELECT c, count(*) FILTER (WHERE v IS NULL) FROM {} t,"
            " LATERAL (VALUES ('order_id', t.order_id::text), ('customer', t.customer), ('status', t.status),"
            " ('total', t.total::text), ('ordered_at', t.ordered_at::text), ('note', t.note)) AS x(c, v) GROUP BY c"
        ).format(ident)))
        rows = Page(section(html, table)).rows("completeness")
        shown = {r.attrs["data-column"]: (r.cells[1], number(r.cells[2]), number(r.cells[3])) for r in rows}
        for column, missing in nulls.items():
            assert shown[column] == (f"{100 * (n - missing) / n:.2f}%", missing, n), (table, column)
    assert 'class="num pct low">' in html  # note is 50% complete in orders


def test_quality_duplicates_with_samples(site: Site) -> None:
    html = site.get("/quality")
    part = section(html, "public.orders")
    want = latest(site, "public.orders")
    for rule in ("unique(customer)", "near_duplicates(customer)"):
        m = re.search(rf'<div class="dup" data-rule="{re.escape(rule)}">(.*?)</div>', part, re.S)
        assert m, rule
        groups = (want[rule][6] or {}).get("groups")
        assert re.search(rf'duplicate groups <span class="groups">{groups}</span>, extra rows <span class="extra">{want[rule][3]}</span>',
                         m.group(1)), rule
        assert groups >= 1
    near = re.search(r'data-rule="near_duplicates\(customer\)">(.*?)</div>', part, re.S)
    assert near and "José García" in near.group(1) and "jose  garcia" in near.group(1)
    uniq = re.search(r'data-rule="unique\(customer\)">(.*?)</div>', part, re.S)
    assert uniq and "Ann Lee" in uniq.group(1)


# --- replay ----------------------------------------------------------------------------------------------

def test_replay_needs_allow_writes_and_the_csrf_token(project: ProjectDir) -> None:
    from pgmill.web.app import create_app

    write_project(project)
    project.write("data/orders/1.csv", csv([(1, "A", "F", "1.00", "2024-01-01", None),
                                          (2, "B", "Z", "2.00", "2024-01-02", SCRIPT)]))
    run_one(project.path, "orders")
    ctx = open_project(project.path)
    state = "SELECT (SELECT count(*) FROM pgmill.quarantine), (SELECT count(*) FROM orders)"
    assert project.query(state) == [(1, 1)]
    with TestClient(create_app(ctx, token=None, allow_writes=True), base_url="http://localhost") as client:
        html = client.get("/quarantine").text
        forms = re.findall(r'<form class="inline" method="post" action="/quarantine/replay">(.*?)</form>', html, re.S)
        assert forms and all('name="csrf"' in f for f in forms)
        token = re.findall(r'name="csrf" value="([^"]+)"', html)[0]
        assert 'name="pipeline" value="orders"' in html
        for data in ({"pipeline": "orders"}, {"pipeline": "orders", "csrf": "wrong"}):
            res = client.post("/quarantine/replay", data=data)
            assert res.status_code == 403 and "CSRF" in res.text
        assert project.query(state) == [(1, 1)]
        # an unknown pipeline: said so, nothing done
        res = client.post("/quarantine/replay", data={"csrf": token, "pipeline": "nope"})
        assert res.status_code == 200 and "no pipeline named &#34;nope&#34;" in res.text
        assert project.query(state) == [(1, 1)]
        assert project.scalar("SELECT count(*) FROM pgmill.runs WHERE mode = 'replay'") == 0
        # replay before the contract changes: the row stays
        res = client.post("/quarantine/replay", data={"csrf": token, "pipeline": "orders"})
        assert "replayed 1 rows of orders" in res.text and "0 loaded, 1 still quarantined" in res.text
        assert project.query(state) == [(1, 1)]
        # widen the contract: the row moves from quarantine to the table
        wider = yaml.safe_load(yaml.safe_dump(CONTRACT))
        wider["columns"]["status"]["accepted_values"].append("Z")
        project.contract("orders", wider)
        res = client.post("/quarantine/replay", data={"csrf": token, "pipeline": "orders"})
        assert res.status_code == 200
        assert re.search(r'class="notice" role="status">replayed 1 rows of orders \(the quarantined rows, run \d+\):'
                         r" 1 loaded, 0 still quarantined<", res.text), res.text
        assert project.query(state) == [(0, 2)]
        assert project.scalar("SELECT note FROM orders WHERE order_id = 2") == SCRIPT
        # the page counts what is left (the per-day counts follow the rows replay deleted)
        assert re.search(r'id="tile-total">0<', client.get("/quarantine").text)


def test_replay_of_chosen_ids(project: ProjectDir) -> None:
    from pgmill.web.app import create_app

    write_project(project)
    project.write("data/orders/1.csv", csv([(1, "A", "Z", "1.00", "2024-01-01", None),
                                          (2, "B", "Z", "2.00", "2024-01-02", None)]))
    run_one(project.path, "orders")
    wider = yaml.safe_load(yaml.safe_dump(CONTRACT))
    wider["columns"]["status"]["accepted_values"].append("Z")
    project.contract("orders", wider)
    first = project.scalar("SELECT min(id) FROM pgmill.quarantine")
    with TestClient(create_app(open_project(project.path), token=None, allow_writes=True),
                    base_url="http://localhost") as client:
        html = client.get("/quarantine").text
        token = re.findall(r'name="csrf" value="([^"]+)"', html)[0]
        assert f'name="ids" value="{first}"' in html
        res = client.post("/quarantine/replay", data={"csrf": token, "pipeline": "orders", "ids": "1; drop"})
        assert "ids must be quarantine row numbers" in res.text
        res = client.post("/quarantine/replay", data={"csrf": token, "pipeline": "orders", "ids": str(first)})
        assert "replayed 1 rows of orders (1 chosen rows" in res.text and "1 loaded" in res.text
    assert project.query("SELECT count(*) FROM pgmill.quarantine") == [(1,)]
    assert project.query("SELECT count(*) FROM orders") == [(1,)]
    assert [r.attrs.get("data-id") for r in Page(html).rows("samples")] == [
        str(first + 1), str(first)]


def test_pages_with_nothing_recorded(project: ProjectDir) -> None:
    from pgmill.web.app import create_app

    write_project(project)
    with TestClient(create_app(open_project(project.path), token=None), base_url="http://localhost") as client:
        q = client.get("/quarantine")
        assert q.status_code == 200 and "No rows quarantined since" in q.text
        assert re.search(r'id="tile-total">0<', q.text)
        page = client.get("/quality")
        assert page.status_code == 200 and "No table has been checked yet" in page.text




def test_quarantine_days_follow_every_change_and_are_backfilled(project: ProjectDir) -> None:
    from pgmill.db.migrations import MIGRATIONS, migrate

    per_day = ("SELECT day, pipeline, target_table, rows FROM pgmill.quarantine_days WHERE rows <> 0 ORDER BY 1, 2, 3")
    truth = ("SELECT (quarantined_at AT TIME ZONE 'UTC')::date, pipeline, target_table, count(*) FROM pgmill.quarantine"
             " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
    insert = ("INSERT INTO pgmill.quarantine (run_id, pipeline, target_table, source_location, violations, quarantined_at)"
              " SELECT 1, 'p' || (i % 2), 't' || (i % 3), 'x', '[]', now() - i * interval '7 hours'"
              " FROM generate_series(1, 40) i")
    with project.connect() as conn:
        migrate(conn)
        conn.execute(insert)
        assert conn.execute(per_day).fetchall() == conn.execute(truth).fetchall() != []
        conn.execute("UPDATE pgmill.quarantine SET quarantined_at = quarantined_at - interval '2 days',"
                     " pipeline = 'moved' WHERE id % 3 = 0")
        conn.execute("UPDATE pgmill.quarantine SET violations = '[{}]' WHERE id % 5 = 0")
        conn.execute("DELETE FROM pgmill.quarantine WHERE id % 4 = 0")
        assert conn.execute(per_day).fetchall() == conn.execute(truth).fetchall()
        conn.execute("TRUNCATE pgmill.quarantine")
        assert conn.execute(per_day).fetchall() == []
        # rows from before the migration are counted when it runs
        conn.execute("DROP TABLE pgmill.quarantine_days CASCADE")
        conn.execute("DROP TRIGGER quarantine_days_insert ON pgmill.quarantine")
        conn.execute(insert)
        version = next(v for v, what, _ in MIGRATIONS if what.startswith("quarantined rows per UTC day"))
        conn.execute("DELETE FROM pgmill.schema_version WHERE version >= %s", (version,))
        migrate(conn)
        assert conn.execute(per_day).fetchall() == conn.execute(truth).fetchall() != []


def test_quality_sums_up_every_table_and_details_a_few(project: ProjectDir) -> None:
    """Many checked tables: each has its summary row (from its rules' last two results), three are drawn in
    detail (failing first), and ?table= draws the one asked for; a rule dropped from the contract is gone."""
    from pgmill.db.migrations import migrate
    from pgmill.web.app import create_app

    write_project(project)
    with connect(project.db_url) as conn:
        migrate(conn)
        for run in (1, 2):  # t3's `r1` passed in run 1 and fails in run 2: newly failing; `old` ran in run 1 only
            conn.execute(
                "INSERT INTO pgmill.quality_results (run_id, table_name, rule, kind, rows_checked, rows_failed,"
                " pass_rate, threshold, severity, status)"
                " SELECT %(run)s, 'public.t' || t, 'r' || r, 'not_null', 100,"
                "  CASE WHEN t = 3 AND r = 1 AND %(run)s = 2 THEN 7 ELSE 0 END,"
                "  CASE WHEN t = 3 AND r = 1 AND %(run)s = 2 THEN 93 ELSE 100 END, 100, 'error',"
                "  CASE WHEN t = 3 AND r = 1 AND %(run)s = 2 THEN 'fail' ELSE 'pass' END"
                " FROM generate_series(1, 6) t, generate_series(1, 4) r", {"run": run})
        conn.execute("INSERT INTO pgmill.quality_results (run_id, table_name, rule, kind, rows_checked, rows_failed,"
                     " pass_rate, threshold, severity, status)"
                     " VALUES (1, 'public.t1', 'old', 'not_null', 100, 50, 50, 100, 'error', 'fail')")
    with TestClient(create_app(open_project(project.path), token=None), base_url="http://localhost") as client:
        html = client.get("/quality").text
        summary = re.findall(r'<tr data-table="(public\.t\d)">(.*?)</tr>', html, re.S)
        assert [t for t, _ in summary] == ["public.t3", "public.t1", "public.t2", "public.t4", "public.t5",
                                           "public.t6"]  # failing first, then by name
        nums = {t: [number(n) for n in re.findall(r'<td class="num">(\d+)</td>', row)] for t, row in summary}
        assert nums["public.t3"] == [1, 4, 2] and nums["public.t1"] == [0, 4, 2]  # failing, rules, run: `old` gone
        detailed = re.findall(r'<section class="card quality-table" id="[^"]+" data-table="([^"]+)"', html)
        assert detailed == ["public.t3", "public.t1", "public.t2"]
        assert 'data-table="public.t3" data-rule="r1"' in html  # newly failing, listed first
        one = client.get("/quality", params={"table": "public.t5"}).text
        assert re.findall(r'<section class="card quality-table" id="[^"]+" data-table="([^"]+)"', one) == ["public.t5"]
        assert "Showing public.t5 in detail" in one
