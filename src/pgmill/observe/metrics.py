"""Prometheus metrics, read from pgmill's tables at scrape time: nothing is counted in a process's memory.

A scrape opens one connection and runs a handful of queries in one read-only snapshot, each answered
from an index or a small table, so its cost does not grow with the history: ended runs from
pgmill.run_totals (kept by triggers in the transaction that ends a run, migration 8) and runs going on
from pgmill.runs; the slots of the last 24 hours by job and state, and the late ones; the latest quality result of each
rule (a skip scan); the latest tuning measurement; index use; the service's ticks; where their tables or
columns are in place, alert deliveries and cost; the storage of the project's tables (db/storage.py: the
catalog, per table and per partition, and pgmill.archives); arrival to queryable (observe/latency.py); and the
health of change data capture's replication slots, as the loader last saw it (pgmill.state). `READERS` lists
them.

Labels are bounded by construction: pipeline, job, table, rule, query (a declared query's name), status,
state, outcome, channel, component, partition (of the project's tables: as many as retention keeps). Never a
run id, a query id or SQL text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg import sql

from pgmill.db.storage import table_storage
from pgmill.observe.cdc_health import slot_states
from pgmill.observe.latency import arrival_latency

Conn = psycopg.Connection[Any]
Connect = Callable[[], AbstractContextManager[Conn]]

#: where the rows read went (they add up to rows read); deleted and superseded are change data capture's
OUTCOMES = ("inserted", "updated", "unchanged", "quarantined", "duplicate", "deleted", "superseded")
#: expected runs are counted over the slots due in this window (the schedule's history only grows)
EXPECTED_WINDOW = timedelta(hours=24)
#: a service instance whose last tick is older than this many ticks is not ticking
STALE_TICKS = 3
#: index utilization counts the scans of tables over this many rows (as `pgmill indexes` does)
BIG_TABLE_ROWS = 10_000
_TABLES = ("runs", "run_totals", "expected_runs", "quality_results", "tuning_runs", "index_actions",
           "service_instances", "alert_deliveries", "run_costs", "archives", "state")


@dataclass(frozen=True)
class LedgerTables:
    """What is in place, read once per scrape: pgmill's tables (a database migrated by an older pgmill, or a
    scrape racing the first migration, lacks some); and the project's tables, whose storage is reported."""

    tables: frozenset[str]
    project_tables: tuple[str, ...] = ()
    cdc_counts: bool = True  # run_totals has rows_deleted and rows_superseded (migration 15)


def read_ledger_tables(conn: Conn, project_tables: Sequence[str] = ()) -> LedgerTables:
    row = conn.execute(
        "SELECT array(SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        "             WHERE n.nspname = 'pgmill' AND c.relkind IN ('r', 'p') AND c.relname = ANY(%s)),"
        " (SELECT count(*) = 2 FROM pg_attribute WHERE attrelid = to_regclass('pgmill.run_totals')"
        "  AND attname IN ('rows_deleted', 'rows_superseded') AND NOT attisdropped)",
        (list(_TABLES),)).fetchone()
    assert row is not None
    return LedgerTables(frozenset(row[0]), tuple(project_tables), bool(row[1]))


def _f(x: Any) -> float:
    return float(x) if isinstance(x, int | float | Decimal) else 0.0


# ---------------------------------------------------------------- the readers

# ended runs from pgmill.run_totals (kept by triggers, migration 8), runs going on from pgmill.runs; {cdc}: the
# counts of migration 15, or zeros before it
_RUNS = (
    "SELECT pipeline, status, runs, rows_read, rows_inserted, rows_updated, rows_unchanged, rows_quarantined,"
    " rows_duplicate, {cdc}, bytes_read, retries, extract(epoch FROM last_finished_at)::float8, seconds, timed, le"
    " FROM pgmill.run_totals"
    " UNION ALL"
    " SELECT pipeline, 'running', count(*), sum(rows_read), sum(rows_inserted), sum(rows_updated),"
    " sum(rows_unchanged), sum(rows_quarantined), sum(rows_duplicate), {cdc_sum}, sum(bytes_read), sum(retries),"
    " NULL, 0, 0, NULL FROM pgmill.runs WHERE status = 'running' GROUP BY pipeline"
    " ORDER BY 1, 2"
)
_CDC_COUNTS = ("rows_deleted, rows_superseded", "sum(rows_deleted), sum(rows_superseded)")
_NO_CDC_COUNTS = ("0, 0", "0, 0")


