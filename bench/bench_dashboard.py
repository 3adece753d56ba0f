"""Benchmark of the dashboard: every page rendered on a year of history, against the same pages on a day.

    python bench/bench_dashboard.py [--quick] [--reps N]

The year: bench_metrics' ledger (100,000 runs of 20 pipelines, 1,000,000 quality results, 100,000
expected runs, 200 tuning runs, 500 index actions) plus 200,000 quarantined rows, a run_costs row per run,
300,000 run steps, 5,000 alert events with 10,000 delivery attempts; the reference: the same tables
filled for one day (1/365 of each). Both are made with generate_series, then VACUUM ANALYZE.
Timed, medians of `reps` after a warm-up: GET of each page through `pgmill serve`'s app on a real uvicorn
(a connection per request, as a browser sees it); the same page in Chromium (navigation start to the load
event, from the Navigation Timing API); and `pgmill dashboard --export` (time and size).
Target (checked here, never in tests): every page under 300 ms with the year.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_metrics import fill, timed  # noqa: E402
from common import OUT_DIR, RESULTS_JSON, BenchProject, log, machine, save_to  # noqa: E402

MD = Path(__file__).resolve().parent / "RESULTS_dashboard.md"
TARGET_MS = 300.0
PIPELINES = 20

EXTRA_FILL = [
    ("quarantine", """
INSERT INTO pgmill.quarantine (run_id, pipeline, target_table, source_location, record, raw_text, violations,
                               quarantined_at)
SELECT 1 + g * 7 %% greatest(%(runs)s, 1), 'pipeline_' || lpad((g %% 20)::text, 2, '0'),
       'public.table_' || lpad((g %% 20)::text, 2, '0'), 'data/export_' || g %% 365 || '.csv:' || g,
       jsonb_build_object('id', g, 'status', 'X' || g %% 5), NULL,
       jsonb_build_array(jsonb_build_object('column', 'status', 'rule', 'accepted_values_' || g %% 7,
                                            'message', 'not one of the accepted values')),
       now() - make_interval(secs => (%(quarantine)s - g) * 157)
FROM generate_series(1, %(quarantine)s) g
"""),
    ("run_costs", """
INSERT INTO pgmill.run_costs (invocation, run_id, job, started_at, finished_at, cpu_seconds, db_seconds, db_source,
                              bytes_written, storage_delta_bytes, bytes_processed, database_bytes, files_bytes,
                              compute_usd, database_usd, recorded_at)
SELECT run_id, run_id, pipeline, started_at, coalesce(finished_at, started_at), 1.5, 0.8, 'pg_stat_database',
       1 << 20, 1 << 18, bytes_read, 1 << 30, 1 << 20, 0.00002, 0.00001, coalesce(finished_at, started_at)
FROM pgmill.runs
"""),
    ("run_steps", """
INSERT INTO pgmill.run_steps (run_id, name, status, started_at, finished_at, rows, detail)
SELECT r.run_id, s.name, 'succeeded', r.started_at + (s.i - 1) * interval '1 s', r.started_at + s.i * interval '1 s',
       r.rows_read, '{}'::jsonb
FROM pgmill.runs r CROSS JOIN (VALUES (1, 'load data/a.csv'), (2, 'load data/b.csv'), (3, 'checks')) s(i, name)
"""),
    ("alert_events", """
INSERT INTO pgmill.alert_events (at, kind, rule, subject, title, message, channels)
SELECT now() - make_interval(secs => (%(alerts)s - g) * 6300), (ARRAY['firing', 'resolved'])[g %% 2 + 1],
       'run_failed', 'pipeline_' || lpad((g %% 20)::text, 2, '0'), 'run failed', 'the run failed: boom',
       ARRAY['hook', 'mail']
FROM generate_series(1, %(alerts)s) g
"""),
    ("alert_deliveries", """
INSERT INTO pgmill.alert_deliveries (event_id, channel, attempt, status, final, error, latency_ms, at)
SELECT e.event_id, c.channel, 1, CASE WHEN e.event_id %% 10 = 0 AND c.channel = 'mail' THEN 'failed' ELSE 'sent' END,
       true, NULL, 42, e.at
FROM pgmill.alert_events e CROSS JOIN (VALUES ('hook'), ('mail')) c(channel)
"""),
    ("alert_state", """
INSERT INTO pgmill.alert_state (rule, subject, kind, status, since, last_seen, message)
SELECT 'run_failed', 'pipeline_' || lpad(g::text, 2, '0'), 'run_failed', 'firing', now() - interval '1 h', now(),
       'the latest run failed'
