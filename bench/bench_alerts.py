"""Alert latency: from a failed run written to pgmill.runs to its message arriving at a webhook on 127.0.0.1.

The database holds a history (`--history` finished runs and as many expected runs over 20 pipelines and 30
days, quality results, tuning reports) and the project has one rule of every kind but cost, so each
evaluation reads what it would in production. Each trial writes one failed run of a new pipeline and waits
for "FIRING run_failed: <that pipeline>" at the webhook (apprise's json:// channel); latency = arrival -
commit of the row. Two figures:

1. evaluation + delivery: `evaluate_alerts` called right after the commit, on a kept connection (what one
   tick's hook does); its own duration beside it.
2. end to end as `pgmill serve` runs it: a `Service` ticking every `--ticks` seconds (5 is its default) with
   the alert hook (`AlertHook`: the evaluation in a background thread after each tick), the failed run written
   at a random moment of the tick. Bounded by one tick plus one evaluation.

Target: p95 < 5 s end to end at the default tick. Figures go to bench/RESULTS_alerts.md (and
bench/out/results_alerts.json).

Usage: python bench/bench_alerts.py [--trials N] [--ticks 5,1] [--history N]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import random
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from common import BENCH_DIR, OUT_DIR, BenchProject, loadavg, log, machine, save_to

TARGET_P95_S = 5.0
RULES: list[dict[str, Any]] = [
    {"kind": "run_failed"}, {"kind": "consecutive_failures", "count": 3}, {"kind": "late_run", "after": "10m"},
    {"kind": "missed_run"}, {"kind": "freshness", "max_age": "1d"}, {"kind": "quality_failed"},
    {"kind": "quarantine_rate", "above": 5}, {"kind": "query_p95"},
    {"kind": "success_rate", "below": 50, "window": "30d", "pipelines": [f"hist_{i}" for i in range(20)]},
]


class Webhook:
    """Records when each "FIRING run_failed: NAME" message arrives."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.cond = threading.Condition()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                at = time.perf_counter()
                title = str(body.get("title", ""))
                if " FIRING run_failed: " in title:
                    with outer.cond:
                        outer.arrived.setdefault(title.rsplit(": ", 1)[1], at)
                        outer.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                """No request log: the receiver counts hits instead."""

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, name: str, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while name not in self.arrived and time.monotonic() < deadline:
                self.cond.wait(deadline - time.monotonic())
            return self.arrived.get(name)


