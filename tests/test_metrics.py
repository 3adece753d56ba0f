"""Metrics read from pgmill's tables: the exposition text, parsed back, equals the ledger the test wrote;
success rates equal a hand count."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql
from psycopg.types.json import Jsonb
from starlette.testclient import TestClient
from typer.testing import CliRunner

from pgmill.cli.root import app
from pgmill.db.migrations import MIGRATIONS, migrate
from pgmill.observe.metrics import render_metrics
from pgmill.observe.success import format_success, success_rate
from pgmill.project import open_project
from pgmill.web import create_app
from tests.helpers import ProjectDir, orders_csv, run_one

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
ALLOWED_LABELS = {"pipeline", "status", "outcome", "job", "state", "table", "rule", "query", "channel", "component",
                  "partition", "le"}

# (pipeline, status, seconds it took (None: still running), rows read, inserted, updated, unchanged,
#  quarantined, duplicate, bytes read, retries)
RUNS: list[tuple[Any, ...]] = [
    ("orders", "succeeded", 0.5, 10, 6, 2, 1, 1, 0, 1000, 0),
    ("orders", "succeeded", 10, 20, 10, 5, 3, 1, 1, 2000, 1),
    ("orders", "succeeded", 100, 30, 30, 0, 0, 0, 0, 3000, 0),
    ("orders", "failed", 2, 5, 0, 0, 0, 5, 0, 500, 2),
    ("orders", "abandoned", 30, 7, 7, 0, 0, 0, 0, 700, 0),
    ("orders", "running", None, 4, 4, 0, 0, 0, 0, 400, 0),
    ("transform", "succeeded", 3700, 0, 0, 0, 0, 0, 0, 0, 1),
]


def connect(db_url: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(db_url, autocommit=True)
    migrate(conn)
    return conn


def insert_runs(conn: psycopg.Connection[Any], runs: list[tuple[Any, ...]], ago: str = "1 hour") -> list[int]:
    """Runs that finished `ago` (or are running), each having taken its seconds."""
    ids = []
    for pipeline, status, secs, *counts in runs:
        row = conn.execute(
            "INSERT INTO pgmill.runs (pipeline, status, started_at, finished_at, rows_read, rows_inserted,"
            " rows_updated, rows_unchanged, rows_quarantined, rows_duplicate, bytes_read, retries)"
            " VALUES (%s, %s, now() - %s::interval - make_interval(secs => coalesce(%s, 5)),"
            "  CASE WHEN %s::float8 IS NULL THEN NULL ELSE now() - %s::interval END,"
            "  %s, %s, %s, %s, %s, %s, %s, %s) RETURNING run_id",
            (pipeline, status, ago, secs, secs, ago, *counts)).fetchone()
        assert row is not None
        ids.append(int(row[0]))
    return ids


def insert_slot(conn: psycopg.Connection[Any], job: str, due: str, state: str, *, started_late: str = "0 s",
                attempts: int = 1) -> None:
    """A slot due at now() + `due` (e.g. '-10 min'), started `started_late` after it was due (if it ran)."""
    ran = state in ("running", "succeeded", "failed", "timed_out")
    conn.execute(
        "INSERT INTO pgmill.expected_runs (job, scheduled_for, state, started_at, attempts)"
        " VALUES (%s, now() + %s::interval, %s,"
        "  CASE WHEN %s THEN now() + %s::interval + %s::interval END, %s)",
        (job, due, state, ran, due, started_late, attempts if ran else 0))


def build_ledger(conn: psycopg.Connection[Any]) -> list[int]:
    run_ids = insert_runs(conn, RUNS)
    insert_slot(conn, "pipeline:orders", "-10 min", "pending")  # late
    insert_slot(conn, "pipeline:orders", "+10 min", "pending")  # planned ahead: not late
    insert_slot(conn, "pipeline:orders", "-70 min", "succeeded")
    insert_slot(conn, "pipeline:orders", "-130 min", "missed")
    insert_slot(conn, "pipeline:orders", "-2 days", "succeeded")  # before the window of the state gauge
    insert_slot(conn, "models", "-2 min", "pending")  # late
    insert_slot(conn, "models", "-1 min", "running")
    # quality: two check runs of orders (the second is the latest), one of customers
    for run_id, table, rule, rate, thr in ((1, "public.orders", "not_null", 90, 99),
                                           (1, "public.orders", "unique", 100, 100),
                                           (2, "public.orders", "not_null", 99.5, 99),
                                           (3, "public.customers", "not_null", 97.25, 95)):
        conn.execute(
            "INSERT INTO pgmill.quality_results (run_id, table_name, rule, kind, rows_checked, rows_failed,"
            " pass_rate, threshold, severity, status) VALUES (%s, %s, %s, 'not_null', 100, 0, %s, %s, 'error', 'pass')",
            (run_id, table, rule, rate, thr))
    measured = {"mode": "apply", "queries": [
        {"name": "orders_by_customer", "source": "declared", "target_ms": 100, "sql": "SELECT 1"},
        {"name": "pgss_8f3a", "source": "observed", "target_ms": 100, "sql": "SELECT 2"}],
        "applied": {"before": {"orders_by_customer": {"p95_ms": 240.0}, "pgss_8f3a": {"p95_ms": 9.0}},
                    "after": {"orders_by_customer": {"p95_ms": 12.5}, "pgss_8f3a": {"p95_ms": 8.0}}}}
    conn.execute("INSERT INTO pgmill.tuning_runs (mode, status, finished_at, report)"
                 " VALUES ('apply', 'succeeded', now(), %s)", (Jsonb(measured),))
    conn.execute("INSERT INTO pgmill.tuning_runs (mode, status, finished_at, report)"  # newer, measured nothing
                 " VALUES ('recommend', 'succeeded', now(), %s)", (Jsonb({"mode": "recommend", "queries": []}),))
    conn.execute("INSERT INTO pgmill.service_instances (instance, host, pid, last_tick_at, tick_seconds, ticks,"
                 " ticks_skipped, db_reconnects) VALUES ('h:1:a', 'h', 1, now() - interval '2 s', 5, 120, 3, 1),"
                 " ('h:2:b', 'h', 2, now() - interval '1 day', 5, 80, 0, 0)")
    conn.execute("UPDATE pgmill.service_instances SET stopped_at = last_tick_at WHERE instance = 'h:2:b'")
    return run_ids


def scrape(conn: psycopg.Connection[Any], tables: list[str] | None = None) -> tuple[Samples, dict[str, str]]:
    text = render_metrics(conn, tables or []).decode()
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_metrics_equal_the_ledger(db_url: str) -> None:
    with connect(db_url) as conn:
        run_ids = build_ledger(conn)
        samples, types = scrape(conn)

    # runs by pipeline and status (ended runs: a counter never goes down); the running one is a gauge
    assert types["pgmill_runs"] == "counter"
    assert value(samples, "pgmill_runs_total", pipeline="orders", status="succeeded") == 3
    assert value(samples, "pgmill_runs_total", pipeline="orders", status="failed") == 1
    assert value(samples, "pgmill_runs_total", pipeline="orders", status="abandoned") == 1
    assert ("pgmill_runs_total", frozenset({("pipeline", "orders"), ("status", "running")})) not in samples
    assert value(samples, "pgmill_runs_running", pipeline="orders") == 1
    assert value(samples, "pgmill_runs_total", pipeline="transform", status="succeeded") == 1

    # rows by outcome, bytes and retries: every run of the pipeline, the running one's checkpoints included
    orders = [r for r in RUNS if r[0] == "orders"]
    assert value(samples, "pgmill_rows_read_total", pipeline="orders") == sum(r[3] for r in orders)
    for i, outcome in enumerate(("inserted", "updated", "unchanged", "quarantined", "duplicate")):
        assert value(samples, "pgmill_rows_total", pipeline="orders", outcome=outcome) == sum(r[4 + i] for r in orders)
    assert value(samples, "pgmill_read_bytes_total", pipeline="orders") == 7600
    assert value(samples, "pgmill_run_retries_total", pipeline="orders") == 3
    assert value(samples, "pgmill_run_retries_total", pipeline="transform") == 1

    # durations of the runs that ended (0.5, 10, 100, 2 and 30 s), in cumulative buckets computed in SQL
    assert types["pgmill_run_duration_seconds"] == "histogram"
    expected = {"1.0": 1, "5.0": 2, "15.0": 3, "30.0": 4, "60.0": 4, "120.0": 5, "300.0": 5, "7200.0": 5, "+Inf": 5}
    for le, n in expected.items():
        assert value(samples, "pgmill_run_duration_seconds_bucket", pipeline="orders", le=le) == n, le
    assert value(samples, "pgmill_run_duration_seconds_count", pipeline="orders") == 5
    assert value(samples, "pgmill_run_duration_seconds_sum", pipeline="orders") == pytest.approx(142.5, abs=0.01)
    assert value(samples, "pgmill_run_duration_seconds_bucket", pipeline="transform", le="3600.0") == 0
    assert value(samples, "pgmill_run_duration_seconds_bucket", pipeline="transform", le="7200.0") == 1
    assert value(samples, "pgmill_last_success_timestamp_seconds", pipeline="orders") > 0

    # slots due in the last 24 hours by job and state (not those planned ahead); late: pending past due
    assert value(samples, "pgmill_expected_runs", job="pipeline:orders", state="pending") == 1
    assert value(samples, "pgmill_expected_runs", job="pipeline:orders", state="succeeded") == 1
    assert value(samples, "pgmill_expected_runs", job="pipeline:orders", state="missed") == 1
    assert value(samples, "pgmill_expected_runs", job="models", state="running") == 1
    assert value(samples, "pgmill_expected_runs_late", job="pipeline:orders") == 1
    assert value(samples, "pgmill_expected_runs_late", job="models") == 1
    assert 590 < value(samples, "pgmill_expected_runs_late_seconds", job="pipeline:orders") < 700

    # quality: the latest pass rate of each rule, as a ratio
    assert value(samples, "pgmill_quality_pass_ratio", table="public.orders", rule="not_null") == pytest.approx(0.995)
    assert value(samples, "pgmill_quality_pass_ratio", table="public.orders", rule="unique") == 1.0
    assert value(samples, "pgmill_quality_pass_ratio", table="public.customers", rule="not_null") == pytest.approx(
        0.9725)
    assert value(samples, "pgmill_quality_threshold_ratio", table="public.orders", rule="not_null") == 0.99

    # declared queries: the latest measured p95 against the target; observed queries are not labelled
    assert value(samples, "pgmill_query_p95_seconds", query="orders_by_customer") == pytest.approx(0.0125)
    assert value(samples, "pgmill_query_p95_before_tuning_seconds", query="orders_by_customer") == pytest.approx(0.24)
    assert value(samples, "pgmill_query_target_seconds", query="orders_by_customer") == pytest.approx(0.1)
    assert not any(dict(labels).get("query") == "pgss_8f3a" for _, labels in samples)

    # the service: counters over every instance, the age of the newest tick, instances ticking
    assert value(samples, "pgmill_service_ticks_total") == 200
    assert value(samples, "pgmill_service_ticks_skipped_total") == 3
    assert value(samples, "pgmill_service_db_reconnects_total") == 1
    assert value(samples, "pgmill_service_instances_ticking") == 1
    assert 1 <= value(samples, "pgmill_service_last_tick_age_seconds") < 60

    # no alert delivered and no cost measured yet: no samples
    assert not any(name.startswith(("pgmill_alert", "pgmill_cost")) for name, _ in samples)

    # bounded labels: never a run id, a query id or SQL text
    for _, labels in samples:
        for k, v in labels:
            assert k in ALLOWED_LABELS, k
            assert v not in {str(i) for i in run_ids} and "SELECT" not in v


TRUTH = (  # what pgmill.run_totals must hold: the aggregate of the ended runs of pgmill.runs
    "SELECT pipeline, status, count(*), sum(rows_read), sum(rows_inserted), sum(retries),"
    " count(finished_at), array_agg(run_id ORDER BY run_id) FROM pgmill.runs WHERE status <> 'running'"
    " GROUP BY pipeline, status ORDER BY 1, 2")
TOTALS = ("SELECT pipeline, status, runs, rows_read, rows_inserted, retries, timed FROM pgmill.run_totals"
          " WHERE runs <> 0 ORDER BY 1, 2")


def test_run_totals_follow_the_ledger(db_url: str) -> None:
    """The triggers of migration 8 keep pgmill.run_totals equal to the ended runs, through the ledger's own
    writes; a checkpoint of a running run leaves them alone; a deleted run stays counted."""
    from pgmill.observe import ledger

    with connect(db_url) as conn:
        a = ledger.start_run(conn, "orders", "merge", "public.orders")
        b = ledger.start_run(conn, "orders", "merge", "public.orders")
        with conn.transaction():
            ledger.add_counts(conn, a, ledger.Counts(rows_read=10, rows_inserted=9, rows_quarantined=1))
            ledger.add_counts(conn, b, ledger.Counts(rows_read=4, rows_inserted=4))
        assert conn.execute(TOTALS).fetchall() == []
        samples, _ = scrape(conn)
        assert value(samples, "pgmill_runs_running", pipeline="orders") == 2
        assert value(samples, "pgmill_rows_read_total", pipeline="orders") == 14  # checkpoints count at once
        ledger.add_retry(conn, a)
        ledger.finish_run(conn, a, "succeeded", extra_retries=2)
        assert ledger.abandon_stale(conn, "orders") == 1  # b
        c = ledger.start_run(conn, "transform", "transform", "m1")
        ledger.finish_run(conn, c, "failed", "boom")
        conn.execute("UPDATE pgmill.runs SET rows_read = rows_read + 5, rows_inserted = rows_inserted + 5"
                     " WHERE run_id = %s", (a,))  # an ended run corrected: taken back, added again
        truth = [(p, s, n, read, ins, retries, timed) for p, s, n, read, ins, retries, timed, _ in
                 conn.execute(TRUTH).fetchall()]
        assert conn.execute(TOTALS).fetchall() == truth
        samples, _ = scrape(conn)
        assert value(samples, "pgmill_rows_read_total", pipeline="orders") == 19
        assert value(samples, "pgmill_run_retries_total", pipeline="orders") == 3
        assert value(samples, "pgmill_runs_running", pipeline="orders") == 0
        conn.execute("DELETE FROM pgmill.runs WHERE run_id = %s", (a,))  # retention: counters never go down
        assert scrape(conn)[0] == samples


def test_migration_8_counts_the_runs_before_it(db_url: str) -> None:
    everything = ("SELECT pipeline, status, runs, rows_read, rows_inserted, rows_updated, rows_unchanged,"
                  " rows_quarantined, rows_duplicate, bytes_read, retries, round(seconds::numeric, 3), timed, le,"
                  " last_finished_at FROM pgmill.run_totals ORDER BY 1, 2")
    with connect(db_url) as conn:
        insert_runs(conn, RUNS)
        by_trigger = conn.execute(everything).fetchall()
        conn.execute("DROP TABLE pgmill.run_totals")  # as if the runs came before migration 8
        conn.execute("DELETE FROM pgmill.schema_version WHERE version >= 8")  # the later ones are idempotent
        assert migrate(conn) == MIGRATIONS[-1][0]
        truth = [(p, s, n, read, ins, retries, timed) for p, s, n, read, ins, retries, timed, _ in
                 conn.execute(TRUTH).fetchall()]
        assert conn.execute(TOTALS).fetchall() == truth and len(truth) == 4
        assert conn.execute(everything).fetchall() == by_trigger  # the one-pass rebuild agrees with the triggers


def test_index_utilization(db_url: str) -> None:
    with connect(db_url) as other:  # scans on another connection, its statistics flushed before the scrape
        other.execute("CREATE TABLE big AS SELECT g AS id FROM generate_series(1, 20000) g")
        other.execute("CREATE INDEX big_id ON big (id)")
        other.execute("ANALYZE big")
        other.execute("SET enable_seqscan = off")
        for i in range(3):
            other.execute("SELECT id FROM big WHERE id = %s", (i,)).fetchall()
        other.execute("SELECT pg_stat_force_next_flush()")
    with connect(db_url) as conn:
        run = conn.execute("INSERT INTO pgmill.tuning_runs (mode) VALUES ('apply') RETURNING run_id").fetchone()
        assert run is not None
        conn.execute("INSERT INTO pgmill.index_actions (run_id, action, schema_name, index_name, table_name)"
                     " VALUES (%s, 'keep', 'public', 'big_id', 'public.big'),"
                     "        (%s, 'keep', 'public', 'gone_since', 'public.big')", (run[0], run[0]))
        stats = conn.execute("SELECT idx_scan, seq_scan FROM pg_stat_user_tables WHERE relname = 'big'").fetchone()
        samples, _ = scrape(conn)
    assert stats is not None
    idx, seq = stats
    assert idx >= 3
    assert value(samples, "pgmill_index_scan_ratio") == pytest.approx(idx / (idx + seq))
    assert value(samples, "pgmill_tuned_indexes") == 1  # the index that no longer exists is not counted
    assert value(samples, "pgmill_tuned_indexes_scanned") == 1


def test_alert_and_cost_metrics(db_url: str) -> None:
    """Alert deliveries by channel and status, a channel whose latest delivery failed, and the dollars of
    pgmill.run_costs by job and component."""
    with connect(db_url) as conn:
        insert_runs(conn, RUNS)
        samples, _ = scrape(conn)
        assert not any(name.startswith(("pgmill_alert", "pgmill_cost")) for name, _ in samples)
        [(event,)] = conn.execute(
            "INSERT INTO pgmill.alert_events (kind, title, message) VALUES ('test', 't', 'm') RETURNING event_id"
        ).fetchall()
        conn.execute(
            "INSERT INTO pgmill.alert_deliveries (event_id, channel, attempt, status, final, latency_ms, at)"
            " SELECT %s, c, 1, s, true, 5, now() - make_interval(hours => h) FROM (VALUES"
            " ('slack', 'sent', 2), ('slack', 'failed', 1), ('email', 'failed', 2), ('email', 'sent', 1),"
            " ('email', 'sent', 0)) v(c, s, h)", (event,))
        conn.execute(
            "INSERT INTO pgmill.run_costs (invocation, run_id, job, started_at, finished_at, cpu_seconds,"
            " compute_usd, database_usd) VALUES (1, 1, 'orders', now(), now(), 2, 0.25, 0.125),"
            " (1, 2, 'orders', now(), now(), 2, 0.25, NULL), (2, NULL, 'run', now(), now(), 1, 0.5, 0.0625)")
        samples, types = scrape(conn)
    assert value(samples, "pgmill_alert_deliveries_total", channel="email", status="sent") == 2
    assert value(samples, "pgmill_alert_deliveries_total", channel="slack", status="failed") == 1
    assert value(samples, "pgmill_alert_channel_failing", channel="slack") == 1
    assert value(samples, "pgmill_alert_channel_failing", channel="email") == 0
    assert types["pgmill_cost_dollars"] == "counter"
    assert value(samples, "pgmill_cost_dollars_total", job="orders", component="compute") == 0.5
    assert value(samples, "pgmill_cost_dollars_total", job="orders", component="database") == 0.125
    assert value(samples, "pgmill_cost_dollars_total", job="run", component="database") == 0.0625


def test_a_database_without_pgmill_tables(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        samples, _ = scrape(conn)
    assert all(name == "pgmill_index_scan_ratio" for name, _ in samples)


def test_storage_metrics_equal_the_catalog_and_the_archives(db_url: str) -> None:
    with connect(db_url) as conn:
        conn.execute("CREATE TABLE public.plain (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO public.plain SELECT g, repeat('x', 100) FROM generate_series(1, 2000) g")
        conn.execute("CREATE TABLE public.events (d date NOT NULL, v text) PARTITION BY RANGE (d)")
        for month in ("01", "02"):
            conn.execute(sql.SQL("CREATE TABLE public.{} PARTITION OF public.events FOR VALUES FROM ({})"
                                 " TO ({}::date + interval '1 month')").format(
                sql.Identifier(f"events_p2031{month}"), sql.Literal(f"2031-{month}-01"), sql.Literal(f"2031-{month}-01")))
        conn.execute("INSERT INTO public.events SELECT DATE '2031-01-01' + g % 50, 'e' FROM generate_series(1, 3000) g")
        conn.execute("ANALYZE public.plain, public.events")
        conn.execute("INSERT INTO pgmill.archives (table_name, partition_name, bounds, rows, bytes, sha256, path)"
                     " VALUES ('public.events', 'events_p203011', 'x', 10, 1234, 'aa', 'a/1.parquet'),"
                     " ('public.events', 'events_p203012', 'x', 20, 766, 'bb', 'a/2.parquet')")
        size = dict(conn.execute("SELECT relname, pg_total_relation_size(oid) FROM pg_class"
                                 " WHERE relname IN ('plain', 'events_p203101', 'events_p203102')").fetchall())
        samples, types = scrape(conn, ["public.plain", "events", "public.missing"])
        assert types["pgmill_table_bytes"] == "gauge"
        assert value(samples, "pgmill_table_bytes", table="public.plain") == size["plain"]
        assert value(samples, "pgmill_table_rows_estimate", table="public.plain") == 2000
        assert value(samples, "pgmill_table_bytes", table="public.events") == (
            size["events_p203101"] + size["events_p203102"])
        assert value(samples, "pgmill_table_rows_estimate", table="public.events") == 3000
        assert value(samples, "pgmill_table_partitions", table="public.events") == 2
        assert value(samples, "pgmill_partition_bytes", table="public.events", partition="events_p203102") == (
            size["events_p203102"])
        assert value(samples, "pgmill_archived_partitions", table="public.events") == 2
        assert value(samples, "pgmill_archived_bytes", table="public.events") == 2000
        # a table not created yet has no samples; a plain one no partition count
        assert not any(dict(labels).get("table") == "public.missing" for _, labels in samples)
        assert ("pgmill_table_partitions", frozenset({("table", "public.plain")})) not in samples
        # without the project's tables (a bare database): no storage families
        assert not any(name.startswith(("pgmill_table_", "pgmill_partition_", "pgmill_archived_"))
                       for name, _ in scrape(conn)[0])


def test_render_inside_an_open_transaction(db_url: str) -> None:
    """`pgmill metrics` may hand over a connection already in a transaction: the scrape nests in it."""
    with connect(db_url) as conn:
        insert_runs(conn, RUNS[:1])
    with psycopg.connect(db_url) as conn:
        conn.execute("SELECT 1")
        samples, _ = scrape(conn)
        assert value(samples, "pgmill_runs_total", pipeline="orders", status="succeeded") == 1


def test_success_rate_is_a_hand_count(db_url: str) -> None:
    with connect(db_url) as conn:
        insert_runs(conn, [
            ("orders", "succeeded", 5, 0, 0, 0, 0, 0, 0, 0, 0),
            ("orders", "succeeded", 5, 0, 0, 0, 0, 0, 0, 0, 2),  # saved by retries
            ("orders", "failed", 5, 0, 0, 0, 0, 0, 0, 0, 3),
            ("orders", "abandoned", 5, 0, 0, 0, 0, 0, 0, 0, 0),
            ("orders", "running", None, 0, 0, 0, 0, 0, 0, 0, 0),  # not ended: not counted
            ("events", "succeeded", 5, 0, 0, 0, 0, 0, 0, 0, 1),
        ], ago="2 days")
        insert_runs(conn, [("orders", "failed", 5, 0, 0, 0, 0, 0, 0, 0, 0)], ago="40 days")  # outside 30d
        insert_slot(conn, "pipeline:orders", "-3 days", "succeeded")
        insert_slot(conn, "pipeline:orders", "-2 days", "succeeded", attempts=2)  # claimed again: saved
        insert_slot(conn, "pipeline:orders", "-1 day", "failed", started_late="5 min")  # late
        insert_slot(conn, "pipeline:orders", "-20 hours", "missed")
        insert_slot(conn, "pipeline:orders", "-10 min", "pending")  # late, still waiting
        insert_slot(conn, "pipeline:orders", "+1 hour", "pending")  # not due: outside the window
        insert_slot(conn, "models", "-5 days", "timed_out", started_late="30 s")
        insert_slot(conn, "models", "-4 days", "skipped")
        insert_slot(conn, "models", "-40 days", "missed")  # outside
        report = success_rate(conn, timedelta(days=30))

    pipelines = {r.name: r for r in report.pipelines}
    assert (pipelines["orders"].runs, pipelines["orders"].successes, pipelines["orders"].saved_by_retry) == (4, 2, 1)
    assert pipelines["orders"].success_rate == 0.5
    assert (pipelines["events"].runs, pipelines["events"].successes, pipelines["events"].saved_by_retry) == (1, 1, 1)
    jobs = {r.name: r for r in report.jobs}
    o = jobs["pipeline:orders"]
    assert (o.runs, o.successes, o.saved_by_retry, o.late, o.missed) == (3, 2, 1, 2, 1)
    m = jobs["models"]
    assert (m.runs, m.successes, m.saved_by_retry, m.late, m.missed) == (1, 0, 0, 0, 0)
    assert m.success_rate == 0.0
    overall = report.overall
    assert (overall.runs, overall.successes, overall.saved_by_retry, overall.late, overall.missed) == (5, 3, 2, 2, 1)
    assert overall.success_rate == pytest.approx(0.6)

    d = report.as_dict()
    assert d["since_seconds"] == 30 * 86400
    assert d["overall"]["failures"] == 2 and d["pipelines"][0]["name"] == "events"
    text = format_success(report)
    assert text.startswith("success over the last 30d")
    assert any(line.split()[:2] == ["pipeline", "orders"] and "50.00%" in line for line in text.splitlines())
    assert any(line.startswith("overall") and "60.00%" in line for line in text.splitlines())


def test_success_rate_of_an_empty_ledger(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        report = success_rate(conn, timedelta(hours=1))
    assert report.pipelines == () and report.jobs == ()
    assert report.overall.success_rate is None
    assert "overall" in format_success(report)


def test_serve_and_the_command_report_the_projects_tables(project: ProjectDir) -> None:
    """`pgmill serve`'s /metrics and `pgmill metrics` are handed the tables the project's pipelines load."""
    project.orders_pipeline()
    project.write("data/orders.csv", orders_csv([(1, 2, "F", "1.00", "2024-01-01", None)]))
    run_one()
    size = project.scalar("SELECT pg_total_relation_size('public.orders')")
    line = f'pgmill_table_bytes{{table="public.orders"}} {float(size)}'
    res = CliRunner().invoke(app, ["metrics"])
    assert res.exit_code == 0 and line in res.stdout.splitlines()
    with TestClient(create_app(open_project(project.path), token=None), base_url="http://127.0.0.1") as client:
        assert line in client.get("/metrics").text.splitlines()


def test_cdc_counts_and_slot_health(db_url: str) -> None:
    """rows_deleted and rows_superseded (migration 15) as two more outcomes, ended runs and running ones; each
    CDC pipeline's slot as its loader last stored it in pgmill.state; a value the loader did not write reads
    as missing, never failing the scrape."""
    with connect(db_url) as conn:
        [ended, running] = insert_runs(conn, [("orders", "succeeded", 5, 10, 4, 1, 0, 0, 0, 100, 0),
                                              ("orders", "running", None, 6, 1, 0, 0, 0, 0, 60, 0)])
        conn.execute("UPDATE pgmill.runs SET rows_deleted = 3, rows_superseded = 2 WHERE run_id = %s", (ended,))
        conn.execute("UPDATE pgmill.runs SET rows_deleted = 4, rows_superseded = 1 WHERE run_id = %s", (running,))
        checked = "2026-12-03T10:00:00.5+00:00"
        for pipeline, health in (
                ("orders", {"slot": "pgmill_orders", "exists": True, "active": True, "wal_status": "reserved",
                            "restart_lsn": 100, "confirmed_lsn": 300, "retained_bytes": 123456, "lag_bytes": 789,
                            "checked_at": checked}),
                ("lines", {"slot": "pgmill_lines", "exists": True, "active": False, "wal_status": "lost",
                           "restart_lsn": None, "confirmed_lsn": 300, "retained_bytes": None, "lag_bytes": 5,
                           "checked_at": checked}),
                ("gone", {"slot": "pgmill_gone", "exists": False, "checked_at": checked}),
                ("odd", {"slot": "x", "exists": True, "active": "yes", "retained_bytes": "12", "checked_at": "noon"})):
            conn.execute("INSERT INTO pgmill.state (pipeline, state) VALUES (%s, %s)",
                         (pipeline, Jsonb({"cdc": {"lsn": 300}, "cdc_slot": health})))
        conn.execute("INSERT INTO pgmill.state (pipeline, state) VALUES ('files', '{\"cursor\": 1}')")
        samples, types = scrape(conn)

        assert value(samples, "pgmill_rows_total", pipeline="orders", outcome="deleted") == 7
        assert value(samples, "pgmill_rows_total", pipeline="orders", outcome="superseded") == 3
        outcomes = sum(value(samples, "pgmill_rows_total", pipeline="orders", outcome=o)
                       for o in ("inserted", "updated", "unchanged", "quarantined", "duplicate", "deleted", "superseded"))
        assert outcomes == value(samples, "pgmill_rows_read_total", pipeline="orders") == 16  # the identity

        assert types["pgmill_cdc_slot_retained_wal_bytes"] == "gauge"
        assert value(samples, "pgmill_cdc_slot_retained_wal_bytes", pipeline="orders") == 123456
        assert value(samples, "pgmill_cdc_slot_lag_bytes", pipeline="orders") == 789
        assert value(samples, "pgmill_cdc_slot_active", pipeline="orders") == 1
        assert value(samples, "pgmill_cdc_slot_lost", pipeline="orders") == 0
        assert value(samples, "pgmill_cdc_slot_checked_timestamp_seconds", pipeline="orders") == 1796292000.5
        assert value(samples, "pgmill_cdc_slot_lost", pipeline="lines") == 1  # wal_status lost
        assert value(samples, "pgmill_cdc_slot_active", pipeline="lines") == 0
        assert value(samples, "pgmill_cdc_slot_lag_bytes", pipeline="lines") == 5
        assert ("pgmill_cdc_slot_retained_wal_bytes", frozenset({("pipeline", "lines")})) not in samples
        assert value(samples, "pgmill_cdc_slot_lost", pipeline="gone") == 1  # no longer exists
        assert value(samples, "pgmill_cdc_slot_active", pipeline="odd") == 0
        assert not any(dict(labels).get("pipeline") in ("odd", "files") for name, labels in samples
                       if name in ("pgmill_cdc_slot_retained_wal_bytes", "pgmill_cdc_slot_checked_timestamp_seconds"))
        assert not any(dict(labels).get("pipeline") == "files" for name, labels in samples
                       if name.startswith("pgmill_cdc_"))
        for _, labels in samples:
            assert {k for k, _ in labels} <= ALLOWED_LABELS

        # a database whose run_totals predates migration 15 (a scrape racing the migration): zeros, no error
        conn.execute("ALTER TABLE pgmill.run_totals DROP COLUMN rows_deleted, DROP COLUMN rows_superseded")
        older, _ = scrape(conn)
        assert value(older, "pgmill_rows_total", pipeline="orders", outcome="deleted") == 0
        assert value(older, "pgmill_rows_total", pipeline="orders", outcome="inserted") == 5
        assert value(older, "pgmill_rows_read_total", pipeline="orders") == 16


def _percentile(xs: list[float], q: float) -> float:
    """PostgreSQL's percentile_cont: linear between the two nearest ranks."""
    xs = sorted(xs)
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def test_arrival_latency_counts_each_batch(db_url: str) -> None:
    """A step with `arrival_samples_s` counts each batch's figure, one without counts once; the maximum is
    the steps' own (a sample list may have left the worst batch out); the partial index finds them."""
    from pgmill.observe.latency import arrival_latency

    cdc = [0.012, 0.02, 0.015, 0.4, 0.011, 0.013]
    with connect(db_url) as conn:
        [stream, files, old] = insert_runs(conn, [("orders", "running", None, *[0] * 8),
                                                  ("files", "succeeded", 5, *[0] * 8),
                                                  ("orders", "succeeded", 5, *[0] * 8)], ago="0 s")
        steps = [(stream, {"arrival_to_queryable_s": 0.4, "arrival_samples_s": cdc[:4]}, "0 s"),
                 (stream, {"arrival_to_queryable_s": 0.9, "arrival_samples_s": cdc[4:]}, "0 s"),  # 0.9 not sampled
                 (stream, {"arrival_to_queryable_s": 0.05, "arrival_samples_s": []}, "0 s"),  # counts as itself
                 (files, {"arrival_to_queryable_s": 2.5}, "0 s"), (files, {"arrival_to_queryable_s": 4.5}, "0 s"),
                 (old, {"arrival_to_queryable_s": 99.0, "arrival_samples_s": [99.0]}, "2 hours"),  # outside
                 (stream, {"rows_read": 3}, "0 s")]  # measured nothing
        for run_id, detail, ago in steps:
            conn.execute("INSERT INTO pgmill.run_steps (run_id, name, status, finished_at, detail)"
                         " VALUES (%s, 'load x', 'succeeded', clock_timestamp() - %s::interval, %s)",
                         (run_id, ago, Jsonb(detail)))
        lat = {x.pipeline: x for x in arrival_latency(conn, timedelta(hours=1))}
        figures = [*cdc, 0.05]
        assert (lat["orders"].loads, lat["orders"].batches, lat["orders"].max_s) == (3, 7, 0.9)
        assert lat["orders"].p50_s == round(_percentile(figures, 0.5), 3) == 0.015
        assert lat["orders"].p95_s == round(_percentile(figures, 0.95), 3)
        assert lat["orders"].counted() == "7 batches in 3 loads"
        assert (lat["files"].loads, lat["files"].batches, lat["files"].p50_s, lat["files"].max_s) == (2, 2, 3.5, 4.5)
        assert lat["files"].counted() == "2 loads"

        samples, _ = scrape(conn)
        assert value(samples, "pgmill_arrival_to_queryable_seconds", pipeline="orders", quantile="0.95") == (
            lat["orders"].p95_s)
        assert value(samples, "pgmill_arrival_to_queryable_seconds", pipeline="orders", quantile="1") == 0.9
        assert value(samples, "pgmill_arrival_to_queryable_loads", pipeline="orders") == 3
        assert value(samples, "pgmill_arrival_to_queryable_batches", pipeline="orders") == 7
        assert value(samples, "pgmill_arrival_to_queryable_batches", pipeline="files") == 2

        with conn.transaction():  # the measured steps are found by the partial index, not a scan of every step
            conn.execute("SET LOCAL enable_seqscan = off")
            plan = "\n".join(r[0] for r in conn.execute(
                "EXPLAIN SELECT 1 FROM pgmill.run_steps s WHERE s.detail ? 'arrival_to_queryable_s'"
                " AND s.finished_at >= clock_timestamp() - interval '1 hour'").fetchall())
            assert "run_steps_arrival" in plan
