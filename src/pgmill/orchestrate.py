"""`pgmill run`: load the pipelines, then build the models, then (as later steps land) check and tune."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pgmill.ingest.runner import ProgressFn, run_pipelines
from pgmill.observe.ledger import RunRecord
from pgmill.project import ProjectContext
from pgmill.transform.runner import TransformResult, run_transforms


@dataclass
class ProjectRun:
    """Everything one `pgmill run` did."""

    loads: list[RunRecord]
    transform: TransformResult | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        loads_ok = all(r.status == "succeeded" for r in self.loads)
        return loads_ok and (self.transform is None or self.transform.status == "succeeded")

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "loads": [r.as_dict() for r in self.loads],
            "transform": self.transform.as_dict() if self.transform else None,
            "notes": self.notes,
        }


def run_project(
    ctx: ProjectContext,
    pipelines: list[str] | None = None,
    *,
    progress: ProgressFn | None = None,
    wait: bool = False,
    transform: bool = True,
) -> ProjectRun:
    """Load, then transform; models are not built on top of a failed load (their inputs would be stale)."""
    loads = run_pipelines(ctx, pipelines, progress=progress, wait=wait) if ctx.config.pipelines else []
    result = ProjectRun(loads)
    if not transform:
        return result
    if not all(r.status == "succeeded" for r in loads):
        result.notes.append("models were not built: a load failed (fix it and rerun)")
        return result
    result.transform = run_transforms(ctx)
    if not result.transform.models:
        result.transform = None
    return result