def setup(history: int) -> tuple[BenchProject, Any, Webhook]:
    from pgmill.db.migrations import migrate
    from pgmill.project import open_project

    bp = BenchProject("alerts").fresh()
    hook = Webhook()
    (bp.dir / "contracts" / "orders.yaml").write_text("columns:\n  id: {type: bigint, primary_key: true}\n")
    doc = {"pipelines": {"orders": {"source": {"kind": "csv", "path": "data/*.csv"}, "table": "orders",
                                    "contract": "contracts/orders.yaml"}},
           "alerts": {"channels": {"hook": f"json://127.0.0.1:{hook.port}/alerts"}, "rules": RULES,
                      "digest_over": 1000}}
    (bp.dir / "pgmill.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    os.environ["PGMILL_DATABASE_URL"] = bp.url
    conn = bp.conn()
    migrate(conn)
    per = max(history // 20, 1)
    conn.execute(
        "INSERT INTO pgmill.runs (pipeline, status, started_at, finished_at, rows_read, rows_quarantined)"
        " SELECT 'hist_' || (i %% 20), 'succeeded', now() - make_interval(mins => i * 2) - interval '1 minute',"
        " now() - make_interval(mins => i * 2), 1000, i %% 7 FROM generate_series(1, %s) i", (per * 20,))
    conn.execute(
        "INSERT INTO pgmill.expected_runs (job, scheduled_for, state, finished_at)"
        " SELECT 'pipeline:hist_' || (i %% 20), date_trunc('minute', now()) - make_interval(mins => i * 2),"
        " 'succeeded', now() - make_interval(mins => i * 2) FROM generate_series(1, %s) i", (per * 20,))
    conn.execute(
        "INSERT INTO pgmill.quality_results (run_id, table_name, rule, kind, rows_checked, rows_failed, pass_rate,"
        " threshold, severity, status) SELECT r, 'public.t' || (r % 20), 'not_null:c' || c, 'not_null', 1000, 0,"
        " 100, 100, 'error', 'pass' FROM generate_series(1, 500) r, generate_series(1, 5) c")
    report = {"queries": [{"name": f"q{i}", "source": "declared", "target_ms": 100} for i in range(10)],
              "applied": {"after": {f"q{i}": {"p95_ms": 5.0 + i} for i in range(10)}}}
    for _ in range(50):
        conn.execute("INSERT INTO pgmill.tuning_runs (mode, status, finished_at, report)"
                     " VALUES ('apply', 'succeeded', now(), %s::jsonb)", (json.dumps(report),))
    conn.execute("INSERT INTO pgmill.state (pipeline, cursor_value) VALUES ('orders', '1')")
    conn.execute("ANALYZE")
    return bp, open_project(bp.dir), hook


def fail(conn: Any, name: str) -> float:
    conn.execute("INSERT INTO pgmill.runs (pipeline, status, finished_at, error) VALUES"
                 " (%s, 'failed', clock_timestamp(), 'the source went away (bench)')", (name,))
    return time.perf_counter()  # autocommit: the row is committed when execute returns


def summary(xs: list[float]) -> dict[str, float]:
    s = sorted(xs)
    return {"n": len(s), "p50": round(statistics.median(s), 4),
            "p95": round(s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))], 4),
            "max": round(s[-1], 4), "mean": round(statistics.fmean(s), 4)}


def bench_direct(bp: BenchProject, ctx: Any, hook: Webhook, trials: int) -> dict[str, Any]:
    from pgmill.observe.alerts import evaluate_alerts
    from pgmill.observe.deliver import warm_up

    warm_up()
    eval_conn = ctx.target.connect(autocommit=True, application_name="pgmill alerts")
    evaluate_alerts(ctx, conn=eval_conn)  # the history's own alerts (if any) out of the way
    latencies, durations = [], []
    for i in range(trials):
        name = f"direct_{i}"
        committed = fail(bp.conn(), name)
        started = time.perf_counter()
        evaluate_alerts(ctx, conn=eval_conn)
        durations.append(time.perf_counter() - started)
        arrived = hook.wait(name, 30)
        if arrived is None:
            raise RuntimeError(f"no message for {name}")
        latencies.append(arrived - committed)
    eval_conn.close()
    return {"latency_s": summary(latencies), "evaluation_s": summary(durations)}


def bench_service(bp: BenchProject, ctx: Any, hook: Webhook, trials: int, tick: float) -> dict[str, Any]:
    from pgmill.observe.hooks import AlertHook
    from pgmill.schedule.service import Service

    alert_hook = AlertHook()
    service = Service(ctx, tick_seconds=tick, hooks=[alert_hook])
    stop = threading.Event()
    loop = threading.Thread(target=service.serve, args=(stop,), daemon=True)
    loop.start()
    rng = random.Random(7)
    latencies = []
    try:
        time.sleep(tick * 2)  # a few ticks first: the hook's warm-up and connection
        for i in range(trials):
            time.sleep(rng.uniform(0, tick))  # a random moment of the tick
            name = f"tick{tick:g}_{i}"
            committed = fail(bp.conn(), name)
            arrived = hook.wait(name, tick * 3 + 30)
            if arrived is None:
                raise RuntimeError(f"no message for {name}")
            latencies.append(arrived - committed)
    finally:
        stop.set()
        loop.join(60)
        alert_hook.wait(30)
        alert_hook.close()
    return {"tick_s": tick, "latency_s": summary(latencies), "hook_runs": alert_hook.runs,
            "hook_skipped": alert_hook.skipped, "hook_failures": alert_hook.failures}


