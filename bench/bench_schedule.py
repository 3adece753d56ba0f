"""Scheduler overhead: 100 jobs due every minute, for an hour of simulated time.

The service ticks every 5 s of simulated time (its default) for 60 minutes, 720 ticks; 100 pipelines are
scheduled `* * * * *`, so each simulated minute 100 slots fall due, are claimed, started and recorded. The
runs themselves do nothing (a runner that ends at once), so what is measured is the scheduling machinery:
planning, claiming FOR UPDATE SKIP LOCKED, recording, renewing leases, the instance row. Figures per tick: the
service process's CPU (time.process_time), wall time, and the database's own CPU per tick from
pg_stat_statements (total_exec_time of the service's statements). The reference in the same run is an idle
tick: the same service with the same jobs in a minute where nothing falls due (ticks 2..11 of each minute).

Writes bench/RESULTS_schedule.md and a `schedule` section of bench/results.json.

Usage: python bench/bench_schedule.py [--jobs 100] [--minutes 60]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH_DIR, BenchProject, log, machine, save  # noqa: E402
from pgmill.project import open_project  # noqa: E402
from pgmill.schedule.runner import Outcome  # noqa: E402
from pgmill.schedule.service import Service  # noqa: E402


@dataclass
class Done:
    def poll(self) -> Outcome:
        return Outcome(True, None, None)

    def interrupt(self) -> None:
        return None


class NoopRunner:
    started = 0

    def start(self, command: tuple[str, ...]) -> Done:
        self.started += 1
        return Done()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--minutes", type=int, default=60)
    args = ap.parse_args()

    bp = BenchProject("schedule").fresh()
    (bp.dir / "contracts" / "t.yaml").write_text("columns: {id: {type: bigint}}\n")
    pipelines = {f"p{i:03d}": {"source": {"kind": "csv", "path": f"data/p{i}.csv"}, "table": f"t{i}",
                               "contract": "contracts/t.yaml", "schedule": "* * * * *"} for i in range(args.jobs)}
    (bp.dir / "pgmill.yaml").write_text(yaml.safe_dump({"pipelines": pipelines}))
    os.environ["PGMILL_DATABASE_URL"] = bp.url
    ctx = open_project(bp.dir)

    t = datetime(2026, 6, 1, 12, 0, 1, tzinfo=UTC)
    runner = NoopRunner()
    svc = Service(ctx, runner=runner, clock=lambda: t, tick_seconds=5)
    svc.tick()  # migrate, plan: not measured
    bp.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    busy_cpu, idle_cpu, busy_wall, idle_wall, db_ms = [], [], [], [], []
    for _ in range(args.minutes * 12):
        t += timedelta(seconds=5)
        bp.sql("SELECT pg_stat_statements_reset()")
        c0, w0 = time.process_time(), time.perf_counter()
        svc.tick()
        c1, w1 = time.process_time(), time.perf_counter()
        [(exec_ms,)] = bp.sql("SELECT coalesce(sum(total_exec_time), 0) FROM pg_stat_statements"
                              " WHERE query NOT LIKE '%%pg_stat_statements%%'")
        busy = t.second < 5  # the tick at the top of the minute claims the minute's 100 slots
        (busy_cpu if busy else idle_cpu).append(c1 - c0)
        (busy_wall if busy else idle_wall).append(w1 - w0)
        if busy:
            db_ms.append(float(exec_ms))
    svc.tick()
    [(done,)] = bp.sql("SELECT count(*) FROM pgmill.expected_runs WHERE state = 'succeeded'")
    [(twice,)] = bp.sql("SELECT count(*) FROM pgmill.expected_runs WHERE attempts > 1")
    ticks = len(busy_cpu) + len(idle_cpu)
    per_minute_cpu = (sum(busy_cpu) + sum(idle_cpu)) / args.minutes
    fig = {
        "jobs": args.jobs, "simulated_minutes": args.minutes, "ticks": ticks, "runs_started": runner.started,
        "slots_succeeded": done, "slots_run_twice": twice,
        "busy_tick_cpu_ms_median": round(statistics.median(busy_cpu) * 1000, 1),
        "busy_tick_cpu_ms_p95": round(sorted(busy_cpu)[int(0.95 * len(busy_cpu))] * 1000, 1),
        "busy_tick_wall_ms_median": round(statistics.median(busy_wall) * 1000, 1),
        "busy_tick_db_exec_ms_median": round(statistics.median(db_ms), 1),
        "idle_tick_cpu_ms_median": round(statistics.median(idle_cpu) * 1000, 2),
        "idle_tick_wall_ms_median": round(statistics.median(idle_wall) * 1000, 2),
        "service_cpu_s_per_simulated_minute": round(per_minute_cpu, 3),
        "service_cpu_share_of_one_core": round(per_minute_cpu / 60, 5),
        "loadavg": os.getloadavg()[0],
    }
    log(str(fig))
    save("schedule", fig)
    m = machine()
    (BENCH_DIR / "RESULTS_schedule.md").write_text(f"""# Scheduler overhead

`python bench/bench_schedule.py --jobs {args.jobs} --minutes {args.minutes}`, measured
{time.strftime('%Y-%m-%d')} on {m['cpu']}, {m['cores']} cores, Python {m['python']}, embedded PostgreSQL 18,
load average {fig['loadavg']:.1f} at the end (the machine was shared).

{args.jobs} pipelines scheduled every minute (`* * * * *`); the service ticks every 5 s of simulated time for
{args.minutes} minutes ({ticks} ticks). Runs do nothing (a runner that ends at once), so the figures are the
scheduling machinery alone: planning, claiming (`FOR UPDATE SKIP LOCKED`), recording, leases. The reference
in the same run is an idle tick of the same service (no slot due).

| | median | p95 |
| --- | ---: | ---: |
| busy tick (100 slots claimed, 100 recorded): service CPU | {fig['busy_tick_cpu_ms_median']} ms | {fig['busy_tick_cpu_ms_p95']} ms |
| busy tick: wall | {fig['busy_tick_wall_ms_median']} ms | |
| busy tick: database execution time (pg_stat_statements) | {fig['busy_tick_db_exec_ms_median']} ms | |
| idle tick: service CPU | {fig['idle_tick_cpu_ms_median']} ms | |
| idle tick: wall | {fig['idle_tick_wall_ms_median']} ms | |

Over the hour: {runner.started} runs started, {done} slots succeeded, {twice} slots claimed more than once;
the service used {fig['service_cpu_s_per_simulated_minute']} s of CPU per minute of schedule,
{fig['service_cpu_share_of_one_core'] * 100:.2f}% of one core. A real run adds its own process (about a second
of CPU to start Python and import pgmill, then its work), which is the job's cost, not the scheduler's.
""")


if __name__ == "__main__":
    main()
