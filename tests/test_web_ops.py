"""The operations pages of the dashboard: /queries, /indexes, /cost, /alerts. One project with real data (a
`pgmill run` that loads, meters its cost and re-tunes with measurement; indexes made unused and duplicate by
hand; a failed run whose alert is delivered to one channel and fails on another), and one empty project. Every
figure is read back from the HTML and compared with pgmill's tables, queried here independently."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from psycopg.types.json import Jsonb
from starlette.testclient import TestClient

from pgmill.config.cost import CostConfig
from pgmill.dashboard.queries import top_statements
from pgmill.db.embedded import EmbeddedServer
from pgmill.figures import ms, size, usd
from pgmill.observe.alerts import evaluate_alerts
from pgmill.observe.cost_model import compute_usd, database_usd
from pgmill.observe.deliver import DeliveryPolicy
from pgmill.orchestrate import run_project
from pgmill.project import ProjectContext, open_project
from pgmill.tune.health import index_health
from pgmill.web.app import create_app
from tests.helpers import ORDERS_CONTRACT, closed_port, connect, new_database, orders_csv
from tests.html_support import Page
from tests.test_alerts import Receiver

POLICY = DeliveryPolicy(attempts=2, timeout_s=1.0, backoff_initial_s=0.01, backoff_max_s=0.02)
SCRIPT = "<script>alert('x')</script>"
QUERY = ("-- name: orders_by_customer\n-- target_ms: 50\n-- params: [[3], [17], [41], [60]]\n"
         "SELECT order_id, total FROM public.orders WHERE customer_id = $1\n")


# ---------------------------------------------------------------- the projects


def _project(root: Path, url: str, doc: dict[str, Any]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pgmill.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def client(ctx: ProjectContext) -> TestClient:
    return TestClient(create_app(ctx, token=None), base_url="http://localhost")


def get(ctx: ProjectContext, path: str) -> str:
    with client(ctx) as c:
        r = c.get(path)
    assert r.status_code == 200, r.text
    return r.text


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def full(pg_server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory,
         receiver: Receiver) -> Iterator[ProjectContext]:
    """A loaded, metered, tuned project with an unused and a duplicate index and a delivered (and a failed)
    alert about a run whose error holds markup."""
    url = new_database(pg_server)
    root = tmp_path_factory.mktemp("ops")
    _project(root, url, {
        "pipelines": {"orders": {"source": {"kind": "csv", "path": "data/orders*.csv"}, "table": "public.orders",
                                 "contract": "contracts/orders.yaml", "mode": "merge"}},
        "tune": {"executions": 5, "observed": 0},
        # a dollar per CPU-second and per database second: a short run's figures show on the page
        "cost": {"prices": {"compute_per_hour": 7200, "database_per_hour": 3600},
                 "capacity": {"compute_vcpus": 2, "database_vcpus": 1}},
        "alerts": {"channels": {"good": receiver.url("good"), "refused": f"json://127.0.0.1:{closed_port()}/x"},
                   "rules": [{"kind": "run_failed"}], "resolve_after": "1m"},
    })
    (root / "contracts").mkdir()
    (root / "contracts" / "orders.yaml").write_text(yaml.safe_dump(ORDERS_CONTRACT, sort_keys=False))
    (root / "data").mkdir()
    (root / "data" / "orders.csv").write_text(orders_csv(
        [(i, i % 97, "FOP"[i % 3], f"{i % 500}.25", "2024-01-02", None) for i in range(1, 20_001)]))
    (root / "queries").mkdir()
    (root / "queries" / "orders_by_customer.sql").write_text(QUERY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PGMILL_DATABASE_URL", url)
        ctx = open_project(root)
        result = run_project(ctx)
        assert result.ok and result.tuning is not None and result.tuning.applied is not None, result.as_dict()
        with connect(url) as conn:
            _later_regressed_run(conn, result.tuning.run_id)
            conn.execute("CREATE INDEX orders_status_ix ON public.orders (status)")
            conn.execute("CREATE INDEX orders_status_copy ON public.orders (status)")
            conn.execute("INSERT INTO pgmill.runs (pipeline, status, started_at, finished_at, error)"
                         " VALUES ('orders', 'failed', clock_timestamp(), clock_timestamp(), %s)", (f"bad row {SCRIPT}",))
        report = evaluate_alerts(ctx, datetime.now(UTC), policy=POLICY)
        assert report.fired and report.failed and report.sent
        yield ctx


def _later_regressed_run(conn: Any, tuned: int) -> None:
    """A later tuning run in the shape the tuner writes (its report copied from the real one): nothing to
    create, and the declared query measured slower than before and over its target."""
    report = conn.execute("SELECT report FROM pgmill.tuning_runs WHERE run_id = %s", (tuned,)).fetchone()[0]
    after = report["applied"]["after"]["orders_by_customer"]
    slow = {**after, "p50_ms": 70.0, "p95_ms": 95.5, "mean_ms": 72.0, "max_ms": 99.0}
    report.update(recommendations=[], applied={"before": {"orders_by_customer": after},
                                               "after": {"orders_by_customer": slow},
                                               "outcomes": [], "invalid_dropped": [], "slower": ["orders_by_customer"]})
    (run_id,) = conn.execute("INSERT INTO pgmill.tuning_runs (mode, backend, status, finished_at, report)"
                             " VALUES ('apply', 'real', 'succeeded', now(), %s) RETURNING run_id",
                             (Jsonb(report),)).fetchone()
    report["run_id"] = run_id
    conn.execute("UPDATE pgmill.tuning_runs SET report = %s WHERE run_id = %s", (Jsonb(report), run_id))


@pytest.fixture(scope="module")
def empty(pg_server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectContext]:
    url = new_database(pg_server)
    root = tmp_path_factory.mktemp("empty")
    _project(root, url, {"pipelines": {}})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PGMILL_DATABASE_URL", url)
        yield open_project(root)


def db(ctx: ProjectContext) -> Any:
    return ctx.target.connect(autocommit=True)


# ---------------------------------------------------------------- the empty project


@pytest.mark.parametrize(("path", "nothing"), [
    ("/queries", "no-tuning"), ("/indexes", "no-findings"), ("/cost", "no-cost"), ("/alerts", "no-events")])
def test_every_page_renders_on_an_empty_project(empty: ProjectContext, path: str, nothing: str) -> None:
    page = Page(get(empty, path))
    assert page.by_id[nothing].startswith(("Nothing", "None")), page.by_id[nothing]
    if path == "/queries":
        assert page.by_id["no-statements"] == "pg_stat_statements is not installed in this database."



# ---------------------------------------------------------------- /queries


def test_queries_page_equals_the_tuning_ledger(full: ProjectContext) -> None:
    html = get(full, "/queries")
    page = Page(html)
    with db(full) as conn:
        runs = conn.execute(
            "SELECT run_id, report #> '{applied,before,orders_by_customer}', report #> '{applied,after,orders_by_customer}'"
            " FROM pgmill.tuning_runs WHERE status = 'succeeded' AND report ? 'applied' ORDER BY run_id").fetchall()
        actions = conn.execute("SELECT run_id, action, schema_name || '.' || index_name, size_bytes, reason"
                               " FROM pgmill.index_actions ORDER BY action_id").fetchall()
    assert len(runs) == 2
    (first, b1, a1), (second, b2, a2) = runs
    # each run's measurements, before and after, as the ledger has them, newest run first
    sections = html.split('<section class="card tuning-run"')[1:]
    assert [int(s.split('data-run="')[1].split('"')[0]) for s in sections] == [second, first]
    for run_id, before, after in ((first, b1, a1), (second, b2, a2)):
        [row] = page.rows(f"changes-{run_id}")
        assert row.by_class["p95-before"] == ms(before["p95_ms"])
        assert row.by_class["p95-after"] == ms(after["p95_ms"])
    # the declared query: its latest measurement (the later run's after), its target, over it, regressed
    [q] = page.rows("queries")
    assert q.attrs["data-query"] == "orders_by_customer"
    assert q.by_class["p95"] == ms(a2["p95_ms"]) == "95.5 ms"
    assert q.by_class["p50"] == ms(a2["p50_ms"])
    assert q.by_class["target"] == ms(50)
    assert "over target" in q.cells[1]
    assert page.by_id["tile-over"] == "1" and page.by_id["tile-runs"] == "2"
    # marks: p95 up by more than 10% and 5 ms on the measurement before it; over the 50 ms target
    previous = None
    for run_id, before, after in ((first, b1, a1), (second, b2, a2)):
        want = []
        for phase, m in (("before", before), ("after", after)):
            if previous is not None and m["p95_ms"] - previous > 5 and m["p95_ms"] > previous * 1.1:
                want.append(f"{phase}: regressed")
            if m["p95_ms"] > 50:
                want.append(f"{phase}: over target")
            previous = m["p95_ms"]
        [row] = page.rows(f"changes-{run_id}")
        assert row.by_class["marks"] == " ".join(want)
    assert page.rows(f"changes-{second}")[0].by_class["marks"] == "after: regressed after: over target"
    # the index actions of the runs that measured, each with its size and reason
    shown = [(r.attrs["data-action"], r.attrs["data-index"], r.by_class["size"], r.by_class["reason"])
             for r in page.rows(f"actions-{first}")]
    assert f"actions-{second}" not in page.tables  # the later run changed no index
    assert actions and all(run == first for run, *_ in actions)
    assert shown == [(a, ix, size(sz), reason or "") for _, a, ix, sz, reason in actions]
    # the chart: one point per measurement and the target as a dashed line
    chart = html.split('<figure class="chart">')[1].split("</figure>")[0]
    assert chart.count("<circle") == 4 and 'class="target"' in chart and "target 50.0 ms" in chart


def test_top_statements_are_pg_stat_statements(full: ProjectContext) -> None:
    page = Page(get(full, "/queries"))
    rows = page.rows("statements")
    with db(full) as conn:
        every = {int(qid): (int(calls), float(total), str(text)) for qid, calls, total, text in conn.execute(
            "SELECT queryid, calls, total_exec_time, query FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())")}
        # the application's statements: pgmill's bookkeeping and utility statements are left out
        utility = re.compile(r"\s*(create|alter|drop|analyze|vacuum|cluster|reindex|set|reset|begin|start|commit|end"
                             r"|rollback|savepoint|release|prepare|lock|grant|revoke|comment|discard|show|listen"
                             r"|notify|deallocate)\b", re.I)
        stats = {q: v for q, v in every.items() if "pgmill." not in v[2] and not utility.match(v[2])}
        assert len(top_statements(conn).rows) == len(rows) == min(20, len(stats))
        shown = {int(r.attrs["data-queryid"]) for r in rows}
        assert shown <= set(stats) and any("pgmill." in v[2] for v in every.values())
    [copy] = [r for r in rows if r.cells[4].startswith("COPY")]  # a statement that ran once, and no more
    calls, total, _ = stats[int(copy.attrs["data-queryid"])]
    assert (copy.by_class["calls"], copy.by_class["total"]) == (str(calls), ms(total)) == ("1", copy.cells[0])
    for r in rows:  # the others may have run again since: never fewer calls than shown
        assert int(r.by_class["calls"].replace(",", "")) <= stats[int(r.attrs["data-queryid"])][0]


# ---------------------------------------------------------------- /indexes


def test_indexes_page_shows_the_unused_and_duplicate_ones(full: ProjectContext) -> None:
    page = Page(get(full, "/indexes"))
    with db(full) as conn:
        sizes = dict(conn.execute(
            "SELECT schemaname || '.' || indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes"
            " WHERE schemaname = 'public'").fetchall())
        scans = dict(conn.execute("SELECT schemaname || '.' || indexrelname, idx_scan FROM pg_stat_user_indexes"
                                  " WHERE schemaname = 'public'").fetchall())
        conn.execute("SET default_transaction_read_only = on")  # index_health only reads
        health = index_health(conn)
    findings = {(r.attrs["data-kind"], r.attrs["data-index"], r.by_class["size"])
                for r in page.rows("findings")}
    assert findings == {(f.kind, f.index, size(f.size_bytes)) for f in health.findings}
    kinds = {(k, ix) for k, ix, _ in findings}
    assert ("duplicate", "public.orders_status_ix") in kinds or ("duplicate", "public.orders_status_copy") in kinds
    assert {("unused", "public.orders_status_ix"), ("unused", "public.orders_status_copy")} <= kinds
    for _, ix, shown in findings:
        assert shown == size(sizes[ix])
    listed = {r.attrs["data-index"]: (r.by_class["size"], r.by_class["scans"]) for r in page.rows("indexes")}
    assert listed == {ix: (size(sizes[ix]), str(scans[ix])) for ix in sizes}
    assert page.by_id["tile-duplicate"] == "1" and page.by_id["tile-unused"] == str(
        sum(1 for f in health.findings if f.kind == "unused"))
    # every unused, duplicate, redundant or invalid index counted once: the two planted ones at least (on a busy
    # machine the statistics of another index may not be flushed yet, so it is listed as unused too)
    flagged = {f.index for f in health.findings if f.kind != "bloat"}
    assert {"public.orders_status_ix", "public.orders_status_copy"} <= flagged
    assert page.by_id["reclaimable"] == size(sum(sizes[ix] for ix in flagged))
    assert "statistics" in page.by_id["stats-age"]


# ---------------------------------------------------------------- /cost


def _cost_rows(conn: Any, month: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT job, to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), cpu_seconds, db_seconds, bytes_processed"
        " FROM pgmill.run_costs WHERE to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM') = %s", (month,)).fetchall()


def test_cost_page_equals_the_run_costs(full: ProjectContext) -> None:
    cfg: CostConfig = full.config.cost
    with db(full) as conn:
        month = conn.execute("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM')").fetchone()[0]
        from pgmill.observe.cost import cost_report

        earlier = cost_report(conn, cfg)
        html = get(full, "/cost")
        later = cost_report(conn, cfg)
        rows = _cost_rows(conn, month)
    page = Page(html)
    assert rows and {j for j, *_ in rows} >= {"orders"}

    def priced(cpu: float, dbs: float | None) -> float:
        return compute_usd(cpu, cfg) + (database_usd(dbs, cfg) or 0.0)

    jobs: dict[str, list[float]] = {}
    days: dict[tuple[str, str], float] = {}
    for job, day, cpu, dbs, _ in rows:
        jobs.setdefault(job, []).append(priced(cpu, dbs))
        days[(day, job)] = days.get((day, job), 0.0) + priced(cpu, dbs)
    shown = {r.attrs["data-job"]: (r.by_class["runs"], r.by_class["total"]) for r in page.rows("jobs")}
    assert shown == {j: (str(len(v)), usd(sum(v))) for j, v in jobs.items()}
    assert any(float(t.strip("$")) > 0.01 for _, t in shown.values())  # the prices make them show
    per_day = {}
    for r in page.rows("days"):
        cells = r.cells[1:1 + len(jobs)]
        for job, cell in zip([j.job for j in earlier.jobs], cells, strict=True):
            if cell:
                per_day[(r.attrs["data-day"], job)] = cell
    assert per_day == {k: usd(v) for k, v in days.items()}
    assert page.by_id["tile-runs"] == usd(sum(sum(v) for v in jobs.values()))
    gb = sum(p for *_, p in rows) / 2**30
    assert page.by_id["tile-per-gb"].startswith(usd(sum(sum(v) for v in jobs.values()) / gb))
    mtd = float(page.by_id["tile-mtd"].strip("$").replace(",", ""))
    assert earlier.mtd_usd - 0.005 <= mtd <= later.mtd_usd + 0.005  # instance-hours grow with the clock
    checks = {r.attrs["data-check"]: r.cells[4] for r in page.rows("checks")}
    assert checks == {f"{c.source}: {c.name}": c.status for c in later.checks}
    assert checks["budget: month projected"] == "fail"  # $7,200 an hour is over any budget
    assert "<form" in html and f'value="{month}"' in html


def test_cost_page_other_months(full: ProjectContext) -> None:
    with db(full) as conn:
        now = conn.execute("SELECT now()").fetchone()[0]
    previous = (now.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    page = Page(get(full, f"/cost?month={previous}"))
    assert page.by_id["month"] == f"{previous} (the whole month)"
    assert page.by_id["no-cost"].startswith("Nothing measured yet")
    bad = Page(get(full, "/cost?month=June"))
    assert bad.by_id["problem"].startswith("month 'June': write it as YYYY-MM")
    assert bad.by_id["month"].startswith(now.strftime("%Y-%m"))


# ---------------------------------------------------------------- /alerts


def test_alerts_page_shows_every_delivery_attempt(full: ProjectContext) -> None:
    html = get(full, "/alerts?since=1d")
    page = Page(html)
    with db(full) as conn:
        firing = conn.execute("SELECT rule, subject FROM pgmill.alert_state WHERE status = 'firing'").fetchall()
        events = conn.execute("SELECT event_id, kind FROM pgmill.alert_events").fetchall()
        attempts = conn.execute("SELECT event_id, delivery_id, channel, attempt, status FROM pgmill.alert_deliveries"
                                " ORDER BY delivery_id").fetchall()
    assert {(r.attrs["data-rule"], r.attrs["data-subject"]) for r in page.rows("firing")} == set(firing)
    assert {int(r.attrs["data-event"]): r.cells[1] for r in page.rows("events")} == dict(events)
    shown = []
    for row in html.split('<tr data-event="')[1:]:
        event = int(row.split('"')[0])
        for li in row.split('<li class="delivery"')[1:]:
            delivery = int(li.split('data-delivery="')[1].split('"')[0])
            channel = li.split('data-channel="')[1].split('"')[0]
            status = li.split('class="badge ')[1].split('"')[0]
            attempt = int(li.split("attempt ")[1].split(",")[0].split(" ")[0])
            shown.append((event, delivery, channel, attempt, status))
    assert sorted(shown, key=lambda s: s[1]) == [tuple(a) for a in attempts]
    assert {s for *_, s in shown} == {"sent", "failed"}
    assert page.by_id["tile-sent"] == str(sum(1 for a in attempts if a[4] == "sent"))
    assert page.by_id["tile-failed"] == str(sum(1 for a in attempts if a[4] == "failed"))
    # the run's error holds markup: it is text on the page
    assert SCRIPT not in html and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert 'aria-current="true" class="current">last 1d' in html


def test_alerts_window_is_checked(full: ProjectContext) -> None:
    page = Page(get(full, "/alerts?since=1y"))
    assert page.by_id["problem"] == "since='1y': choose one of 1d, 7d, 30d; showing 7d."
    assert int(page.by_id["tile-events"]) >= 2


# ---------------------------------------------------------------- the static export


def test_static_export_has_no_filters(full: ProjectContext, tmp_path: Path) -> None:
    from pgmill.web.export import export_dashboard

    export_dashboard(full, tmp_path)
    for name in ("queries", "indexes", "cost", "alerts"):
        html = (tmp_path / f"{name}.html").read_text()
        assert "<form" not in html and "?since=" not in html and "?month=" not in html, name
        assert 'href="/' not in html, name
    assert "&lt;script&gt;" in (tmp_path / "alerts.html").read_text()