def write_md(data: dict[str, Any]) -> None:
    m = data["machine"]
    d = data["direct"]
    lines = [
        "# Alert latency benchmark",
        "",
        f"From a failed run committed to pgmill.runs to its message arriving at a webhook on 127.0.0.1 (apprise "
        f"json://), {data['trials']} trials per figure. The database holds {data['history']:,} finished runs and "
        f"as many expected runs, 2,500 quality results and 50 tuning reports; the project has one rule of every "
        f"kind but cost ({len(RULES)} rules). PostgreSQL {data['server_version']} (embedded), {m['cpu']}, "
        f"{m['cores']} cores, Python {m['python']}, load average before {data['loadavg_before']}, after "
        f"{data['loadavg_after']}.",
        "",
        "| what | p50 s | p95 s | max s | target p95 | met |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
        f"| evaluation + delivery (`evaluate_alerts` right after the commit) | {d['latency_s']['p50']:.3f} | "
        f"{d['latency_s']['p95']:.3f} | {d['latency_s']['max']:.3f} | | |",
        f"| of which the evaluation call itself | {d['evaluation_s']['p50']:.3f} | {d['evaluation_s']['p95']:.3f} | "
        f"{d['evaluation_s']['max']:.3f} | | |",
    ]
    for s in data["service"]:
        default = " (the default)" if s["tick_s"] == 5 else ""
        target = f"{TARGET_P95_S:g} s" if s["tick_s"] == 5 else ""
        met = ("yes" if s["latency_s"]["p95"] < TARGET_P95_S else "no") if s["tick_s"] == 5 else ""
        lines.append(f"| end to end, `pgmill serve` ticking every {s['tick_s']:g} s{default} | "
                     f"{s['latency_s']['p50']:.3f} | {s['latency_s']['p95']:.3f} | {s['latency_s']['max']:.3f} | "
                     f"{target} | {met} |")
    lines += [
        "",
        "End to end is the wait for the next tick (uniform over the tick: the run is written at a random moment) "
        "plus one evaluation and delivery, so its p95 is about 95% of the tick plus the evaluation: a shorter "
        "`tick_seconds` buys a shorter wait. The alert hook evaluates in a background thread after every tick, so "
        "a slow channel never delays the schedule. The evaluation call lasts longer than the first figure because "
        "it returns only after checking the channels' deliveries (`channel_failing`), once the message is out. "
        "The machine was shared with other work (see the load average). Figures are "
        f"from one run of `python bench/bench_alerts.py` (measured {data['measured_at']}); the JSON is in "
        "bench/out/results_alerts.json (`--render` rewrites this page from it).",
        "",
    ]
    (BENCH_DIR / "RESULTS_alerts.md").write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--ticks", default="5,1", help="service tick lengths to measure, seconds")
    ap.add_argument("--history", type=int, default=10_000)
    ap.add_argument("--render", action="store_true", help="rewrite RESULTS_alerts.md from the last JSON")
    args = ap.parse_args()
    if args.render:
        write_md(json.loads((OUT_DIR / "results_alerts.json").read_text())["alerts"])
        return
    before = loadavg()
    bp, ctx, hook = setup(args.history)
    try:
        log("evaluation + delivery ...")
        direct = bench_direct(bp, ctx, hook, args.trials)
        log(json.dumps(direct))
        service = []
        for tick in (float(t) for t in args.ticks.split(",")):
            log(f"end to end, a tick every {tick:g} s ...")
            service.append(bench_service(bp, ctx, hook, args.trials, tick))
            log(json.dumps(service[-1]))
        data = {"trials": args.trials, "history": args.history, "server_version": bp.server_version(),
                "direct": direct, "service": service, "loadavg_before": before, "loadavg_after": loadavg(),
                "machine": machine(), "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
        save_to(OUT_DIR / "results_alerts.json", "alerts", data)
        write_md(data)
        log(Path(BENCH_DIR / "RESULTS_alerts.md").read_text())
    finally:
        bp.server.destroy()


if __name__ == "__main__":
    main()