FROM generate_series(0, 2) g
"""),
]


def project(name: str) -> BenchProject:
    bp = BenchProject(name).fresh()
    pipes = {f"pipeline_{i:02d}": {"source": {"kind": "csv", "path": f"data/p{i}/*.csv"},
                                   "table": f"public.table_{i:02d}", "contract": "contracts/t.yaml",
                                   **({"every": "5m"} if i < 10 else {})} for i in range(PIPELINES)}
    bp.configure(pipes, {"t": "columns:\n  id: {type: bigint, primary_key: true}\n"})
    return bp


def measure(bp: BenchProject, reps: int, chromium: str | None) -> dict[str, Any]:
    import httpx

    from pgmill.project import open_project
    from pgmill.web import create_app, serve_http, stop_http
    from pgmill.web.export import export_dashboard
    from pgmill.web.pages import PAGES
    from pgmill.web.server import bound_port

    ctx = open_project(bp.dir)
    run_id = bp.sql("SELECT max(run_id) FROM pgmill.runs WHERE status <> 'running'")[0][0]
    paths = {p.name: "/" if p.name == "overview" else f"/{p.name}" for p in PAGES}
    paths["run"] = f"/runs/{run_id}"
    server, thread = serve_http(create_app(ctx, token=None), "127.0.0.1", 0)
    out: dict[str, Any] = {"server_ms": {}, "chromium_ms": {}, "bytes": {}}
    try:
        base = f"http://127.0.0.1:{bound_port(server)}"
        with httpx.Client(timeout=60) as client:
            for name, path in paths.items():
                r = client.get(base + path)
                assert r.status_code == 200, (name, r.status_code, r.text[:300])
                out["bytes"][name] = len(r.content)  # and the warm-up
                times = timed(lambda p=path: client.get(base + p).raise_for_status(), reps)
                out["server_ms"][name] = round(statistics.median(times) * 1000, 1)
        if chromium:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
                page = browser.new_page()
                for name, path in paths.items():
                    samples = []
                    for _ in range(reps + 1):
                        page.goto(base + path, wait_until="load")
                        samples.append(page.evaluate(
                            "() => { const n = performance.getEntriesByType('navigation')[0];"
                            " return n.loadEventEnd - n.startTime; }"))
                    out["chromium_ms"][name] = round(statistics.median(samples[1:]), 1)
                browser.close()
    finally:
        stop_http(server, thread)
    site = bp.dir / "site"
    shutil.rmtree(site, ignore_errors=True)
    export = [export_dashboard(ctx, site) for _ in range(3)]
    out["export"] = {"seconds": round(statistics.median(e.seconds for e in export), 2),
                     "files": len(export[-1].files), "bytes": export[-1].bytes}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a tenth of the year, into bench/out/")
    ap.add_argument("--reps", type=int, default=9)
    args = ap.parse_args()
    scale = 10 if args.quick else 1
    year = {"runs": 100_000 // scale, "quality": 1_000_000 // scale, "slots": 100_000 // scale,
            "quarantine": 200_000 // scale, "alerts": 5_000 // scale}
    day = {k: max(v // 365, 20) for k, v in year.items()}
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    results: dict[str, Any] = {}
    for label, sizes in (("day", day), ("year", year)):
        bp = project(f"dashboard_{label}")
        try:
            fill_s = fill(bp, sizes, EXTRA_FILL, "dashboard")
            results[label] = {"sizes": sizes, "fill_seconds": fill_s, **measure(bp, args.reps, chromium),
                              "postgres": bp.server_version()}
        finally:
            bp.stop()
    worst = max(results["year"]["server_ms"].values())
    data = {"reps": args.reps, "target_ms": TARGET_MS, "met": worst < TARGET_MS, "worst_server_ms": worst,
            **results}
    if args.quick:
        save_to(OUT_DIR / "results_dashboard_quick.json", "dashboard", data)
        out_md = OUT_DIR / "RESULTS_dashboard_quick.md"
    else:
        save_to(RESULTS_JSON, "dashboard", data)
        out_md = MD
    out_md.write_text(render(data, machine()))
    log(json.dumps({"worst_server_ms": worst, "met": data["met"]}))
    log(f"wrote {out_md}")


def render(d: dict[str, Any], m: dict[str, Any]) -> str:
    y, dy = d["year"], d["day"]
    s = y["sizes"]
    lines = [
        "# Dashboard benchmark",
        "",
        f"Every page of `pgmill serve`'s dashboard on a year of history: {s['runs']:,} runs of {PIPELINES} pipelines "
        f"(10 on a 5-minute schedule), {s['quality']:,} quality results, {s['slots']:,} expected runs, "
        f"{s['quarantine']:,} quarantined rows, a cost row per run, three steps per run, {s['alerts']:,} alert "
        "events with two deliveries each; the reference is the same pages on one day of it (1/365 of each "
        "table, same run). Made with generate_series, then VACUUM ANALYZE.",
        "",
        f"Medians of {d['reps']} after a warm-up. Server: GET through the app on uvicorn, a database connection "
        "per request. Chromium: navigation start to the load event (Navigation Timing), Debian's chromium "
        f"driven by Playwright. Target: every page under {d['target_ms']:g} ms with the year: "
        f"**{'met' if d['met'] else 'NOT met'}** (slowest {d['worst_server_ms']} ms).",
        "",
        "| page | server, year ms | server, day ms | year / day | Chromium, year ms | Chromium, day ms | HTML kB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, ms in y["server_ms"].items():
        ref = dy["server_ms"][name]
        lines.append(f"| {name} | {ms} | {ref} | {ms / ref:.2f} | {y['chromium_ms'].get(name, '—')} "
                     f"| {dy['chromium_ms'].get(name, '—')} | {y['bytes'][name] / 1024:.0f} |")
    lines += [
        "",
        f"Static export (`pgmill dashboard --export`): year {y['export']['files']} files, "
        f"{y['export']['bytes'] / 1024:.0f} kB in {y['export']['seconds']} s; day {dy['export']['files']} files, "
        f"{dy['export']['bytes'] / 1024:.0f} kB in {dy['export']['seconds']} s (medians of 3).",
        "",
        "## Machine",
        "",
        f"{m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; {m['os']}; Python {m['python']}; "
        f"psycopg {m['psycopg']}; PostgreSQL {y['postgres']} (embedded, default settings). The machine is "
        "shared: figures are medians.",
        "",
        "Run: `python bench/bench_dashboard.py` (`--quick` for a tenth of the year into bench/out/).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
