"""Dirty data at clean speed (issue 16, item 1): the same TPC-H-like orders loaded clean and with ~2% defects.

The bench generates one set of orders twice: a clean file, and a dirty copy of the same rows where about 2%
carry a defect of the kinds real exports have (a status outside its accepted values, an unparsable price, an
unparsable date, a null in a required column, a duplicate key), plus just ten lines with a stray quote and ten
with an extra delimiter. Both are loaded with `pgmill run` (append, a 9-column contract with its rules) into a
fresh table, interleaved, medians of `--reps` runs; pandera on polars validates the dirty file alone (reading
it and checking the same rules, loading nothing) in the same run.

Goals: dirty / clean <= 1.3x, and pgmill's validate-and-load of the dirty file faster than pandera's validation.

Usage: python bench/bench_dirty.py [--rows N] [--reps N] [--out FILE] [--md FILE]
(needs pandera for the reference: `.venv/bin/pip install "pandera[polars]"`; not a pgmill dependency)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from common import BENCH_DIR, DATA_DIR, BenchProject, loadavg, log, machine, median, run_measured

SEED = 16
DEFECT_RATE = 0.02
STRAY_QUOTES = 10
EXTRA_DELIMITERS = 10
TABLE = "bench.orders"
PRIORITIES = ["1-URGENT", "2-HIGH", "3-MEDIUM", "4-NOT SPECIFIED", "5-LOW"]
HEADER = "o_orderkey,o_custkey,o_orderstatus,o_totalprice,o_orderdate,o_orderpriority,o_clerk,o_shippriority,o_comment"
WORDS = ("furiously regular deposits sleep carefully final packages boost quickly ironic accounts haggle "
         "slyly express requests wake blithely bold pinto beans nag fluffily even instructions cajole "
         "special theodolites among pending foxes").split()

# TPC-H's orders with the rules a user would write: a key, two required columns, two accepted-values lists,
# a minimum, a regex and every value parsed as its column's type; o_comment is free text with no rule.
CONTRACT = """\
columns:
  o_orderkey:      {type: bigint, primary_key: true}
  o_custkey:       {type: bigint, not_null: true}
  o_orderstatus:   {type: text, accepted_values: [F, O, P]}
  o_totalprice:    {type: "numeric(15,2)", min: 0}
  o_orderdate:     {type: date, not_null: true}
  o_orderpriority: {type: text, accepted_values: ["1-URGENT", "2-HIGH", "3-MEDIUM", "4-NOT SPECIFIED", "5-LOW"]}
  o_clerk:         {type: text, regex: '^Clerk#[0-9]{9}$'}
  o_shippriority:  {type: integer}
  o_comment:       {type: text}
