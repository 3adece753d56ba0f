"""What pgmill costs: per pipeline and job, per GB processed, the month to date and the month projected.

The model (docs/cost.md), on the deployment that `cost:` prices (by default an EC2 t4g.small for pgmill
and an RDS db.t4g.micro for the database, us-east-1):

- Instances are billed by the hour whether used or not, from the start of the month (or from pgmill's
  first measured command, if later). The runs' part of that is what they used: their CPU-seconds and
  database seconds at the price of a vCPU-second (pgmill.observe.cost_model). The rest is idle, shown on
  its own line and never smeared into the runs. Runs that used more than the instance-hours (an
  instance over 100% busy: time for a bigger one) are charged what they used.
- Storage is billed by the GB-month: the database's size and pgmill's own files, as measured at the end
  of each command and held until the next, at least the allocated size (`cost.capacity`); the allocated
  but unused part is idle.
- GB processed: the source bytes the loads read (a GB is 2^30 bytes). Cost per GB processed = what the
  runs used / GB processed; the all-in figure (everything to date / GB processed) is shown beside it.
- Projection: the runs' cost to date divided by the elapsed share of the month, plus the idle rest of the
  whole month's instance-hours, plus storage held at its current size until the month ends.

Figures are recomputed from the drivers in pgmill.run_costs with the prices passed in, so a changed price
table re-prices the history (the table's own dollar columns keep the prices of the day).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg

from pgmill.config.cost import CostConfig
from pgmill.errors import ConfigError
from pgmill.observe.cost_model import GB, compute_usd, database_usd

# pgmill's own targets (the business brief's success criteria), shown beside the project's budget
TARGETS: tuple[tuple[str, float], ...] = (
    ("cost per GB processed", 0.01),
    ("total a month", 40.0),
    ("processing a month (compute + database)", 25.0),
    ("storage a month", 15.0),
)

Status = Literal["pass", "fail", "not measured"]


@dataclass
class JobCost:
    """What the runs of one pipeline or job used in the month."""

    job: str
    runs: int
    cpu_seconds: float
    db_seconds: float | None
    bytes_written: int | None
    storage_delta_bytes: int | None
    bytes_processed: int
    compute_usd: float
    database_usd: float | None

    @property
    def total_usd(self) -> float:
        return self.compute_usd + (self.database_usd or 0.0)

    @property
    def per_gb_usd(self) -> float | None:
        return self.total_usd / (self.bytes_processed / GB) if self.bytes_processed else None


@dataclass
class Resource:
    """One billed thing (an instance or a storage), to date and projected: what the runs (or the data)
    used of it and what was idle. `busy`: the share used (vCPU-seconds, or GB-months of the billed size)."""

    name: str
    billed_usd: float
    used_usd: float
    projected_usd: float
    projected_used_usd: float
    busy: float | None

    @property
    def idle_usd(self) -> float:
        return max(0.0, self.billed_usd - self.used_usd)

    @property
    def projected_idle_usd(self) -> float:
        return max(0.0, self.projected_usd - self.projected_used_usd)


@dataclass
class Check:
    """A limit and the figure held against it: at or under it passes; no figure is "not measured"."""

    source: Literal["budget", "target"]
    name: str
    limit: float
    value: float | None

    @property
    def status(self) -> Status:
        if self.value is None:
            return "not measured"
        return "pass" if self.value <= self.limit else "fail"


@dataclass
class CostReport:
    month: str
    period_start: datetime | None  # start of the month, or of the first measurement if later
    month_end: datetime
    as_of: datetime
    complete: bool  # the month is over: to date is the whole month
    elapsed_share: float  # of the period, to date
    jobs: list[JobCost]
    resources: list[Resource]
    bytes_processed: int
    mtd_usd: float
    projected_usd: float
    checks: list[Check]
    notes: list[str] = field(default_factory=list)

    @property
    def measured(self) -> bool:
        return self.period_start is not None

    @property
    def runs_usd(self) -> float:
        return sum(j.total_usd for j in self.jobs)

    @property
    def per_gb_usd(self) -> float | None:
        """What the runs used per GB processed (the figure held against the targets)."""
        return self.runs_usd / (self.bytes_processed / GB) if self.bytes_processed else None

    @property
    def all_in_per_gb_usd(self) -> float | None:
        """Everything to date, idle instance-hours and storage included, per GB processed."""
        return self.mtd_usd / (self.bytes_processed / GB) if self.bytes_processed else None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("period_start", "month_end", "as_of"):
            d[k] = d[k].isoformat() if d[k] else None
        for j, job in zip(d["jobs"], self.jobs, strict=True):
            j.update(total_usd=job.total_usd, per_gb_usd=job.per_gb_usd)
        for r, res in zip(d["resources"], self.resources, strict=True):
            r.update(idle_usd=res.idle_usd, projected_idle_usd=res.projected_idle_usd)
        for c, check in zip(d["checks"], self.checks, strict=True):
            c["status"] = check.status
        d.update(measured=self.measured, runs_usd=self.runs_usd, gb_processed=self.bytes_processed / GB,
                 per_gb_usd=self.per_gb_usd, all_in_per_gb_usd=self.all_in_per_gb_usd)
        return d


def month_cost(conn: psycopg.Connection[Any], cfg: CostConfig) -> tuple[float, float]:
    """This month's cost to date and projected (for the `cost_over_budget` alert rule)."""
    report = cost_report(conn, cfg)
    return report.mtd_usd, report.projected_usd