@dataclass
class _PipelineRuns:
    running: int = 0
    totals: tuple[float, ...] = (0.0,) * 10  # rows read, the seven outcomes, bytes read, retries
    last_success: float | None = None
    seconds: float = 0.0
    timed: int = 0
    cumulative: tuple[int, ...] = ()


def runs_metrics(conn: Conn, cat: LedgerTables) -> list[Metric]:
    """Runs by pipeline and status, rows by outcome, bytes, retries, durations, the last success."""
    if "run_totals" not in cat.tables:
        return []
    runs = CounterMetricFamily("pgmill_runs", "Runs that ended, by pipeline and status", labels=["pipeline", "status"])
    running = GaugeMetricFamily("pgmill_runs_running", "Runs going on now", labels=["pipeline"])
    read = CounterMetricFamily("pgmill_rows_read", "Rows read from sources", labels=["pipeline"])
    rows = CounterMetricFamily("pgmill_rows", "Rows read, by what became of them", labels=["pipeline", "outcome"])
    nbytes = CounterMetricFamily("pgmill_read_bytes", "Bytes read from sources", labels=["pipeline"])
    retries = CounterMetricFamily("pgmill_run_retries", "Retries of transient failures", labels=["pipeline"])
    last = GaugeMetricFamily("pgmill_last_success_timestamp_seconds", "When the last successful run finished",
                             labels=["pipeline"])
    duration = HistogramMetricFamily("pgmill_run_duration_seconds", "How long runs that ended took",
                                     labels=["pipeline"])
    bounds_row = conn.execute("SELECT pgmill.run_duration_bounds()").fetchone()
    bounds: list[float] = list(bounds_row[0]) if bounds_row else []
    per: dict[str, _PipelineRuns] = {}
    cdc, cdc_sum = _CDC_COUNTS if cat.cdc_counts else _NO_CDC_COUNTS
    for r in conn.execute(sql.SQL(_RUNS).format(cdc=sql.SQL(cdc), cdc_sum=sql.SQL(cdc_sum))).fetchall():
        pipeline, status, n = r[0], r[1], int(r[2])
        p = per.setdefault(pipeline, _PipelineRuns(cumulative=(0,) * len(bounds)))
        if status == "running":
            p.running += n
        else:
            runs.add_metric([pipeline, status], n)
            p.seconds += _f(r[14])
            p.timed += int(r[15])
            p.cumulative = tuple(a + int(b) for a, b in zip(p.cumulative, r[16], strict=True))
        p.totals = tuple(a + _f(b) for a, b in zip(p.totals, r[3:13], strict=True))
        if status == "succeeded" and r[13] is not None:
            p.last_success = float(r[13])
    for pipeline, p in per.items():
        running.add_metric([pipeline], p.running)
        read.add_metric([pipeline], p.totals[0])
        for outcome, value in zip(OUTCOMES, p.totals[1:8], strict=True):
            rows.add_metric([pipeline, outcome], value)
        nbytes.add_metric([pipeline], p.totals[8])
        retries.add_metric([pipeline], p.totals[9])
        if p.last_success is not None:
            last.add_metric([pipeline], p.last_success)
        buckets = [(_le(b), float(k)) for b, k in zip(bounds, p.cumulative, strict=True)]
        duration.add_metric([pipeline], [*buckets, ("+Inf", float(p.timed))], p.seconds)
    return [runs, running, read, rows, nbytes, retries, last, duration]


