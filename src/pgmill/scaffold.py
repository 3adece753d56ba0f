"""`pgmill init`: a commented starter project that `pgmill run` loads as it is."""

from __future__ import annotations

from pathlib import Path

from pgmill.errors import ConfigError

PROJECT_YAML = """\
# pgmill project file. Reference: `pgmill schema project` prints its JSON Schema.
#
# database:
#   url: postgresql://user@host:5432/db   # none: the embedded server, data in .pgmill/
#                                         # PGMILL_DATABASE_URL overrides this; keep passwords in
#                                         # PGPASSWORD or the variable, never in this file.

pipelines:
  orders:
    # csv | ndjson | parquet (path or glob) | http (url, pagination) | postgres (url_env, table or query)
    source: {kind: csv, path: data/orders*.csv}
    table: public.orders                 # created from the contract; evolves when the contract gains columns
    contract: contracts/orders.yaml
    mode: merge                          # append | replace | merge (upsert on the primary key)
    cursor: updated_at                   # newest row wins in merges; incremental loads follow it
    # batch_rows: 50000                  # rows per batch, and per checkpoint

# retry: {attempts: 5, initial_s: 0.5, max_s: 30}   # transient failures: backoff with jitter
# workers: 2                                        # pipelines and files loaded at once
"""

CONTRACT_YAML = """\
# The contract every row of public.orders must keep. Rows that break it go to pgmill.quarantine
# with the rule(s) they broke; see them with `pgmill quarantine list`.
columns:
  order_id:    {type: bigint, primary_key: true}
  customer_id: {type: bigint, not_null: true}
  status:      {type: text, accepted_values: [F, O, P]}
  total:       {type: "numeric(12,2)", min: 0}
  ordered_at:  {type: date, not_null: true}
  updated_at:  {type: timestamptz}

# Row rules are SQL expressions over the row's columns (NULL counts as passing, as in a CHECK).
rules:
  - {name: updated_after_order, expr: "updated_at >= ordered_at"}

on_failure: quarantine      # quarantine | fail | warn; also per column: {on_failure: fail}
extra_columns: ignore       # source fields not in the contract: ignore | evolve | quarantine
"""

SAMPLE_CSV = """\
order_id,customer_id,status,total,ordered_at,updated_at
1001,17,F,129.90,2026-01-03,2026-01-03T10:15:00Z
1002,42,O,18.50,2026-01-03,2026-01-03T11:02:00Z
1003,17,P,75.00,2026-01-04,2026-01-04T09:40:00Z
1004,8,F,12.00,2026-01-04,2026-01-05T08:00:00Z
1005,,F,44.10,2026-01-05,2026-01-05T13:30:00Z
1006,23,X,9.99,2026-01-05,2026-01-05T14:00:00Z
1007,23,F,-3.00,2026-01-06,2026-01-06T09:00:00Z
1008,5,O,250.00,2026-01-32,2026-01-06T10:00:00Z
1002,42,F,18.50,2026-01-03,2026-01-07T16:45:00Z
1009,61,F,33.33,2026-01-07,2026-01-07T17:00:00Z
"""

GITIGNORE = ".pgmill/\n"

FILES = {
    "pgmill.yaml": PROJECT_YAML,
    "contracts/orders.yaml": CONTRACT_YAML,
    "data/orders.csv": SAMPLE_CSV,
    ".gitignore": GITIGNORE,
    "models/.gitkeep": "",
    "queries/.gitkeep": "",
}


def init_project(directory: Path) -> list[Path]:
    """Write the starter project into `directory`; refuse to overwrite an existing pgmill.yaml."""
    directory = directory.resolve()
    if (directory / "pgmill.yaml").exists():
        raise ConfigError(f"{directory / 'pgmill.yaml'} already exists; pgmill init does not overwrite a project")
    written = []
    for rel, text in FILES.items():
        path = directory / rel
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
