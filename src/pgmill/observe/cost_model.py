"""The allocation model: what a run is charged, and how one measured command's drivers are shared.

Prices are per hour of a whole machine (`cost.prices`); a machine of `cost.capacity` vCPUs sells that many
vCPU-seconds an hour, so one CPU-second of pgmill costs `compute_per_hour / 3600 / compute_vcpus` and one
second of database time costs `database_per_hour / 3600 / database_vcpus`. What the runs do not use of
the instance-hours is idle, shown on its own line and never smeared into the runs (pgmill.observe.cost).

A command (`pgmill run`) is measured as a whole: process CPU, database time and WAL bytes are sampled
about once a second. Each increase between two samples goes to the runs in progress at the time, in
proportion to how long each was in progress within that interval (parallel runs split the time they
share); the part of an interval when no run was in progress (setup, table checks, re-tuning) goes to the
command's own line. Storage growth goes to the run whose target table grew; the rest (pgmill's own
tables, catalogs) is shared by wall time like the other drivers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pgmill.config.cost import CostConfig

GB = 2**30  # a GB is 2^30 bytes, as AWS bills it
SERIES = ("cpu", "db", "wal")  # the drivers sampled during a command (cumulative counters)


def compute_usd(cpu_seconds: float, cfg: CostConfig) -> float:
    """CPU-seconds of pgmill at the price of one vCPU-second of the machine it runs on."""
    return cpu_seconds * cfg.prices.compute_per_hour / 3600.0 / cfg.capacity.compute_vcpus


def database_usd(db_seconds: float | None, cfg: CostConfig) -> float | None:
    """Seconds of database time at the price of one vCPU-second of the database server."""
    if db_seconds is None:
        return None
    return db_seconds * cfg.prices.database_per_hour / 3600.0 / cfg.capacity.database_vcpus


@dataclass(frozen=True)
class Sample:
    """Cumulative counters at one moment; `at` is in seconds since the epoch, on the database's clock."""

    at: float
    values: Mapping[str, float | None]


@dataclass(frozen=True)
class Span:
    """When one run of the command was in progress (seconds since the epoch, the database's clock)."""

    start: float
    end: float


@dataclass
class Shares:
    """Each span's part of every series (in the spans' order), the command's own part, and the seconds
    each had (`wall`: parallel runs split the seconds they share; `own_wall`: no run in progress)."""

    spans: list[dict[str, float | None]]
    own: dict[str, float | None]
    wall: list[float]
    own_wall: float


def valid_series(samples: Sequence[Sample], name: str) -> bool:
    """A series is measured when every sample has it and it never goes down (a reset or a crash would)."""
    vals = [s.values.get(name) for s in samples]
    if len(vals) < 2 or any(v is None for v in vals):
        return False
    return all(b >= a for a, b in zip(vals, vals[1:], strict=False))  # type: ignore[operator]


def share(samples: Sequence[Sample], spans: Sequence[Span], series: Sequence[str] = SERIES) -> Shares:
    """Share every measured series among the spans, interval by interval (see the module docstring);
    a series that is not measured is None everywhere."""
    measured = [n for n in series if valid_series(samples, n)]
    per: list[dict[str, float | None]] = [dict.fromkeys(series) for _ in spans]
    own: dict[str, float | None] = dict.fromkeys(series)
    for n in measured:
        own[n] = 0.0
        for p in per:
            p[n] = 0.0
    wall = [0.0] * len(spans)
    own_wall = 0.0
    for a, b in zip(samples, samples[1:], strict=False):
        length = max(0.0, b.at - a.at)
        overlaps = [_overlap(s.start, s.end, a.at, b.at) for s in spans]
        total = sum(overlaps)
        covered = 0.0
        if length > 0 and total > 0:
            covered = min(1.0, _union([(max(s.start, a.at), min(s.end, b.at)) for s in spans]) / length)
        own_wall += length * (1.0 - covered)
        for i, o in enumerate(overlaps):
            if o > 0:
                wall[i] += length * covered * o / total
        for n in measured:
            d = float(b.values[n]) - float(a.values[n])  # type: ignore[arg-type]
            to_runs = d * covered
            own[n] = (own[n] or 0.0) + d - to_runs
            for i, o in enumerate(overlaps):
                if o > 0:
                    per[i][n] = (per[i][n] or 0.0) + to_runs * o / total
    return Shares(per, own, wall, own_wall)


def split_storage(total: int | None, direct: Sequence[int], wall: Sequence[float],
                  own_wall: float) -> tuple[list[int | None], int | None]:
    """Storage growth: each run keeps the growth of its own tables (`direct`); the rest of `total` (the
    database's growth) is shared by wall time among the runs and the command's own line."""
    if total is None:
        return [None] * len(direct), None
    rest = total - sum(direct)
    seconds = sum(wall) + own_wall
    if seconds <= 0:
        return list(direct), rest
    runs: list[int | None] = [d + round(rest * w / seconds) for d, w in zip(direct, wall, strict=True)]
    return runs, total - sum(r or 0 for r in runs)


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _union(intervals: Sequence[tuple[float, float]]) -> float:
    """The length of the union of some intervals (empty ones ignored)."""
    total = 0.0
    end = float("-inf")
    for s, e in sorted(iv for iv in intervals if iv[1] > iv[0]):
        if e <= end:
            continue
        total += e - max(s, end)
        end = e
    return total