def expected_metrics(conn: Conn, cat: LedgerTables) -> list[Metric]:
    """Slots due in the last `EXPECTED_WINDOW` by job and state; late slots: pending past the time they were due."""
    if "expected_runs" not in cat.tables:
        return []
    hours = f"{EXPECTED_WINDOW.total_seconds() / 3600:g} hours"
    slots = GaugeMetricFamily("pgmill_expected_runs", f"Scheduled slots due in the last {hours}, by job and state",
                              labels=["job", "state"])
    late = GaugeMetricFamily("pgmill_expected_runs_late", "Slots still pending past the time they were due",
                             labels=["job"])
    oldest = GaugeMetricFamily("pgmill_expected_runs_late_seconds", "How long the oldest late slot has waited",
                               labels=["job"])
    jobs: dict[str, tuple[int, float]] = {}
    for job, state, n in conn.execute(
            "SELECT job, state, count(*) FROM pgmill.expected_runs"
            " WHERE scheduled_for > now() - %s AND scheduled_for <= now()"
            " GROUP BY job, state ORDER BY job, state", (EXPECTED_WINDOW,)).fetchall():
        slots.add_metric([job, state], int(n))
        jobs[job] = (0, 0.0)
    for job, n, waited in conn.execute(
            "SELECT job, count(*), extract(epoch FROM now() - min(scheduled_for))::float8 FROM pgmill.expected_runs"
            " WHERE state = 'pending' AND scheduled_for < now() GROUP BY job ORDER BY job").fetchall():
        jobs[job] = (int(n), float(waited))
    for job, (n_late, waited_s) in jobs.items():
        late.add_metric([job], n_late)
        oldest.add_metric([job], waited_s)
    return [slots, late, oldest]


# the latest result of each (table, rule), one index probe per rule whatever the length of the history: in
# quality_results_trend's order (table_name, rule, run_id DESC) the first entry past a rule is the next
# rule's latest result
_QUALITY = (
    "WITH RECURSIVE latest AS ("
    "  (SELECT table_name, rule, pass_rate, threshold FROM pgmill.quality_results"
    "   ORDER BY table_name, rule, run_id DESC LIMIT 1)"
    "  UNION ALL"
    "  SELECT n.* FROM latest l CROSS JOIN LATERAL ("
    "    SELECT q.table_name, q.rule, q.pass_rate, q.threshold FROM pgmill.quality_results q"
    "    WHERE (q.table_name, q.rule) > (l.table_name, l.rule)"
    "    ORDER BY q.table_name, q.rule, q.run_id DESC LIMIT 1) n)"
    " SELECT table_name, rule, pass_rate::float8, threshold::float8 FROM latest"
)


def quality_metrics(conn: Conn, cat: LedgerTables) -> list[Metric]:
    """The latest pass rate of each table's rule, and its threshold (ratios, 0 to 1)."""
    if "quality_results" not in cat.tables:
        return []
    rate = GaugeMetricFamily("pgmill_quality_pass_ratio", "Share of rows passing the rule at its latest check",
                             labels=["table", "rule"])
    threshold = GaugeMetricFamily("pgmill_quality_threshold_ratio", "The share of rows the rule requires",
                                  labels=["table", "rule"])
    for table, rule, pass_rate, thr in conn.execute(_QUALITY).fetchall():
        rate.add_metric([table, rule], pass_rate / 100)
        threshold.add_metric([table, rule], thr / 100)
    return [rate, threshold]


def tuning_metrics(conn: Conn, cat: LedgerTables) -> list[Metric]:
    """Declared queries' p95 (latest tuning measurement) against their targets."""
    if "tuning_runs" not in cat.tables:
        return []
    p95 = GaugeMetricFamily("pgmill_query_p95_seconds", "A declared query's p95 latency, as last measured",
                            labels=["query"])
    before = GaugeMetricFamily("pgmill_query_p95_before_tuning_seconds",
                               "A declared query's p95 latency before the last tuning changed indexes",
                               labels=["query"])
    target = GaugeMetricFamily("pgmill_query_target_seconds", "A declared query's latency target",
                               labels=["query"])
    when = GaugeMetricFamily("pgmill_query_measured_timestamp_seconds", "When the latencies were measured")
    rows = conn.execute(
        "SELECT q->>'name', (q->>'target_ms')::float8,"
        "  (t.report #>> ARRAY['applied', 'before', q->>'name', 'p95_ms'])::float8,"
        "  (t.report #>> ARRAY['applied', 'after', q->>'name', 'p95_ms'])::float8,"
        "  t.rolled_back_by IS NOT NULL, extract(epoch FROM t.finished_at)::float8"
        " FROM (SELECT report, rolled_back_by, finished_at FROM pgmill.tuning_runs"
        "       WHERE status = 'succeeded' AND report ? 'applied' ORDER BY run_id DESC LIMIT 1) t"
        " CROSS JOIN LATERAL jsonb_array_elements(t.report -> 'queries') q"
        " WHERE q->>'source' = 'declared' ORDER BY 1").fetchall()
    for name, target_ms, before_ms, after_ms, rolled_back, _at in rows:
        now_ms = before_ms if rolled_back else after_ms  # a rollback dropped what the run kept
        if now_ms is not None:
            p95.add_metric([name], now_ms / 1000)
        if before_ms is not None:
            before.add_metric([name], before_ms / 1000)
        if target_ms is not None:
            target.add_metric([name], target_ms / 1000)
    if rows and rows[0][5] is not None:
        when.add_metric([], rows[0][5])
    return [p95, before, target, when]


