"""Benchmark of the metrics scrape: pgmill's tables read at scrape time, on a year-sized ledger.

    python bench/bench_metrics.py [--quick] [--reps N]

The ledger: 100,000 runs of 20 pipelines over a year, 1,000,000 quality results (50 tables x 20 rules x
1,000 check runs), 100,000 expected runs of 10 jobs, 200 tuning runs, 500 index actions, 50 service
instances (restarts), all made with generate_series (the run totals in one pass, as migration 8 makes them
for an existing ledger), then VACUUM ANALYZE (what autovacuum leaves).
Timed: `render_metrics` on an open connection, GET /metrics through `pgmill serve`'s app on a real uvicorn
(a connection per scrape, as Prometheus sees it), and `success_rate` over 30 days; medians of `reps`.
References in the same run: the runs aggregate with index scans turned off, and the latest quality
result per rule by DISTINCT ON over the whole table (what the skip scan avoids).
Every query each reader runs is EXPLAINed (ANALYZE, BUFFERS) into bench/RESULTS_metrics.md, with the
scan nodes on pgmill's tables. Target (checked here, never in tests): a scrape under 1 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import OUT_DIR, RESULTS_JSON, BenchProject, log, machine, save_to  # noqa: E402

MD = Path(__file__).resolve().parent / "RESULTS_metrics.md"
TARGET_S = 1.0

FILL = [
    ("runs", """
INSERT INTO pgmill.runs (pipeline, status, mode, started_at, finished_at, rows_read, rows_inserted, rows_updated,
                         rows_unchanged, rows_quarantined, rows_duplicate, bytes_read, retries)
SELECT 'pipeline_' || lpad((g %% 20)::text, 2, '0'),
       CASE WHEN g > %(runs)s - 5 THEN 'running' WHEN g %% 100 < 95 THEN 'succeeded' WHEN g %% 100 < 99 THEN 'failed'
            ELSE 'abandoned' END,
       'merge', t, CASE WHEN g > %(runs)s - 5 THEN NULL ELSE t + make_interval(secs => g * 7919 %% 3600) END,
       1000 + g %% 500, 900 + g %% 500, 50, 30, 15, 5, (1000 + g %% 500) * 120, (g %% 50 = 0)::int
FROM generate_series(1, %(runs)s) g, LATERAL (SELECT now() - make_interval(secs => (%(runs)s - g) * 315) AS t) x
"""),
    ("quality_results", """
INSERT INTO pgmill.quality_results (run_id, table_name, rule, kind, rows_checked, rows_failed, pass_rate, threshold,
                                    severity, status, measured_at)
SELECT g / 1000 + 1, 'public.table_' || lpad((g %% 1000 / 20)::text, 2, '0'), 'rule_' || lpad((g %% 20)::text, 2, '0'),
       'not_null', 100000, g %% 7, round(100 - (g %% 7) / 1000.0, 3), 99, 'error', 'pass',
       now() - make_interval(secs => %(quality)s - g)
FROM generate_series(0, %(quality)s - 1) g
"""),
    ("expected_runs", """
INSERT INTO pgmill.expected_runs (job, scheduled_for, state, started_at, finished_at, attempts)
SELECT 'pipeline:pipeline_' || lpad((g %% 10)::text, 2, '0'), s,
       CASE WHEN s > now() THEN 'pending' WHEN s > now() - interval '20 min' THEN 'pending'
            WHEN g %% 97 = 0 THEN 'missed' WHEN g %% 31 = 0 THEN 'failed' ELSE 'succeeded' END,
       CASE WHEN s < now() - interval '20 min' AND g %% 97 <> 0 THEN s + interval '3 s' END,
       CASE WHEN s < now() - interval '20 min' THEN s + interval '90 s' END, (g %% 97 <> 0)::int
FROM generate_series(1, %(slots)s) g,
     LATERAL (SELECT date_trunc('minute', now()) + interval '15 min'
                     - make_interval(mins => 5 * ((%(slots)s - g) / 10)) AS s) x
"""),
    ("tuning_runs", """
