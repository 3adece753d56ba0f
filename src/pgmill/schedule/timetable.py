"""A job's times: the slots a cron expression or an interval gives between two instants, in UTC.

Cron expressions are evaluated by cronsim in the job's time zone with aware datetimes, then turned into
UTC, the key of pgmill.expected_runs. A wall-clock time that happens twice (the autumn change) is one
slot: cronsim yields it once. A time that does not exist (the spring change) runs at the first minute
after the jump. An expression that fires every N minutes keeps firing through both hours of the autumn
change, since each of its slots is a distinct UTC instant.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pgmill.config.duration import parse_duration
from pgmill.config.schedule import Scheduled

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Timetable:
    """When one job is expected to run."""

    job: str
    spec: Scheduled

    def slots(self, after: datetime, until: datetime) -> list[datetime]:
        """The slots in (after, until], in UTC, in order."""
        out: list[datetime] = []
        for t in self._iter(after):
            if t > until:
                break
            out.append(t)
        return out

    def next_after(self, t: datetime) -> datetime:
        """The first slot strictly after `t`."""
        return next(self._iter(t))

    def _iter(self, after: datetime) -> Iterator[datetime]:
        after = after.astimezone(UTC)
        if self.spec.every is not None:
            step = timedelta(seconds=parse_duration(self.spec.every))
            n = (after - _EPOCH) // step + 1
            while True:
                yield _EPOCH + n * step
                n += 1
        if self.spec.schedule is None:
            return
        from cronsim import CronSim

        tz = ZoneInfo(self.spec.timezone)
        # cronsim may yield a time just before its start when the start lies in the repeated hour of an
        # autumn change: keep only what is strictly after, in UTC
        for local in CronSim(self.spec.schedule, after.astimezone(tz)):
            t = local.astimezone(UTC)
            if t > after:
                yield t
