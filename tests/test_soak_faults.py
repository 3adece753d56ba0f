"""Soak: hundreds of `pgmill run`s (load, check, build) through a proxy that cuts connections at random.

Each run loads a new CSV file into a merge pipeline, checks the table (the contract's `checks:`) and
builds two models on it (tests/test_faults.py: run_project_files), all through tests/fault_proxy.py,
which dooms 5% of connections to be cut after a random number of bytes, whatever they were doing: the
pipeline's lock, its loads, the ledger, the checks, the model discovery, the builds. Every run must
succeed as if nothing happened: the target equals the expected table (count and checksum), the models
equal their queries on it, every run in the ledger succeeded with its rows accounted for, every check
run wrote each result once. The proxy must have cut connections and pgmill must have counted retries,
so that the test cannot pass without faults.

PGMILL_FAULT_SEED=<seed> replays one soak; PGMILL_SOAK_RUNS=<n> changes its length.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter

import pytest

from tests.fault_proxy import FaultProxy, socket_file
from tests.helpers import ProjectDir
from tests.test_crash_safety import Dataset
from tests.test_faults import check_runs_exact, next_orders, pgmill_run, retries, run_project_files, seed_for

# ~0.55 s a run on 2 idle cores (~2 min in all); the timeout leaves room for a machine shared with other work
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

RUNS = int(os.environ.get("PGMILL_SOAK_RUNS", "200"))
DROP_FRACTION = 0.05
MAX_BYTES = 12_000  # a run's connections move 1-16 kB: most doomed ones are cut while they work
RETRY = {"attempts": 8, "initial_s": 0.005, "max_s": 0.05}


def test_runs_survive_random_connection_cuts(project: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    seed = seed_for("soak")
    rng = random.Random(seed)
    run_project_files(project, RETRY)
    proxy = FaultProxy(socket_file(project.db_url), drop_fraction=DROP_FRACTION, max_bytes=MAX_BYTES,
                       seed=seed).start()
    monkeypatch.setenv("PGMILL_DATABASE_URL", proxy.url(project.db_url))
    parts: list[Dataset] = []
    failures: list[str] = []
    started = time.monotonic()
    try:
        for i in range(RUNS):
            parts.append(next_orders(project, rng, i))
            failure = pgmill_run(project)
            if failure is not None:
                failures.append(f"run {i}: {failure}")
    finally:
        proxy.stop()
    cut = Counter(c.application_name for c in proxy.dropped)
    why = (f"seed {seed} (PGMILL_FAULT_SEED), {RUNS} runs in {time.monotonic() - started:.0f} s, "
           f"{sum(cut.values())} of {len(proxy.connections)} connections cut ({dict(cut)})")
    assert not failures, f"{why}; {len(failures)} runs failed:\n" + "\n".join(failures[:20])
    counted = retries(project.db_url)
    print(f"\nsoak: {why}; {counted} retries counted in pgmill.runs")
    check_runs_exact(project.db_url, parts, RUNS, why)
    # not vacuous: connections were cut, and the cuts cost retries that the ledger counted
    assert sum(cut.values()) >= RUNS // 10, why
    assert counted > 0, f"{why}: no retry counted in pgmill.runs"
