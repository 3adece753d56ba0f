"""Throughput on the executor seam: the units of a load on threads, on processes and on a Dask cluster.

The workloads, each against 1 worker measured in the same run, subjects interleaved (order rotated every
rep), medians:

- cpu: 2 CSV files of generated orders (the 8-rule contract of bench_ingest.py, ~2% defects), one pipeline,
  append into an empty table: `--executor threads` with workers 1 (the reference) and 2, and
  `--executor processes:1` and `processes:2`. Parsing and validating are CPU work; the embedded
  PostgreSQL on the same 2 cores does the COPY.
- latency: waiting sources, on a Dask LocalCluster of 1, 4 and 8 single-threaded worker processes, and on
  threads with workers 1 and 8 for comparison on one machine:
  - http: 16 pipelines, each paging an HTTP JSON API (tests/fake_api.py on 127.0.0.1) that answers every
    page after 50 ms, one page at a time; each pipeline is one unit (pgmill drives the 16 at once, the
    cluster's size bounds the units running);
  - postgres: one pipeline reading a table of 8 partitions (`partitions: true`: one unit each) through a TCP
    proxy that holds each answer 50 ms (tests/fault_proxy.py), as a distant database would.
  The figure is the loads' span in the ledger (first start to last finish): process start-up is not in it.

Every run is `python -m pgmill run ... --json` in a subprocess. Writes bench/RESULTS_executor.md and
bench/results_executor.json (its `parallel_throughput` is what `pgmill validate` reads).

Usage: python bench/bench_executor.py [--rows N] [--pages N] [--pg-rows N] [--reps N]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench_http import CONTRACT as ITEMS
from bench_http import PAGE_SIZE
from bench_ingest import CONTRACT, TABLE, orders_file, split_files, warm_cache
from common import (
    BENCH_DIR,
    BenchProject,
    log,
    machine,
    median,
    pgmill_env,
    run_project_json,
)

sys.path.insert(0, str(BENCH_DIR.parent))  # tests/fake_api.py

CPU_SUBJECTS = {"threads_w1": ("threads", 1), "threads_w2": ("threads", 2),
                "processes_1": ("processes:1", 1), "processes_2": ("processes:2", 2)}
DASK_WORKERS = (1, 4, 8)
THREAD_WORKERS = (1, 8)
PIPELINES = 16


def bench_cpu(rows: int, reps: int) -> dict[str, Any]:
    files = split_files(orders_file(rows), 2)
    for f in files:
        warm_cache(f)
    proj = BenchProject("executor_cpu").fresh()
    try:
        source = {"kind": "csv", "path": str(files[0].parent / "part_*.csv")}
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in CPU_SUBJECTS}
        names = list(CPU_SUBJECTS)
        for rep in range(reps):
            for name in names[rep % len(names):] + names[:rep % len(names)]:
                executor, workers = CPU_SUBJECTS[name]
                proj.configure({"orders": {"source": source, "table": TABLE, "contract": "contracts/orders.yaml",
                                           "mode": "append"}}, {"orders": CONTRACT}, workers)
                proj.reset("orders", TABLE)
                r = proj.run_pgmill("orders", args=("--executor", executor))
                runs[name].append(r)
                log(f"  [cpu] {name:12s} {r['seconds']:7.2f}s {r['rows_per_s']:>9,} rows/s"
                    f" cpu {r['client_cpu_s']:6.1f}s rss {r['peak_rss_mb']:.0f} MB (load {r['loadavg_1m']})")
        first = runs["threads_w1"][0]
        assert all(r["rows_read"] == first["rows_read"] and r["rows_inserted"] == first["rows_inserted"]
                   for rs in runs.values() for r in rs), "the subjects did not load the same rows"
        base = median([r["rows_per_s"] for r in runs["threads_w1"]])
        summary = {name: {"rows_per_s": (rps := median([r["rows_per_s"] for r in rs])),
                          "seconds": median([r["seconds"] for r in rs]),
                          "client_cpu_s": median([r["client_cpu_s"] for r in rs]),
                          "peak_rss_mb": median([r["peak_rss_mb"] for r in rs]),
                          "ratio_to_threads_w1": round(rps / base, 3)} for name, rs in runs.items()}
        return {"input": {"files": [f.name for f in files], "orders": rows,
                          "bytes": sum(f.stat().st_size for f in files), "rows_read": first["rows_read"]},
                "server_version": proj.server_version(), "summary": summary, "runs": runs}
    finally:
        proj.stop()


def _run_all(proj: BenchProject, args: tuple[str, ...]) -> dict[str, Any]:
    """`pgmill run --json ARGS` over every pipeline: the loads' span in the ledger, and their rows."""
    m, loads = run_project_json(proj.dir, ("--no-check", "--no-transform", *args), timeout=1800)
    ids = [r["run_id"] for r in loads]
    [(span,)] = proj.sql("SELECT extract(epoch FROM max(finished_at) - min(started_at))::float8"
                         " FROM pgmill.runs WHERE run_id = ANY(%s)", (ids,))
    return {"span_s": round(span, 3), "wall_s": round(m.seconds, 3), "rows": sum(r["rows_inserted"] for r in loads)}


