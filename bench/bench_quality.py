"""Quality benchmark: every built-in table rule on a 5-million-row orders table, against a plain
`SELECT count(*)` of the same table in the same run.

Counted: reads of the checked table. Each query the checker runs is EXPLAINed (ANALYZE, FORMAT JSON) and
the scan nodes on the table are counted (a parallel scan is one node, however many workers share it); the
delta of pg_stat_user_tables.seq_scan + idx_scan around one check run is given beside it (parallel workers
each count there). Two shapes of the table: without any index (a model table: the unique and whole-row
checks need the GROUP BY scan), and with its primary key (the index proves them: one scan).

Not in the figure: custom SQL (the user's own query, whatever it reads) and near-duplicates (their own
read of the chosen columns); the foreign key reads the parent table (250k customers), not the checked one.

Usage: python bench/bench_quality.py [--rows N] [--reps N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from psycopg import sql

from common import BENCH_DIR, DATA_DIR, BenchProject, log, save

COLUMNS = """order_id bigint, customer_id bigint, status text, total numeric(12,2), ordered_at date,
  updated_at timestamptz, channel text, currency text, discount numeric(12,2), coupon_code text,
  ship_country text, ship_address text, client_ip text, user_agent text, note text"""

CONTRACT = """\
columns:
  order_id:    {type: bigint, primary_key: true}
  customer_id: {type: bigint}
  status:      {type: text}
  total:       {type: "numeric(12,2)"}
  ordered_at:  {type: date}
  updated_at:  {type: timestamptz}
checks:
  unique: [order_id, [customer_id, ordered_at, updated_at]]
  not_null: [customer_id, ordered_at]
  completeness: {coupon_code: 10, client_ip: 50, note: {threshold: 20, severity: warn}}
  accepted_values:
    status: [F, O, P]
    channel: [web, app, store, phone]
    currency: {values: [USD, GBP, EUR, CAD, AUD, SEK, PLN, BRL], threshold: 99}
  ranges:
    total: {min: 0, max: 1000000}
    discount: {min: 0}
    ordered_at: {min: "2020-01-01", max: "2030-12-31"}
  foreign_keys: {customer_id: shop.customers(customer_id)}
  freshness: {max_age: 36500 days}
  row_count: {min: 1}
  volume: {runs: 10, severity: warn}
  duplicates: {exact_rows: true}
