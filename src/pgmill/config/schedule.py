"""When things run on their own: a pipeline's `schedule:` and the `jobs:` section of pgmill.yaml.

```yaml
pipelines:
  orders:
    ...
    schedule: "*/15 * * * *"        # cron, 5 fields, in `timezone` (or `every: 5m`)
    timezone: America/New_York       # IANA name; default UTC
jobs:                                # the project's other work, each on its own schedule
  models: {schedule: "5 * * * *"}
  checks: {every: 1h}
  tune: {schedule: "0 11 * * 1-5", timeout: 2h, sample: 2m}   # sample: watch the busy workload first
```

Times are computed by cronsim with aware datetimes, so daylight saving changes follow Debian cron: a
time that happens twice (autumn) runs once, a time that does not exist (spring) runs at the first
minute after the jump.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from pgmill.config.base import StrictModel
from pgmill.config.duration import Duration

JOB_KINDS = ("models", "checks", "tune", "retention")


class Scheduled(StrictModel):
    """The schedule fields a pipeline or a job may carry; with neither `schedule` nor `every` it runs only
    when asked (`pgmill run`)."""

    schedule: str | None = Field(None, description='cron expression, 5 fields, e.g. "*/15 * * * *", in `timezone`')
    every: Duration | None = Field(None, description="or a fixed interval from the Unix epoch: 30s, 5m, 1h, 1d")
    timezone: str = Field("UTC", description="IANA time zone of the cron expression, e.g. America/New_York")
    misfire: Literal["run_once", "skip", "run_all"] = Field(
        "run_once", description="slots missed by more than `misfire_grace` (pgmill serve was down, say): run the "
        "newest once (run_once), none (skip), or each in turn (run_all)")
    misfire_grace: Duration = Field("5m", description="how late a slot may start and still count as on time")
    overlap: Literal["skip", "queue"] = Field(
        "skip", description="a slot due while the previous run still goes on: skip it, or queue it behind")
    timeout: Duration = Field("1h", description="a run still going after this is cancelled and recorded as failed")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from cronsim import CronSim, CronSimError

        if len(v.split()) != 5:
            raise ValueError(f"cron expression {v!r} needs 5 fields: minute hour day-of-month month day-of-week")
        try:
            CronSim(v, datetime(2000, 1, 1, tzinfo=UTC))
        except CronSimError as exc:
            raise ValueError(f"cron expression {v!r}: {exc}") from None
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}: use an IANA name such as UTC or Europe/Berlin") from None
        return v


    @model_validator(mode="after")
    def _one_way(self) -> Scheduled:
        if self.schedule is not None and self.every is not None:
            raise ValueError("give `schedule` (cron) or `every` (interval), not both")
        return self

    @property
    def scheduled(self) -> bool:
        return self.schedule is not None or self.every is not None


class TuneJob(Scheduled):
    """The `tune` job: `pgmill tune --apply` on a schedule, watching the live workload first if asked."""

    sample: Duration | None = Field(
        None, description="first watch the running workload this long for the observed statements' constants "
        "(as `pgmill tune --sample`), so that they can be measured: schedule the job while the application is busy")


class Jobs(StrictModel):
    """The project's work besides its pipelines, each on a schedule of its own."""

    models: Scheduled | None = Field(None, description="build the models in models/ (as `pgmill transform`)")
    checks: Scheduled | None = Field(None, description="run the contracts' table checks (as `pgmill check`)")
    tune: TuneJob | None = Field(None, description="re-tune the indexes (as `pgmill tune --apply`)")
    retention: Scheduled | None = Field(
        None, description="detach, archive and drop partitions past their contract's `retain` (as `pgmill retention`)")