"""
DEFECTS = ("bad_enum", "bad_number", "bad_date", "null_required", "duplicate_key")


# ---------------------------------------------------------------- data


def _columns(rows: int, rng: np.random.Generator) -> dict[str, pl.Series]:
    """The clean orders, every column as its CSV text."""
    keys = np.arange(1, rows + 1, dtype=np.int64) * 4  # TPC-H's sparse keys
    cents = rng.integers(85_000, 55_000_000, rows)
    days = rng.integers(0, 2400, rows)
    nwords = len(WORDS)
    w = rng.integers(0, nwords, (rows, 4))
    comment = pl.Series(np.array(WORDS)[w[:, 0]]) + " " + pl.Series(np.array(WORDS)[w[:, 1]]) + " " \
        + pl.Series(np.array(WORDS)[w[:, 2]]) + " " + pl.Series(np.array(WORDS)[w[:, 3]])
    # about 3% of comments hold a comma: quoted, as a CSV writer quotes them (a valid one-line record)
    comma = rng.random(rows) < 0.03
    comment = pl.select(pl.when(pl.lit(pl.Series(comma))).then(pl.lit('"') + comment.str.replace(" ", ", ", literal=True)
                                                                 + pl.lit('"')).otherwise(comment)).to_series()
    return {
        "o_orderkey": pl.Series(keys).cast(pl.Utf8),
        "o_custkey": pl.Series(rng.integers(1, 150_000, rows)).cast(pl.Utf8),
        "o_orderstatus": pl.Series(np.array(["F", "O", "P"])[rng.integers(0, 3, rows)]),
        "o_totalprice": (pl.Series(cents // 100).cast(pl.Utf8) + "." + pl.Series(cents % 100).cast(pl.Utf8).str.zfill(2)),
        "o_orderdate": pl.Series((np.datetime64("1992-01-01") + days).astype("datetime64[D]")).cast(pl.Utf8),
        "o_orderpriority": pl.Series(np.array(PRIORITIES)[rng.integers(0, 5, rows)]),
        "o_clerk": "Clerk#" + pl.Series(rng.integers(1, 1000, rows)).cast(pl.Utf8).str.zfill(9),
        "o_shippriority": pl.Series(np.zeros(rows, np.int64)).cast(pl.Utf8),
        "o_comment": comment,
    }


def _write(path: Path, cols: dict[str, pl.Series]) -> None:
    lines = pl.DataFrame(cols).select(pl.concat_str(list(cols), separator=",").alias("line"))
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as fh:
        fh.write(HEADER.encode() + b"\n")
        lines.write_csv(fh, include_header=False, quote_style="never")
    tmp.rename(path)


def _set(col: pl.Series, rows: np.ndarray, value: str | pl.Series) -> pl.Series:
    out = col.clone()
    return out.scatter(rows, [value] * len(rows) if isinstance(value, str) else value)


def data_files(rows: int) -> tuple[Path, Path, dict[str, int]]:
    """(clean file, dirty file, defects planted by kind), generated once per row count and seed."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    clean = DATA_DIR / f"tpch_orders_{rows}_s{SEED}_clean.csv"
    dirty = DATA_DIR / f"tpch_orders_{rows}_s{SEED}_dirty.csv"
    manifest = dirty.with_suffix(".json")
    if clean.exists() and dirty.exists() and manifest.exists():
        return clean, dirty, json.loads(manifest.read_text())
    log(f"generating {rows:,} orders, clean and dirty...")
    t = time.perf_counter()
    rng = np.random.default_rng(SEED)
    cols = _columns(rows, rng)
    _write(clean, cols)
    # one defect kind per hit row, never the first row (a duplicate copies the row before it)
    hit = np.flatnonzero(rng.random(rows) < DEFECT_RATE)
    hit = hit[hit > 0]
    kind = rng.integers(0, len(DEFECTS), len(hit))
    by = {k: hit[kind == i] for i, k in enumerate(DEFECTS)}
    cols["o_orderstatus"] = _set(cols["o_orderstatus"], by["bad_enum"], "X")
    bad_num, bad_date = by["bad_number"], by["bad_date"]
    cols["o_totalprice"] = _set(cols["o_totalprice"], bad_num[: len(bad_num) // 2], "12.3.4")
    cols["o_totalprice"] = _set(cols["o_totalprice"], bad_num[len(bad_num) // 2:], "n/a")
    cols["o_orderdate"] = _set(cols["o_orderdate"], bad_date[: len(bad_date) // 2], "1995-02-30")
    cols["o_orderdate"] = _set(cols["o_orderdate"], bad_date[len(bad_date) // 2:], "31/12/1996")
    nul = by["null_required"]
    cols["o_custkey"] = _set(cols["o_custkey"], nul[: len(nul) // 2], "")
    cols["o_orderdate"] = _set(cols["o_orderdate"], nul[len(nul) // 2:], "")
    dup = by["duplicate_key"]
    cols["o_orderkey"] = _set(cols["o_orderkey"], dup, cols["o_orderkey"].gather(dup - 1))
    # ten stray quotes and ten extra delimiters, spread over the file, on rows with no other defect
    free = np.setdiff1d(np.arange(1, rows), hit)
    picks = rng.choice(free, STRAY_QUOTES + EXTRA_DELIMITERS, replace=False)
    quotes, delims = np.sort(picks[:STRAY_QUOTES]), np.sort(picks[STRAY_QUOTES:])
    comment = cols["o_comment"].str.replace_all('"', "", literal=True).str.replace_all(",", "", literal=True)
    # half open a quote at a field's start and never close it, half put one in the middle of a field
    cols["o_comment"] = _set(cols["o_comment"], quotes[::2], '"' + comment.gather(quotes[::2]))
    cols["o_comment"] = _set(cols["o_comment"], quotes[1::2], '5" pipe ' + comment.gather(quotes[1::2]))
    cols["o_comment"] = _set(cols["o_comment"], delims, comment.gather(delims).str.replace(" ", ",", literal=True))
    _write(dirty, cols)
    planted = {k: len(v) for k, v in by.items()} | {"stray_quote": STRAY_QUOTES, "extra_delimiter": EXTRA_DELIMITERS}
    manifest.write_text(json.dumps(planted, indent=1) + "\n")
    log(f"  {time.perf_counter() - t:.1f}s; {clean.stat().st_size / 1e6:.0f} MB each; planted {planted}")
    return clean, dirty, planted


# ---------------------------------------------------------------- pandera, the reference


PANDERA = r'''
import sys, time, json
t = time.perf_counter()
import polars as pl
import pandera.polars as pa
from pandera.errors import SchemaErrors

# read as text, quotes off (polars refuses the stray quotes however its errors are set), then check the rules
df = pl.read_csv(sys.argv[1], infer_schema=False, truncate_ragged_lines=True, quote_char=None)
typed = df.with_columns(
    pl.col("o_orderkey").cast(pl.Int64, strict=False), pl.col("o_custkey").cast(pl.Int64, strict=False),
    pl.col("o_totalprice").cast(pl.Decimal(15, 2), strict=False),
    pl.col("o_orderdate").str.to_date("%Y-%m-%d", strict=False),
    pl.col("o_shippriority").cast(pl.Int32, strict=False))
schema = pa.DataFrameSchema({
    "o_orderkey": pa.Column(pl.Int64, unique=True, nullable=False),
    "o_custkey": pa.Column(pl.Int64, nullable=False),
    "o_orderstatus": pa.Column(pl.Utf8, pa.Check.isin(["F", "O", "P"]), nullable=True),
    "o_totalprice": pa.Column(pl.Decimal(15, 2), pa.Check.ge(0), nullable=True),
    "o_orderdate": pa.Column(pl.Date, nullable=False),
    "o_orderpriority": pa.Column(pl.Utf8, pa.Check.isin(["1-URGENT", "2-HIGH", "3-MEDIUM", "4-NOT SPECIFIED", "5-LOW"]), nullable=True),
    "o_clerk": pa.Column(pl.Utf8, pa.Check.str_matches(r"^Clerk#[0-9]{9}$"), nullable=True),
    "o_shippriority": pa.Column(pl.Int32, nullable=True),
    "o_comment": pa.Column(pl.Utf8, nullable=True),
})
try:
    schema.validate(typed, lazy=True)
    failures = 0
except SchemaErrors as exc:
    failures = len(exc.failure_cases)
print(json.dumps({"seconds": time.perf_counter() - t, "rows": df.height, "failure_cases": failures}))
'''


def run_pandera(path: Path) -> dict[str, Any]:
    import sys

    m = run_measured([sys.executable, "-c", PANDERA, str(path)], timeout=1800)
    if m.returncode != 0:
        raise RuntimeError(f"pandera failed: {m.stderr[-2000:]}")
    r = json.loads(m.stdout.strip().splitlines()[-1])
    return {"seconds": round(m.seconds, 3), "inner_seconds": round(r["seconds"], 3), "rows": r["rows"],
            "failure_cases": r["failure_cases"], "peak_rss_mb": round(m.peak_rss_mb, 1)}


# ---------------------------------------------------------------- the runs


def bench(rows: int, reps: int) -> dict[str, Any]:
    clean, dirty, planted = data_files(rows)
    proj = BenchProject("dirty").fresh()
    pipes = {name: {"source": {"kind": "csv", "path": str(path)}, "table": TABLE,
                    "contract": "contracts/orders.yaml", "mode": "append"} for name, path in
             (("clean", clean), ("dirty", dirty))}
    proj.configure(pipes, {"orders": CONTRACT})
    runs: dict[str, list[dict[str, Any]]] = {"clean": [], "dirty": [], "pandera": [], "copy": []}
    try:
        for name in ("clean", "dirty"):  # warm the page cache and create the table
            proj.reset(name, TABLE)
            proj.run_pgmill(name)
        order = ["clean", "dirty", "pandera", "copy"]
        for rep in range(reps):
            log(f"rep {rep + 1}/{reps} (load {loadavg()})")
            for kind in order[rep % 4:] + order[:rep % 4]:
                if kind == "pandera":
                    r = run_pandera(dirty)
                elif kind == "copy":  # the floor: PostgreSQL's own COPY of the clean file, no contract
                    proj.reset("clean", TABLE)
                    r = proj.psql_copy(TABLE, clean, rows, header=True)
                else:
                    proj.reset(kind, TABLE)
                    r = proj.run_pgmill(kind)
                runs[kind].append(r)
                log(f"  {kind:<8} {r['seconds']:7.2f}s")
    finally:
        proj.stop()
    s = {k: median([r["seconds"] for r in v]) for k, v in runs.items()}
    wall = {k: median([r.get("wall_seconds", r["seconds"]) for r in v]) for k, v in runs.items()}
    d = runs["dirty"][-1]
    return {
        "rows": rows, "reps": reps, "planted": planted, "bytes": dirty.stat().st_size,
        "dirty_counts": {k: d[k] for k in ("rows_read", "rows_inserted", "rows_quarantined", "rows_duplicate")},
        "median_seconds": s, "median_wall_seconds": wall,
        # CPU of the pgmill process (reading, validating, sending): steadier than seconds on a shared machine
        "median_client_cpu_s": {k: median([r["client_cpu_s"] for r in runs[k]]) for k in ("clean", "dirty")},
        "dirty_over_clean": round(s["dirty"] / s["clean"], 3),
        "dirty_wall_vs_pandera": round(wall["dirty"] / wall["pandera"], 3),
        "clean_over_raw_copy": round(s["clean"] / s["copy"], 3),
        "pandera_over_raw_copy": round(s["pandera"] / s["copy"], 3),
        "goals": {"dirty_over_clean_max": 1.3, "dirty_wall_vs_pandera_max": 1.0},
        "runs": runs,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_500_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--label", default="after")
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "results_dirty.json")
    a = ap.parse_args()
    data = bench(a.rows, a.reps)
    doc: dict[str, Any] = json.loads(a.out.read_text()) if a.out.exists() else {}
    doc[a.label] = {"measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(), **data}
    a.out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    log(json.dumps({k: v for k, v in data.items() if k != "runs"}, indent=1))


if __name__ == "__main__":
    main()
