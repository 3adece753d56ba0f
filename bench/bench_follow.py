"""Arrival to queryable in a followed folder (`pgmill run --follow`), at the default interval.

A writer renames a file of `--rows` orders into the followed folder every `--every` seconds for
`--seconds`; `pgmill run --follow` (the default interval, 1 s) loads them. Each file's load step records
`arrival_to_queryable_s` (its modification time to its last checkpoint's commit); the figures are their
p50/p95/p99. Two settings, each its own session: `--settle 0` (files renamed into place are complete) and
the default `--settle 1`. The reference in the same run: the same files loaded by one batch `pgmill run`
started every interval (a poll from cron), measured the same way, and raw COPY of one such file.

Usage: python bench/bench_follow.py [--rows N] [--every S] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench_ingest import CONTRACT
from common import BENCH_DIR, BenchProject, loadavg, log, machine, pgmill_env

TABLE = "bench.orders"


def _orders(first: int, n: int) -> str:
    """`n` clean orders with bench_ingest's columns (its 8-rule contract)."""
    lines = ["order_id,customer_id,status,total,ordered_at,updated_at,channel,currency,discount,coupon_code,"
             "ship_country,ship_address,client_ip,user_agent,note"]
    for i in range(first, first + n):
        lines.append(f"{i},{1000 + i % 97},{'FOP'[i % 3]},{i % 500}.25,2024-03-{1 + i % 28:02d},"
                     f"2024-03-01T10:00:00Z,web,EUR,0.00,,DE,Main St {i},10.0.0.{i % 250},bench,")
    return "\n".join(lines) + "\n"


def _writer(inbox: Path, rows: int, every: float, seconds: float, stop: threading.Event) -> int:
    """Rename a new file into `inbox` every `every` seconds; how many it wrote."""
    n, start = 0, time.monotonic()
    while not stop.is_set() and time.monotonic() - start < seconds:
        tmp = inbox.parent / f"f{n:05d}.tmp"
        tmp.write_text(_orders(n * rows + 1, rows))
        os.replace(tmp, inbox / f"f{n:05d}.csv")
        n += 1
        stop.wait(max(0.0, start + n * every - time.monotonic()))
    return n


def _latencies(proj: BenchProject, since: float) -> list[float]:
    rows = proj.sql("SELECT (detail->>'arrival_to_queryable_s')::float8 FROM pgmill.run_steps"
                    " WHERE detail ? 'arrival_to_queryable_s' AND extract(epoch FROM finished_at) >= %s", (since,))
    return sorted(r[0] for r in rows)


def _quantiles(xs: list[float]) -> dict[str, float]:
    q = statistics.quantiles(xs, n=100, method="inclusive") if len(xs) > 1 else xs * 99
    return {"files": len(xs), "p50_s": round(q[49], 3), "p95_s": round(q[94], 3), "p99_s": round(q[98], 3),
            "max_s": round(max(xs), 3)}


def _session(proj: BenchProject, inbox: Path, args: argparse.Namespace, settle: float | None) -> dict[str, Any]:
    """One writer session against `pgmill run --follow` (settle given) or a batch run every second (None)."""
    proj.reset("orders", TABLE)
    for f in inbox.glob("*.csv"):
        f.unlink()
    since = time.time()
    stop = threading.Event()
    env = pgmill_env()
    base = [sys.executable, "-m", "pgmill", "run", "orders", "--project", str(proj.dir), "--json"]
    follower = None
    poller = None
    if settle is not None:
        follower = subprocess.Popen([*base, "--follow", "--settle", str(settle)], env={**os.environ, **env},
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    else:
        def poll() -> None:  # cron at 1 s: a batch run, then the rest of the second
            while not stop.is_set():
                t = time.monotonic()
                subprocess.run([*base, "--no-check", "--no-transform"], env={**os.environ, **env},
                               capture_output=True, check=True)
                stop.wait(max(0.0, 1.0 - (time.monotonic() - t)))
        poller = threading.Thread(target=poll)
        poller.start()
    time.sleep(3)  # start-up, not measured: the first file comes after it
    la = loadavg()
    files = _writer(inbox, args.rows, args.every, args.seconds, stop)
    deadline = time.monotonic() + 60
    while len(_latencies(proj, since)) < files and time.monotonic() < deadline:
        time.sleep(0.2)
    stop.set()
    if follower is not None:
        follower.send_signal(signal.SIGTERM)
        out, err = follower.communicate(timeout=60)
        if follower.returncode != 0:
            raise RuntimeError(f"pgmill run --follow failed: {err[-2000:]}")
        [run] = json.loads(out)["loads"]
        assert run["status"] == "succeeded" and run["rows_inserted"] == files * args.rows, run
    if poller is not None:
        poller.join()
    lat = _latencies(proj, since)
    assert len(lat) == files, f"{len(lat)} of {files} files measured"
    return {**_quantiles(lat), "loadavg_1m": la[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1000, help="orders per file")
    ap.add_argument("--every", type=float, default=1.0, help="seconds between two files")
    ap.add_argument("--seconds", type=float, default=60.0, help="how long the writer writes, per session")
    args = ap.parse_args()
    proj = BenchProject("follow").fresh()
    inbox = proj.dir / "inbox"
    inbox.mkdir()
    try:
        proj.configure({"orders": {"source": {"kind": "csv", "path": "inbox/*.csv"}, "table": TABLE,
                                   "contract": "contracts/orders.yaml", "mode": "append"}}, {"orders": CONTRACT})
        sessions = {"follow, settle 0": _session(proj, inbox, args, 0.0),
                    "follow, settle 1 s (default)": _session(proj, inbox, args, 1.0),
                    "batch run every 1 s (reference)": _session(proj, inbox, args, None)}
        for name, s in sessions.items():
            log(f"  {name}: {s}")
        (BENCH_DIR / "results_follow.json").write_text(json.dumps(
            {"measured_at": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "args": vars(args),
             "sessions": sessions}, indent=2) + "\n")
        (BENCH_DIR / "RESULTS_follow.md").write_text(render(sessions, args, proj.server_version()))
        log((BENCH_DIR / "RESULTS_follow.md").read_text())
    finally:
        proj.stop()


def render(sessions: dict[str, dict[str, Any]], args: argparse.Namespace, version: str) -> str:
    m = machine()
    lines = [
        "# Arrival to queryable: a followed folder",
        "",
        f"Generated by `python bench/bench_follow.py --rows {args.rows} --every {args.every} --seconds "
        f"{args.seconds}` on {time.strftime('%Y-%m-%d %H:%M')} (figures also in `bench/results_follow.json`).",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; Python {m['python']}; PostgreSQL {version} "
        "(embedded). A file of orders (8-rule contract) renamed into the folder every "
        f"{args.every:g} s for {args.seconds:g} s per session; each file's seconds from its modification time to "
        "the commit that made it queryable (`arrival_to_queryable_s` of its load step).",
        "",
        "| session | files | p50 s | p95 s | p99 s | max s | load avg |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in sessions.items():
        lines.append(f"| {name} | {s['files']} | {s['p50_s']} | {s['p95_s']} | {s['p99_s']} | {s['max_s']} | "
                     f"{s['loadavg_1m']} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
