"""The demo project: an online shop's nightly exports, five pipelines and their commented contracts."""

from __future__ import annotations

import json
from pathlib import Path

from pgmill.config.load import PROJECT_FILE
from pgmill.demo.datagen import TABLES, Manifest, generate
from pgmill.demo.shop_sql import MODELS, QUERIES
from pgmill.errors import ConfigError

MARKER = "# pgmill demo project"
SCHEMA = "shop"

PROJECT_YAML = f"""\
{MARKER}: an online shop's nightly exports, loaded exactly once under a contract.
# Written by `pgmill demo`; the data in data/ holds about 3% defective rows on purpose.
#
# database:
#   url: postgresql://user@host:5432/db   # none: the embedded server, data in .pgmill/
#                                         # PGMILL_DATABASE_URL overrides both

pipelines:
  customers:
    source: {{kind: csv, path: data/customers/*.csv}}
    table: {SCHEMA}.customers
    contract: contracts/customers.yaml
    mode: merge                  # upsert on the primary key
    cursor: updated_at           # the newest version of a customer wins, whatever the file order

  products:
    source: {{kind: csv, path: data/products/*.csv}}
    table: {SCHEMA}.products
    contract: contracts/products.yaml
    mode: merge
    cursor: updated_at

  orders:
    source: {{kind: csv, path: data/orders/*.csv}}   # one file per export; files load in parallel
    table: {SCHEMA}.orders
    contract: contracts/orders.yaml
    mode: merge
    cursor: updated_at

  order_items:
    source: {{kind: csv, path: data/order_items/*.csv}}
    table: {SCHEMA}.order_items
    contract: contracts/order_items.yaml
    mode: append                 # lines never change: a line sent twice is counted as a duplicate

  events:
    source: {{kind: csv, path: data/events/*.csv}}
    table: {SCHEMA}.events
    contract: contracts/events.yaml
    mode: append                 # an event delivered twice is kept once
    # batch_rows: 100000         # rows per batch, and per checkpoint

workers: 2                       # pipelines (and files of one pipeline) loaded at once
"""

# after the loads: models, declared queries and how to tune them (not in a load-only demo project)
SHOWCASE_YAML = f"""
# models/marts/*.sql: tables built from the loaded ones (`pgmill transform`, and `pgmill run` after the loads)
# queries/*.sql: the shop's queries that must be fast; `pgmill tune --apply` keeps the indexes that make
# them measurably faster (and `pgmill run` re-tunes when the data or the queries change)
tune:
  schemas: [{SCHEMA}]              # index the loaded tables only
  observed: 0                    # the declared queries only, not what pg_stat_statements saw
  executions: 10                 # timed runs per query before and after: a quick demo (default 30)
"""

CONTRACTS: dict[str, str] = {
    "customers": """\
# shop.customers: one row per customer. A row that breaks a rule goes to pgmill.quarantine with its file,
# line and every rule it broke (`pgmill quarantine list`); the others load.
columns:
  customer_id: {type: bigint, primary_key: true}
  email:
    type: text
    not_null: true
    regex: '^[^@\\s]+@[^@\\s]+\\.[a-z]{2,}$'   # one @, no spaces, a domain with a dot
    max_length: 254
  full_name:   {type: text, not_null: true, max_length: 200}
  country:     {type: text, regex: '^[A-Z]{2}$'}               # ISO 3166 alpha-2
  segment:     {type: text, accepted_values: [consumer, business, enterprise]}
  signup_date: {type: date, not_null: true}                    # ISO dates only: 2024-01-31
  updated_at:  {type: timestamptz}                             # the merge cursor
""",
    "products": """\
# shop.products: the catalogue.
columns:
  product_id: {type: bigint, primary_key: true}
  sku:        {type: text, not_null: true, regex: '^SKU-[0-9]{6}$'}
  name:       {type: text, not_null: true, max_length: 200}
  category:
    type: text
    accepted_values: [books, electronics, home, garden, toys, sports, beauty, grocery]
  price:      {type: "numeric(10,2)", not_null: true, min: 0}
  created_at: {type: date, not_null: true}
  updated_at: {type: timestamptz}
""",
    "orders": """\
# shop.orders: one row per order; a later export of the same order (newer updated_at) replaces it.
columns:
  order_id:     {type: bigint, primary_key: true}
  customer_id:  {type: bigint, not_null: true}
  status:       {type: text, accepted_values: [F, O, P]}     # fulfilled, open, pending
  total:        {type: "numeric(12,2)", min: 0}
  ordered_at:   {type: date, not_null: true}
  updated_at:   {type: timestamptz}
  channel:      {type: text, accepted_values: [web, app, store, phone]}
  currency:     {type: text, regex: '^[A-Z]{3}$'}           # ISO 4217
  discount:     {type: "numeric(12,2)", min: 0}
  coupon_code:  {type: text, regex: '^[A-Z0-9]{4,12}$'}
  ship_country: {type: text, regex: '^[A-Z]{2}$'}
  ship_address: {type: text, max_length: 200}
  client_ip:    {type: text, max_length: 45}
  user_agent:   {type: text, max_length: 512}
  note:         {type: text, max_length: 500}

# Row rules: boolean expressions over the row's columns (polars SQL), checked on every row.
rules:
  - name: discount_not_above_total
    expr: discount <= total
""",
    "order_items": """\
# shop.order_items: the lines of each order; the key is (order_id, line_no).
columns:
  order_id:   {type: bigint, primary_key: true}
  line_no:    {type: integer, primary_key: true, min: 1}
  product_id: {type: bigint, not_null: true}
  quantity:   {type: integer, not_null: true, min: 1}
  unit_price: {type: "numeric(10,2)", not_null: true, min: 0}
""",
    "events": """\
# shop.events: what users did on the site and in the app.
columns:
  event_id:    {type: bigint, primary_key: true}
  user_id:     {type: bigint, not_null: true}
  session_id:  {type: uuid}
  event_type:  {type: text, accepted_values: [page_view, search, add_to_cart, checkout, purchase, login]}
  occurred_at: {type: timestamptz, not_null: true}
  payload:     {type: jsonb}                                  # must be valid JSON
""",
}