INSERT INTO pgmill.tuning_runs (mode, status, started_at, finished_at, report)
SELECT CASE WHEN g %% 2 = 0 THEN 'apply' ELSE 'recommend' END, 'succeeded', now() - make_interval(hours => 200 - g),
       now() - make_interval(hours => 200 - g),
       jsonb_build_object('queries', (SELECT jsonb_agg(jsonb_build_object('name', 'query_' || q, 'source', 'declared',
                                                                         'target_ms', 100, 'sql', 'SELECT 1'))
                                      FROM generate_series(1, 10) q))
       || CASE WHEN g %% 2 = 0 THEN jsonb_build_object('applied', jsonb_build_object(
              'before', (SELECT jsonb_object_agg('query_' || q, jsonb_build_object('p95_ms', 200 + q)) FROM generate_series(1, 10) q),
              'after', (SELECT jsonb_object_agg('query_' || q, jsonb_build_object('p95_ms', 20 + q)) FROM generate_series(1, 10) q)))
          ELSE '{}'::jsonb END
FROM generate_series(1, 200) g
"""),
    ("index_actions", """
INSERT INTO pgmill.index_actions (run_id, action, schema_name, index_name, table_name)
SELECT (SELECT min(run_id) FROM pgmill.tuning_runs) + g %% 200, (ARRAY['create', 'keep', 'drop', 'trade'])[g %% 4 + 1],
       'public', 'ix_' || g, 'public.table_' || g %% 50
FROM generate_series(1, 500) g
"""),
    ("service_instances", """
INSERT INTO pgmill.service_instances (instance, host, pid, started_at, last_tick_at, tick_seconds, ticks, ticks_skipped,
                                      db_reconnects, stopped_at)
SELECT 'host:' || g || ':' || md5(g::text), 'host', g, now() - make_interval(days => 50 - g),
       CASE WHEN g = 50 THEN now() ELSE now() - make_interval(days => 50 - g) + interval '6 days' END, 5,
       100000, g, g %% 3, CASE WHEN g < 50 THEN now() - make_interval(days => 50 - g) + interval '6 days' END
FROM generate_series(1, 50) g
"""),
]


# the reference: what run_totals saves, the ended runs' figures aggregated from the whole ledger
FULL_RUNS_AGGREGATE = """
SELECT pipeline, status, count(*), sum(rows_read), sum(rows_inserted), sum(rows_updated), sum(rows_unchanged),
       sum(rows_quarantined), sum(rows_duplicate), sum(bytes_read), sum(retries), max(finished_at), sum(d), count(d),
       (SELECT array_agg(b ORDER BY b) FROM unnest(pgmill.run_duration_bounds()) b),
       count(*) FILTER (WHERE d <= 1), count(*) FILTER (WHERE d <= 5), count(*) FILTER (WHERE d <= 15),
       count(*) FILTER (WHERE d <= 30), count(*) FILTER (WHERE d <= 60), count(*) FILTER (WHERE d <= 120),
       count(*) FILTER (WHERE d <= 300), count(*) FILTER (WHERE d <= 600), count(*) FILTER (WHERE d <= 1800),
       count(*) FILTER (WHERE d <= 3600), count(*) FILTER (WHERE d <= 7200)
