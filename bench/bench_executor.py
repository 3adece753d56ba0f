"""Throughput on the executor seam: the units of a load on threads, on processes and on a Dask cluster.

Two workloads, each against 1 worker measured in the same run, subjects interleaved (order rotated every
rep), medians:

- cpu: 2 CSV files of generated orders (the 8-rule contract of bench_ingest.py, ~2% defects), one pipeline,
  append into an empty table: `--executor threads` with workers 1 (the reference) and 2, and
  `--executor processes:1` and `processes:2`. Parsing and validating are CPU work; the embedded
  PostgreSQL on the same 2 cores does the COPY.
- latency: 16 pipelines, each paging an HTTP JSON API (tests/fake_api.py on 127.0.0.1) that answers every
  page after 50 ms, one page at a time; each pipeline is one unit. On a Dask LocalCluster of 1, 4 and 8
  single-threaded worker processes (pgmill drives 16 pipelines at once; the cluster's size bounds the
  units running). Also threads with workers 1 and 8, for comparison on one machine. The figure is the
  loads' span in the ledger (first start to last finish), so process start-up is not counted.

Every run is `python -m pgmill run ... --json` in a subprocess. Writes bench/RESULTS_executor.md and an
`executor` section of bench/out/results_executor.json.

Usage: python bench/bench_executor.py [--rows N] [--pages N] [--reps N]
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
    OUT_DIR,
    BenchProject,
    log,
    machine,
    median,
    pgmill_env,
    run_project_json,
    save_to,
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


def bench_latency(pages: int, reps: int) -> dict[str, Any]:
    from distributed import LocalCluster
    from tests.fake_api import FakeApi, make_records

    records = pages * PAGE_SIZE - PAGE_SIZE // 2  # the last page is short: the sweep ends there
    api = FakeApi(make_records(records), style="page", page_size=PAGE_SIZE, delay_s=0.05).start()
    proj = BenchProject("executor_latency").fresh()
    clusters: dict[int, Any] = {}
    try:
        pipes = {f"api{i:02d}": {"source": api.source(), "table": f"bench.items_{i:02d}",
                                 "contract": "contracts/items.yaml", "mode": "append"} for i in range(PIPELINES)}
        env = {**pgmill_env(), "PGMILL_DATABASE_URL": proj.url}
        for n in DASK_WORKERS:
            clusters[n] = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                       silence_logs=40, env=env)
        subjects: dict[str, tuple[tuple[str, ...], int]] = {
            **{f"dask_{n}": (("--executor", clusters[n].scheduler_address), PIPELINES) for n in DASK_WORKERS},
            **{f"threads_{n}": (("--executor", "threads"), n) for n in THREAD_WORKERS}}
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in subjects}
        names = list(subjects)
        for rep in range(reps):
            for name in names[rep % len(names):] + names[:rep % len(names)]:
                args, workers = subjects[name]
                proj.configure(pipes, {"items": ITEMS}, workers)
                for p, spec in pipes.items():
                    proj.reset(p, spec["table"])
                r = _run_all(proj, args)
                if r["rows"] != records * PIPELINES:
                    raise RuntimeError(f"{name}: loaded {r['rows']} of {records * PIPELINES} records")
                runs[name].append(r)
                log(f"  [latency] {name:10s} span {r['span_s']:6.2f}s wall {r['wall_s']:6.2f}s")
        base = median([r["span_s"] for r in runs["dask_1"]])
        summary = {name: {"span_s": (s := median([r["span_s"] for r in rs])),
                          "wall_s": median([r["wall_s"] for r in rs]),
                          "speedup_vs_dask_1": round(base / s, 2)} for name, rs in runs.items()}
        return {"input": {"pipelines": PIPELINES, "pages_each": pages, "records_each": records,
                          "page_delay_ms": 50}, "summary": summary, "runs": runs}
    finally:
        for c in clusters.values():
            c.close()
        api.stop()
        proj.stop()


def render(data: dict[str, Any]) -> str:
    m = machine()
    cpu, lat = data["cpu"], data["latency"]
    lines = [
        "# The executor seam: threads, processes and Dask",
        "",
        f"Generated by `python bench/bench_executor.py --rows {cpu['input']['orders']} --pages "
        f"{lat['input']['pages_each']} --reps {data['reps']}` on {data['measured_at']} (figures also in "
        "`bench/out/results_executor.json`).",
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
        lines.append(f"| {name} | {s['seconds']:.2f} | {s['rows_per_s']:,} | {s['ratio_to_threads_w1']:.2f}x | "
                     f"{s['client_cpu_s']:.1f} | {s['peak_rss_mb']:.0f} MB |")
    lines += [
        "",
        f"## Latency-bound: {lat['input']['pipelines']} HTTP pipelines x {lat['input']['pages_each']} pages, "
        f"{lat['input']['page_delay_ms']} ms a page",
        "",
        "| subject | span of the loads (s) | wall of `pgmill run` (s) | speed-up vs 1 Dask worker |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, s in lat["summary"].items():
        lines.append(f"| {name} | {s['span_s']:.2f} | {s['wall_s']:.2f} | {s['speedup_vs_dask_1']:.2f}x |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=600_000)
    ap.add_argument("--pages", type=int, default=25)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT_DIR / "results_executor.json")
    a = ap.parse_args()
    import distributed

    data = {"cpu": bench_cpu(a.rows, a.reps), "latency": bench_latency(a.pages, a.reps), "reps": a.reps,
            "distributed": distributed.__version__}
    save_to(a.out, "executor", data)
    data["measured_at"] = json.loads(a.out.read_text())["executor"]["measured_at"]
    (BENCH_DIR / "RESULTS_executor.md").write_text(render(data))
    log((BENCH_DIR / "RESULTS_executor.md").read_text())


if __name__ == "__main__":
    main()
