"""Query tuning: the workload, an index advisor, measured p95, index health, annotated plans."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgmill.tune.advisor import Advice, Recommendation, advise
    from pgmill.tune.explain import explain_query
    from pgmill.tune.health import index_health
    from pgmill.tune.run import TuneReport, retune_after_run, rollback_run, run_tune

# Loaded on first use: every `pgmill` command imports this package to register `pgmill tune`, and most
# commands never tune.
_LAZY = {
    "Advice": "pgmill.tune.advisor", "Recommendation": "pgmill.tune.advisor", "advise": "pgmill.tune.advisor",
    "explain_query": "pgmill.tune.explain", "index_health": "pgmill.tune.health", "TuneReport": "pgmill.tune.run",
    "retune_after_run": "pgmill.tune.run", "rollback_run": "pgmill.tune.run", "run_tune": "pgmill.tune.run",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pgmill.tune' has no attribute {name!r}")


__all__ = ["Advice", "Recommendation", "TuneReport", "advise", "explain_query", "index_health",
           "retune_after_run", "rollback_run", "run_tune"]
