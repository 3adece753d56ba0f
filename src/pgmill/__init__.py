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

if TYPE_CHECKING:
    from pgmill.ingest.runner import run_pipeline, run_pipelines
    from pgmill.project import ProjectContext, open_project

__version__ = "0.1.0"

# Imported when first used. The loader pulls in polars and pyarrow; the project, pydantic and psycopg. So
# `import pgmill` is cheap, and the `pgmill` command can load its modules its own way (pgmill._launch).
_LAZY = {"run_pipeline": "pgmill.ingest.runner", "run_pipelines": "pgmill.ingest.runner",
         "ProjectContext": "pgmill.project", "open_project": "pgmill.project"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
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
