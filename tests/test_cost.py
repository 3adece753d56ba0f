"""Cost per run: a real `pgmill run` records its drivers; the report prices them, per GB, to date and
projected, against the budget and pgmill's targets, with idle instance-hours on their own line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from pgmill.config.cost import CostConfig
from pgmill.db.migrations import migrate
from pgmill.errors import ConfigError, SourceError
from pgmill.observe.cost import cost_report, month_cost
from pgmill.observe.cost_meter import CostMeter
from pgmill.observe.cost_model import GB, Sample, Span, share, split_storage
from pgmill.observe.cost_text import format_cost_report
from pgmill.orchestrate import run_project
from pgmill.project import open_project
from tests.helpers import ProjectDir, orders_csv

# $0.001 per CPU-second (7.2 $/h over 2 vCPUs) and per database second (3.6 $/h, 1 vCPU)
PRICES: dict[str, Any] = {
    "prices": {"compute_per_hour": 7.2, "database_per_hour": 3.6, "storage_per_gb_month": 0.1,
               "database_storage_per_gb_month": 0.2},
    "capacity": {"compute_vcpus": 2, "database_vcpus": 1, "storage_gb": 0, "database_storage_gb": 0},
    "budget": {"month": 4000, "per_gb": 0.1},
}
NOW = datetime(2025, 6, 16, tzinfo=UTC)  # half of June (30 days) gone
# hours of June to NOW between the storage measurements of _ledger: to 10:10 on the 10th, to the 12th, to NOW
H1, H2, H3 = 9 * 24 + 10 + 1 / 6, 37 + 5 / 6, 96.0


def _orders(n: int) -> str:
    return orders_csv([(i, i % 97, "FOP"[i % 3], f"{i % 500}.25", "2024-01-02", None) for i in range(1, n + 1)])


# ---------------------------------------------------------------- a real run


def test_run_records_its_drivers(project: ProjectDir) -> None:
    project.orders_pipeline()
    project.write("data/orders.csv", _orders(20_000))
    project.write("models/by_customer.sql",
                  "SELECT customer_id, sum(total) AS spent FROM public.orders GROUP BY 1\n")
    ctx = open_project()
    result = run_project(ctx)
    assert result.ok
    load = result.loads[0]
    assert result.transform is not None
    rows = {r["job"]: r for r in _cost_rows(project)}
    assert set(rows) <= {"orders", "transform", "run"} and {"orders", "transform"} <= set(rows)
    orders = rows["orders"]
    assert orders["run_id"] == load.run_id and rows["transform"]["run_id"] == result.transform.run_id
    assert orders["cpu_seconds"] > 0 and orders["db_seconds"] > 0
    assert orders["db_source"] in ("pg_stat_statements", "pg_stat_database")
    assert orders["bytes_processed"] == load.counts.bytes_read > 0
    assert orders["storage_delta_bytes"] > 0  # the table it created and filled
    assert sum(r["bytes_written"] for r in rows.values()) > 0
    assert orders["database_bytes"] > 0 and orders["files_bytes"] >= len(_orders(20_000))
    assert len({r["invocation"] for r in rows.values()}) == 1
    assert orders["compute_usd"] == pytest.approx(orders["cpu_seconds"] * 0.0168 / 3600 / 2)

    with psycopg.connect(project.db_url) as conn:
        report = cost_report(conn, ctx.config.cost)
    jobs = {j.job: j for j in report.jobs}
    assert jobs["orders"].bytes_processed == load.counts.bytes_read
    assert report.per_gb_usd is not None and report.per_gb_usd > 0
    assert {c.status for c in report.checks} <= {"pass", "fail"}  # everything measured
    assert "orders" in format_cost_report(report)


def test_failed_run_is_charged_too(project: ProjectDir) -> None:
    project.orders_pipeline(path="data/missing.csv")
    with pytest.raises(SourceError, match="not found"):
        run_project(open_project())
    run_id = project.scalar("SELECT run_id FROM pgmill.runs WHERE status = 'failed'")
    assert [r["job"] for r in _cost_rows(project) if r["run_id"] == run_id] == ["orders"]


def test_measure_false_records_nothing(project: ProjectDir) -> None:
    project.orders_pipeline()
    project.write("data/orders.csv", _orders(10))
    cfg = (project.path / "pgmill.yaml").read_text() + "cost: {measure: false}\n"
    project.write("pgmill.yaml", cfg)
    assert run_project(open_project()).ok
    assert project.scalar("SELECT count(*) FROM pgmill.run_costs") == 0


def test_a_meter_inside_another_measures_nothing(project: ProjectDir) -> None:
    project.orders_pipeline()
    project.write("data/orders.csv", _orders(10))
    ctx = open_project()
    with CostMeter(ctx, "outer") as outer:
        assert run_project(ctx).ok
    assert outer.error is None and outer.invocation is not None
    assert {r["invocation"] for r in _cost_rows(project)} == {outer.invocation}


def test_another_process_run_takes_its_part_of_the_database(project: ProjectDir) -> None:
    project.orders_pipeline()
    project.write("data/orders.csv", _orders(20_000))
    ctx = open_project()
    with ctx.target.connect() as conn:
        migrate(conn)  # type: ignore[arg-type]
        conn.execute("INSERT INTO pgmill.runs (pipeline, status, started_at, finished_at, host, pid)"
                     " VALUES ('elsewhere', 'succeeded', now() - interval '1 hour', now() + interval '1 hour',"
                     " 'another-host', 1)")
        conn.commit()
    with CostMeter(ctx, "run") as meter:
        assert run_project(ctx).ok
    rows = {r.job: r for r in meter.rows}
    assert set(rows) == {"orders", "run"}  # the other process's run is not ours
    total = meter.db_seconds_by_source()[str(rows["orders"].db_source)]
    assert total is not None and total > 0
    # the other run was in progress all along: it takes half of the load's seconds and all of the rest
    assert sum(r.db_seconds or 0.0 for r in rows.values()) <= 0.5 * total + 1e-9
    assert rows["run"].db_seconds == pytest.approx(0.0, abs=1e-9) and rows["run"].cpu_seconds > 0


# ---------------------------------------------------------------- sharing a command among its runs


def test_parallel_runs_split_the_time_they_share() -> None:
    samples = [Sample(0, {"cpu": 0.0}), Sample(10, {"cpu": 10.0}), Sample(20, {"cpu": 30.0})]
    s = share(samples, [Span(0, 10), Span(5, 20)], ("cpu",))
    # 0-10: both in progress (10 s and 5 s of it); 10-20: the second alone
    assert s.spans[0]["cpu"] == pytest.approx(10 * 10 / 15)
    assert s.spans[1]["cpu"] == pytest.approx(10 * 5 / 15 + 20)
    assert s.own["cpu"] == pytest.approx(0)
    assert s.wall == pytest.approx([10 * 10 / 15, 10 * 5 / 15 + 10]) and s.own_wall == pytest.approx(0)


def test_time_outside_any_run_is_the_commands_own() -> None:
    samples = [Sample(0, {"cpu": 0.0, "db": 0.0}), Sample(10, {"cpu": 10.0, "db": None})]
    s = share(samples, [Span(2, 6)], ("cpu", "db"))
    assert s.spans[0]["cpu"] == pytest.approx(4) and s.own["cpu"] == pytest.approx(6)
    assert s.spans[0]["db"] is None and s.own["db"] is None  # not measured is never zero
    assert s.wall == [pytest.approx(4)] and s.own_wall == pytest.approx(6)


def test_a_counter_that_went_down_is_not_measured() -> None:
    samples = [Sample(0, {"db": 5.0}), Sample(1, {"db": 1.0})]  # a stats reset, or a crash
    assert share(samples, [Span(0, 1)], ("db",)).spans[0]["db"] is None


def test_storage_growth_stays_with_its_table() -> None:
    runs, own = split_storage(1000, [600, 100], [3.0, 1.0], 1.0)
    assert runs == [600 + 180, 100 + 60] and own == 60 and sum(runs) + own == 1000  # type: ignore[arg-type]
    assert split_storage(None, [5], [1.0], 0.0) == ([None], None)


# ---------------------------------------------------------------- the report, by hand


def _ledger(db_url: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(db_url, autocommit=True)
    migrate(conn)  # type: ignore[arg-type]
    # May: the first measurement (so June is counted from its first day)
    _insert(conn, 1, 100, "orders", datetime(2025, 5, 20, 10, tzinfo=UTC), 1000.0, 500.0, GB, GB, 0)
    # June
    _insert(conn, 2, 101, "orders", datetime(2025, 6, 10, 10, tzinfo=UTC), 100.0, 50.0, 2 * GB, 3 * GB, GB)
    _insert(conn, 2, None, "run", datetime(2025, 6, 10, 10, tzinfo=UTC), 20.0, 10.0, 0, 3 * GB, GB)
    _insert(conn, 3, 102, "events", datetime(2025, 6, 11, 23, 50, tzinfo=UTC), 40.0, None, GB, 5 * GB, GB)
    return conn


def _insert(conn: psycopg.Connection[Any], invocation: int, run_id: int | None, job: str, start: datetime,
            cpu: float, db: float | None, processed: int, db_bytes: int | None, files: int) -> None:
    end = start + timedelta(minutes=10)
    conn.execute(
        "INSERT INTO pgmill.run_costs (invocation, run_id, job, started_at, finished_at, cpu_seconds, db_seconds,"
        " db_source, bytes_written, storage_delta_bytes, bytes_processed, database_bytes, files_bytes, compute_usd,"
        " database_usd, recorded_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 0, 0, %s, %s, %s, 0, 0, %s)",
        (invocation, run_id, job, start, end, cpu, db, "pg_stat_statements" if db is not None else None, processed,
         db_bytes, files, end))


def test_report_prices_the_drivers(db_url: str) -> None:
    cfg = CostConfig.model_validate(PRICES)
    with _ledger(db_url) as conn:
        report = cost_report(conn, cfg, now=NOW)
    assert report.month == "2025-06" and report.period_start == datetime(2025, 6, 1, tzinfo=UTC)
    assert report.elapsed_share == pytest.approx(0.5) and not report.complete
    jobs = {j.job: j for j in report.jobs}
    assert set(jobs) == {"orders", "run", "events"}  # May's run is May's
    assert jobs["orders"].compute_usd == pytest.approx(0.1) and jobs["orders"].database_usd == pytest.approx(0.05)
    assert jobs["orders"].per_gb_usd == pytest.approx(0.15 / 2)
    assert jobs["run"].total_usd == pytest.approx(0.03)
    assert jobs["events"].database_usd is None and jobs["events"].total_usd == pytest.approx(0.04)
    assert report.runs_usd == pytest.approx(0.22)
    assert report.bytes_processed == 3 * GB and report.per_gb_usd == pytest.approx(0.22 / 3)
    assert any("not measured for 1 run" in n for n in report.notes)

    res = {r.name: r for r in report.resources}
    # instances: 360 hours to date, 720 in the month; the runs' part is what they used, the rest idle
    assert res["compute"].billed_usd == pytest.approx(360 * 7.2)
    assert res["compute"].used_usd == pytest.approx(0.16)
    assert res["compute"].idle_usd == pytest.approx(360 * 7.2 - 0.16)
    assert res["compute"].busy == pytest.approx(160 / (360 * 3600 * 2))
    assert res["compute"].projected_usd == pytest.approx(720 * 7.2)
    assert res["compute"].projected_used_usd == pytest.approx(0.32)  # to date / the elapsed half
    assert res["database"].billed_usd == pytest.approx(360 * 3.6) and res["database"].used_usd == pytest.approx(0.06)
    # storage: each size held from its measurement to the next; GB-hours over the month's 720 hours
    # (measured at 10:10 on the 10th, then at 00:00 on the 12th; May's 1 GB holds from June 1st)
    db_gbh = 1 * H1 + 3 * H2 + 5 * H3
    assert res["database storage"].billed_usd == pytest.approx(db_gbh / 720 * 0.2)
    assert res["database storage"].projected_usd == pytest.approx((db_gbh + 5 * 360) / 720 * 0.2)
    files_gbh = 1 * (H2 + H3)
    assert res["storage (pgmill's files)"].billed_usd == pytest.approx(files_gbh / 720 * 0.1)
    mtd = 360 * 7.2 + 360 * 3.6 + db_gbh / 720 * 0.2 + files_gbh / 720 * 0.1
    assert report.mtd_usd == pytest.approx(mtd, rel=1e-6)
    projected = 720 * 7.2 + 720 * 3.6 + (db_gbh + 5 * 360) / 720 * 0.2 + (files_gbh + 360) / 720 * 0.1
    assert report.projected_usd == pytest.approx(projected, rel=1e-6)
    assert report.all_in_per_gb_usd == pytest.approx(mtd / 3, rel=1e-6)

    status = {(c.source, c.name): c.status for c in report.checks}
    assert status[("budget", "month to date")] == "pass"  # $3,888 of $4,000
    assert status[("budget", "month projected")] == "fail"  # $7,777
    assert status[("budget", "per GB processed")] == "pass"  # $0.073 of $0.10
    assert status[("target", "cost per GB processed")] == "fail"  # over $0.01
    assert status[("target", "total a month")] == "fail"
    with _ledger_conn(db_url) as conn:
        assert month_cost(conn, cfg) == pytest.approx(
            (cost_report(conn, cfg).mtd_usd, cost_report(conn, cfg).projected_usd))
    text = format_cost_report(report)
    assert "idle" in text and "fail" in text and "events" in text
    json.dumps(report.as_dict())


def test_allocated_storage_is_billed_and_its_unused_part_idle(db_url: str) -> None:
    cfg = CostConfig.model_validate({**PRICES, "capacity": {**PRICES["capacity"], "database_storage_gb": 4}})
    with _ledger(db_url) as conn:
        res = {r.name: r for r in cost_report(conn, cfg, now=NOW).resources}["database storage"]
    billed_gbh = 4 * (H1 + H2) + 5 * H3  # at least 4 GB billed
    used_gbh = 1 * H1 + 3 * H2 + 5 * H3
    assert res.billed_usd == pytest.approx(billed_gbh / 720 * 0.2)
    assert res.idle_usd == pytest.approx((billed_gbh - used_gbh) / 720 * 0.2)


def test_the_month_starts_at_the_last_size_measured_before_it(db_url: str) -> None:
    cfg = CostConfig.model_validate(PRICES)
    with _ledger(db_url) as conn:  # a later May command measured pgmill's files (4 GB) but not the database
        _insert(conn, 9, None, "run", datetime(2025, 5, 25, 10, tzinfo=UTC), 1.0, None, 0, None, 4 * GB)
        res = {r.name: r for r in cost_report(conn, cfg, now=NOW).resources}
    db_gbh = 1 * H1 + 3 * H2 + 5 * H3  # the database's level on June 1st is still May 20th's 1 GB
    assert res["database storage"].billed_usd == pytest.approx(db_gbh / 720 * 0.2)
    files_gbh = 4 * H1 + 1 * (H2 + H3)
    assert res["storage (pgmill's files)"].billed_usd == pytest.approx(files_gbh / 720 * 0.1)


def test_default_prices_meet_the_targets(db_url: str) -> None:
    with _ledger(db_url) as conn:
        report = cost_report(conn, CostConfig(), now=NOW)
    # the reference deployment: t4g.small + db.t4g.micro all month, 20 GB of RDS and 8 GB of disk
    fixed = 720 * (0.0168 + 0.016) + 20 * 0.115 + 8 * 0.08
    assert report.projected_usd == pytest.approx(fixed, rel=1e-3)
    assert {c.name: c.status for c in report.checks if c.source == "target"} == {
        "cost per GB processed": "pass", "total a month": "pass",
        "processing a month (compute + database)": "pass", "storage a month": "pass"}


def test_a_past_month_is_complete(db_url: str) -> None:
    cfg = CostConfig.model_validate(PRICES)
    with _ledger(db_url) as conn:
        report = cost_report(conn, cfg, "2025-05", now=NOW)
    assert report.complete and report.period_start == datetime(2025, 5, 20, 10, tzinfo=UTC)
    hours = (datetime(2025, 6, 1, tzinfo=UTC) - datetime(2025, 5, 20, 10, tzinfo=UTC)).total_seconds() / 3600
    res = {r.name: r for r in report.resources}
    assert res["compute"].billed_usd == pytest.approx(hours * 7.2)
    assert report.projected_usd == pytest.approx(report.mtd_usd)
    assert [j.job for j in report.jobs] == ["orders"] and report.jobs[0].compute_usd == pytest.approx(1.0)
    assert ("budget", "month projected") not in {(c.source, c.name) for c in report.checks}
    with _ledger_conn(db_url) as conn, pytest.raises(ConfigError, match="YYYY-MM"):
        cost_report(conn, cfg, "June")


def test_no_runs_reports_zero_and_not_measured(project: ProjectDir) -> None:
    project.config({})
    with psycopg.connect(project.db_url) as conn:
        report = cost_report(conn, CostConfig())  # pgmill's schema not even there yet
        assert month_cost(conn, CostConfig()) == (0.0, 0.0)
        migrate(conn)  # type: ignore[arg-type]
        again = cost_report(conn, CostConfig())
    for r in (report, again):
        assert not r.measured and r.mtd_usd == 0 and r.projected_usd == 0 and r.jobs == []
        assert r.per_gb_usd is None and r.all_in_per_gb_usd is None
        assert {c.status for c in r.checks} == {"not measured"}  # never "pass" on no data
    assert "not measured" in format_cost_report(report) and "pass" not in format_cost_report(report)
    assert json.loads(json.dumps(report.as_dict()))["checks"][0]["status"] == "not measured"


# ---------------------------------------------------------------- helpers


def _ledger_conn(db_url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(db_url, autocommit=True)


def _cost_rows(project: ProjectDir) -> list[dict[str, Any]]:
    with psycopg.connect(project.db_url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("SELECT * FROM pgmill.run_costs ORDER BY cost_id").fetchall()
