"""Source-bound ingest: an HTTP JSON API that answers each page after 50 ms, fetched 1, 4 and 8 pages at once.

The API is tests/fake_api.py (page-number pagination, 100 records a page, ~100 pages), served from this
process on 127.0.0.1; pgmill runs as a subprocess (`python -m pgmill run PIPELINE --json`) with
`pagination.concurrency` = 1, 4, 8. The reference is concurrency 1 (sequential fetching) in the same run;
runs are interleaved and the figures are medians.

Usage: python bench/bench_http.py [--pages N] [--reps N] [--delay-ms N] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from common import BENCH_DIR, RESULTS_JSON, BenchProject, loadavg, log, median, save_to

sys.path.insert(0, str(BENCH_DIR.parent))  # tests/fake_api.py

PAGE_SIZE = 100
TABLE = "bench.items"
CONTRACT = """\
columns:
  id:         {type: bigint, primary_key: true}
  customer:   {type: jsonb}
  status:     {type: text, accepted_values: [F, O, P]}
  total:      {type: "numeric(12,2)", min: 0}
  tags:       {type: jsonb}
  updated_at: {type: timestamptz, not_null: true}
"""


def bench_http(pages: int, reps: int, out: Path, delay_ms: int = 50,
               concurrency: tuple[int, ...] = (1, 4, 8)) -> dict[str, Any]:
    from tests.fake_api import FakeApi, make_records

    records = pages * PAGE_SIZE - PAGE_SIZE // 2  # the last page is short: the sweep ends there
    api = FakeApi(make_records(records), style="page", page_size=PAGE_SIZE, delay_s=delay_ms / 1000).start()
    proj = BenchProject("http").fresh()
    try:
        pipes = {f"api_c{c}": {"source": api.source(concurrency=c), "table": TABLE, "contract": "contracts/items.yaml",
                               "mode": "append"} for c in concurrency}
        proj.configure(pipes, {"items": CONTRACT}, workers=1)
        runs: dict[str, list[dict[str, Any]]] = {f"concurrency_{c}": [] for c in concurrency}
        for rep in range(reps):
            seq = list(concurrency)
            seq = seq[rep % len(seq):] + seq[:rep % len(seq)]
            for c in seq:
                proj.reset(f"api_c{c}", TABLE)
                api.max_in_flight = 0
                served = len(api.seen)
                r = proj.run_pgmill(f"api_c{c}")
                if r["rows_inserted"] != records:
                    raise RuntimeError(f"concurrency {c}: inserted {r['rows_inserted']} of {records} records")
                r["requests"] = len(api.seen) - served
                r["max_in_flight"] = api.max_in_flight
                runs[f"concurrency_{c}"].append(r)
                log(f"[http] concurrency={c}: {r['seconds']:.2f}s {r['rows_per_s']:,} rows/s, {r['requests']} requests,"
                    f" {r['max_in_flight']} at once (load {loadavg()})")
        base = median([r["rows_per_s"] for r in runs[f"concurrency_{concurrency[0]}"]])
        summary: dict[str, Any] = {}
        for c in concurrency:
            rs = runs[f"concurrency_{c}"]
            rps = median([r["rows_per_s"] for r in rs])
            summary[f"concurrency_{c}"] = {
                "rows_per_s": rps, "seconds": median([r["seconds"] for r in rs]),
                "wall_seconds": median([r["wall_seconds"] for r in rs]),
                "speedup": round(rps / base, 3), "max_in_flight": max(r["max_in_flight"] for r in rs),
                "peak_rss_mb": median([r["peak_rss_mb"] for r in rs]),
            }
        best = max(summary[f"concurrency_{c}"]["speedup"] for c in concurrency[1:])
        summary["target"] = 3.0
        summary["met"] = best >= 3.0
        # the floor: pages one after another at the API's delay, and the same `c` at a time
        summary["ideal_seconds"] = {f"concurrency_{c}": round((pages + 1) * delay_ms / 1000 / c, 2) for c in concurrency}
        data = {"input": {"records": records, "pages": pages, "page_size": PAGE_SIZE, "delay_ms": delay_ms,
                          "style": "page"},
                "postgres": proj.server_version(), "reps": reps, "summary": summary, "runs": runs}
        save_to(out, "http", data)
        return data
    finally:
        proj.stop()
        api.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=100)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--delay-ms", type=int, default=50)
    ap.add_argument("--out", type=Path, default=RESULTS_JSON)
    a = ap.parse_args()
    bench_http(a.pages, a.reps, a.out, a.delay_ms)


if __name__ == "__main__":
    main()
