"""Schedules: cron and intervals across daylight saving changes, and config errors that name file and line."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pgmill.config.load import load_project
from pgmill.config.schedule import Scheduled
from pgmill.errors import ConfigError
from pgmill.schedule.timetable import Timetable

NY = ZoneInfo("America/New_York")


def _local_day(t: Timetable, year: int, month: int, day: int) -> list[datetime]:
    """The slots falling on one local calendar day in New York, as local times."""
    start = datetime(year, month, day, tzinfo=NY).astimezone(UTC)
    end = datetime(year, month, day, 23, 59, 59, tzinfo=NY).astimezone(UTC)
    return [s.astimezone(NY) for s in t.slots(start, end)]


def test_daily_0130_runs_once_on_the_autumn_change() -> None:
    t = Timetable("j", Scheduled(schedule="30 1 * * *", timezone="America/New_York"))
    day = _local_day(t, 2026, 11, 1)  # 01:00-01:59 happens twice that night
    assert [(s.hour, s.minute) for s in day] == [(1, 30)]
    assert day[0].utcoffset() is not None and day[0].astimezone(UTC).hour == 5  # the first 01:30 (EDT)
    # and on the days around it
    assert len(_local_day(t, 2026, 10, 31)) == 1 and len(_local_day(t, 2026, 11, 2)) == 1


def test_daily_0130_runs_once_on_the_spring_change() -> None:
    t = Timetable("j", Scheduled(schedule="30 1 * * *", timezone="America/New_York"))
    day = _local_day(t, 2026, 3, 8)
    assert [(s.hour, s.minute) for s in day] == [(1, 30)]


def test_daily_0230_on_the_spring_change_runs_at_0300() -> None:
    # 02:30 does not exist on 2026-03-08 in New York: the documented policy runs it at the first minute after
    # the jump, once
    t = Timetable("j", Scheduled(schedule="30 2 * * *", timezone="America/New_York"))
    day = _local_day(t, 2026, 3, 8)
    assert [(s.hour, s.minute) for s in day] == [(3, 0)]
    assert [(s.hour, s.minute) for s in _local_day(t, 2026, 3, 9)] == [(2, 30)]


def test_every_30_minutes_keeps_firing_through_the_repeated_hour() -> None:
    t = Timetable("j", Scheduled(schedule="*/30 * * * *", timezone="America/New_York"))
    start = datetime(2026, 11, 1, 0, 45, tzinfo=NY)
    got = t.slots(start, datetime(2026, 11, 1, 2, 15, tzinfo=NY))
    # 01:00 and 01:30 twice (EDT, then EST), then 02:00: five distinct instants, 30 minutes apart
    assert len(got) == 5 and len(set(got)) == 5
    assert all((b - a).total_seconds() == 1800 for a, b in zip(got, got[1:], strict=False))


def test_slots_are_strictly_after_the_start_even_inside_the_repeated_hour() -> None:
    t = Timetable("j", Scheduled(schedule="30 1 * * *", timezone="America/New_York"))
    start = datetime(2026, 11, 1, 1, 10, fold=1, tzinfo=NY)  # the second 01:10 (EST), after the first 01:30
    assert t.next_after(start) == datetime(2026, 11, 2, 1, 30, tzinfo=NY)


def test_every_interval_from_the_epoch() -> None:
    t = Timetable("j", Scheduled(every="5m"))
    got = t.slots(datetime(2026, 1, 1, 0, 3, tzinfo=UTC), datetime(2026, 1, 1, 0, 15, tzinfo=UTC))
    assert [s.minute for s in got] == [5, 10, 15]
    assert t.next_after(datetime(2026, 1, 1, 0, 5, tzinfo=UTC)) == datetime(2026, 1, 1, 0, 10, tzinfo=UTC)


def _config_error(tmp_path: Path, extra: str) -> str:
    (tmp_path / "pgmill.yaml").write_text(
        "pipelines:\n  orders:\n    source: {kind: csv, path: a.csv}\n    table: t\n    contract: c.yaml\n" + extra)
    with pytest.raises(ConfigError) as exc:
        load_project(tmp_path)
    return str(exc.value)


def test_bad_cron_names_file_line_and_field(tmp_path: Path) -> None:
    msg = _config_error(tmp_path, '    schedule: "61 * * * *"\n')
    assert "pgmill.yaml:6: pipelines.orders.schedule: Value error, cron expression '61 * * * *': Bad minute" in msg
    msg = _config_error(tmp_path, '    schedule: "*/5 * *"\n')
    assert "pgmill.yaml:6: pipelines.orders.schedule" in msg and "needs 5 fields" in msg


def test_unknown_time_zone_names_file_line_and_field(tmp_path: Path) -> None:
    msg = _config_error(tmp_path, '    schedule: "0 * * * *"\n    timezone: America/Gotham\n')
    assert "pgmill.yaml:7: pipelines.orders.timezone: Value error, unknown time zone 'America/Gotham'" in msg


def test_schedule_and_every_together_is_an_error(tmp_path: Path) -> None:
    msg = _config_error(tmp_path, '    schedule: "0 * * * *"\n    every: 5m\n')
    assert "give `schedule` (cron) or `every` (interval), not both" in msg


def test_bad_durations_and_jobs(tmp_path: Path) -> None:
    msg = _config_error(tmp_path, "    every: 5 parsecs\n")
    assert "pipelines.orders.every" in msg and "is not a duration" in msg
    msg = _config_error(tmp_path, "jobs:\n  models: {every: 1h, timeout: soon}\n")
    assert "pgmill.yaml:7: jobs.models.timeout" in msg and "'soon' is not a duration" in msg


def test_the_tune_job_samples_the_workload_when_asked(tmp_path: Path) -> None:
    from pgmill.schedule.jobs import scheduled_jobs

    def jobs(text: str) -> dict[str, tuple[str, ...]]:
        (tmp_path / "pgmill.yaml").write_text("pipelines: {}\njobs:\n" + text)
        return {k: j.command for k, j in scheduled_jobs(load_project(tmp_path)).items()}

    assert jobs('  tune: {schedule: "0 11 * * 1-5", sample: 2m}\n  checks: {every: 1h}\n') == {
        "tune": ("tune", "--apply", "--sample", "120"), "checks": ("check",)}
    assert jobs('  tune: {schedule: "0 3 * * *"}\n') == {"tune": ("tune", "--apply")}
    with pytest.raises(ConfigError, match="jobs.tune.sample.*'soon' is not a duration"):
        jobs('  tune: {schedule: "0 3 * * *", sample: soon}\n')
