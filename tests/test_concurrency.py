"""Invariant 4: one writer per pipeline. Two runs of the same pipeline started together never both load:
the second fails with "already running" (or, with --wait / wait=True, queues behind the first), and the
target ends exact, with every source record read exactly once over all runs."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pgmill.errors import PipelineLocked
from pgmill.ingest.runner import run_pipeline
from pgmill.project import open_project
from tests.fault_proxy import FaultProxy, socket_file
from tests.helpers import ProjectDir, query
from tests.test_crash_safety import check_exact
from tests.test_faults import seed_for, write_orders

# waits at a barrier (a line on stdin) after its imports, so that both processes reach the lock together
CLI_AT_BARRIER = """
import sys
from pgmill.cli import main
print("ready", flush=True)
sys.stdin.readline()
sys.argv = ["pgmill", "run", *sys.argv[1:]]
main()
"""


def start_together(project_dir: Path, *args: str, n: int = 2) -> list[subprocess.CompletedProcess[str]]:
    procs = [subprocess.Popen([sys.executable, "-c", CLI_AT_BARRIER, "-p", str(project_dir), *args],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=project_dir, env=dict(os.environ)) for _ in range(n)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def runs(db_url: str) -> list[tuple[Any, ...]]:
    return query(db_url, "SELECT run_id, status, rows_read, started_at, finished_at, error FROM pgmill.runs"
                 " ORDER BY run_id")


def test_two_processes_one_fails_already_running(project: ProjectDir) -> None:
    seed = seed_for("two processes")
    ds = write_orders(project, random.Random(seed), n_files=3, rows=2500, batch_rows=100)
    a, b = start_together(project.path)
    why = f"seed {seed}: exits {a.returncode}, {b.returncode}; stderr: {a.stderr!r} {b.stderr!r}"
    ledger = runs(project.db_url)
    codes = sorted((a.returncode, b.returncode))
    if codes == [0, 0]:  # the second came after the first had finished: it must have found nothing to do
        assert len(ledger) == 2 and ledger[1][2] == 0, f"{why}; both loaded: {ledger}"
    else:
        assert codes == [0, PipelineLocked.exit_code], why
        loser = a if a.returncode else b
        assert "already running" in loser.stderr and "Traceback" not in loser.stderr, why
        assert len(ledger) == 1, f"{why}: {ledger}"
    check_exact(project.db_url, ds, "orders", why)


def test_two_processes_with_wait_queue_one_behind_the_other(project: ProjectDir) -> None:
    seed = seed_for("two waiting processes")
    ds = write_orders(project, random.Random(seed), n_files=3, rows=2500, batch_rows=100)
    a, b = start_together(project.path, "--wait")
    why = f"seed {seed}: exits {a.returncode}, {b.returncode}; stderr: {a.stderr!r} {b.stderr!r}"
    assert (a.returncode, b.returncode) == (0, 0), why
    first, second = runs(project.db_url)
    assert second[3] >= first[4], f"{why}: the runs overlapped: {first} / {second}"
    assert second[2] == 0, f"{why}: the queued run loaded rows again: {second}"
    check_exact(project.db_url, ds, "orders", why)


def test_two_threads_same_pipeline(project: ProjectDir) -> None:
    seed = seed_for("two threads")
    ds = write_orders(project, random.Random(seed), n_files=2, rows=2500, batch_rows=100)
    ctx = open_project(project.path)
    barrier = threading.Barrier(2)
    outcome: list[Any] = [None, None]

    def go(i: int) -> None:
        barrier.wait()
        try:
            outcome[i] = run_pipeline(ctx, "orders")
        except BaseException as exc:  # noqa: BLE001
            outcome[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    why = f"seed {seed}: outcomes {outcome}"
    locked = [o for o in outcome if isinstance(o, PipelineLocked)]
    done = [o for o in outcome if not isinstance(o, BaseException)]
    assert all(o.status == "succeeded" for o in done), why
    if len(done) == 2:
        assert min(o.counts.rows_read for o in done) == 0, f"{why}: both runs loaded"
    else:
        assert len(locked) == 1 and "already running" in str(locked[0]), why
    check_exact(project.db_url, ds, "orders", why)


def test_lost_lock_connection_does_not_let_a_second_writer_in(project: ProjectDir,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Run A holds the lock on its lock connection; that connection dies while A's loaders carry on. A
    second run B must not get the lock while A is still writing (A must stop, or take the lock again)."""
    seed = seed_for("lost lock")
    ds = write_orders(project, random.Random(seed), mode="append", n_files=2, rows=4000, batch_rows=50)
    proxy = FaultProxy(socket_file(project.db_url)).start()
    try:
        ctx_a = None
        monkeypatch.setenv("PGMILL_DATABASE_URL", proxy.url(project.db_url))
        ctx_a = open_project(project.path)
        monkeypatch.setenv("PGMILL_DATABASE_URL", project.db_url)
        ctx_b = open_project(project.path)
        result: dict[str, Any] = {}

        def run_a() -> None:
            try:
                result["a"] = run_pipeline(ctx_a, "orders")
            except BaseException as exc:  # noqa: BLE001
                result["a"] = exc

        t = threading.Thread(target=run_a)
        t.start()
        killed = 0
        with project.connect() as c:
            deadline = time.monotonic() + 60
            while t.is_alive() and time.monotonic() < deadline and not killed:
                if c.execute("SELECT to_regclass('pgmill.runs') IS NOT NULL").fetchone() == (True,):
                    got = c.execute("SELECT coalesce(sum(rows_read), 0) FROM pgmill.runs").fetchone()
                    if got and got[0] > 0:
                        killed = proxy.kill(lambda cn: cn.application_name.startswith("pgmill lock"))
                time.sleep(0.005)
            # wait until the server has noticed: the lock connection's backend is gone
            while c.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pgmill lock%'"
                            ).fetchone() != (0,) and time.monotonic() < deadline:
                time.sleep(0.005)
        a_alive = t.is_alive()
        try:
            result["b"] = run_pipeline(ctx_b, "orders")
        except BaseException as exc:  # noqa: BLE001
            result["b"] = exc
        t.join(120)
    finally:
        proxy.stop()
    if not killed or not a_alive:
        pytest.skip("run A finished before its lock connection could be dropped")
    ledger = runs(project.db_url)
    # Either B is refused (A took its lock again in time), or B wins the lock and A is fenced off: A stops
    # with PipelineLocked before committing anything more. Never may both keep writing.
    b_refused = isinstance(result["b"], PipelineLocked)
    a_fenced = isinstance(result["a"], PipelineLocked) and "lost its lock" in str(result["a"])
    assert b_refused or a_fenced, (
        f"run B got the lock while run A was still loading and A was not fenced off: B -> {result['b']!r}, "
        f"A -> {result['a']!r}; ledger: {ledger}")
    if a_fenced:  # B finished the load from A's last checkpoint
        check_exact(project.db_url, ds, "orders", "lost lock", fenced_ok=True)