SRC_ENV = "PGMILL_BENCH_SRC_URL"
PARTITIONS = 8
EVENTS = """\
columns:
  id:         {type: bigint}
  customer:   {type: text, not_null: true}
  total:      {type: "numeric(12,2)", min: 0}
  updated_at: {type: timestamptz, not_null: true}
"""


def _source_db(proj: BenchProject, rows_each: int) -> str:
    """A database `src` on the bench server: shop.events, range-partitioned on id into PARTITIONS tables."""
    proj.sql("CREATE DATABASE src")
    import psycopg
    from psycopg import sql

    url = proj.server.url("src")
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE SCHEMA shop")
        c.execute("CREATE TABLE shop.events (id bigint, customer text, total numeric(12,2), updated_at timestamptz"
                  " NOT NULL) PARTITION BY RANGE (id)")
        for p in range(PARTITIONS):
            c.execute(sql.SQL("CREATE TABLE shop.{} PARTITION OF shop.events FOR VALUES FROM ({}) TO ({})").format(
                sql.Identifier(f"events_{p}"), sql.Literal(p * rows_each), sql.Literal((p + 1) * rows_each)))
        c.execute("INSERT INTO shop.events SELECT i, 'c' || (i %% 977), (i %% 500) + 0.25, timestamptz '2024-01-01'"
                  " + i * interval '1 minute' FROM generate_series(0, %s) i", (PARTITIONS * rows_each - 1,))
        c.execute("ANALYZE shop.events")
    return url


def _subjects(clusters: dict[int, Any], fan: int) -> dict[str, tuple[tuple[str, ...], int]]:
    """name: (`pgmill run` options, project workers); with Dask, pgmill drives `fan` pipelines at once."""
    return {**{f"dask_{n}": (("--executor", c.scheduler_address), fan) for n, c in clusters.items()},
            **{f"threads_{n}": (("--executor", "threads"), n) for n in THREAD_WORKERS}}


def _measure(label: str, proj: BenchProject, pipes: dict[str, dict[str, Any]], contracts: dict[str, str],
             subjects: dict[str, tuple[tuple[str, ...], int]], rows: int, reps: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in subjects}
    names = list(subjects)
    for rep in range(reps):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            args, workers = subjects[name]
            proj.configure(pipes, contracts, workers)
            for p, spec in pipes.items():
                proj.reset(p, spec["table"])
            r = _run_all(proj, args)
            if r["rows"] != rows:
                raise RuntimeError(f"{label} {name}: loaded {r['rows']} of {rows} records")
            runs[name].append(r)
            log(f"  [{label}] {name:10s} span {r['span_s']:6.2f}s wall {r['wall_s']:6.2f}s")
    base = median([r["span_s"] for r in runs["dask_1"]])
    summary = {name: {"span_s": (s := median([r["span_s"] for r in rs])), "wall_s": median([r["wall_s"] for r in rs]),
                      "speedup_vs_dask_1": round(base / s, 2)} for name, rs in runs.items()}
    return {"summary": summary, "runs": runs}


def _warm(cluster: Any) -> None:
    """Import pgmill's loader and sources on every worker once, as a long-lived cluster has: the first unit
    on a fresh worker process would otherwise pay seconds of imports inside the measured span."""
    import importlib

    from distributed import Client

    with Client(cluster.scheduler_address) as client:
        for module in ("pgmill.ingest.units", "pgmill.ingest.sources.http", "pgmill.ingest.sources.postgres"):
            client.run(importlib.import_module, module)


