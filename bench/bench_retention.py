"""Retention: the time and lock waits of detaching (and archiving) a month of ~1M rows while the table is read
and written, and the reader's latency during it against before it, in the same run.

A partitioned `orders` (monthly, primary key (order_id, ordered_at)) holds a month of `--rows` rows in 2020
and some current rows. A reader loops a key lookup on the table (it probes every partition's index) and a
writer inserts current rows, each on its own connection; lock waits are sampled from pg_locks every 20 ms.
Phase 1 measures them for `--baseline` seconds; phase 2 runs `run_retention` (the library call behind
`pgmill retention`) and measures them until it returns. Done twice: with `archive: parquet` (detach, write
the Parquet file, record, drop) and without (detach, drop), each on a fresh month. The process's peak RSS
during the archive is beside it (memory must not grow with the partition).

Usage: PYTHONPATH=src python bench/bench_retention.py [--rows 1000000] [--baseline 5]
Figures go to bench/RESULTS_retention.md (and bench/out/results_retention.json).
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import threading
import time
from typing import Any

import psutil
import yaml

from common import BENCH_DIR, OUT_DIR, BenchProject, log, machine, save_to

COLUMNS = """columns:
  order_id: {type: bigint, primary_key: true}
  customer_id: {type: bigint, not_null: true}
  total: {type: "numeric(12,2)"}
  ordered_at: {type: date, primary_key: true}