def index_metrics(conn: Conn, cat: LedgerTables) -> list[Metric]:
    """Index utilization: the index share of scans on big tables; the indexes tuning kept, and those read."""
    kept = (
        "SELECT count(*), count(*) FILTER (WHERE coalesce(s.idx_scan, 0) > 0)"
        " FROM (SELECT DISTINCT schema_name, index_name FROM pgmill.index_actions WHERE action = 'keep') k"
        " JOIN pg_namespace n ON n.nspname = k.schema_name"
        " JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = k.index_name"
        " LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = c.oid"
        if "index_actions" in cat.tables else "SELECT NULL::bigint, NULL::bigint")
    row = conn.execute(
        sql.SQL("SELECT u.*, k.* FROM (SELECT sum(coalesce(s.idx_scan, 0))::float8, sum(s.seq_scan)::float8"
                "  FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
                "  WHERE c.reltuples > %s AND s.schemaname <> 'pgmill') u, ({}) k").format(sql.SQL(kept)),
        (BIG_TABLE_ROWS,)).fetchone()
    assert row is not None
    idx, seq, n_kept, n_read = row
    ratio = GaugeMetricFamily("pgmill_index_scan_ratio",
                              f"Index scans / all scans on tables over {BIG_TABLE_ROWS:,} rows")
    if idx is not None and seq is not None and idx + seq > 0:
        ratio.add_metric([], idx / (idx + seq))
    out: list[Metric] = [ratio]
    if n_kept is not None:
        out.append(GaugeMetricFamily("pgmill_tuned_indexes", "Indexes pgmill tuning kept that still exist",
                                     value=int(n_kept)))
        out.append(GaugeMetricFamily("pgmill_tuned_indexes_scanned", "Of those, the ones queries have read",
                                     value=int(n_read)))
    return out


def service_metrics(conn: Conn, cat: LedgerTables) -> list[Metric]:
    """The service loop's ticks, skipped ticks, database reconnects, and the age of its last tick."""
    if "service_instances" not in cat.tables:
        return []
    row = conn.execute(
        "SELECT coalesce(sum(ticks), 0), coalesce(sum(ticks_skipped), 0), coalesce(sum(db_reconnects), 0),"
        " greatest(extract(epoch FROM now() - max(last_tick_at)), 0)::float8,"
        " count(*) FILTER (WHERE stopped_at IS NULL"
        "                  AND last_tick_at >= now() - make_interval(secs => %s * tick_seconds))"
        " FROM pgmill.service_instances", (STALE_TICKS,)).fetchone()
    assert row is not None
    out: list[Metric] = [
        CounterMetricFamily("pgmill_service_ticks", "Ticks of the service loop, every instance",
                            value=int(row[0])),
        CounterMetricFamily("pgmill_service_ticks_skipped", "Ticks skipped: the database did not answer",
                            value=int(row[1])),
        CounterMetricFamily("pgmill_service_db_reconnects", "Times the service reconnected to the database",
                            value=int(row[2])),
        GaugeMetricFamily("pgmill_service_instances_ticking",
                          f"Service instances that ticked within {STALE_TICKS} tick intervals", value=int(row[4])),
    ]
    if row[3] is not None:
        out.append(GaugeMetricFamily("pgmill_service_last_tick_age_seconds",
                                     "Seconds since any service instance last ticked", value=row[3]))
    return out


