"""One run, everything the ledger knows of it: the pgmill.runs row, its steps (pgmill.run_steps: each
stream's load with its phases, evolve, checks, models, tune; a transform run's models), the row accounting
identity, its cost (pgmill.run_costs) and the other runs of the same command (the cost's `invocation`).

Reads by primary key and by the indexes run_steps_run and run_costs_invocation; steps are bounded."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

Conn = psycopg.Connection[Any]

MAX_STEPS = 500  # steps read at most (a transform run has one per model)
MAX_RELATED = 50
PHASES = ("read", "validate", "load")  # a stream's load step, in the order of a batch's path


@dataclass(frozen=True)
class Step:
    name: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    rows: int | None
    detail: dict[str, Any]

    @property
    def kind(self) -> str:
        """load, evolve, checks, models, tune; `model` for a transform run's model."""
        head = self.name.split(" ", 1)[0]
        return head if head in ("load", "evolve", "checks", "models", "tune") else "model"

    @property
    def seconds(self) -> float | None:
        return None if self.finished_at is None else (self.finished_at - self.started_at).total_seconds()

    @property
    def phases(self) -> dict[str, float]:
        """Seconds per phase of a load step ({} when it was recorded without them)."""
        raw = self.detail.get("phases")
        if not isinstance(raw, dict):
            return {}
        return {p: float(raw[f"{p}_s"]) for p in PHASES if isinstance(raw.get(f"{p}_s"), int | float)}

    @property
    def linked_run(self) -> int | None:
        """The run a `models` step stands for (the transform run)."""
        v = self.detail.get("run_id")
        return int(v) if self.kind == "models" and isinstance(v, int) else None


@dataclass(frozen=True)
class Identity:
    """rows_read = inserted + updated + unchanged + quarantined + duplicate (+ deleted + superseded, of CDC)."""

    rows_read: int
    inserted: int
    updated: int
    unchanged: int
    quarantined: int
    duplicate: int
    deleted: int = 0
    superseded: int = 0

    @property
    def accounted(self) -> int:
        return (self.inserted + self.updated + self.unchanged + self.quarantined + self.duplicate + self.deleted
                + self.superseded)

    @property
    def holds(self) -> bool:
        return self.rows_read == self.accounted


@dataclass(frozen=True)
class Cost:
    compute_usd: float
    database_usd: float | None
    cpu_seconds: float
    db_seconds: float | None
    db_source: str | None
    bytes_processed: int
    bytes_written: int | None
    invocation: int

    @property
    def total_usd(self) -> float:
        return self.compute_usd + (self.database_usd or 0.0)


@dataclass(frozen=True)
class Related:
    run_id: int
    pipeline: str
    status: str
    started_at: datetime


@dataclass
class RunDetail:
    run: dict[str, Any]  # the pgmill.runs row
    steps: list[Step]
    steps_total: int
    identity: Identity
    cost: Cost | None
    related: list[Related] = field(default_factory=list)  # the other runs of the same command

    @property
    def run_id(self) -> int:
        return int(self.run["run_id"])

    @property
    def transform(self) -> bool:
        """A run of the models (pgmill.transform): no source rows, its steps are the models."""
        return bool(self.run["mode"] == "transform")

    @property
    def phased(self) -> bool:
        """Whether a load step has its phases recorded."""
        return any(s.kind == "load" and s.phases for s in self.steps)

    @property
    def end(self) -> datetime | None:
        """When the last thing recorded of this run ended (steps after the run, such as checks, count)."""
        ends = [t for t in (self.run["finished_at"], *(s.finished_at for s in self.steps)) if t is not None]
        return max(ends) if ends else None


def run_detail(conn: Conn, run_id: int) -> RunDetail | None:
    """The run `run_id`, or None when pgmill.runs has no such run."""
    with conn.cursor(row_factory=dict_row) as cur:
        run = cur.execute("SELECT * FROM pgmill.runs WHERE run_id = %s", (run_id,)).fetchone()
        if run is None:
            return None
        steps = [Step(r["name"], r["status"], r["started_at"], r["finished_at"], r["rows"],
                      r["detail"] if isinstance(r["detail"], dict) else {})
                 for r in cur.execute(
                     "SELECT name, status, started_at, finished_at, rows, detail FROM pgmill.run_steps"
                     " WHERE run_id = %s ORDER BY started_at, step_id LIMIT %s", (run_id, MAX_STEPS)).fetchall()]
        total = len(steps)
        if total >= MAX_STEPS:
            row = cur.execute("SELECT count(*) AS n FROM pgmill.run_steps WHERE run_id = %s", (run_id,)).fetchone()
            total = int(row["n"]) if row else total
        c = cur.execute(
            "SELECT compute_usd, database_usd, cpu_seconds, db_seconds, db_source, bytes_processed, bytes_written,"
            " invocation FROM pgmill.run_costs WHERE run_id = %s", (run_id,)).fetchone()
        cost = Cost(**c) if c else None
        related = []
        if cost is not None:
            related = [Related(**r) for r in cur.execute(
                "SELECT r.run_id, r.pipeline, r.status, r.started_at FROM pgmill.run_costs c"
                " JOIN pgmill.runs r USING (run_id) WHERE c.invocation = %s AND c.run_id <> %s"
                " ORDER BY r.run_id LIMIT %s", (cost.invocation, run_id, MAX_RELATED)).fetchall()]
    identity = Identity(run["rows_read"], run["rows_inserted"], run["rows_updated"], run["rows_unchanged"],
                        run["rows_quarantined"], run["rows_duplicate"], run["rows_deleted"], run["rows_superseded"])
    return RunDetail(run, steps, total, identity, cost, related)
