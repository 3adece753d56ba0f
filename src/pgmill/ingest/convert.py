"""`pgmill partition TABLE`: a pipeline's plain table converted to the partitioning its contract now declares
(the plan and its lock profile: db/convert.py)."""

from __future__ import annotations

import datetime as dt

from pgmill.config.load import load_contract
from pgmill.db import convert
from pgmill.db.catalog import table_key
from pgmill.db.migrations import migrate
from pgmill.errors import ConfigError
from pgmill.project import ProjectContext


def partition_table(ctx: ProjectContext, table: str, *, dry_run: bool = False, lock_timeout_s: float = 10.0,
                    today: dt.date | None = None) -> convert.ConversionPlan:
    """Convert `table`, loaded by one of the project's pipelines, as its contract's `partition:` says."""
    key = table_key(table)
    contracts = {p.contract for p in ctx.config.pipelines.values() if table_key(p.table) == key}
    if not contracts:
        raise ConfigError(f"no pipeline loads {key}: the project's tables are {', '.join(ctx.tables) or 'none'}")
    path = sorted(contracts)[0]
    spec = load_contract(ctx.dir, path).partition
    if spec is None:
        raise ConfigError(f"{key}: its contract {path} has no partition section; add one first, e.g. "
                          "`partition: {by: ordered_at, interval: month}`")
    if spec.kind != "range":
        raise ConfigError(f"{key}: `pgmill partition` converts a plain table to range partitions only; its contract "
                          f"{path} declares {spec.kind} partitions: load into a new table with that contract (or "
                          "rename this one away first) and copy the rows over with INSERT ... SELECT")
    with ctx.target.connect(autocommit=True, application_name="pgmill partition") as conn:
        migrate(conn)
        return convert.convert(conn, key, spec, dry_run=dry_run, today=today, lock_timeout_s=lock_timeout_s)