def cost_report(conn: psycopg.Connection[Any], cfg: CostConfig, month: str | None = None, *,
                now: datetime | None = None) -> CostReport:
    """The cost of `month` ("YYYY-MM", UTC; default: the current one) as of `now` (default: the database's
    clock), from pgmill.run_costs, priced with `cfg`."""
    if now is None:
        row = conn.execute("SELECT now()").fetchone()
        now = row[0] if row else datetime.now(UTC)
    assert now is not None
    now = now.astimezone(UTC)
    start, end = _month_bounds(month, now)
    as_of = min(now, end)
    label = start.strftime("%Y-%m")
    first = _first_measurement(conn)
    if first is None or first >= as_of:
        return _unmeasured(label, end, as_of, cfg, "no measured runs: run `pgmill run` (with `cost: {measure: "
                           "true}`, the default) and its cost is recorded")
    period = max(start, first)
    elapsed_h = (as_of - period).total_seconds() / 3600
    span_h = (end - period).total_seconds() / 3600
    share = elapsed_h / span_h if span_h > 0 else 1.0
    jobs, unmeasured_db = _jobs(conn, cfg, start, as_of)
    resources = [
        _instance("compute", cfg.prices.compute_per_hour, cfg.capacity.compute_vcpus, elapsed_h, span_h,
                  sum(j.cpu_seconds for j in jobs), sum(j.compute_usd for j in jobs)),
        _instance("database", cfg.prices.database_per_hour, cfg.capacity.database_vcpus, elapsed_h, span_h,
                  sum(j.db_seconds or 0.0 for j in jobs), sum(j.database_usd or 0.0 for j in jobs)),
        *_storage(conn, cfg, start, end, period, as_of),
    ]
    mtd = sum(r.billed_usd for r in resources)
    projected = sum(r.projected_usd for r in resources)
    report = CostReport(label, period, end, as_of, now >= end, share, jobs, resources,
                        sum(j.bytes_processed for j in jobs), mtd, projected, [])
    report.checks = _checks(report, cfg)
    if unmeasured_db:
        report.notes.append(f"database time not measured for {unmeasured_db} run(s): the database figures "
                            "to date are a lower bound")
    if not report.complete and elapsed_h < 24:
        report.notes.append(f"projected from {elapsed_h:.1f} hours of the month: a rough figure until a day "
                            "of runs is in")
    if period > start:
        report.notes.append(f"instance-hours counted from the first measured run, {period:%Y-%m-%d %H:%M} UTC")
    return report


# ---------------------------------------------------------------- the parts


def _jobs(conn: psycopg.Connection[Any], cfg: CostConfig, start: datetime,
          as_of: datetime) -> tuple[list[JobCost], int]:
    rows = conn.execute(
        "SELECT job, count(*), sum(cpu_seconds), sum(db_seconds), count(db_seconds), sum(bytes_written),"
        " count(bytes_written), sum(storage_delta_bytes), count(storage_delta_bytes), sum(bytes_processed)"
        " FROM pgmill.run_costs WHERE finished_at >= %s AND finished_at <= %s GROUP BY job ORDER BY job",
        (start, as_of)).fetchall()
    jobs = []
    unmeasured = 0
    for job, n, cpu, db, n_db, written, n_written, grown, n_grown, processed in rows:
        cpu_s = float(cpu or 0.0)
        db_s = float(db) if n_db else None
        unmeasured += int(n) - int(n_db)
        jobs.append(JobCost(str(job), int(n), cpu_s, db_s, int(written) if n_written else None,
                            int(grown) if n_grown else None, int(processed or 0), compute_usd(cpu_s, cfg),
                            database_usd(db_s, cfg)))
    jobs.sort(key=lambda j: (-j.total_usd, j.job))
    return jobs, unmeasured


def _instance(name: str, per_hour: float, vcpus: int, elapsed_h: float, span_h: float, used_s: float,
              used_usd: float) -> Resource:
    """An instance billed by the hour: the runs' part is what they used; projected, the runs' rate to date
    over the whole period, the instance-hours of the whole period."""
    share = elapsed_h / span_h if span_h > 0 else 1.0
    projected_used = used_usd / share if share > 0 else used_usd
    capacity_s = elapsed_h * 3600 * vcpus
    return Resource(name, max(elapsed_h * per_hour, used_usd), used_usd, max(span_h * per_hour, projected_used),
                    projected_used, used_s / capacity_s if capacity_s > 0 else None)