def alert_metrics(conn: Conn, cat: LedgerTables) -> list[Metric]:
    """Alert deliveries by channel and status, and the channels whose latest delivery failed."""
    if "alert_deliveries" not in cat.tables:
        return []
    total = CounterMetricFamily("pgmill_alert_deliveries", "Alert delivery attempts", labels=["channel", "status"])
    failing = GaugeMetricFamily("pgmill_alert_channel_failing", "1 when the channel's latest delivery failed",
                                labels=["channel"])
    latest: dict[str, tuple[Any, str]] = {}
    for channel, status, n, at in conn.execute(
            "SELECT channel, status, count(*), max(at) FROM pgmill.alert_deliveries"
            " GROUP BY channel, status ORDER BY channel, status").fetchall():
        total.add_metric([channel, status], int(n))
        if channel not in latest or at > latest[channel][0]:
            latest[channel] = (at, status)
    for channel, (_at, status) in latest.items():
        failing.add_metric([channel], 1 if status == "failed" else 0)
    return [total, failing]


def cost_metrics(conn: Conn, cat: LedgerTables) -> list[Metric]:
    """Dollars the measured work cost, by job and component (pgmill.run_costs, priced the day it ran)."""
    if "run_costs" not in cat.tables:
        return []
    cost = CounterMetricFamily("pgmill_cost_dollars", "What the measured work cost, in US dollars, at the prices "
                               "of the day it ran", labels=["job", "component"])
    for job, compute, database in conn.execute(
            "SELECT job, sum(compute_usd)::float8, coalesce(sum(database_usd), 0)::float8 FROM pgmill.run_costs"
            " GROUP BY job ORDER BY job").fetchall():
        cost.add_metric([job, "compute"], compute)
        cost.add_metric([job, "database"], database)
    return [cost]


def storage_metrics(conn: Conn, cat: LedgerTables) -> list[Metric]:
    """Bytes and estimated rows of each of the project's tables and of each partition; what retention archived."""
    if not cat.project_tables:
        return []
    nbytes = GaugeMetricFamily("pgmill_table_bytes", "A table's size on disk with its indexes and TOAST (a "
                               "partitioned table: the sum of its partitions)", labels=["table"])
    rows = GaugeMetricFamily("pgmill_table_rows_estimate", "A table's rows as the planner estimates them",
                             labels=["table"])
    parts = GaugeMetricFamily("pgmill_table_partitions", "Partitions attached to a partitioned table",
                              labels=["table"])
    part_bytes = GaugeMetricFamily("pgmill_partition_bytes", "A partition's size on disk with its indexes and TOAST",
                                   labels=["table", "partition"])
    files = GaugeMetricFamily("pgmill_archived_partitions", "Partitions retention archived (pgmill.archives)",
                              labels=["table"])
    archived = GaugeMetricFamily("pgmill_archived_bytes", "Bytes of the archive files retention wrote",
                                 labels=["table"])
    for t in table_storage(conn, list(cat.project_tables), archives="archives" in cat.tables):
        if t.exists:
            nbytes.add_metric([t.table], t.bytes)
            rows.add_metric([t.table], t.rows_estimate)
        if t.partitioned:
            parts.add_metric([t.table], len(t.partitions))
            for p in t.partitions:
                part_bytes.add_metric([t.table, p.name], p.bytes)
        if t.archived_files:
            files.add_metric([t.table], t.archived_files)
            archived.add_metric([t.table], t.archived_bytes)
    return [nbytes, rows, parts, part_bytes, files, archived]


#: the window of the arrival-to-queryable quantiles
LATENCY_WINDOW = timedelta(hours=1)


def latency_metrics(conn: Conn, cat: LedgerTables) -> list[Metric]:
    """Arrival to queryable per pipeline over the last hour: p50 and p95 over the batches of the loads that
    measured it (a file's load is one), and the worst."""
    if "runs" not in cat.tables:
        return []
    secs = GaugeMetricFamily("pgmill_arrival_to_queryable_seconds", "From data's arrival at the source (a file's "
                             "modification time, a change's commit) to the commit that made it queryable, over "
                             "the batches of the last hour", labels=["pipeline", "quantile"])
    loads = GaugeMetricFamily("pgmill_arrival_to_queryable_loads", "Loads that measured it in the last hour",
                              labels=["pipeline"])
    batches = GaugeMetricFamily("pgmill_arrival_to_queryable_batches", "The batches those loads measured (the "
                                "quantiles are over these; a file's load is one)", labels=["pipeline"])
    for lat in arrival_latency(conn, LATENCY_WINDOW):
        for q, v in (("0.5", lat.p50_s), ("0.95", lat.p95_s), ("1", lat.max_s)):
            secs.add_metric([lat.pipeline, q], v)
        loads.add_metric([lat.pipeline], lat.loads)
        batches.add_metric([lat.pipeline], lat.batches)
    return [secs, loads, batches]


