"""Ingest benchmarks: `pgmill run` against raw `psql \\copy` of the same clean rows, in the same run.

Sections (each writes one section of the results file):

- ingest:   append, merge (cursor updated_at) into an empty table, and merge into a table that already holds
            every row (a re-load: all unchanged), against `psql \\copy` of the clean rows into the same table.
- memory:   peak RSS of the pgmill process on the 1x input and on a 3x input.
- parallel: the same rows split into 8 files, loaded with workers = 1, 2, 4.

Runs are interleaved (reference, then each subject, rep after rep, the order rotated every rep) and the
figures are medians. Every pgmill run is a subprocess (`python -m pgmill run PIPELINE --json`): its rows/s
come from the ledger (rows_read / seconds of the run), its peak RSS from `common.run_measured`.

Usage: python bench/bench_ingest.py [--rows N] [--reps N] [--sections ingest,memory,parallel] [--out FILE]
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any

from common import DATA_DIR, RESULTS_JSON, BenchProject, loadavg, log, median, save_to

SEED = 42
DEFECT_RATE = 0.02
TABLE = "bench.orders"
SPLIT_FILES = 8

# The "contract of about 8 rules", on the demo's orders columns and types: a primary key, 2 not-null,
# 1 accepted-values, 2 minimums, 1 regex and 1 row rule (and every value parsed as its column's type). It
# catches every defect kind the generator injects into orders.
CONTRACT = """\
# bench: the demo orders columns, 8 rules
columns:
  order_id:     {type: bigint, primary_key: true}
  customer_id:  {type: bigint, not_null: true}
  status:       {type: text, accepted_values: [F, O, P]}
  total:        {type: "numeric(12,2)", min: 0}
  ordered_at:   {type: date, not_null: true}
  updated_at:   {type: timestamptz}
  channel:      {type: text}
  currency:     {type: text, regex: '^[A-Z]{3}$'}
  discount:     {type: "numeric(12,2)", min: 0}
  coupon_code:  {type: text}
  ship_country: {type: text}
  ship_address: {type: text}
  client_ip:    {type: text}
  user_agent:   {type: text}
  note:         {type: text}
rules:
  - name: discount_not_above_total
    expr: discount <= total
