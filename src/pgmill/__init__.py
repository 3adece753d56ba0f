"""pgmill: PostgreSQL data pipelines that are performant, reliable and cheap by default.

The library is the product; the `pgmill` command and the MCP server are thin shells over it::

    from pgmill import open_project, run_pipelines

    ctx = open_project("path/to/project")
    for run in run_pipelines(ctx):
        print(run.pipeline, run.status, run.counts)
"""

from typing import TYPE_CHECKING, Any

from pgmill.errors import (
    AccountingError,
    ConfigError,
    ContractError,
    DatabaseError,
    DatabaseUnavailable,
    PgmillError,
    PipelineLocked,
    SourceError,
    TransientError,
)
from pgmill.project import ProjectContext, open_project

if TYPE_CHECKING:
    from pgmill.ingest.runner import run_pipeline, run_pipelines

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # the loader pulls in polars and pyarrow: imported when first used, not by every `pgmill` command
    if name in ("run_pipeline", "run_pipelines"):
        from pgmill.ingest import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'pgmill' has no attribute {name!r}")


__all__ = [
    "AccountingError",
    "ConfigError",
    "ContractError",
    "DatabaseError",
    "DatabaseUnavailable",
    "PgmillError",
    "PipelineLocked",
    "ProjectContext",
    "SourceError",
    "TransientError",
    "open_project",
    "run_pipeline",
    "run_pipelines",
]
