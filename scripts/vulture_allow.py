"""Names vulture cannot see used (scripts/lint.sh passes this file after the code).

Each is read by something other than a Python attribute access: fields of records turned whole into
dicts (dataclasses.asdict) for JSON and the ledger, psycopg connection settings, and the hooks that
http.server calls on a request handler in the tests' fake API.
"""

# ruff: noqa: B018
from pgmill.dashboard.run_detail import Identity, RunDetail
from pgmill.ingest.sources import postgres
from pgmill.observe.ledger import RunRecord
from pgmill.tune.measure import Latency
from pgmill.tune.snapshot import Column
from pgmill.tune.workload import WorkloadQuery
from tests import fake_api
from tests.test_crash_safety import KillStats

RunRecord.target_table  # RunRecord.as_dict (asdict): `pgmill status --json`
Latency.mean_ms  # Latency.as_dict (asdict): tuning reports
Latency.max_ms
WorkloadQuery.mean_ms  # pg_stat_statements' figure for an observed query, kept with it
Column.null_frac  # pg_stats, part of the column's statistics snapshot
postgres.psycopg.Connection.isolation_level  # a property setter: the source reads in one snapshot
postgres.psycopg.Connection.read_only
fake_api.FAILURE_KINDS  # named in its docstring as the kinds a test may ask for
KillStats.mid_load  # printed with each crash test's summary (the dataclass repr)
KillStats.finished_first
Identity.holds  # read by the run page's template (templates/run.html)
RunDetail.steps_total
RunDetail.phased
