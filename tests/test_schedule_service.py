"""The service loop on a real database with simulated time: every slot once, misfire and overlap policies,
timeouts, a claimer that dies, two services on one database, a database that goes away."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from pgmill.project import open_project
from pgmill.schedule.runner import Outcome
from pgmill.schedule.service import Service
from tests.helpers import ProjectDir

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, t: datetime = T0 + timedelta(seconds=1)) -> None:  # just past a slot boundary
        self.t = t

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t += timedelta(**kw)


@dataclass
class FakeHandle:
    command: tuple[str, ...]
    done: bool = True
    ok: bool = True
    interrupted: bool = False

    def poll(self) -> Outcome | None:
        if not self.done:
            return None
        return Outcome(self.ok, 7, None if self.ok else "it broke")

    def interrupt(self) -> None:
        self.interrupted = True
        self.done, self.ok = True, False


@dataclass
class FakeRunner:
    """Runs nothing: records each start; runs end at once unless `hold` says otherwise."""

    hold: bool = False
    fail: bool = False
    started: list[FakeHandle] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, command: tuple[str, ...]) -> FakeHandle:
        h = FakeHandle(command, done=not self.hold, ok=not self.fail)
        with self.lock:
            self.started.append(h)
        return h


def _project(project: ProjectDir, **schedule: Any) -> None:
    project.contract("orders", {"columns": {"id": {"type": "bigint", "primary_key": True}}})
    project.config({"orders": {"source": {"kind": "csv", "path": "data/*.csv"}, "table": "orders",
                               "contract": "contracts/orders.yaml", **schedule}})


def _service(runner: FakeRunner, clock: Clock, **kw: Any) -> Service:
    kw.setdefault("lease", timedelta(minutes=5))
    return Service(open_project(), runner=runner, clock=clock, tick_seconds=60, **kw)


def _slots(project: ProjectDir) -> list[tuple[Any, ...]]:
    return project.query("SELECT scheduled_for, state, attempts, run_id, error FROM pgmill.expected_runs"
                         " ORDER BY scheduled_for")


def test_each_slot_runs_once_and_links_its_run(project: ProjectDir) -> None:
    _project(project, every="5m")
    clock, runner = Clock(), FakeRunner()
    svc = _service(runner, clock)
    for _ in range(30):  # 30 minutes, a tick a minute
        svc.tick()
        clock.advance(minutes=1)
    svc.tick()  # 12:30: starts the sixth run
    svc.tick()  # records it
    rows = _slots(project)
    done = [r for r in rows if r[1] == "succeeded"]
    assert [r[0] for r in done] == [T0 + timedelta(minutes=5 * i) for i in range(1, 7)]
    assert all(r[2] == 1 and r[3] == 7 for r in done)
    assert len(runner.started) == 6
    assert runner.started[0].command == ("run", "orders", "--no-transform")
    # planned ahead, not yet due
    assert {r[1] for r in rows if r[0] > clock.t} == {"pending"}
    row = project.query("SELECT ticks, ticks_skipped, last_tick_at FROM pgmill.service_instances")
    assert row == [(32, 0, clock.t)]


@pytest.mark.parametrize(("policy", "runs", "missed"), [("run_once", 1, 11), ("skip", 0, 12), ("run_all", 12, 0)])
def test_misfire_policies_after_an_hour_down(project: ProjectDir, policy: str, runs: int, missed: int) -> None:
    _project(project, every="5m", misfire=policy, misfire_grace="2m")
    clock, runner = Clock(), FakeRunner()
    svc = _service(runner, clock)
    svc.tick()  # plans the first slots
    clock.advance(minutes=63)  # nobody ticked for an hour: 12 slots fell, each more than 2 minutes ago
    for _ in range(runs + 1):
        svc.tick()
    states = Counter(r[1] for r in _slots(project) if r[0] <= clock.t)
    assert states["succeeded"] == runs and states["missed"] == missed
    assert len(runner.started) == runs


def test_overlap_skip_and_queue(project: ProjectDir) -> None:
    _project(project, every="1m", overlap="skip", timeout="1h")
    clock, runner = Clock(), FakeRunner(hold=True)
    svc = _service(runner, clock)
    svc.tick()  # plans; nothing is due yet
    for _ in range(4):
        clock.advance(minutes=1)
        svc.tick()
    assert len(runner.started) == 1  # the first run still goes on
    assert Counter(r[1] for r in _slots(project) if r[0] <= clock.t) == {"running": 1, "skipped": 3}
    runner.started[0].done = True
    clock.advance(minutes=1)
    svc.tick()  # records it; the slot due now starts
    assert Counter(r[1] for r in _slots(project) if r[0] <= clock.t) == {"succeeded": 1, "skipped": 3, "running": 1}


def test_overlap_queue_runs_each_in_turn(project: ProjectDir) -> None:
    _project(project, every="1m", overlap="queue", misfire="run_all")
    clock, runner = Clock(), FakeRunner(hold=True)
    svc = _service(runner, clock)
    svc.tick()
    for _ in range(3):
        clock.advance(minutes=1)
        svc.tick()
    assert Counter(r[1] for r in _slots(project) if r[0] <= clock.t) == {"running": 1, "pending": 2}
    for _ in range(3):
        runner.started[-1].done = True
        svc.tick()
    assert Counter(r[1] for r in _slots(project) if r[0] <= clock.t) == {"succeeded": 3}


def test_a_run_past_its_timeout_is_interrupted_and_recorded(project: ProjectDir) -> None:
    _project(project, every="1h", timeout="10m")
    clock, runner = Clock(), FakeRunner(hold=True)
    svc = _service(runner, clock)
    svc.tick()
    clock.advance(hours=1)
    svc.tick()
    assert len(runner.started) == 1 and not runner.started[0].interrupted
    clock.advance(minutes=11)
    svc.tick()  # past its timeout: interrupted (the fake ends at once), recorded
    assert runner.started[0].interrupted
    svc.tick()
    [row] = [r for r in _slots(project) if r[1] not in ("pending",)]
    assert row[1] == "timed_out" and row[4].startswith("cancelled after its timeout (10m)")
    clock.advance(hours=1)
    svc.tick()
    assert len(runner.started) == 2  # the schedule is not wedged


def test_a_dead_claimer_is_recovered_and_the_slot_runs_again(project: ProjectDir) -> None:
    _project(project, every="1h", misfire="skip")
    clock = Clock()
    dead = _service(FakeRunner(hold=True), clock)
    dead.tick()
    clock.advance(hours=1)
    dead.tick()  # claims the slot, then "dies": never ticks again, never renews its lease
    live_runner = FakeRunner()
    live = _service(live_runner, clock)
    clock.advance(seconds=30)
    live.tick()
    assert live_runner.started == []  # the lease is still good
    clock.advance(minutes=10)
    live.tick()  # lease lapsed: back to pending (runs again even though late), claimed, run
    live.tick()
    slot = T0 + timedelta(hours=1)
    [row] = [r for r in _slots(project) if r[0] == slot]
    assert row[1] == "succeeded" and row[2] == 2
    assert len(live_runner.started) == 1


def test_two_services_on_one_database_run_every_slot_once(project: ProjectDir) -> None:
    _project(project, every="1m", overlap="queue", misfire="run_all")
    clock = Clock()
    runners = [FakeRunner(), FakeRunner()]
    services = [_service(r, clock) for r in runners]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def loop(svc: Service) -> None:
        try:
            for _ in range(120):
                barrier.wait()
                svc.tick()
                barrier.wait()
                if svc is services[0]:
                    clock.advance(seconds=30)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=loop, args=(s,)) for s in services]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = _slots(project)
    done = [r for r in rows if r[1] == "succeeded"]
    assert len(done) >= 55  # about one a minute over 60 simulated minutes
    assert len(runners[0].started) + len(runners[1].started) == len(done)  # no slot started twice
    assert all(r[2] == 1 for r in done)
    assert {r[1] for r in rows if r[0] < clock.t - timedelta(minutes=1)} == {"succeeded"}


def test_database_down_during_a_tick_is_skipped_and_counted(project: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    _project(project, every="5m", misfire="run_once", misfire_grace="1m")
    clock, runner = Clock(), FakeRunner()
    svc = _service(runner, clock)
    svc.tick()
    real_connect = svc.ctx.target.connect

    def dead(**kw: Any) -> Any:
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(svc.ctx.target, "connect", dead)
    svc._drop_connection()  # the server went away
    for _ in range(20):
        clock.advance(minutes=1)
        assert svc.tick().skipped
    monkeypatch.setattr(svc.ctx.target, "connect", real_connect)
    clock.advance(seconds=1)
    report = svc.tick()
    assert not report.skipped and len(report.started) == 1  # caught up per run_once: the newest slot only
    svc.tick()
    assert project.query("SELECT ticks_skipped, db_reconnects FROM pgmill.service_instances") == [(20, 1)]
    states = Counter(r[1] for r in _slots(project) if r[0] <= clock.t)
    assert states == {"succeeded": 1, "missed": 3}


def test_jobs_section_and_removed_jobs(project: ProjectDir) -> None:
    project.config({}, jobs={"models": {"every": "10m"}, "tune": {"schedule": "0 3 * * *"}})
    clock, runner = Clock(), FakeRunner()
    svc = _service(runner, clock)
    svc.tick()
    clock.advance(minutes=10)
    svc.tick()
    svc.tick()
    assert [h.command for h in runner.started] == [("transform",)]
    assert {r[0] for r in project.query("SELECT DISTINCT job FROM pgmill.expected_runs")} == {"models", "tune"}
    project.config({}, jobs={"models": {"every": "10m"}})  # tune no longer scheduled
    svc2 = _service(runner, clock)
    svc2.tick()
    assert project.query("SELECT count(*) FROM pgmill.expected_runs WHERE job = 'tune' AND state = 'pending'") == [(0,)]


def test_a_daily_0130_new_york_job_runs_once_a_day_across_the_autumn_change(project: ProjectDir) -> None:
    _project(project, schedule="30 1 * * *", timezone="America/New_York")
    clock, runner = Clock(datetime(2026, 10, 31, 12, 0, tzinfo=UTC)), FakeRunner()
    svc = _service(runner, clock)
    while clock.t < datetime(2026, 11, 3, 12, 0, tzinfo=UTC):  # three local days, the change in the middle
        svc.tick()
        clock.advance(minutes=10)
    svc.tick()
    ny = ZoneInfo("America/New_York")
    ran = [r[0].astimezone(ny) for r in _slots(project) if r[1] == "succeeded"]
    assert [(t.day, t.hour, t.minute) for t in ran] == [(1, 1, 30), (2, 1, 30), (3, 1, 30)]
    assert len(runner.started) == 3
