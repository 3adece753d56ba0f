"""A project with a bit of everything the dashboard shows, built by pgmill itself: loads with quarantined and
duplicate rows, a failed run, table checks (one failing), a tuning run with a declared query, alerts with
a delivered and a failed delivery, and the cost of the runs. The dashboard's tests render it."""

from __future__ import annotations

import os
from typing import Any

from pgmill.ingest.runner import run_pipelines
from pgmill.observe.alerts import evaluate_alerts
from pgmill.observe.deliver import DeliveryPolicy
from pgmill.orchestrate import run_project
from pgmill.project import ProjectContext, open_project
from pgmill.quality.checks import run_checks
from pgmill.tune.run import run_tune
from tests.helpers import ORDERS_CONTRACT, ProjectDir, closed_port, orders_csv
from tests.test_alerts import Receiver

CONTRACT: dict[str, Any] = {
    **ORDERS_CONTRACT,
    "checks": {
        "unique": ["order_id"],
        "completeness": {"total": 95},
        "accepted_values": {"status": ["F", "O"]},  # fails: P is loaded, the check is stricter than the contract
        "row_count": {"min": 1},
    },
}
HOSTILE = "<script>alert('x')</script>"  # a quarantined value that must stay text on every page
QUERY = """-- name: orders_of_customer
-- params_sql: SELECT customer_id FROM public.orders ORDER BY customer_id LIMIT 20
-- target_ms: 50
SELECT * FROM public.orders WHERE customer_id = $1 ORDER BY ordered_at DESC LIMIT 20
"""
FAST = DeliveryPolicy(attempts=2, timeout_s=1.0, backoff_initial_s=0.01, backoff_max_s=0.02)


def orders_rows(n: int, start: int = 1) -> list[tuple[Any, ...]]:
    statuses = "FOP"
    return [(i, 1 + i % 300, statuses[i % 3], f"{(i * 7) % 500}.25", f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}",
             f"2026-11-01T00:00:{i % 60:02d}Z") for i in range(start, start + n)]


def build_rich_project(project: ProjectDir, receiver: Receiver) -> ProjectContext:
    """Write and run the project; return it opened."""
    project.contract("orders", CONTRACT)
    project.contract("broken", {"columns": {"id": {"type": "bigint", "primary_key": True},
                                            "amount": {"type": "text"}}})
    pipes = {
        "orders": {"source": {"kind": "csv", "path": "data/orders*.csv"}, "table": "public.orders",
                   "contract": "contracts/orders.yaml", "mode": "append"},
        "broken": {"source": {"kind": "postgres", "url_env": "PGMILL_TEST_DEAD_SOURCE", "table": "public.src"},
                   "table": "public.broken", "contract": "contracts/broken.yaml", "mode": "append"},
    }
    channels = {"hook": receiver.url("hook"), "dead": f"json://127.0.0.1:{closed_port()}/x"}
    project.config(pipes, retry={"attempts": 1},
                   alerts={"channels": channels, "rules": [{"kind": "run_failed"}], "resolve_after": "1m"},
                   cost={"budget": {"month": 40}})
    rows = orders_rows(6000)
    bad = [(900001, 5, "X", "10.00", "2026-02-02", ""),            # status outside the contract
           (900002, 6, HOSTILE, "11.00", "2026-02-03", ""),         # and hostile
           (900003, 7, "F", "-4.00", "2026-02-04", ""),             # negative total
           (900004, "", "O", "3.00", "2026-02-05", "")]             # customer missing
    dupes = rows[:25]  # the same orders sent twice: duplicates
    project.write("data/orders_1.csv", orders_csv(rows + bad + dupes))
    project.write("queries/orders_of_customer.sql", QUERY)
    # the source database of `broken` is down: its run fails (after its one attempt) with the error
    os.environ["PGMILL_TEST_DEAD_SOURCE"] = f"postgresql://nobody@127.0.0.1:{closed_port()}/gone?connect_timeout=2"
    ctx = open_project(project.path)
    run_project(ctx, tune=False)                       # the loads (broken fails), the checks, cost per run
    run_pipelines(ctx, ["orders"])                     # a second orders run: nothing new, succeeds
    run_checks(ctx)
    run_tune(ctx, apply=True)
    evaluate_alerts(ctx, policy=FAST)
    return ctx
