"""SQL transformations: models/*.sql, their dependency graph, materializations and the parallel runner.

    from pgmill import open_project
    from pgmill.transform import run_transforms

    result = run_transforms(open_project("path/to/project"), select=["orders_daily+"], threads=4)
    print(result.ran, result.failed, result.skipped)
"""

from typing import Any

from pgmill.transform.graph import ExistingRelations, Graph, build_graph
from pgmill.transform.models import Model, discover_models
from pgmill.transform.relation import Relation, SqlError
from pgmill.transform.runner import ModelResult, TransformResult, load_graph, run_transforms


def __getattr__(name: str) -> Any:
    if name == "references":  # the SQL parser (pglast) loads only when something is parsed
        from pgmill.transform.deps import references

        return references
    raise AttributeError(name)


__all__ = [
    "ExistingRelations",
    "Graph",
    "Model",
    "ModelResult",
    "Relation",
    "SqlError",
    "TransformResult",
    "build_graph",
    "discover_models",
    "load_graph",
    "references",
    "run_transforms",
]
