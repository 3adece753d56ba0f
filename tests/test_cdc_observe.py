"""Change data capture in the metrics: a CDC pipeline run twice with changes between, then /metrics (and
`pgmill metrics`) show its slot's health as the loader stored it, and the arrival-to-queryable figures
count its batches, not its load steps.

Needs the `pg15_logical` cluster (tests/pg15.py): skipped locally without PostgreSQL 15, failed in CI."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from typer.testing import CliRunner

from pgmill.cli.root import app
from pgmill.project import open_project
from pgmill.web import create_app
from tests.cdc_source import cdc_pipeline, cdc_source, same_rows
from tests.helpers import ProjectDir, connect, query, run_one

pytest_plugins = ["tests.pg15"]  # the pg15_logical fixture
__all__ = ["cdc_source"]  # a fixture, used by name

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def orders(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted({"pipeline": "orders", **labels}.items())))]


def test_slot_gauges_and_batch_latency_in_metrics(project: ProjectDir, cdc_source: str) -> None:
    with connect(cdc_source) as c:
        c.execute("INSERT INTO shop.orders SELECT g, 'c' || g, g, NULL, now() FROM generate_series(1, 5) g")
    cdc_pipeline(project, batch_rows=2)  # two changes per batch at most: the backlog is several batches
    started = time.time()
    run_one()  # the snapshot
    first = project.scalar("SELECT state->'cdc_slot' FROM pgmill.state WHERE pipeline = 'orders'")
    assert first["slot"] == "pgmill_orders" and first["exists"] and first["wal_status"] == "reserved"

    with connect(cdc_source) as c:  # 12 transactions: 6 inserts, 4 updates, 2 deletes
        for i in range(6, 12):
            c.execute("INSERT INTO shop.orders VALUES (%s, 'new', 1, NULL, now())", (i,))
        for i in range(1, 5):
            c.execute("UPDATE shop.orders SET total = total + 100 WHERE id = %s", (i,))
        for i in (5, 6):
            c.execute("DELETE FROM shop.orders WHERE id = %s", (i,))
    run_one()
    same_rows(project, cdc_source)
    assert project.scalar("SELECT rows_deleted FROM pgmill.runs ORDER BY run_id DESC LIMIT 1") == 2

    [(loads, batches, worst)] = project.query(
        "SELECT count(*), sum(jsonb_array_length(detail->'arrival_samples_s')),"
        " max((detail->>'arrival_to_queryable_s')::float8) FROM pgmill.run_steps WHERE detail ? 'arrival_samples_s'")
    assert loads == 1 and batches >= 6  # 12 changes, at most 2 per batch

    with TestClient(create_app(open_project(project.path), token=None), base_url="http://127.0.0.1") as client:
        res = client.get("/metrics")
    assert res.status_code == 200
    samples = parse(res.text)
    cli = CliRunner().invoke(app, ["metrics"])
    assert cli.exit_code == 0
    assert {k for k in parse(cli.stdout) if k[0].startswith("pgmill_cdc_")} == {
        k for k in samples if k[0].startswith("pgmill_cdc_")}

    # the slot: present, not lost, figures the source agrees with (WAL only grows after the loader's check)
    health = project.scalar("SELECT state->'cdc_slot' FROM pgmill.state WHERE pipeline = 'orders'")
    retained = orders(samples, "pgmill_cdc_slot_retained_wal_bytes")
    assert retained == health["retained_bytes"] and 0 <= retained < 64 * 2**20
    assert orders(samples, "pgmill_cdc_slot_lag_bytes") == health["lag_bytes"] >= 0
    assert orders(samples, "pgmill_cdc_slot_lost") == 0
    assert orders(samples, "pgmill_cdc_slot_active") in (0, 1)
    checked = orders(samples, "pgmill_cdc_slot_checked_timestamp_seconds")
    assert started < checked <= time.time()
    [(now_retained, confirmed)] = query(
        cdc_source, "SELECT (pg_current_wal_lsn() - restart_lsn)::bigint, (confirmed_flush_lsn - '0/0')::bigint"
        " FROM pg_replication_slots WHERE slot_name = 'pgmill_orders'")
    assert now_retained >= retained
    assert confirmed == health["confirmed_lsn"]  # nothing confirmed since the loader looked
    # never ahead of what the target committed (the slot is confirmed only after the target's commit)
    assert health["confirmed_lsn"] <= project.scalar(
        "SELECT (state->'cdc'->>'lsn')::bigint FROM pgmill.state WHERE pipeline = 'orders'")

    # the ledger's new outcomes
    assert orders(samples, "pgmill_rows_total", outcome="deleted") == 2
    read = orders(samples, "pgmill_rows_read_total")
    assert read == sum(orders(samples, "pgmill_rows_total", outcome=o) for o in (
        "inserted", "updated", "unchanged", "quarantined", "duplicate", "deleted", "superseded"))

    # latency: the quantiles are over the batches of the one measured load step
    assert orders(samples, "pgmill_arrival_to_queryable_loads") == 1
    assert orders(samples, "pgmill_arrival_to_queryable_batches") == batches
    p50 = orders(samples, "pgmill_arrival_to_queryable_seconds", quantile="0.5")
    p95 = orders(samples, "pgmill_arrival_to_queryable_seconds", quantile="0.95")
    assert 0 < p50 <= p95 <= orders(samples, "pgmill_arrival_to_queryable_seconds", quantile="1") == round(worst, 3)
    assert p95 < 60
    status = CliRunner().invoke(app, ["status"])  # `pgmill status` reads the same figures
    assert status.exit_code == 0
    assert f"orders: arrival to queryable p50 {p50:g} s, p95 {p95:g} s" in status.stdout
    assert f"over {batches} batches in 1 load in the last 24 h" in status.stdout
