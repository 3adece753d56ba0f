"""`pgmill serve` for real: --once, the HTTP endpoints and SIGTERM, and SIGKILL mid-run then a restart (the
slot runs again and the data is still exactly once)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import ORDERS_CONTRACT, ProjectDir, orders_csv

pytestmark = pytest.mark.timeout(240)


def _scheduled_orders(project: ProjectDir, rows: int, **schedule: Any) -> None:
    project.contract("orders", ORDERS_CONTRACT)
    project.write("data/orders.csv", orders_csv(
        [(i, i % 97, "FOP"[i % 3], f"{i % 1000}.25", "2024-01-01", None) for i in range(1, rows + 1)]))
    project.config({"orders": {"source": {"kind": "csv", "path": "data/orders*.csv"}, "table": "public.orders",
                               "contract": "contracts/orders.yaml", "mode": "append", **schedule}})


def _pgmill(project: ProjectDir, *args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pgmill", *args, "--project", str(project.path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PGMILL_DATABASE_URL": project.db_url}, **kw)


def _until(what: Callable[[], Any], seconds: float, why: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds} s waiting for {why}")


def _slots(project: ProjectDir) -> list[tuple[Any, ...]]:
    return project.query("SELECT state, attempts, run_id, error FROM pgmill.expected_runs"
                         " WHERE scheduled_for <= now() ORDER BY scheduled_for")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_once_runs_what_is_due_and_links_the_run(project: ProjectDir) -> None:
    _scheduled_orders(project, 50, every="2s")
    first = _pgmill(project, "serve", "--once")
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert "ran 0 due slot(s)" in out  # the first look plans the slots; none was due yet
    time.sleep(2.5)
    second = _pgmill(project, "serve", "--once")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert "ran 1 due slot(s): 1 succeeded" in out
    done = [s for s in _slots(project) if s[0] == "succeeded"]
    assert len(done) == 1 and done[0][1] == 1
    assert project.query("SELECT status, rows_read, rows_inserted FROM pgmill.runs WHERE run_id = %s",
                         (done[0][2],)) == [("succeeded", 50, 50)]
    assert project.scalar("SELECT count(*) FROM orders") == 50


def test_serve_answers_metrics_and_health_and_stops_cleanly_on_sigterm(project: ProjectDir) -> None:
    _scheduled_orders(project, 20, every="1s")
    port = _free_port()
    proc = _pgmill(project, "serve", "--http", f"127.0.0.1:{port}", "--tick", "0.5")
    try:
        base = f"http://127.0.0.1:{port}"

        def health() -> httpx.Response | None:
            try:
                r = httpx.get(f"{base}/healthz", timeout=5)
            except httpx.TransportError:
                return None
            return r if r.status_code == 200 else None

        body = _until(health, 60, "/healthz 200").json()
        assert body["status"] == "ok" and body["checks"]["scheduler"]["ok"] is True
        _until(lambda: any(s[0] == "succeeded" for s in _slots(project)), 60, "a scheduled run to succeed")
        text = httpx.get(f"{base}/metrics", timeout=10).text
        assert 'pgmill_runs_total{pipeline="orders",status="succeeded"}' in text
        assert "pgmill_expected_runs" in text
        page = httpx.get(f"{base}/", timeout=10)  # the dashboard, on the same port and rules
        assert page.status_code == 200 and '<tr data-name="orders">' in page.text
        assert "every 1s" in page.text
        assert httpx.post(f"{base}/quarantine/replay", data={"pipeline": "orders"}, timeout=10).status_code == 403
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "SIGTERM: stopping" in err
    assert f"dashboard on http://127.0.0.1:{port}/ (read-only)" in err
    assert "Traceback" not in err
    assert project.query("SELECT count(*) FROM pgmill.service_instances WHERE stopped_at IS NULL") == [(0,)]
    assert project.scalar("SELECT count(*) FROM orders") == 20  # appended once: later runs found no new file
    assert project.query("SELECT count(*) FROM pgmill.expected_runs WHERE state = 'running'") == [(0,)]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_sigkill_mid_run_then_restart_runs_the_slot_again_exactly_once(project: ProjectDir) -> None:
    rows = 120_000
    _scheduled_orders(project, rows, schedule="* * * * *", batch_rows=2000, misfire="skip")
    # the slot at the start of the next minute is planned now: make it due at once
    first = _pgmill(project, "serve", "--once")
    assert first.wait(120) == 0
    project.execute("UPDATE pgmill.expected_runs SET scheduled_for = now() - interval '1 second'"
                    " WHERE scheduled_for = (SELECT min(scheduled_for) FROM pgmill.expected_runs)")
    proc = _pgmill(project, "serve", "--http", f"127.0.0.1:{_free_port()}", "--tick", "0.5")
    try:
        _until(lambda: project.scalar("SELECT coalesce(max(rows_read), 0) FROM pgmill.runs WHERE status = 'running'")
               > 0, 90, "the scheduled load to commit a checkpoint")
        children = _children(proc.pid)
        assert children, "the run is a child process of the service"
        proc.kill()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    _until(lambda: not any(_alive(c) for c in children), 30, "the run to die with the service")
    loaded = project.scalar("SELECT count(*) FROM orders")
    assert 0 < loaded < rows  # it died mid-load: some checkpoints committed, not all
    assert project.query("SELECT state FROM pgmill.expected_runs WHERE attempts > 0") == [("running",)]

    again = _pgmill(project, "serve", "--http", f"127.0.0.1:{_free_port()}", "--tick", "0.5")
    try:
        # the lease (10 s at this tick) lapses, the slot goes back to pending and runs again, late or not
        done = _until(lambda: [s for s in _slots(project) if s[0] == "succeeded"], 120, "the slot to run again")
    finally:
        again.send_signal(signal.SIGTERM)
        again.communicate(timeout=60)
    assert done[0][1] == 2  # the second attempt
    assert project.scalar("SELECT count(*) FROM orders") == rows
    assert project.scalar("SELECT count(DISTINCT order_id) FROM orders") == rows
    last = project.query("SELECT status, rows_read, rows_inserted, rows_duplicate FROM pgmill.runs WHERE run_id = %s",
                         (done[0][2],))
    assert last[0][0] == "succeeded" and last[0][1] == last[0][2] + last[0][3]
    # the killed run is marked abandoned by the run that resumed after it
    assert project.query("SELECT count(*) FROM pgmill.runs WHERE status = 'running'") == [(0,)]


def test_two_serve_processes_on_one_database_run_every_slot_once(project: ProjectDir) -> None:
    _scheduled_orders(project, 10, every="2s", overlap="skip")
    procs = [_pgmill(project, "serve", "--http", f"127.0.0.1:{_free_port()}", "--tick", "0.5") for _ in range(2)]
    try:
        _until(lambda: project.scalar("SELECT to_regclass('pgmill.expected_runs') IS NOT NULL"), 60, "the schema")
        _until(lambda: project.scalar("SELECT count(*) FROM pgmill.expected_runs WHERE state = 'succeeded'") >= 6,
               120, "six slots to run")
        time.sleep(3)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.communicate(timeout=60)
    assert all(p.returncode == 0 for p in procs)
    done = project.query("SELECT run_id, attempts, claimed_by FROM pgmill.expected_runs WHERE state = 'succeeded'")
    assert len(done) >= 6 and all(a == 1 for _, a, _ in done)
    run_ids = [r for r, _, _ in done]
    assert len(set(run_ids)) == len(run_ids)  # no slot ran twice, no run served two slots
    [(runs,)] = project.query("SELECT count(*) FROM pgmill.runs WHERE pipeline = 'orders' AND run_id = ANY(%s)",
                              (run_ids,))
    assert runs == len(run_ids)
    assert project.scalar("SELECT count(*) FROM orders") == 10
    assert project.query("SELECT count(*) FROM pgmill.runs WHERE status = 'failed'") == [(0,)]
