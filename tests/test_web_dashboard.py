"""The dashboard's frame and overview over a project with real runs: figures from the HTML equal the ledger;
the static export; who may see the pages (token, Basic, Origin, Host); GET changes nothing; data is escaped."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from pgmill.project import ProjectContext
from pgmill.web.app import create_app
from pgmill.web.export import export_dashboard
from pgmill.web.pages import PAGES
from tests.dashboard_support import HOSTILE, build_rich_project
from tests.helpers import ProjectDir, new_database
from tests.html_support import Page
from tests.test_alerts import Receiver

TOKEN = "a-long-enough-secret-token-123"


@pytest.fixture(scope="module")
def rich(tmp_path_factory: pytest.TempPathFactory, pg_server: Any) -> Iterator[tuple[ProjectContext, str]]:
    url = new_database(pg_server)
    mp = pytest.MonkeyPatch()
    mp.setenv("PGMILL_DATABASE_URL", url)
    receiver = Receiver()
    try:
        ctx = build_rich_project(ProjectDir(tmp_path_factory.mktemp("rich"), url), receiver)
        yield ctx, url
    finally:
        receiver.close()
        mp.undo()


def client(ctx: ProjectContext, **kw: Any) -> TestClient:
    return TestClient(create_app(ctx, token=kw.pop("token", None), **kw), base_url="http://localhost")


def test_the_project_has_what_the_pages_show(rich: tuple[ProjectContext, str]) -> None:
    _, url = rich
    with psycopg.connect(url) as c:
        by_status = dict(c.execute("SELECT status, count(*) FROM pgmill.runs GROUP BY 1").fetchall())
        assert by_status.get("failed", 0) >= 1 and by_status["succeeded"] >= 2
        assert c.execute("SELECT count(*) FROM pgmill.quarantine").fetchone() == (4,)
        assert c.execute("SELECT sum(rows_duplicate) FROM pgmill.runs").fetchone() == (25,)
        assert c.execute("SELECT count(*) FROM pgmill.quality_results WHERE status = 'fail'").fetchone()[0] >= 1
        assert c.execute("SELECT count(*) FROM pgmill.tuning_runs WHERE status = 'succeeded'").fetchone()[0] >= 1
        assert c.execute("SELECT count(*) FROM pgmill.alert_deliveries WHERE status = 'failed'").fetchone()[0] >= 1
        assert c.execute("SELECT count(*) FROM pgmill.alert_deliveries WHERE status = 'sent'").fetchone()[0] >= 1
        assert c.execute("SELECT count(*) FROM pgmill.run_costs").fetchone()[0] >= 1


def test_every_page_answers(rich: tuple[ProjectContext, str]) -> None:
    ctx, url = rich
    with client(ctx) as http:
        for page in PAGES:
            r = http.get("/" if page.name == "overview" else f"/{page.name}")
            assert r.status_code == 200, (page.name, r.text[:500])
            assert f"<title>{page.title} · " in r.text
            assert "default-src 'none'" in r.headers["content-security-policy"]
            assert r.headers["cache-control"] == "no-store"
        with psycopg.connect(url) as c:
            run_id = c.execute("SELECT max(run_id) FROM pgmill.runs").fetchone()[0]
        assert http.get(f"/runs/{run_id}").status_code == 200
        missing = http.get(f"/runs/{run_id + 1000}")
        assert missing.status_code == 404 and f"run {run_id + 1000}" in missing.text


def test_overview_figures_equal_the_ledger(rich: tuple[ProjectContext, str]) -> None:
    ctx, url = rich
    with client(ctx) as http:
        html = http.get("/").text
    with psycopg.connect(url) as c:
        last = dict(c.execute("SELECT DISTINCT ON (pipeline) pipeline, run_id FROM pgmill.runs"
                              " ORDER BY pipeline, started_at DESC").fetchall())
        n, ok = c.execute("SELECT count(*), count(*) FILTER (WHERE status = 'succeeded') FROM pgmill.runs"
                          " WHERE status <> 'running'").fetchone()
        firing = c.execute("SELECT count(*) FROM pgmill.alert_state WHERE status = 'firing'").fetchone()[0]
    rows = {r.attrs["data-name"]: r.cells for r in Page(html).rows("health")}
    broken, orders = rows["broken"], rows["orders"]
    assert broken[0].startswith("red") and f"#{last['broken']} failed" in broken[3]
    assert orders[0].startswith("green") and f"#{last['orders']} succeeded" in orders[3]
    assert re.search(r'id="tile-red">(\d+)<', html).group(1) == "1"  # type: ignore[union-attr]
    assert re.search(r'id="tile-alerts">(\d+)<', html).group(1) == str(firing)  # type: ignore[union-attr]
    assert f"({ok} of {n})" in html
    assert f"{100 * ok / n:.2f}%" in html
    # the red row comes first: what needs a look
    assert html.index('data-name="broken"') < html.index('data-name="orders"')


def test_nothing_changes_on_get_and_data_stays_text(rich: tuple[ProjectContext, str]) -> None:
    ctx, url = rich

    def snapshot() -> list[Any]:
        with psycopg.connect(url) as c:
            return c.execute(
                "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables"
                " WHERE schemaname IN ('pgmill', 'public') ORDER BY 1").fetchall()

    before = snapshot()
    with client(ctx) as http:
        for page in PAGES:
            html = http.get("/" if page.name == "overview" else f"/{page.name}").text
            assert HOSTILE not in html, page.name  # never markup, wherever it shows
        assert http.post("/quarantine/replay", data={"pipeline": "orders"}).status_code == 403  # read-only server
    import time

    time.sleep(0.6)  # the statistics collector flushes at most every 500 ms (PG 15+: at transaction end)
    assert snapshot() == before


def test_a_token_guards_every_page_beyond_localhost(rich: tuple[ProjectContext, str]) -> None:
    ctx, _ = rich
    app = create_app(ctx, token=TOKEN, host="0.0.0.0")
    with TestClient(app, base_url="http://pgmill.example:8080") as http:
        for page in PAGES:
            path = "/" if page.name == "overview" else f"/{page.name}"
            r = http.get(path)
            assert r.status_code == 401, page.name
            assert r.headers.get_list("www-authenticate") == [
                'Bearer realm="pgmill"', 'Basic realm="pgmill", charset="UTF-8"']  # a browser prompts: Basic
            assert http.get(path, headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code == 401
        basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
        assert http.get("/", headers={"Authorization": f"Basic {basic}"}).status_code == 200
        wrong = base64.b64encode(b"anyone:not-the-token").decode()
        assert http.get("/", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
        assert http.get("/runs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_cross_origin_and_foreign_hosts_are_refused(rich: tuple[ProjectContext, str]) -> None:
    ctx, _ = rich
    with client(ctx) as http:
        assert http.get("/", headers={"Origin": "https://evil.example"}).status_code == 403
        assert http.get("/", headers={"Origin": "http://localhost:8080"}).status_code == 200
    with TestClient(create_app(ctx, token=None), base_url="http://evil.example") as http:
        assert http.get("/").status_code == 421  # DNS rebinding: a loopback server answers localhost only


def test_static_export_opens_from_disk(rich: tuple[ProjectContext, str], tmp_path: Path) -> None:
    ctx, url = rich
    report = export_dashboard(ctx, tmp_path / "site")
    names = {p.name for p in report.files}
    assert {"index.html", *(f"{p.name}.html" for p in PAGES if p.name != "overview")} <= names
    with psycopg.connect(url) as c:
        last_runs = {r for (r,) in c.execute("SELECT DISTINCT ON (pipeline) run_id FROM pgmill.runs"
                                             " ORDER BY pipeline, started_at DESC").fetchall()}
    assert {f"run-{r}.html" for r in last_runs} <= names
    for f in report.files:  # every link is a file of the export: nothing needs a server
        html = f.read_text()
        for href in re.findall(r'<a [^>]*href="([^"#]+)', html):
            assert not href.startswith(("/", "http")), (f.name, href)
            assert (tmp_path / "site" / href).exists(), (f.name, href)
        assert "<form" not in html or 'method="get"' not in html  # filters are the server's
    assert report.as_dict()["files"] == len(report.files) and report.bytes > 0
