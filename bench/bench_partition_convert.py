"""`pgmill partition TABLE`: converting a plain table of `--rows` rows into a monthly partitioned one while a
reader and a writer loop, against copying the same table with `CREATE TABLE AS` (no locks, no indexes) in the
same run.

A plain `orders` (key (order_id, ordered_at), one more index, rows over two years) is loaded by pgmill and
filled with generate_series; its contract then gains `partition:`. The reader loops a key lookup, the writer
inserts current rows, each on its own connection (the loops of bench_retention.py); ungranted locks are
sampled every 20 ms. Measured: the conversion's seconds, how long writers waited (SHARE ROW EXCLUSIVE held:
the copy) and readers at most (ACCESS EXCLUSIVE held: the swap), the loops' p95 and max, failed queries.

Usage: PYTHONPATH=src python bench/bench_partition_convert.py [--rows 1000000]
Figures go to bench/RESULTS_partition_convert.md (and bench/out/results_partition_convert.json).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import yaml

from bench_retention import COLUMNS, TODAY, Load
from common import BENCH_DIR, OUT_DIR, BenchProject, log, machine, save_to

CONTRACT = COLUMNS  # the retention bench's orders, here first as a plain table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    from pgmill.ingest.convert import partition_table
    from pgmill.project import open_project

    bp = BenchProject("partition_convert").fresh()
    (bp.dir / "data").mkdir()
    (bp.dir / "data" / "orders.csv").write_text(f"order_id,customer_id,total,ordered_at\n1,1,1.00,{TODAY}\n")
    (bp.dir / "contracts" / "orders.yaml").write_text(CONTRACT)
    (bp.dir / "pgmill.yaml").write_text(yaml.safe_dump({"pipelines": {"orders": {
        "source": {"kind": "csv", "path": "data/orders.csv"}, "table": "orders",
        "contract": "contracts/orders.yaml", "mode": "merge"}}}))
    bp.run_pgmill("orders")
    bp.sql("INSERT INTO orders SELECT i, i %% 1000, (i %% 10000) / 100.0, DATE '2020-01-01' + (i %% 730)"
           " FROM generate_series(2, %s) i", (args.rows,))
    bp.sql("CREATE INDEX orders_by_customer ON orders (customer_id)")
    bp.sql("VACUUM ANALYZE orders")
    bp.sql("CHECKPOINT")
    size = bp.sql("SELECT pg_total_relation_size('orders')")[0][0]
    t0 = time.perf_counter()
    bp.sql("CREATE TABLE orders_copy AS SELECT * FROM orders")
    reference_s = round(time.perf_counter() - t0, 2)
    bp.sql("DROP TABLE orders_copy")
    bp.sql("CHECKPOINT")
    (bp.dir / "contracts" / "orders.yaml").write_text(
        CONTRACT + "partition: {by: ordered_at, interval: month, premake: 1}\n")
    load = Load(bp.url, args.rows)
    before = load.measure(3.0)
    before.pop("result")
    log("converting")
    ctx = open_project(bp.dir)
    during = load.measure(lambda: partition_table(ctx, "orders").as_dict())
    plan = during.pop("result")
    figures: dict[str, Any] = {
        "rows": args.rows, "table_bytes": size, "create_table_as_s": reference_s, "before": before,
        "during": during, "write_wait_s": plan["write_wait_s"], "exclusive_s": plan["exclusive_s"],
        "partitions": len(plan["partitions"]), "estimated_write_wait_s": plan["estimated_write_wait_s"],
        "relkind_after": bp.sql("SELECT relkind FROM pg_class WHERE oid = 'orders'::regclass")[0][0],
        "server_version": bp.server_version(),
    }
    log(f"converted in {during['seconds']} s (writers waited {plan['write_wait_s']} s, readers at most "
        f"{plan['exclusive_s']} s); CREATE TABLE AS {reference_s} s")
    bp.stop()
    out = {"machine": machine(), **figures}
    save_to(OUT_DIR / "results_partition_convert.json", "partition_convert", out)
    write_md(out)


def write_md(f: dict[str, Any]) -> None:
    m, b, d = f["machine"], f["before"], f["during"]
    lines = [
        "# Converting a plain table into a partitioned one (`pgmill partition TABLE`)",
        "",
        f"Measured by `PYTHONPATH=src python bench/bench_partition_convert.py --rows {f['rows']}` on {m['cores']} "
        f"cores ({m['cpu']}), embedded PostgreSQL {f['server_version']}, {time.strftime('%Y-%m-%d')}: a plain "
        f"`orders` of {f['rows']:,} rows ({f['table_bytes'] / 2**20:.0f} MiB with its key and one index) over two "
        f"years, converted into {f['partitions']} monthly partitions while a reader loops a key lookup and a "
        "writer inserts current rows (each on its own connection). Reference in the same run: `CREATE TABLE AS "
        "SELECT *` of the same table (a copy without indexes or locks).",
        "",
        "| conversion s | writers waited s (SHARE ROW EXCLUSIVE) | readers waited at most s (ACCESS EXCLUSIVE) "
        "| CREATE TABLE AS s | reader p95 before -> during (max) | writer p95 before -> during (max) | failed "
        "queries |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| {d['seconds']} | {f['write_wait_s']} | {f['exclusive_s']} | {f['create_table_as_s']} | "
        f"{b['read_p95_ms']} -> {d['read_p95_ms']} ms ({d['read_max_ms']} ms) | {b['write_p95_ms']} -> "
        f"{d['write_p95_ms']} ms ({d['write_max_ms']} ms) | {len(d['errors'])} |",
        "",
        f"The dry run estimated {f['estimated_write_wait_s']} s for the writers' wait "
        "(db/convert.py COPY_ROWS_PER_S). Readers wait while the swap's transaction commits: on the embedded "
        "server (`wal_level = minimal`) the commit fsyncs the new table's files, which were not WAL-logged (the "
        "swap's own statements took 2 ms); a server with `wal_level = replica` logs the copy as it goes instead. "
        "Raw figures: bench/out/results_partition_convert.json.",
        "",
    ]
    (BENCH_DIR / "RESULTS_partition_convert.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
