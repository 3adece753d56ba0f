"""`pgmill run --follow`: a followed folder loads each file once, complete, pass after pass, in one run per
session that closes as succeeded with every row accounted for when stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from pgmill.errors import ConfigError
from pgmill.ingest.follow import Follow, watched_folders
from pgmill.ingest.runner import run_pipelines
from pgmill.observe.ledger import RunRecord
from pgmill.project import open_project
from tests.helpers import ProjectDir, orders_csv

SETTLE_S = 2.0  # well above the pauses of the slow writer below, even on a busy machine


def _rows(first: int, n: int) -> list[tuple[Any, ...]]:
    return [(i, 1000 + i % 7, "FOP"[i % 3], f"{i}.50", "2024-03-01", None) for i in range(first, first + n)]


def _until(cond: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _count(project: ProjectDir) -> int:
    return int(project.scalar("SELECT count(*) FROM orders") if project.scalar("SELECT to_regclass('orders')") else 0)


def test_a_followed_folder_loads_each_file_once_complete(project: ProjectDir) -> None:
    project.orders_pipeline(mode="append", path="inbox/*.csv")
    (project.path / "inbox").mkdir()
    follow = Follow(interval_s=0.3, settle_s=SETTLE_S)
    result: list[list[RunRecord] | BaseException] = []

    def run() -> None:
        try:
            result.append(run_pipelines(open_project(), follow=follow))
        except BaseException as exc:  # reported by the assertions below
            result.append(exc)

    loader = threading.Thread(target=run)
    loader.start()
    try:
        # renamed into place: complete at once
        tmp = project.path / "a.tmp"
        tmp.write_text(orders_csv(_rows(1, 300)))
        os.replace(tmp, project.path / "inbox" / "a.csv")
        _until(lambda: _count(project) == 300)
        # written slowly, 50 lines at a time: never read half written
        text = orders_csv(_rows(301, 300)).splitlines(keepends=True)
        with (project.path / "inbox" / "b.csv").open("w") as fh:
            for i in range(0, len(text), 50):
                fh.writelines(text[i:i + 50])
                fh.flush()
                time.sleep(0.2)
                assert _count(project) == 300, "a file still being written was read"
        _until(lambda: _count(project) == 600)
    finally:
        follow.stop.set()
        loader.join(60)
    [outcome] = result
    assert not isinstance(outcome, BaseException), outcome
    [run] = outcome
    assert run.status == "succeeded" and run.counts.balanced()
    assert (run.counts.rows_read, run.counts.rows_inserted) == (600, 600)
    assert project.scalar("SELECT count(*) FROM pgmill.runs") == 1  # one run for the session
    files = project.query("SELECT path, records_done, complete FROM pgmill.files ORDER BY path")
    assert files == [("inbox/a.csv", 300, True), ("inbox/b.csv", 300, True)]
    steps = project.query("SELECT name, (detail->>'arrival_to_queryable_s')::float8 FROM pgmill.run_steps"
                          " WHERE run_id = %s ORDER BY started_at", (run.run_id,))
    assert [s[0] for s in steps] == ["load inbox/a.csv", "load inbox/b.csv"]  # passes that found nothing: no step
    assert all(0 < s[1] < 60 for s in steps)
    assert steps[1][1] >= SETTLE_S  # the slow file waited for its settle time after its last write
    _latency_is_reported(project, sorted(s[1] for s in steps))


def _latency_is_reported(project: ProjectDir, measured: list[float]) -> None:
    """The same figures in the library, `pgmill status`, /metrics and an alert rule."""
    from datetime import timedelta

    from typer.testing import CliRunner

    from pgmill.cli import app
    from pgmill.config.alerts import ArrivalLatency
    from pgmill.observe.conditions import Scope, latency
    from pgmill.observe.latency import arrival_latency
    from pgmill.observe.metrics import read_metrics

    with project.connect() as conn:
        [lat] = arrival_latency(conn, timedelta(hours=1))
        assert (lat.pipeline, lat.loads, lat.max_s) == ("orders", 2, round(measured[-1], 3))
        assert lat.p50_s == round((measured[0] + measured[1]) / 2, 3)
        [fam] = [m for m in read_metrics(conn) if m.name == "pgmill_arrival_to_queryable_seconds"]
        assert {(s.labels["quantile"], s.value) for s in fam.samples} == {
            ("0.5", lat.p50_s), ("0.95", lat.p95_s), ("1", lat.max_s)}
        scope = Scope(conn, project.scalar("SELECT now()"), open_project())
        [fired] = latency(ArrivalLatency(kind="latency", above="1s"), scope)
        assert fired.subject == "orders" and f"p95 over the last 15m (2 loads, max {lat.max_s:g} s" in fired.message
        assert latency(ArrivalLatency(kind="latency", above="1h"), scope) == []
    res = CliRunner().invoke(app, ["status"])
    assert f"orders: arrival to queryable p50 {lat.p50_s:g} s, p95 {lat.p95_s:g} s" in res.stdout


def test_follow_refuses_a_replace_pipeline(project: ProjectDir) -> None:
    project.orders_pipeline(mode="replace")
    with pytest.raises(ConfigError, match="pipeline orders: mode replace: each pass would rebuild the table"):
        run_pipelines(open_project(), follow=Follow())


def test_watched_folders(project: ProjectDir) -> None:
    project.orders_pipeline(path="data/in/*.csv")
    ctx = open_project()
    assert watched_folders(ctx.dir, ctx.config.pipelines["orders"]) == [(ctx.dir / "data" / "in", False)]
    project.orders_pipeline(path="data/**/*.csv")
    ctx = open_project()
    assert watched_folders(ctx.dir, ctx.config.pipelines["orders"]) == [(ctx.dir / "data", True)]


def test_cli_follow_stops_cleanly_on_sigterm(project: ProjectDir) -> None:
    project.orders_pipeline(mode="append", path="inbox/*.csv")
    project.write("inbox/a.csv", orders_csv(_rows(1, 50)))
    os.utime(project.path / "inbox" / "a.csv", (time.time() - 10, time.time() - 10))  # settled long ago
    proc = subprocess.Popen([sys.executable, "-m", "pgmill", "run", "--follow", "--interval", "0.2", "--json"],
                            cwd=project.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PGMILL_DATABASE_URL": project.db_url})
    try:
        _until(lambda: _count(project) == 50)
        project.write("inbox/b.csv", orders_csv(_rows(51, 20)))
        _until(lambda: _count(project) == 70)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "following orders" in err
    doc = json.loads(out)
    [load] = doc["loads"]
    assert doc["ok"] and load["status"] == "succeeded" and load["rows_inserted"] == 70


def test_serve_keeps_a_followed_pipeline_running_and_stops_it_cleanly(project: ProjectDir) -> None:
    from pgmill.schedule import follow as follow_module
    from pgmill.schedule.service import Service

    project.orders_pipeline(mode="append", path="inbox/*.csv", follow=True)
    (project.path / "inbox").mkdir()
    service = Service(open_project(), tick_seconds=0.2)
    try:
        service.tick()
        [f] = service.followers.followers
        assert f.handle is not None and f.starts == 1
        tmp = project.path / "a.tmp"
        tmp.write_text(orders_csv(_rows(1, 40)))
        os.replace(tmp, project.path / "inbox" / "a.csv")
        _until(lambda: _count(project) == 40)
        # the follower dies: the next ticks start another, which resumes (nothing loaded twice)
        handle: Any = f.handle
        handle.proc.kill()
        follow_module.PAUSE_S = 0.1
        _until(lambda: (service.tick() and False) or f.starts == 2)
        project.write("inbox/b.csv", orders_csv(_rows(41, 10)))
        os.utime(project.path / "inbox" / "b.csv", (time.time() - 10, time.time() - 10))
        _until(lambda: _count(project) == 50)
    finally:
        follow_module.PAUSE_S = 1.0
        service.shutdown(grace_s=30)
    runs = project.query("SELECT status, rows_inserted FROM pgmill.runs ORDER BY run_id")
    # the killed follower's run is abandoned when the next one starts; its committed rows stand
    assert runs == [("abandoned", 40), ("succeeded", 10)]
    assert project.scalar("SELECT count(*) FROM orders") == project.scalar("SELECT count(DISTINCT order_id) FROM orders")


def test_follow_and_a_schedule_are_exclusive(project: ProjectDir) -> None:
    from pgmill.errors import ConfigError as Err

    project.orders_pipeline(follow=True, every="5m")
    with pytest.raises(Err, match="follow: true loads continuously: drop `schedule`/`every`"):
        open_project()


def test_stop_takes_effect_at_the_next_checkpoint_and_the_rest_resumes(project: ProjectDir) -> None:
    project.orders_pipeline(mode="append", path="inbox/*.csv", batch_rows=10)
    project.write("inbox/big.csv", orders_csv(_rows(1, 3000)))
    os.utime(project.path / "inbox" / "big.csv", (time.time() - 10, time.time() - 10))
    follow = Follow(interval_s=0.2, settle_s=0)
    result: list[Any] = []
    loader = threading.Thread(target=lambda: result.append(run_pipelines(open_project(), follow=follow)))
    loader.start()
    _until(lambda: _count(project) >= 100)
    follow.stop.set()  # in the middle of the file's 300 checkpoints
    loader.join(60)
    [[run]] = result
    assert run.status == "succeeded" and run.counts.balanced() and 100 <= run.counts.rows_inserted < 3000
    rest = run_pipelines(open_project())[0]
    assert rest.counts.rows_inserted == 3000 - run.counts.rows_inserted
    assert project.scalar("SELECT count(DISTINCT order_id) FROM orders") == _count(project) == 3000


def test_a_cursorless_polled_source_cannot_be_followed(project: ProjectDir) -> None:
    project.orders_pipeline(source={"kind": "postgres", "url_env": "X", "table": "t"})
    with pytest.raises(ConfigError, match="pipeline orders: a postgres source without the pipeline's `cursor` "
                                          "would be read whole on every pass"):
        run_pipelines(open_project(), follow=Follow())
    project.orders_pipeline(source={"kind": "postgres", "url_env": "X", "table": "t"}, follow=True)
    with pytest.raises(ConfigError, match="follow: true: a postgres source without the pipeline's `cursor`"):
        open_project()
