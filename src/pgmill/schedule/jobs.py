"""The jobs of a project: each scheduled pipeline, and `models`, `checks`, `tune` and `retention` from `jobs:`.

A job's id is what pgmill.expected_runs and the metrics call it: `pipeline:NAME` for a pipeline, the
job's kind for the others. A scheduled pipeline runs as `pgmill run NAME --no-transform` (its load and its
table's checks); models are built by the `models` job, on its own schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgmill.config.duration import parse_duration
from pgmill.config.schedule import JOB_KINDS, Scheduled, TuneJob
from pgmill.config.spec import Project
from pgmill.schedule.timetable import Timetable

PIPELINE_PREFIX = "pipeline:"


@dataclass(frozen=True)
class Job:
    id: str
    spec: Scheduled
    command: tuple[str, ...]  # the pgmill command line that runs it, without --project and --json

    @property
    def timetable(self) -> Timetable:
        return Timetable(self.id, self.spec)

    @property
    def pipeline(self) -> str | None:
        return self.id.removeprefix(PIPELINE_PREFIX) if self.id.startswith(PIPELINE_PREFIX) else None


_COMMANDS = {"models": ("transform",), "checks": ("check",), "tune": ("tune", "--apply"), "retention": ("retention",)}


def _command(kind: str, spec: Scheduled) -> tuple[str, ...]:
    if isinstance(spec, TuneJob) and spec.sample is not None:
        return (*_COMMANDS[kind], "--sample", f"{parse_duration(spec.sample):g}")
    return _COMMANDS[kind]


def scheduled_jobs(config: Project) -> dict[str, Job]:
    """Every job of the project that has a schedule, by id."""
    jobs: dict[str, Job] = {}
    for name, pipe in config.pipelines.items():
        if pipe.scheduled:
            jid = PIPELINE_PREFIX + name
            jobs[jid] = Job(jid, pipe, ("run", name, "--no-transform"))
    for kind in JOB_KINDS:
        spec: Scheduled | None = getattr(config.jobs, kind)
        if spec is not None and spec.scheduled:
            jobs[kind] = Job(kind, spec, _command(kind, spec))
    return jobs
