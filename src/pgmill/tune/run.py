"""`pgmill tune`: advise, optionally apply with measurement, record everything; re-tune after loads."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from pgmill.config.tune import TuneConfig
from pgmill.db.connect import Target
from pgmill.errors import ConfigError
from pgmill.tune import store
from pgmill.tune.advisor import Advice, advise, data_size, prepare_workload, workload_tables
from pgmill.tune.apply import Applied, apply_advice, rollback
from pgmill.tune.literals import LiteralSamples, can_sample, sample_literals
from pgmill.tune.refill import refill
from pgmill.tune.workload import WorkloadQuery

if TYPE_CHECKING:
    from pgmill.project import DatabaseContext, ProjectContext


@dataclass
class TuneReport:
    run_id: int
    mode: str
    advice: Advice
    applied: Applied | None
    sampled: LiteralSamples | None = None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"run_id": self.run_id, "mode": self.mode, **self.advice.as_dict()}
        if self.applied is not None:
            d["applied"] = self.applied.as_dict()
        if self.sampled is not None:
            d["sampled"] = self.sampled.as_dict()
        return d


def workload_fingerprint(workload: list[WorkloadQuery]) -> str:
    return hashlib.sha256("\n".join(sorted(q.fingerprint for q in workload)).encode()).hexdigest()[:16]


def run_tune(ctx: ProjectContext | DatabaseContext, *, apply: bool = False, budget: str | None = None,
             backend: str = "auto", cfg: TuneConfig | None = None, sample_seconds: float = 0.0) -> TuneReport:
    """Recommend indexes for the workload; with `apply`, create them and keep only those that proved faster.
    `cfg` stands in for the project's `tune:` settings (the command line overrides some of them).
    `sample_seconds`: first watch the running workload that long for observed statements' literal texts."""
    return _tune(ctx.target, ctx.dir, cfg or ctx.config.tune, apply=apply, budget=budget, backend=backend,
                 sample_seconds=sample_seconds)


def _tune(target: Target, project_dir: Path | None, cfg: TuneConfig, *, apply: bool = False,
          budget: str | None = None, backend: str = "auto", mode: str | None = None,
          sample_seconds: float = 0.0) -> TuneReport:
    """`run_tune` on the context's parts, which is all `retune_after_run` has (it records mode `auto`)."""
    with target.connect(autocommit=True, application_name="pgmill tune") as conn:
        store.ensure_schema(conn)
        sampled = None
        if sample_seconds > 0:
            why_not = can_sample(conn)
            if why_not is not None:
                raise ConfigError(f"--sample: {why_not}")
            sampled = sample_literals(conn, sample_seconds)
        advice = advise(conn, project_dir, cfg, budget=budget, backend=backend,
                        literals=sampled.texts if sampled else None)
        run_mode = mode or ("apply" if apply else "recommend")
        run_id = store.start_run(conn, run_mode, advice.backend)
        applied = None
        try:
            if apply and advice.workload:
                def connect() -> psycopg.Connection[Any]:
                    return target.connect(autocommit=True, application_name="pgmill tune")
                applied = apply_advice(connect, advice, run_id, executions=cfg.executions,
                                       lock_timeout=cfg.lock_timeout)
                if advice.budget_bytes is not None:
                    advice, applied = refill(conn, connect, advice, applied, run_id, cfg, backend)
        except BaseException as exc:
            store.finish_run(conn, run_id, "failed", {"error": str(exc).strip()})
            raise
        report = TuneReport(run_id, run_mode, advice, applied, sampled)
        store.finish_run(conn, run_id, "succeeded", report.as_dict())
        store.snapshot(conn, run_id, workload_fingerprint(advice.workload), advice.data_bytes,
                       [q.name for q in advice.workload])
    return report


def rollback_run(target: Target, cfg: TuneConfig, target_run: int) -> dict[str, Any]:
    """Undo tuning run `target_run`: drop the indexes it kept."""
    with target.connect(autocommit=True, application_name="pgmill tune") as conn:
        store.ensure_schema(conn)
        row = conn.execute("SELECT mode, rolled_back_by FROM pgmill.tuning_runs WHERE run_id = %s",
                           (target_run,)).fetchone()
        if row is None:
            raise ConfigError(f"no tuning run {target_run} (see pgmill.tuning_runs)")
        if row[1] is not None:
            raise ConfigError(f"tuning run {target_run} was already rolled back by run {row[1]}")
        run_id = store.start_run(conn, "rollback", None)
    dropped = rollback(lambda: target.connect(autocommit=True, application_name="pgmill tune"), run_id,
                       target_run, cfg.lock_timeout)
    result = {"run_id": run_id, "rolled_back": target_run, "dropped": dropped}
    with target.connect(autocommit=True) as conn:
        store.finish_run(conn, run_id, "succeeded", result)
    return result


def needs_retune(conn: psycopg.Connection[Any], project_dir: Path | None, cfg: TuneConfig) -> tuple[bool, str]:
    """Whether the workload changed, or its tables' size moved by `retune_size_change`, since the last tuning."""
    store.ensure_schema(conn)
    catalog, workload = prepare_workload(conn, project_dir, cfg)
    if not workload:
        return False, "no workload: no queries/ and nothing observed"
    fp = workload_fingerprint(workload)
    size = data_size(catalog, workload_tables(workload))
    last = store.last_snapshot(conn)
    if last is None:
        return True, "never tuned"
    if last[0] != fp:
        return True, "the workload changed"
    change = abs(size - last[1]) / max(last[1], 1)
    if change >= cfg.retune_size_change:
        return True, f"the data size changed by {change:.0%}"
    return False, f"unchanged (data size moved {change:.0%})"


def retune_after_run(target: Target, project_dir: Path | None, cfg: TuneConfig) -> TuneReport | None:
    """Called after `pgmill run`: re-tune when needed, per `tune.auto`; the report lands in the ledger."""
    if cfg.auto == "off":
        return None
    with target.connect(autocommit=True, application_name="pgmill tune") as conn:
        needed, _why = needs_retune(conn, project_dir, cfg)
    if not needed:
        return None
    return _tune(target, project_dir, cfg, apply=cfg.auto == "apply", mode="auto")
