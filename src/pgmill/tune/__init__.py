"""Query tuning: the workload, an index advisor, measured p95, index health, annotated plans."""

from pgmill.tune.advisor import Advice, Recommendation, advise
from pgmill.tune.explain import explain_query
from pgmill.tune.health import index_health
from pgmill.tune.run import TuneReport, retune_after_run, rollback_run, tune

__all__ = ["Advice", "Recommendation", "TuneReport", "advise", "explain_query", "index_health",
           "retune_after_run", "rollback_run", "tune"]
