"""Names vulture cannot see used (scripts/lint.sh passes this file after the code).

Each is read by something other than a Python attribute access: fields of records turned whole into
dicts (dataclasses.asdict) for JSON and the ledger, psycopg connection settings, and the hooks that
http.server calls on a request handler in the tests' fake API.
"""

# ruff: noqa: B018
from tests import fake_api
from tests.html_support import Page
from tests.test_crash_safety import KillStats

from pgmill.dashboard import overview
from pgmill.dashboard.cost import CostPage
from pgmill.dashboard.indexes import IndexesPage
from pgmill.dashboard.quality import RuleRow
from pgmill.dashboard.quarantine import Quarantine, Sample
from pgmill.dashboard.queries import TuningRun
from pgmill.dashboard.run_detail import Identity, RunDetail
from pgmill.ingest.sources import postgres
from pgmill.observe.ledger import RunRecord
from pgmill.tune.measure import Latency
from pgmill.tune.snapshot import Column
from pgmill.tune.workload import WorkloadQuery

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

# read by the dashboard's Jinja2 templates (src/pgmill/web/templates), which vulture does not parse
overview.Row.last_success_at
overview.Row.missed_30d
CostPage.previous_month  # read by the dashboard's templates (pgmill/web/templates/*.html)
CostPage.next_month
IndexesPage.stats_age
IndexesPage.reclaimable_bytes
TuningRun.regressions

RuleRow.table_anchor
Sample.quarantined_at
Quarantine.rules_counted_over
Quarantine.day_total
Quarantine.table_total
Quarantine.busy_days

Identity.holds  # read by the run page's template (templates/run.html)
RunDetail.steps_total
RunDetail.phased
Page.handle_starttag  # html.parser calls these on the tests' HTML reader
Page.handle_endtag
Page.handle_data

Contract.distribution_key  # only checked (spec._distribution): for a later move to Citus, docs/scaling.md