"""
CONTRACT_RULES = 8


# ---------------------------------------------------------------- data (generated once, cached by rows + seed)


def orders_file(rows: int) -> Path:
    """The generated orders CSV of `rows` orders (about 2% defects), written once and reused."""
    from pgmill.demo.datagen import write_orders_csv

    path = DATA_DIR / f"orders_{rows}_s{SEED}_d{int(DEFECT_RATE * 1000)}.csv"
    if not path.exists():
        log(f"generating {path.name} ({rows:,} orders)...")
        tmp = path.with_suffix(".tmp")
        write_orders_csv(tmp, rows, seed=SEED, defect_rate=DEFECT_RATE)
        tmp.rename(path)
    return path


def split_files(src: Path, parts: int = SPLIT_FILES) -> list[Path]:
    """`src` cut into `parts` files of about equal size at line ends, each with the header (the generator
    never puts a newline inside a value, so a line is a record)."""
    folder = src.with_name(src.stem + f"_split{parts}")
    files = [folder / f"part_{i + 1:02d}.csv" for i in range(parts)]
    if all(f.exists() for f in files):
        return files
    folder.mkdir(parents=True, exist_ok=True)
    size = src.stat().st_size
    with src.open("rb") as fh:
        header = fh.readline()
        for i, f in enumerate(files):
            target = size * (i + 1) // parts
            tmp = f.with_suffix(".tmp")
            with tmp.open("wb") as out:
                out.write(header)
                while fh.tell() < target or i == parts - 1:
                    block = fh.read(min(8 << 20, max(1, target - fh.tell())) if i < parts - 1 else 8 << 20)
                    if not block:
                        break
                    out.write(block)
                if i < parts - 1:
                    out.write(fh.readline())  # finish the line the last block cut
            tmp.rename(f)
    return files


def warm_cache(path: Path) -> None:
    """Read a file once so that the first run to read it does not pay for the disk (a cold reference
    took 36-46 s in the first rep against 14-18 s in the others)."""
    buf = bytearray(8 << 20)
    with path.open("rb", buffering=0) as fh:
        while fh.readinto(buf):
            continue


def contract_hash() -> str:
    return hashlib.sha256(CONTRACT.encode()).hexdigest()[:8]


# ---------------------------------------------------------------- project


def pipelines(files: dict[str, Path | str]) -> dict[str, dict[str, Any]]:
    def one(path: Path | str, mode: str) -> dict[str, Any]:
        p: dict[str, Any] = {"source": {"kind": "csv", "path": str(path)}, "table": TABLE,
                             "contract": "contracts/orders.yaml", "mode": mode}
        if mode == "merge":
            p["cursor"] = "updated_at"
        return p

    out: dict[str, dict[str, Any]] = {}
    for name, path in files.items():
        out[f"{name}_append"] = one(path, "append")
        out[f"{name}_merge"] = one(path, "merge")
    return out


def open_project(files: dict[str, Path | str], workers: int = 1, name: str = "ingest") -> BenchProject:
    proj = BenchProject(name).fresh()
    proj.configure(pipelines(files), {"orders": CONTRACT}, workers)
    proj.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    return proj


def server_profile(proj: BenchProject) -> dict[str, Any]:
    """Server time of the statements since the last reset, by kind (pg_stat_statements)."""
    rows = proj.sql(
        "SELECT query, calls, total_exec_time FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 40")
    kinds: dict[str, float] = {}
    for q, _calls, ms in rows:
        text = " ".join(str(q).split()).upper()
        if text.startswith("COPY") and "PGMILL.QUARANTINE" in text:
            k = "copy_quarantine"
        elif text.startswith("COPY") and "PGMILL_STAGE" in text:
            k = "copy_stage"
        elif text.startswith("COPY"):
            k = "copy_target"
        elif text.startswith("WITH UP AS (INSERT") or ("ON CONFLICT" in text and "PGMILL_STAGE" in text):
            k = "insert_from_stage"
        elif text.startswith(("COMMIT", "CHECKPOINT")):
            k = "commit"
        else:
            k = "other"
        kinds[k] = kinds.get(k, 0.0) + float(ms) / 1000
    return {k: round(v, 3) for k, v in sorted(kinds.items())}


def measured_pgmill(proj: BenchProject, pipeline: str) -> dict[str, Any]:
    proj.sql("SELECT pg_stat_statements_reset()")
    r = proj.run_pgmill(pipeline)
    r["server_s"] = server_profile(proj)
    return r


# ---------------------------------------------------------------- sections


def bench_ingest(rows: int, reps: int, out: Path) -> dict[str, Any]:
    """append / merge / merge-unchanged against raw psql \\copy, interleaved, medians of `reps` runs."""
    src = orders_file(rows)
    proj = open_project({"main": src})
    try:
        log(f"[ingest] warm-up load of {src.name} and export of its clean rows...")
        proj.reset("main_append", None)
        warm = proj.run_pgmill("main_append")
        clean_rows = warm["rows_inserted"]
        clean = DATA_DIR / f"{src.stem}_clean_{contract_hash()}.csv"
        if not clean.exists():
            tmp = clean.with_suffix(".tmp")
            with proj.conn().cursor() as cur, tmp.open("wb") as fh:
                with cur.copy(f"COPY {TABLE} TO STDOUT (FORMAT csv)") as cp:
                    for block in cp:
                        fh.write(block)
            tmp.rename(clean)
        warm_cache(clean)  # the reference reads its file warm, as pgmill reads its own after the warm-up
        runs: dict[str, list[dict[str, Any]]] = {"psql_copy": [], "append": [], "merge": [], "merge_unchanged": []}

        def do(kind: str) -> None:
            if kind == "psql_copy":
                proj.reset("main_append", TABLE)
                r = proj.psql_copy(TABLE, clean, clean_rows)
            elif kind == "append":
                proj.reset("main_append", TABLE)
                r = measured_pgmill(proj, "main_append")
            else:  # merge into an empty table, then the same file again into the loaded table
                proj.reset("main_merge", TABLE)
                r = measured_pgmill(proj, "main_merge")
                runs["merge"].append(r)
                log(f"  merge            {r['seconds']:7.2f}s {r['rows_per_s']:>9,} rows/s rss {r['peak_rss_mb']:.0f} MB")
                proj.reset("main_merge", TABLE, truncate=False)
                proj.sql(f"VACUUM (ANALYZE) {TABLE}")  # a table that has been sitting there, as autovacuum leaves it
                proj.sql("CHECKPOINT")
                kind, r = "merge_unchanged", measured_pgmill(proj, "main_merge")
            runs[kind].append(r)
            log(f"  {kind:<16} {r['seconds']:7.2f}s {r['rows_per_s']:>9,} rows/s"
                + (f" rss {r['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in r else ""))

        order = ["psql_copy", "append", "merge"]
        for rep in range(reps):
            log(f"[ingest] rep {rep + 1}/{reps} (load {loadavg()})")
            for kind in order[rep % 3:] + order[:rep % 3]:
                do(kind)
        for r in runs["append"] + runs["merge"]:
            if r["rows_inserted"] != clean_rows:
                raise RuntimeError(f"pgmill inserted {r['rows_inserted']} rows, the warm-up {clean_rows}")
        for r in runs["merge_unchanged"]:
            if r["rows_unchanged"] != clean_rows:
                raise RuntimeError(f"the re-load left {r['rows_unchanged']} rows unchanged, expected {clean_rows}")

        ref = median([r["rows_per_s"] for r in runs["psql_copy"]])
        summary: dict[str, Any] = {"psql_copy": {"rows_per_s": ref, "seconds": median([r["seconds"] for r in runs["psql_copy"]])}}
        targets = {"append": 0.8, "merge": 0.5, "merge_unchanged": None}
        for kind in ("append", "merge", "merge_unchanged"):
            rs = runs[kind]
            rps = median([r["rows_per_s"] for r in rs])
            target = targets[kind]
            paired = median([r["rows_per_s"] / c["rows_per_s"] for r, c in zip(rs, runs["psql_copy"], strict=False)])
            summary[kind] = {
                "rows_per_s": rps, "seconds": median([r["seconds"] for r in rs]),
                "wall_seconds": median([r["wall_seconds"] for r in rs]),
                "peak_rss_mb": median([r["peak_rss_mb"] for r in rs]),
                "ratio_to_copy": round(rps / ref, 3),
                "ratios_per_rep": [round(r["rows_per_s"] / c["rows_per_s"], 3)
                                   for r, c in zip(rs, runs["psql_copy"], strict=False)],
                "ratio_median_paired": round(paired, 3),
                "target": target, "met": None if target is None else min(rps / ref, paired) >= target,
            }
        data = {
            "input": {"file": src.name, "orders": rows, "records": warm["rows_read"], "bytes": src.stat().st_size,
                      "clean_rows": clean_rows, "quarantined": warm["rows_quarantined"],
                      "duplicates": warm["rows_duplicate"], "defect_rate": DEFECT_RATE, "seed": SEED,
                      "contract_rules": CONTRACT_RULES},
            "postgres": proj.server_version(), "reps": reps, "summary": summary, "runs": runs,
        }
        save_to(out, "ingest", data)
        return data
    finally:
        proj.stop()


def bench_memory(rows: int, reps: int, out: Path, factor: int = 3) -> dict[str, Any]:
    """Peak RSS of pgmill (append) on the 1x file and on a `factor`x file, interleaved."""
    small, big = orders_file(rows), orders_file(rows * factor)
    proj = open_project({"small": small, "big": big})
    try:
        runs: dict[str, list[dict[str, Any]]] = {"small": [], "big": []}
        for rep in range(reps):
            for name in ("small", "big"):
                log(f"[memory] {name} rep {rep + 1}/{reps} (load {loadavg()})")
                proj.reset(f"{name}_append", TABLE)
                r = proj.run_pgmill(f"{name}_append")
                runs[name].append(r)
                log(f"  {name}: {r['seconds']:.2f}s {r['rows_per_s']:,} rows/s peak rss {r['peak_rss_mb']:.0f} MB")
        s_rss = median([r["peak_rss_mb"] for r in runs["small"]])
        b_rss = median([r["peak_rss_mb"] for r in runs["big"]])
        data = {
            "input": {"small": {"file": small.name, "orders": rows, "bytes": small.stat().st_size},
                      "big": {"file": big.name, "orders": rows * factor, "bytes": big.stat().st_size}},
            "summary": {
                "small_peak_rss_mb": s_rss, "big_peak_rss_mb": b_rss, "growth": round(b_rss / s_rss, 3),
                "small_rows_per_s": median([r["rows_per_s"] for r in runs["small"]]),
                "big_rows_per_s": median([r["rows_per_s"] for r in runs["big"]]),
                "limit_mb": 500, "met": max(s_rss, b_rss) < 500 and b_rss / s_rss < 1.15,
            },
            "runs": runs,
        }
        save_to(out, "memory", data)
        return data
    finally:
        proj.stop()


def bench_parallel(rows: int, reps: int, out: Path, workers: tuple[int, ...] = (1, 2, 4)) -> dict[str, Any]:
    """The rows split into 8 files, one pipeline with a glob, `workers` 1, 2, 4; psql \\copy of the clean rows
    interleaved as the reference."""
    src = orders_file(rows)
    parts = split_files(src)
    proj = open_project({"split": str(parts[0].parent / "part_*.csv")})
    clean = DATA_DIR / f"{src.stem}_clean_{contract_hash()}.csv"
    for f in [*parts, clean]:
        if f.exists():
            warm_cache(f)
    try:
        runs: dict[str, list[dict[str, Any]]] = {f"workers_{w}": [] for w in workers}
        runs["psql_copy"] = []
        clean_rows = None
        for rep in range(reps):
            seq: list[int | None] = [*workers, None]
            seq = seq[rep % len(seq):] + seq[:rep % len(seq)]
            for w in seq:
                if w is None:
                    if not clean.exists() or clean_rows is None:
                        continue  # the clean file comes from the ingest section (or the first load here)
                    proj.reset("split_append", TABLE)
                    r = proj.psql_copy(TABLE, clean, clean_rows)
                    runs["psql_copy"].append(r)
                    log(f"  psql_copy  {r['seconds']:7.2f}s {r['rows_per_s']:>9,} rows/s")
                    continue
                proj.configure(pipelines({"split": str(parts[0].parent / "part_*.csv")}), {"orders": CONTRACT}, w)
                proj.reset("split_append", TABLE)
                r = measured_pgmill(proj, "split_append")
                clean_rows = clean_rows or r["rows_inserted"]
                runs[f"workers_{w}"].append(r)
                log(f"  workers={w}  {r['seconds']:7.2f}s {r['rows_per_s']:>9,} rows/s rss {r['peak_rss_mb']:.0f} MB"
                    f" (load {loadavg()})")
        base = median([r["rows_per_s"] for r in runs["workers_1"]])
        ref = median([r["rows_per_s"] for r in runs["psql_copy"]]) if runs["psql_copy"] else None
        summary: dict[str, Any] = {}
        for w in workers:
            rps = median([r["rows_per_s"] for r in runs[f"workers_{w}"]])
            summary[f"workers_{w}"] = {
                "rows_per_s": rps, "seconds": median([r["seconds"] for r in runs[f"workers_{w}"]]),
                "peak_rss_mb": median([r["peak_rss_mb"] for r in runs[f"workers_{w}"]]),
                "speedup": round(rps / base, 3), "ratio_to_copy": round(rps / ref, 3) if ref else None,
            }
        if ref:
            summary["psql_copy"] = {"rows_per_s": ref, "seconds": median([r["seconds"] for r in runs["psql_copy"]])}
        data = {"input": {"files": len(parts), "orders": rows, "bytes": sum(p.stat().st_size for p in parts)},
                "summary": summary, "runs": runs, "reps": reps}
        save_to(out, "parallel", data)
        return data
    finally:
        proj.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sections", default="ingest,memory,parallel")
    ap.add_argument("--out", type=Path, default=RESULTS_JSON)
    a = ap.parse_args()
    for s in a.sections.split(","):
        {"ingest": bench_ingest, "memory": bench_memory, "parallel": bench_parallel}[s](a.rows, a.reps, a.out)


if __name__ == "__main__":
    main()