FROM (SELECT *, date_part('epoch', finished_at - started_at) AS d FROM pgmill.runs WHERE status <> 'running') r
GROUP BY pipeline, status
"""


def run_end_cost(conn: Any, runs: int = 400) -> dict[str, Any]:
    """Microseconds to end one run (the ledger's UPDATE of its status, autocommit: its own transaction), on
    pgmill.runs with the run_totals triggers and on a copy without them, interleaved."""
    conn.execute("INSERT INTO pgmill.runs (pipeline, status) SELECT 'bench_end', 'running'"
                 " FROM generate_series(1, %s)", (runs,))
    conn.execute("CREATE TABLE public.runs_without_triggers (LIKE pgmill.runs INCLUDING ALL)")
    conn.execute("INSERT INTO public.runs_without_triggers SELECT * FROM pgmill.runs WHERE pipeline = 'bench_end'")
    ids = [r[0] for r in conn.execute("SELECT run_id FROM pgmill.runs WHERE pipeline = 'bench_end'").fetchall()]
    times: dict[str, list[float]] = {"with_trigger": [], "without_trigger": []}
    for run_id in ids:
        for label, table in (("with_trigger", sql.Identifier("pgmill", "runs")),
                             ("without_trigger", sql.Identifier("public", "runs_without_triggers"))):
            started = time.perf_counter()
            conn.execute(sql.SQL("UPDATE {} SET status = 'succeeded', finished_at = clock_timestamp()"
                                 " WHERE run_id = %s").format(table), (run_id,))
            times[label].append(time.perf_counter() - started)
    conn.execute("DROP TABLE public.runs_without_triggers")
    return {"runs": runs, **{k: round(statistics.median(v) * 1e6) for k, v in times.items()}}


class Recorder:
    """A connection that remembers what was executed on it (to EXPLAIN exactly the queries of a scrape)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.queries: list[tuple[Any, Any]] = []

    def execute(self, query: Any, params: Any = None) -> Any:
        self.queries.append((query, params))
        return self.conn.execute(query, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def fill(bp: BenchProject, sizes: dict[str, int], extra: list[tuple[str, str]] | None = None,
         label: str = "metrics") -> dict[str, float]:
    """The year-sized ledger (FILL, then `extra` statements of another bench), totals rebuilt, analyzed."""
    from pgmill.db.migrations import migrate

    conn = bp.conn()
    migrate(conn)
    seconds = {}
    conn.execute("ALTER TABLE pgmill.runs DISABLE TRIGGER USER")  # a year of runs ended one at a time: their
    for table, text in [*FILL, *(extra or [])]:                     # totals come from one pass afterwards
        started = time.perf_counter()
        conn.execute(text.encode(), sizes)
        seconds[table] = round(time.perf_counter() - started, 2)
        log(f"{label} bench: {table} filled in {seconds[table]} s")
    conn.execute("ALTER TABLE pgmill.runs ENABLE TRIGGER USER")
    started = time.perf_counter()
    conn.execute("SELECT pgmill.run_totals_rebuild()")
    seconds["run_totals_rebuild"] = round(time.perf_counter() - started, 2)
    conn.execute("VACUUM ANALYZE")
    return seconds


def explain(conn: Any, query: Any, params: Any, fmt: str) -> Any:
    from psycopg import sql

    body = sql.SQL(query) if isinstance(query, str) else query
    head = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " if fmt == "json" else "EXPLAIN (ANALYZE, BUFFERS) ")
    rows = conn.execute(head + body, params).fetchall()
    return rows[0][0] if fmt == "json" else "\n".join(r[0] for r in rows)


PGMILL_TABLES = {t for t, _ in FILL} | {"run_totals"}


def scans(plan: dict[str, Any]) -> list[str]:
    """The scan nodes of a plan on pgmill's tables: 'Index Only Scan using X on runs (heap fetches 0)'."""
    out = []
    if plan.get("Relation Name") in PGMILL_TABLES and "Scan" in plan["Node Type"]:
        text = plan["Node Type"] + (f" using {plan['Index Name']}" if plan.get("Index Name") else "")
        text += f" on {plan['Relation Name']}"
        if plan["Node Type"] == "Index Only Scan":
            text += f" (heap fetches {plan.get('Heap Fetches', 0)})"
        out.append(text)
    for child in plan.get("Plans", []):
        out += scans(child)
    return out


def ledger_queries(conn: Any) -> list[tuple[str, Any, Any]]:
    """(reader, query, params) of every ledger query of a scrape and of success_rate."""
    from pgmill.observe.metrics import READERS, read_ledger_tables
    from pgmill.observe.success import success_rate

    cat = read_ledger_tables(conn)
    out = []
    for reader in READERS:
        rec = Recorder(conn)
        reader(rec, cat)
        out += [(reader.__name__, q, p) for q, p in rec.queries]
    rec = Recorder(conn)
    success_rate(rec, timedelta(days=30))
    out += [("success_rate", q, p) for q, p in rec.queries if "FROM pgmill." in str(q)]
    return out


def timed(fn: Any, reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a tenth of the ledger, into bench/out/")
    ap.add_argument("--reps", type=int, default=9)
    args = ap.parse_args()
    scale = 10 if args.quick else 1
    sizes = {"runs": 100_000 // scale, "quality": 1_000_000 // scale, "slots": 100_000 // scale}

    import httpx

    from pgmill.observe.metrics import render_metrics
    from pgmill.observe.success import success_rate
    from pgmill.project import open_project
    from pgmill.web import create_app, serve_http, stop_http
    from pgmill.web.server import bound_port

    bp = BenchProject("metrics").fresh()
    bp.configure({}, {})
    try:
        fill_s = fill(bp, sizes)
        conn = bp.conn()
        render_metrics(conn)  # warm the caches: the figure is a steady scrape, not the first after a restart
        text = render_metrics(conn).decode()
        series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        scrape = timed(lambda: render_metrics(conn), args.reps)
        ctx = open_project(bp.dir)
        server, thread = serve_http(create_app(ctx, token=None), "127.0.0.1", 0)
        try:
            url = f"http://127.0.0.1:{bound_port(server)}/metrics"
            with httpx.Client(timeout=30) as client:
                assert client.get(url).status_code == 200
                http = timed(lambda: client.get(url).raise_for_status(), args.reps)
        finally:
            stop_http(server, thread)
        success = timed(lambda: success_rate(conn, timedelta(days=30)), args.reps)

        # references, same data, same run
        from pgmill.observe.metrics import quality_metrics, read_ledger_tables, runs_metrics

        cat = read_ledger_tables(conn)
        runs_totals = timed(lambda: runs_metrics(conn, cat), args.reps)
        runs_full = timed(lambda: conn.execute(FULL_RUNS_AGGREGATE).fetchall(), args.reps)
        skip = timed(lambda: quality_metrics(conn, cat), args.reps)
        distinct_on = timed(lambda: conn.execute(
            "SELECT DISTINCT ON (table_name, rule) table_name, rule, pass_rate, threshold"
            " FROM pgmill.quality_results ORDER BY table_name, rule, run_id DESC").fetchall(), args.reps)

        plans = []
        for reader, q, p in ledger_queries(conn):
            js = explain(conn, q, p, "json")[0]
            plans.append({"reader": reader, "ms": round(js["Execution Time"], 2), "scans": scans(js["Plan"]),
                          "text": explain(conn, q, p, "text")})
        trigger_us = run_end_cost(conn)  # last: it adds runs
        pg = bp.server_version()
        sizes_mb = {t: round(bp.sql("SELECT pg_total_relation_size(%s)", (f"pgmill.{t}",))[0][0] / 2**20, 1)
                    for t in [*(t for t, _ in FILL), "run_totals"]}
    finally:
        bp.stop()

    med = statistics.median
    data = {
        "ledger": {"runs": sizes["runs"], "quality_results": sizes["quality"], "expected_runs": sizes["slots"],
                   "tuning_runs": 200, "index_actions": 500, "service_instances": 50},
        "fill_seconds": fill_s, "total_mb": sizes_mb, "postgres": pg, "reps": args.reps, "series": series,
        "scrape_s": {"median": round(med(scrape), 4), "min": round(min(scrape), 4), "max": round(max(scrape), 4)},
        "http_scrape_s": {"median": round(med(http), 4), "min": round(min(http), 4), "max": round(max(http), 4)},
        "success_rate_s": round(med(success), 4),
        "reference": {"runs_from_totals_s": round(med(runs_totals), 4), "runs_full_aggregate_s": round(med(runs_full), 4),
                      "quality_latest_skip_scan_s": round(med(skip), 4),
                      "quality_latest_distinct_on_s": round(med(distinct_on), 4)},
        "run_end_us": trigger_us,
        "target_s": TARGET_S, "met": med(http) < TARGET_S and med(scrape) < TARGET_S,
        "plans": [{k: v for k, v in p.items() if k != "text"} for p in plans],
    }
    if args.quick:
        save_to(OUT_DIR / "results_metrics_quick.json", "metrics", data)
        out_md = OUT_DIR / "RESULTS_metrics_quick.md"
    else:
        save_to(RESULTS_JSON, "metrics", data)
        out_md = MD
    out_md.write_text(render(data, plans, machine()))
    log(json.dumps({k: data[k] for k in ("scrape_s", "http_scrape_s", "success_rate_s", "reference", "met")}))
    log(f"wrote {out_md}")


def render(d: dict[str, Any], plans: list[dict[str, Any]], m: dict[str, Any]) -> str:
    led, ref = d["ledger"], d["reference"]
    lines = [
        "# Metrics scrape benchmark",
        "",
        f"A scrape reads pgmill's tables at scrape time. Ledger: {led['runs']:,} runs of 20 pipelines over a year, "
        f"{led['quality_results']:,} quality results (1,000 rules x {led['quality_results'] // 1000:,} check runs), "
        f"{led['expected_runs']:,} expected runs of 10 jobs, {led['tuning_runs']} tuning runs, "
        f"{led['index_actions']} index actions, {led['service_instances']} service instances; made with "
        "generate_series, the run totals in one pass (`pgmill.run_totals_rebuild()`, as migration 8 makes them for "
        "an existing ledger), then VACUUM ANALYZE. Sizes with indexes: "
        + ", ".join(f"{t} {mb} MB" for t, mb in d["total_mb"].items()) + f". One scrape: {d['series']:,} series.",
        "",
        f"Medians of {d['reps']} after one warm-up scrape; PostgreSQL {d['postgres']} (embedded, default settings). "
        f"Target: a scrape under {d['target_s']:g} s: **{'met' if d['met'] else 'NOT met'}**.",
        "",
        "| what | median s | min s | max s |",
        "| --- | ---: | ---: | ---: |",
        f"| `render_metrics` on an open connection | {d['scrape_s']['median']} | {d['scrape_s']['min']} "
        f"| {d['scrape_s']['max']} |",
        f"| GET /metrics on `pgmill serve`'s app (uvicorn, a connection per scrape) | {d['http_scrape_s']['median']} "
        f"| {d['http_scrape_s']['min']} | {d['http_scrape_s']['max']} |",
        f"| `success_rate(conn, 30 days)` | {d['success_rate_s']} | | |",
        "",
        "References, same data, same run:",
        "",
        "| query | index-backed (as shipped) s | reference s | reference |",
        "| --- | ---: | ---: | --- |",
        f"| runs by pipeline and status (counts, rows, bytes, retries, duration buckets) | {ref['runs_from_totals_s']} "
        f"| {ref['runs_full_aggregate_s']} | the same figures aggregated from all of pgmill.runs at each scrape |",
        f"| latest result of each quality rule | {ref['quality_latest_skip_scan_s']} "
        f"| {ref['quality_latest_distinct_on_s']} | DISTINCT ON over all of pgmill.quality_results |",
        "",
        "What pgmill.run_totals costs the write path: ending one run (the ledger's UPDATE of its status, in its "
        f"own transaction, commit included) took {d['run_end_us']['with_trigger']} us with the triggers and "
        f"{d['run_end_us']['without_trigger']} us on a copy of pgmill.runs without them (medians of "
        f"{d['run_end_us']['runs']} runs each, interleaved); a checkpoint's update of a running run fires nothing.",
        "",
        "## Plans",
        "",
        "Every ledger query of a scrape (by reader, `pgmill.observe.metrics.READERS`) and of `success_rate`, "
        "EXPLAIN (ANALYZE, BUFFERS) on the data above. Scans of pgmill's tables:",
        "",
        "| reader | ms | scans of pgmill's tables |",
        "| --- | ---: | --- |",
    ]
    for p in plans:
        read = "; ".join(p["scans"]) or "(no table: the histogram's bounds)"
        lines.append(f"| {p['reader']} | {p['ms']} | {read} |")
    lines += ["", "Not EXPLAINed: the catalog lookup that opens each scrape (which of pgmill's tables and cost columns "
              "exist) and `set_config`. `service_instances` has one row per service start: a sequential scan of a "
              "few rows is the plan Postgres should choose there.", ""]
    for p in plans:
        lines += [f"### {p['reader']}", "", "```", p["text"], "```", ""]
    lines += ["## Machine", "",
              f"{m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; {m['os']}; Python {m['python']}; "
              f"psycopg {m['psycopg']}; PostgreSQL {d['postgres']}. The machine is shared: figures are medians.",
              "", "Run: `python bench/bench_metrics.py` (`--quick` for a tenth of the ledger into bench/out/).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