# Table checks, appended to each contract: run inside Postgres on the loaded table (`pgmill check`,
# and `pgmill run` after the loads), every result kept in pgmill.quality_results (`pgmill report`).
CHECKS: dict[str, str] = {
    "customers": """
# Table checks: on the whole loaded table, after the load (`pgmill check`; results in pgmill.quality_results).
checks:
  unique: [customer_id, email]
  not_null: [email]
  accepted_values: {segment: [consumer, business, enterprise]}
""",
    "products": """
checks:
  unique: [sku]
  ranges: {price: {min: 0, max: 10000}}
""",
    "orders": """
checks:
  foreign_keys: {customer_id: shop.customers(customer_id)}
  ranges: {total: {min: 0, max: 1000, severity: warn}}   # orders above 1,000 are rare: a warning to review
""",
    "order_items": """
checks:
  unique: [[order_id, line_no]]
  foreign_keys:
    order_id: shop.orders(order_id)
    product_id: shop.products(product_id)
""",
    "events": """
checks:
  foreign_keys: {user_id: shop.customers(customer_id)}
  duplicates: {exact_rows: true}
""",
}


def is_demo_project(directory: Path) -> bool:
    f = Path(directory) / PROJECT_FILE
    try:
        return f.read_text(encoding="utf-8").startswith(MARKER)
    except (OSError, UnicodeDecodeError):
        return False


def write_demo_project(directory: Path, scale: float = 1.0, seed: int = 42, *,
                       defect_rate: float = 0.03, load_only: bool = False) -> Manifest:
    """Write the demo's data, pgmill.yaml, contracts (with their table checks), models and declared queries
    into `directory`; return what the data holds. `load_only`: the data, pipelines and contracts alone (no
    checks, models or queries), so `pgmill run` only loads, as the load benchmarks measure it.

    Refuses a folder that already holds another pgmill project; rewrites an earlier demo in place (same
    seed and scale: the same bytes, which pgmill knows it has loaded)."""
    directory = Path(directory)
    if (directory / PROJECT_FILE).exists() and not is_demo_project(directory):
        raise ConfigError(
            f"{directory} already holds a pgmill project that is not the demo; "
            "pick an empty folder for the demo (or none: a temporary one)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    if is_demo_project(directory):  # an earlier demo, maybe at another scale: drop its files, not just some
        for name in TABLES:
            for old in (directory / "data" / name).glob(f"{name}_[0-9][0-9][0-9][0-9].csv"):
                old.unlink()
    manifest = generate(directory, scale=scale, seed=seed, defect_rate=defect_rate)
    (directory / "contracts").mkdir(exist_ok=True)
    for name, text in CONTRACTS.items():
        (directory / "contracts" / f"{name}.yaml").write_text(text if load_only else text + CHECKS[name],
                                                              encoding="utf-8")
    for folder, files in (("models/marts", MODELS), ("queries", QUERIES)):
        for file, text in files.items():
            if load_only:  # an earlier full demo's file goes
                (directory / folder / file).unlink(missing_ok=True)
            else:
                (directory / folder).mkdir(parents=True, exist_ok=True)
                (directory / folder / file).write_text(text, encoding="utf-8")
    (directory / PROJECT_FILE).write_text(PROJECT_YAML if load_only else PROJECT_YAML + SHOWCASE_YAML,
                                          encoding="utf-8")
    (directory / ".gitignore").write_text(".pgmill/\n", encoding="utf-8")
    (directory / "data" / "manifest.json").write_text(json.dumps(manifest.as_dict(), indent=2) + "\n",
                                                      encoding="utf-8")
    return manifest