# the sizes each command measured (one per invocation, in one transaction), from `period` to `as_of`, and the
# last one of each before `period` (the level the period starts at): index run_costs_recorded, whatever the history
_SIZES = """
SELECT max(recorded_at), max(database_bytes), max(files_bytes) FROM pgmill.run_costs
WHERE recorded_at <= %(as_of)s AND recorded_at >= least(
    coalesce((SELECT max(recorded_at) FROM pgmill.run_costs
              WHERE recorded_at <= %(period)s AND database_bytes IS NOT NULL), '-infinity'),
    coalesce((SELECT max(recorded_at) FROM pgmill.run_costs
              WHERE recorded_at <= %(period)s AND files_bytes IS NOT NULL), '-infinity'))
GROUP BY invocation ORDER BY 1
"""


def _storage(conn: psycopg.Connection[Any], cfg: CostConfig, start: datetime, end: datetime, period: datetime,
             as_of: datetime) -> list[Resource]:
    """GB-months of the database and of pgmill's files: each measured size held until the next one."""
    rows = conn.execute(_SIZES, {"period": period, "as_of": as_of}).fetchall()
    month_s = (end - start).total_seconds()
    out = []
    for name, col, price, allocated in (
        ("database storage", 1, cfg.prices.database_storage_per_gb_month, cfg.capacity.database_storage_gb),
        ("storage (pgmill's files)", 2, cfg.prices.storage_per_gb_month, cfg.capacity.storage_gb),
    ):
        points = [(r[0], r[col] / GB) for r in rows if r[col] is not None]
        used_gbs, billed_gbs, current = _integrate(points, period, as_of, allocated)
        rest_s = (end - as_of).total_seconds()
        used = used_gbs / month_s * price
        billed = billed_gbs / month_s * price
        out.append(Resource(name, billed, used, billed + max(allocated, current) * rest_s / month_s * price,
                            used + current * rest_s / month_s * price,
                            used_gbs / billed_gbs if billed_gbs > 0 else None))
    return out


def _integrate(points: list[tuple[datetime, float]], start: datetime, end: datetime,
               allocated: float) -> tuple[float, float, float]:
    """GB-seconds used and billed (at least `allocated`) over [start, end], each size held from when it was
    measured until the next (the first one also before it), and the size at `end`."""
    if not points:
        return 0.0, 0.0, 0.0
    before = [gb for t, gb in points if t <= start]
    level = before[-1] if before else points[0][1]
    t = start
    used = billed = 0.0
    for at, gb in points:
        if at <= start:
            continue
        seconds = (min(at, end) - t).total_seconds()
        used += level * seconds
        billed += max(allocated, level) * seconds
        t, level = min(at, end), gb
    seconds = (end - t).total_seconds()
    used += level * seconds
    billed += max(allocated, level) * seconds
    return used, billed, level


def _checks(report: CostReport, cfg: CostConfig) -> list[Check]:
    by_name = {r.name: r for r in report.resources}
    processing = by_name["compute"].projected_usd + by_name["database"].projected_usd
    storage = sum(r.projected_usd for r in report.resources if "storage" in r.name)
    month_figure = report.mtd_usd if report.complete else report.projected_usd
    checks = []
    if cfg.budget.month is not None:
        checks.append(Check("budget", "month to date", cfg.budget.month, report.mtd_usd))
        if not report.complete:
            checks.append(Check("budget", "month projected", cfg.budget.month, report.projected_usd))
    checks.append(Check("budget", "per GB processed", cfg.budget.per_gb, report.per_gb_usd))
    values = {"cost per GB processed": report.per_gb_usd, "total a month": month_figure,
              "processing a month (compute + database)": processing, "storage a month": storage}
    checks += [Check("target", name, limit, values[name]) for name, limit in TARGETS]
    return checks


def _unmeasured(label: str, end: datetime, as_of: datetime, cfg: CostConfig, why: str) -> CostReport:
    resources = [Resource(n, 0.0, 0.0, 0.0, 0.0, None)
                 for n in ("compute", "database", "database storage", "storage (pgmill's files)")]
    report = CostReport(label, None, end, as_of, as_of >= end, 0.0, [], resources, 0, 0.0, 0.0, [], [why])
    report.checks = [Check(c.source, c.name, c.limit, None) for c in _checks(report, cfg)]
    return report


def _first_measurement(conn: psycopg.Connection[Any]) -> datetime | None:
    row = conn.execute("SELECT to_regclass('pgmill.run_costs') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    row = conn.execute("SELECT min(started_at) FROM pgmill.run_costs").fetchone()
    return row[0] if row else None


def _month_bounds(month: str | None, now: datetime) -> tuple[datetime, datetime]:
    if month is None:
        start = datetime(now.year, now.month, 1, tzinfo=UTC)
    else:
        try:
            start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
        except ValueError:
            raise ConfigError(f"month {month!r}: write it as YYYY-MM, e.g. 2025-06") from None
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end