"""
RULES = 17  # as listed above, row_count and volume included


def _data(rows: int) -> Path:
    from pgmill.demo.datagen import write_orders_csv

    path = DATA_DIR / f"orders_{rows}_s42_d0.csv"
    if not path.exists():
        log(f"generating {rows:,} orders into {path}")
        write_orders_csv(path, rows, seed=42, defect_rate=0.0)
    return path


def _scan_nodes(plan: dict[str, Any], table: str) -> int:
    here = 1 if plan.get("Relation Name") == table and "Scan" in plan.get("Node Type", "") else 0
    return here + sum(_scan_nodes(p, table) for p in plan.get("Plans", []))


def _explained_scans(bp: BenchProject, ctx: Any) -> tuple[int, list[str]]:
    """Reads of shop.orders in the plans of the queries the checker runs for this contract."""
    from pgmill.quality.checks import project_targets
    from pgmill.quality.groups import compile_groups
    from pgmill.quality.rules import GROUP_KINDS, SCAN_KINDS, flatten
    from pgmill.quality.scan import compile_aggregate
    from pgmill.quality.table_info import table_info

    [target] = project_targets(ctx)
    rules = flatten(target.contract.checks, target.cursor)
    conn = bp.conn()
    info = table_info(conn, target.table)
    assert info is not None
    info.sample_key = tuple(target.contract.primary_key)
    queries = [compile_aggregate(conn, info, [r for r in rules if r.kind in SCAN_KINDS]).query]
    group = compile_groups(info, [r for r in rules if r.kind in GROUP_KINDS]).query
    if group is not None:
        queries.append(group)
    total, shapes = 0, []
    for q in queries:
        [[doc]] = bp.sql(b"EXPLAIN (ANALYZE, FORMAT JSON) " + q.as_bytes(conn))
        plan = (json.loads(doc) if isinstance(doc, str) else doc)[0]["Plan"]
        total += _scan_nodes(plan, "orders")
        shapes.append(plan["Node Type"])
    return total, shapes


def _stat_scans(bp: BenchProject) -> int:
    bp.sql("SELECT pg_stat_clear_snapshot()")
    [[n]] = bp.sql("SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_user_tables"
                   " WHERE schemaname = 'shop' AND relname = 'orders'")
    return int(n)


def _measure(bp: BenchProject, ctx: Any, reps: int, label: str) -> dict[str, Any]:
    from pgmill.quality.checks import run_checks

    counts, checks, stat_deltas = [], [], []
    for _ in range(reps):  # interleaved: reference, then the checks
        t0 = time.perf_counter()
        bp.sql("SELECT count(*) FROM shop.orders")
        counts.append(time.perf_counter() - t0)
        before = _stat_scans(bp)
        t0 = time.perf_counter()
        report = run_checks(ctx)
        checks.append(time.perf_counter() - t0)
        time.sleep(0.6)  # let the checker's backend (closed) publish its table statistics
        stat_deltas.append(_stat_scans(bp) - before)
    scans, shapes = _explained_scans(bp, ctx)
    rules = [r for r in report.results]
    out = {
        "label": label, "scans": scans, "plan_roots": shapes, "stat_scan_delta": stat_deltas[-1],
        "count_seconds": round(statistics.median(counts), 3), "check_seconds": round(statistics.median(checks), 3),
        "ratio": round(statistics.median(checks) / statistics.median(counts), 2),
        "rules": len(rules), "statuses": {s: sum(1 for r in rules if r.status == s) for s in
                                          ("pass", "warn", "fail", "error", "skipped")},
    }
    log(f"{label}: {out}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    from pgmill.project import open_project

    data = _data(args.rows)
    bp = BenchProject("quality").fresh()
    try:
        bp.configure({"orders": {"source": {"kind": "csv", "path": str(data)}, "table": "shop.orders",
                                 "contract": "contracts/orders.yaml", "cursor": "updated_at"}},
                     {"orders": CONTRACT})
        bp.sql("CREATE SCHEMA shop")
        bp.sql(sql.SQL("CREATE TABLE shop.orders ({})").format(sql.SQL(COLUMNS)))
        bp.sql("CREATE TABLE shop.customers (customer_id bigint PRIMARY KEY)")
        bp.sql("INSERT INTO shop.customers SELECT generate_series(1, %s)", (max(1, args.rows // 20),))
        log(f"loading {data.name}")
        with bp.conn().cursor() as cur, cur.copy("COPY shop.orders FROM STDIN (FORMAT csv, HEADER)") as cp, \
                data.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                cp.write(chunk)
        bp.sql("VACUUM ANALYZE shop.orders")
        bp.sql("VACUUM ANALYZE shop.customers")
        ctx = open_project(bp.dir)
        no_index = _measure(bp, ctx, args.reps, "no index (a model table)")
        bp.sql("ALTER TABLE shop.orders ADD PRIMARY KEY (order_id)")
        bp.sql("CREATE UNIQUE INDEX ON shop.orders (customer_id, ordered_at, updated_at)")
        bp.sql("VACUUM ANALYZE shop.orders")
        with_pk = _measure(bp, ctx, args.reps, "primary key and unique index (a loaded table)")
        [[version]] = bp.sql("SHOW server_version")
        [[size]] = bp.sql("SELECT pg_size_pretty(pg_table_size('shop.orders'))")
    finally:
        bp.stop()
    result = {"rows": args.rows, "table_size": size, "postgres": version, "reps": args.reps,
              "rules_in_contract": RULES, "target_scans": 2, "runs": [no_index, with_pk]}
    save("quality", result)
    _write_md(result)


def _write_md(r: dict[str, Any]) -> None:
    lines = [
        "# Quality checks benchmark", "",
        f"Every built-in table rule of a contract ({r['rules_in_contract']} rules: 2 unique keys, 2 not-null, "
        "3 completeness, 3 accepted-values, 3 ranges, 1 foreign key to a 250k-row parent, freshness, row count, "
        "volume, whole-row duplicates) on "
        f"{r['rows']:,} orders ({r['table_size']}), PostgreSQL {r['postgres']} (embedded, default settings); "
        f"medians of {r['reps']} interleaved runs against a plain `count(*)` query on the same table. "
        "Reads of the table are counted from EXPLAIN (ANALYZE, FORMAT JSON) of the checker's queries (one "
        "node per scan, parallel or not); the pg_stat_user_tables delta counts each parallel worker and the "
        "checker's catalog lookups too. Target: at most 2 reads.", "",
        "| table | reads of the table (EXPLAIN) | target | met | pg_stat scan delta | `count(*)` s | checks s "
        "| checks / count(*) | results |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for run in r["runs"]:
        st = ", ".join(f"{v} {k}" for k, v in run["statuses"].items() if v)
        lines.append(f"| {run['label']} | {run['scans']} | {r['target_scans']} | "
                     f"{'yes' if run['scans'] <= r['target_scans'] else 'no'} | {run['stat_scan_delta']} | "
                     f"{run['count_seconds']} | {run['check_seconds']} | {run['ratio']}x | {st} |")
    lines += ["", "Not counted: custom SQL (the user's query reads what it reads), near-duplicate search "
              "(its own read of the chosen text columns) and, when whole rows repeat, reading the sampled rows "
              "back by their addresses (at most 10 rows; none here). Run: `python bench/bench_quality.py` "
              "(`--rows 500000 --reps 1` for a smoke run).", ""]
    (BENCH_DIR / "RESULTS_quality.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