def bench_latency(pages: int, rows_each: int, reps: int) -> dict[str, Any]:
    """The HTTP and the remote PostgreSQL workloads, on the same clusters."""
    import os

    from distributed import LocalCluster
    from tests.fake_api import FakeApi, make_records
    from tests.fault_proxy import FaultProxy, socket_file

    records = pages * PAGE_SIZE - PAGE_SIZE // 2  # the last page is short: the sweep ends there
    api = FakeApi(make_records(records), style="page", page_size=PAGE_SIZE, delay_s=0.05).start()
    proj = BenchProject("executor_latency").fresh()
    src = _source_db(proj, rows_each)
    proxy = FaultProxy(socket_file(src), latency_s=0.05).start()
    os.environ[SRC_ENV] = proxy.url(src)  # for `pgmill run` and the Dask workers started below
    clusters: dict[int, Any] = {}
    try:
        env = {**pgmill_env(), "PGMILL_DATABASE_URL": proj.url, SRC_ENV: os.environ[SRC_ENV]}
        saved = dict(os.environ)  # a nanny sets its workers' variables (MALLOC_TRIM_THRESHOLD_, ...) here too
        for n in DASK_WORKERS:
            clusters[n] = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                       silence_logs=40, env=env)
            _warm(clusters[n])
        os.environ.clear()
        os.environ.update(saved)  # `pgmill run` must not inherit them
        http = {f"api{i:02d}": {"source": api.source(), "table": f"bench.items_{i:02d}",
                                "contract": "contracts/items.yaml", "mode": "append"} for i in range(PIPELINES)}
        out = {"http": {"input": {"pipelines": PIPELINES, "pages_each": pages, "records_each": records,
                                  "page_delay_ms": 50},
                        **_measure("http", proj, http, {"items": ITEMS}, _subjects(clusters, PIPELINES),
                                   records * PIPELINES, reps)}}
        pg = {"events": {"source": {"kind": "postgres", "url_env": SRC_ENV, "table": "shop.events", "partitions": True,
                                    "batch_rows": 2000},
                         "table": "bench.events", "contract": "contracts/events.yaml", "mode": "append",
                         "cursor": "updated_at", "batch_rows": 2000}}
        out["postgres"] = {"input": {"partitions": PARTITIONS, "rows_each": rows_each, "fetch_rows": 2000,
                                     "round_trip_ms": 50},
                           **_measure("postgres", proj, pg, {"events": EVENTS}, _subjects(clusters, 1),
                                      rows_each * PARTITIONS, reps)}
        return out
    finally:
        for c in clusters.values():
            c.close()
        proxy.stop()
        api.stop()
        proj.stop()