"""
CONTRACT = COLUMNS + "partition: {by: ordered_at, interval: month, premake: 0, retain: 1 months%s}\n"
TODAY = dt.datetime.now(dt.UTC).date()


def p95(xs: list[float]) -> float:
    return round(statistics.quantiles(xs, n=20)[-1] * 1000, 2) if len(xs) >= 20 else float("nan")


class Load:
    """A reader and a writer looping on their own connections, and a lock-wait sampler."""

    def __init__(self, url: str, rows: int) -> None:
        self.url, self.rows = url, rows
        self.stop = threading.Event()
        self.read_s: list[float] = []
        self.write_s: list[float] = []
        self.errors: list[str] = []
        self.waits: list[tuple[str, str]] = []  # (mode, relation) of each sampled ungranted lock
        self.next_id = 10_000_000

    def _reader(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as c:
            while not self.stop.is_set():
                t0 = time.perf_counter()
                try:
                    c.execute("SELECT total FROM orders WHERE order_id = %s", (random.randint(1, self.rows),)).fetchall()
                except psycopg.Error as exc:
                    self.errors.append(f"reader: {exc}")
                    return
                self.read_s.append(time.perf_counter() - t0)

    def _writer(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as c:
            while not self.stop.is_set():
                t0 = time.perf_counter()
                try:
                    c.execute("INSERT INTO orders VALUES (%s, 1, 1, %s)", (self.next_id, TODAY))
                except psycopg.Error as exc:
                    self.errors.append(f"writer: {exc}")
                    return
                self.next_id += 1
                self.write_s.append(time.perf_counter() - t0)

    def _sampler(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as c:
            while not self.stop.is_set():
                self.waits += [(str(m), str(r)) for m, r in c.execute(
                    "SELECT mode, coalesce(relation::regclass::text, locktype) FROM pg_locks WHERE NOT granted")]
                time.sleep(0.02)

    def measure(self, work: Any) -> dict[str, Any]:
        """Run the loops around `work()` (or for `work` seconds); their figures and what work returned."""
        self.read_s, self.write_s, self.waits = [], [], []
        self.stop.clear()
        threads = [threading.Thread(target=f) for f in (self._reader, self._writer, self._sampler)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        t0 = time.perf_counter()
        result = time.sleep(work) if isinstance(work, int | float) else work()
        seconds = time.perf_counter() - t0
        self.stop.set()
        for t in threads:
            t.join()
        if not self.read_s or not self.write_s:
            raise RuntimeError(f"the loops did not run: {self.errors}")
        return {"seconds": round(seconds, 2), "reads": len(self.read_s), "read_p95_ms": p95(self.read_s),
                "read_max_ms": round(max(self.read_s) * 1000, 1), "writes": len(self.write_s),
                "write_p95_ms": p95(self.write_s), "write_max_ms": round(max(self.write_s) * 1000, 1),
                "lock_wait_samples": len(self.waits), "locks_waited": sorted(set(map(" on ".join, self.waits))),
                "errors": list(self.errors), "result": result}


def fill(bp: BenchProject, month: dt.date, rows: int) -> None:
    from pgmill.config.spec import PartitionSpec
    from pgmill.db import partition

    partition.ensure_partitions(bp.conn(), "orders", PartitionSpec(by="ordered_at", interval="month"), "date", [month])
    bp.sql("INSERT INTO orders SELECT i, i %% 1000, (i %% 10000) / 100.0, %s::date + (i %% 28)"
           " FROM generate_series(1, %s) i", (month, rows))
    bp.sql("ANALYZE orders")
    bp.sql("CHECKPOINT")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--baseline", type=float, default=5.0)
    args = ap.parse_args()
    from pgmill.ingest.retention import run_retention
    from pgmill.project import open_project

    bp = BenchProject("retention").fresh()
    (bp.dir / "data").mkdir()
    (bp.dir / "data" / "orders.csv").write_text(f"order_id,customer_id,total,ordered_at\n1,1,1.00,{TODAY}\n")
    figures: dict[str, Any] = {"rows": args.rows}
    load = Load(bp.url, args.rows)
    proc = psutil.Process()
    for kind, month, archive in (("archive", dt.date(2020, 1, 1), ", archive: parquet"),
                                 ("drop", dt.date(2020, 2, 1), "")):
        (bp.dir / "contracts" / "orders.yaml").write_text(CONTRACT % archive)
        (bp.dir / "pgmill.yaml").write_text(yaml.safe_dump({"pipelines": {"orders": {
            "source": {"kind": "csv", "path": "data/orders.csv"}, "table": "orders",
            "contract": "contracts/orders.yaml", "mode": "merge"}}}))
        bp.run_pgmill("orders")
        fill(bp, month, args.rows)
        size = bp.sql("SELECT pg_total_relation_size(%s::regclass)", (f"orders_p{month:%Y%m}",))[0][0]
        log(f"{kind}: baseline {args.baseline}s")
        before = load.measure(args.baseline)
        rss0 = proc.memory_info().rss
        peak = [rss0]
        done = threading.Event()

        def watch(peak: list[int] = peak, done: threading.Event = done) -> None:
            while not done.is_set():
                peak[0] = max(peak[0], proc.memory_info().rss)
                time.sleep(0.05)

        w = threading.Thread(target=watch)
        w.start()
        log(f"{kind}: retention")
        ctx = open_project(bp.dir)
        during = load.measure(lambda ctx=ctx: run_retention(ctx).as_dict())
        done.set()
        w.join()
        report = during.pop("result")
        before.pop("result")
        [part] = report["partitions"]
        figures[kind] = {"partition_bytes": size, "before": before, "during": during, "partition": part,
                         "rss_growth_mb": round((peak[0] - rss0) / 2**20, 1)}
        log(f"{kind}: {part['seconds']} s; reader p95 {before['read_p95_ms']} -> {during['read_p95_ms']} ms")
    figures["server_version"] = bp.server_version()
    bp.stop()
    out = {"machine": machine(), **figures}
    save_to(OUT_DIR / "results_retention.json", "retention", out)
    write_md(out)


def write_md(f: dict[str, Any]) -> None:
    m = f["machine"]
    lines = [
        "# Retention: detaching and archiving a month while the table is read and written",
        "",
        f"Measured by `PYTHONPATH=src python bench/bench_retention.py --rows {f['rows']}` on {m['cores']} "
        f"cores ({m['cpu']}), embedded PostgreSQL {f['server_version']}, {time.strftime('%Y-%m-%d')}. One month of "
        f"{f['rows']:,} rows in a monthly partitioned `orders` (key (order_id, ordered_at)); a reader loops a key "
        "lookup over the whole table (every partition's index), a writer inserts current rows, each on its own "
        "connection; ungranted locks sampled from pg_locks every 20 ms. 'before' is the same loops for a few "
        "seconds just before, in the same run.",
        "",
        "| | partition | retention s | reader p95 before -> during (max) | writer p95 before -> during (max) "
        "| lock-wait samples (locks) | failed queries | client RSS growth |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind in ("archive", "drop"):
        k = f[kind]
        b, d, p = k["before"], k["during"], k["partition"]
        extra = f", Parquet {p['bytes'] / 2**20:.1f} MiB" if p.get("bytes") else ""
        lines.append(
            f"| {'detach, archive, drop' if kind == 'archive' else 'detach, drop'} | {k['partition_bytes'] / 2**20:.0f} MiB"
            f"{extra} | {p['seconds']} | {b['read_p95_ms']} -> {d['read_p95_ms']} ms ({d['read_max_ms']} ms) | "
            f"{b['write_p95_ms']} -> {d['write_p95_ms']} ms ({d['write_max_ms']} ms) | {d['lock_wait_samples']} "
            f"({'; '.join(d['locks_waited']) or 'none'}) | {len(d['errors'])} | {k['rss_growth_mb']} MiB |")
    lines += ["", "Raw figures: bench/out/results_retention.json.", ""]
    (BENCH_DIR / "RESULTS_retention.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
