"""`pgmill retention`: the partitions of the project's tables past their contract's `retain`, detached
without blocking the table, archived to Parquet when the contract asks, then dropped.

Per partition, in this order: DETACH ... CONCURRENTLY (or FINALIZE one left pending), then with `archive:
parquet` the file written and fsynced, then its ledger row (pgmill.archives) and the DROP in one transaction:
a partition is never dropped without its archive recorded, and an archive is never recorded for a
partition still there. A run stopped at any point is finished by the next one (see db/retention.py).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pgmill.config.load import load_contract
from pgmill.config.spec import PartitionSpec
from pgmill.db import archive, retention
from pgmill.db.catalog import split_table, table_key
from pgmill.db.migrations import migrate
from pgmill.errors import ConfigError, PipelineLocked
from pgmill.project import ProjectContext


@dataclass
class PartitionDone:
    """One expired partition and what was (or, dry, would be) done to it."""

    table: str
    partition: str
    bounds: str
    state: str  # before: attached, pending (an interrupted detach) or detached (not yet dropped)
    action: str  # "drop" or "archive, drop"
    rows: int | None = None
    bytes: int | None = None
    path: str | None = None
    sha256: str | None = None
    seconds: float | None = None


@dataclass
class RetentionReport:
    dry_run: bool
    cutoffs: dict[str, str] = field(default_factory=dict)  # table -> the first day kept
    partitions: list[PartitionDone] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "cutoffs": self.cutoffs, "partitions": [asdict(p) for p in self.partitions]}


def retained_tables(ctx: ProjectContext) -> dict[str, PartitionSpec]:
    """Each table whose contract has a `retain`, with its partition spec."""
    out: dict[str, PartitionSpec] = {}
    for pipe in ctx.config.pipelines.values():
        spec = load_contract(ctx.dir, pipe.contract).partition
        if spec is not None and spec.retain is not None:
            out[table_key(pipe.table)] = spec
    return out


def run_retention(ctx: ProjectContext, tables: list[str] | None = None, *, dry_run: bool = False,
                  today: dt.date | None = None, batch_rows: int = 50_000) -> RetentionReport:
    """Apply retention to `tables` (default: every table whose contract has a `retain`)."""
    specs = retained_tables(ctx)
    if tables:
        unknown = [t for t in tables if table_key(t) not in specs]
        if unknown:
            raise ConfigError(f"no retention for {', '.join(unknown)}: the tables with `retain` in their contract's "
                              f"partition are: {', '.join(sorted(specs)) or 'none'}")
        specs = {table_key(t): specs[table_key(t)] for t in tables}
    for spec in specs.values():  # an archive URL that cannot be written fails before any partition is touched
        if spec.archive and archive.is_url(spec.archive_dir):
            archive.filesystem(spec.archive_dir)
    today = today or dt.datetime.now(dt.UTC).date()
    report = RetentionReport(dry_run)
    with ctx.target.connect(autocommit=True, application_name="pgmill retention") as conn:
        migrate(conn)
        for table, spec in specs.items():
            report.cutoffs[table] = retention.cutoff(spec, today).isoformat()
            if not retention.lock_table(conn, table):
                raise PipelineLocked(f"another `pgmill retention` is working on {table}; try again when it is done")
            try:
                for part in retention.expired(conn, table, spec, today):
                    done = PartitionDone(table, part.name, part.bounds, part.state,
                                         "archive, drop" if spec.archive else "drop")
                    report.partitions.append(done)
                    if not dry_run:
                        _expire(conn, ctx.dir, spec, part, done, batch_rows)
            finally:
                retention.unlock_table(conn, table)
    return report


def _expire(conn: Any, project_dir: Path, spec: PartitionSpec, part: retention.Expired, done: PartitionDone,
            batch_rows: int) -> None:
    t0 = time.monotonic()
    retention.detach(conn, part)
    schema, rel = split_table(part.table)
    if spec.archive is None:
        retention.drop(conn, part)
    else:
        dest, shown = archive.location(project_dir, spec.archive_dir, schema, rel, part.name)
        written = archive.write_parquet(conn, schema, part.name, dest, batch_rows)
        with conn.transaction():
            archive.record(conn, part.table, part.name, part.bounds, written, shown)
            retention.drop(conn, part)
        done.rows, done.bytes, done.path, done.sha256 = written.rows, written.bytes, shown, written.sha256
    done.seconds = round(time.monotonic() - t0, 3)