def cdc_slot_metrics(conn: Conn, cat: LedgerTables) -> list[Metric]:
    """Each CDC pipeline's replication slot as its loader last saw it (`cdc_slot` in pgmill.state, written
    after every segment of the stream): WAL it holds back on the source, changes not confirmed yet, active,
    lost, and when that was."""
    if "state" not in cat.tables:
        return []
    retained = GaugeMetricFamily("pgmill_cdc_slot_retained_wal_bytes", "WAL the source keeps for the pipeline's "
                                 "replication slot (from its restart_lsn): a stalled consumer fills the source's "
                                 "disk", labels=["pipeline"])
    lag = GaugeMetricFamily("pgmill_cdc_slot_lag_bytes", "WAL written on the source since the slot's confirmed "
                            "position: changes pgmill has not applied and confirmed yet", labels=["pipeline"])
    active = GaugeMetricFamily("pgmill_cdc_slot_active", "1 when a consumer was streaming from the slot",
                               labels=["pipeline"])
    lost = GaugeMetricFamily("pgmill_cdc_slot_lost", "1 when the slot was gone or had lost its WAL "
                             "(wal_status lost): the next run loads a new snapshot", labels=["pipeline"])
    checked = GaugeMetricFamily("pgmill_cdc_slot_checked_timestamp_seconds", "When the loader last read the "
                                "slot's health", labels=["pipeline"])
    for st in slot_states(conn):
        p = [st.pipeline]
        if st.retained_bytes is not None:
            retained.add_metric(p, st.retained_bytes)
        if st.lag_bytes is not None:
            lag.add_metric(p, st.lag_bytes)
        active.add_metric(p, 1 if st.active else 0)
        lost.add_metric(p, 1 if st.lost else 0)
        if st.checked_at is not None:
            checked.add_metric(p, st.checked_at.timestamp())
    return [retained, lag, active, lost, checked]


def _le(bound: float) -> str:
    """A bucket bound as prometheus-client writes it: 1.0, 2.5, 300.0."""
    return repr(float(bound))


Reader = Callable[[Conn, LedgerTables], list[Metric]]
READERS: tuple[Reader, ...] = (runs_metrics, expected_metrics, quality_metrics, tuning_metrics, index_metrics,
                               service_metrics, alert_metrics, cost_metrics, storage_metrics, latency_metrics,
                               cdc_slot_metrics)


def read_metrics(conn: Conn, project_tables: Sequence[str] = ()) -> list[Metric]:
    """Every metric family, read in one read-only snapshot (so counts and histograms agree); the storage of
    `project_tables` (schema.name) among them."""
    outermost = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with conn.transaction():
        if outermost:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute("SELECT set_config('statement_timeout', '10s', true)")
        cat = read_ledger_tables(conn, project_tables)
        return [m for reader in READERS for m in reader(conn, cat)]


class LedgerCollector(Collector):
    """A prometheus-client collector over pgmill's tables: each scrape opens one connection with `connect`."""

    def __init__(self, connect: Connect, project_tables: Sequence[str] = ()) -> None:
        self.connect = connect
        self.project_tables = tuple(project_tables)

    def collect(self) -> Iterator[Metric]:
        with self.connect() as conn:
            families = read_metrics(conn, self.project_tables)  # all read before any is yielded: a failure yields nothing
        yield from families


def registry_for(connect: Connect, project_tables: Sequence[str] = ()) -> CollectorRegistry:
    """A registry holding only pgmill's collector (no process metrics: the tables are the truth)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(connect, project_tables))
    return registry


def render_metrics(conn: Conn, project_tables: Sequence[str] = ()) -> bytes:
    """The metrics in the Prometheus text format (`pgmill metrics`)."""
    return generate_latest(registry_for(lambda: nullcontext(conn), project_tables))
