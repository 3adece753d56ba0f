"""pgmill: PostgreSQL data pipelines that are performant, reliable and cheap by default.

The library is the product; the `pgmill` command and the MCP server are thin shells over it::

    from pgmill import open_project, run_pipelines

    ctx = open_project("path/to/project")
    for run in run_pipelines(ctx):
        print(run.pipeline, run.status, run.counts)
"""

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
from pgmill.ingest.runner import run_pipeline, run_pipelines
from pgmill.project import ProjectContext, open_project

__version__ = "0.1.0"

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