def render(data: dict[str, Any]) -> str:
    m = machine()
    cpu, lat = data["cpu"], data["latency"]
    lines = [
        "# The executor seam: threads, processes and Dask",
        "",
        f"Generated by `python bench/bench_executor.py --rows {cpu['input']['orders']} --pages "
        f"{lat['http']['input']['pages_each']} --pg-rows {lat['postgres']['input']['rows_each']} --reps {data['reps']}` on {data['measured_at']} (figures also in "
        "`bench/results_executor.json`, which `pgmill validate` reads).",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; Python {m['python']}; "
        f"PostgreSQL {cpu['server_version']} (embedded, on the same cores); Dask distributed {data['distributed']}. "
        "The machine is shared: medians of the reps, the load average beside each run in the JSON.",
        "",
        f"## CPU-bound: {cpu['input']['orders']:,} orders in 2 files ({cpu['input']['bytes'] / 1e6:.0f} MB), "
        "8-rule contract, append",
        "",
        "| subject | seconds | rows/s | vs threads, 1 worker | pgmill CPU s | peak RSS (all processes) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in cpu["summary"].items():
        cpu_s = "n/a" if name.startswith("processes") else f"{s['client_cpu_s']:.1f}"
        lines.append(f"| {name} | {s['seconds']:.2f} | {s['rows_per_s']:,} | {s['ratio_to_threads_w1']:.2f}x | "
                     f"{cpu_s} | {s['peak_rss_mb']:.0f} MB |")
    lines += ["", "pgmill CPU s: of `pgmill run` and the children it waited for; the pool's processes are forked by "
              "a fork server, whose children's CPU the operating system does not hand back to it (n/a)."]
    w1 = cpu["summary"]["threads_w1"]
    per_core = cpu["input"]["rows_read"] / w1["client_cpu_s"]
    lines += [
        "",
        f"Expected scaling. pgmill's own work (read, parse, validate, send) took {w1['client_cpu_s']:.1f} CPU-seconds "
        f"for {cpu['input']['rows_read']:,} records on 1 worker: one core keeps up with about {per_core:,.0f} "
        "records/s, so N cores given to units (processes, or Dask workers on other machines) could feed about N "
        f"times that, {2 * per_core:,.0f}/s on 2 and {8 * per_core:,.0f}/s on 8, until the database's COPY is the "
        "limit: raw `psql \\copy` of clean rows into this embedded server on these 2 cores runs at about "
        "250,000-275,000 rows/s (bench/RESULTS.md), and the database shares the cores with pgmill here. Past that "
        "point more units add nothing; a bigger database, or separate partitions (less index contention), does.",
    ]
    h, pg = lat["http"], lat["postgres"]
    lines += [
        "",
        f"## Latency-bound: {h['input']['pipelines']} HTTP pipelines x {h['input']['pages_each']} pages, "
        f"{h['input']['page_delay_ms']} ms a page; a remote PostgreSQL table in {pg['input']['partitions']} partitions "
        f"of {pg['input']['rows_each']:,} rows, {pg['input']['fetch_rows']:,} rows a fetch, {pg['input']['round_trip_ms']} ms "
        "a round trip (a TCP proxy)",
        "",
        "The figure is the loads' span in the ledger (first start to last finish). Dask: single-threaded worker "
        "processes of a LocalCluster; threads: the project's `workers`.",
        "",
        "| subject | HTTP: span (s) | HTTP: vs 1 Dask worker | PostgreSQL: span (s) | PostgreSQL: vs 1 Dask worker |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, s in h["summary"].items():
        p = pg["summary"][name]
        lines.append(f"| {name} | {s['span_s']:.2f} | {s['speedup_vs_dask_1']:.2f}x | {p['span_s']:.2f} | "
                     f"{p['speedup_vs_dask_1']:.2f}x |")
    head = data["parallel_throughput"]
    lines += ["", f"Read by `pgmill validate` (parallel throughput, goal >= 3x): {head['worst']:.2f}x, the lower of "
              + ", ".join(f"{k} {v:.2f}x" for k, v in head["speedups"].items())
              + f" on {head['workers']} Dask workers against 1; CPU-bound, 2 processes against 1 thread: "
              f"{head['cpu_bound']:.2f}x.", ""]
    return "\n".join(lines)


def headline(cpu: dict[str, Any], lat: dict[str, Any]) -> dict[str, Any]:
    """What `pgmill validate` reads: waiting sources' speed-up on the most Dask workers against 1 (the lower
    of the two workloads), and the CPU-bound one of 2 processes against 1 thread."""
    most = f"dask_{max(DASK_WORKERS)}"
    speedups = {"HTTP": lat["http"]["summary"][most]["speedup_vs_dask_1"],
                "PostgreSQL": lat["postgres"]["summary"][most]["speedup_vs_dask_1"]}
    return {"workers": max(DASK_WORKERS), "speedups": speedups, "worst": min(speedups.values()),
            "cpu_bound": cpu["summary"]["processes_2"]["ratio_to_threads_w1"], "threshold": 3.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=600_000)
    ap.add_argument("--pages", type=int, default=25)
    ap.add_argument("--pg-rows", type=int, default=20_000, help="rows per partition of the PostgreSQL source")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "results_executor.json",
                    help="the results file (`pgmill validate` reads bench/results_executor.json)")
    a = ap.parse_args()
    import time

    import distributed

    cpu = bench_cpu(a.rows, a.reps)
    lat = bench_latency(a.pages, a.pg_rows, a.reps)
    data = {"measured_at": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "reps": a.reps,
            "distributed": distributed.__version__, "parallel_throughput": headline(cpu, lat), "cpu": cpu,
            "latency": lat}
    a.out.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    (BENCH_DIR / "RESULTS_executor.md").write_text(render(data))
    log((BENCH_DIR / "RESULTS_executor.md").read_text())


if __name__ == "__main__":
    main()
