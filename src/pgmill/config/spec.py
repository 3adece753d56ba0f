"""Pydantic models of the two user-facing files: pgmill.yaml and contracts/*.yaml."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from pgmill.config.alerts import Alerts
from pgmill.config.base import StrictModel, is_identifier
from pgmill.config.checks import TableChecks
from pgmill.config.cost import CostConfig
from pgmill.config.schedule import Jobs, Scheduled
from pgmill.config.transform import ModelsConfig
from pgmill.config.tune import TuneConfig
from pgmill.config.types import parse_type

# ---------------------------------------------------------------- contracts

Policy = Literal["quarantine", "fail", "warn"]


class ColumnSpec(StrictModel):
    """One column of a contract: its Postgres type and the rules every value must keep."""

    type: str = Field(description="PostgreSQL type, e.g. bigint, text, numeric(12,2), date, timestamptz")
    primary_key: bool = Field(False, description="part of the table's key (several columns make a composite key)")
    not_null: bool = Field(False, description="a missing value breaks the contract")
    accepted_values: list[Any] | None = Field(None, description="the only values allowed")
    min: float | int | str | None = Field(None, description="smallest allowed value (inclusive)")
    max: float | int | str | None = Field(None, description="largest allowed value (inclusive)")
    regex: str | None = Field(None, description="text values must match this regular expression")
    max_length: int | None = Field(None, ge=1, description="longest allowed text, in characters")
    source: str | None = Field(None, description="name of the field in the source, when it differs")
    on_failure: Policy | None = Field(None, description="policy for this column's rules; default: the contract's")

    @field_validator("type")
    @classmethod
    def _type_known(cls, v: str) -> str:
        parse_type(v)  # raises ValueError with the list of supported types
        return v

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"regex does not compile: {exc}") from exc
        return v


class RowRule(StrictModel):
    """A boolean SQL-like expression over the row's columns, checked on every row."""

    name: str
    expr: str = Field(description="polars SQL expression, e.g. 'shipped_at >= ordered_at'")
    on_failure: Policy | None = None


#: the column types a range partition may be keyed on
PARTITION_TYPES = ("date", "timestamptz", "timestamp")
#: the kinds of column a list partition may be keyed on (values are compared as text, as accepted_values)
LIST_KINDS = ("text", "int", "uuid")
#: the most partitions a hash-partitioned table is made with
MAX_HASH = 1024
#: settings of a range partition only: a hash or list partition is made whole with its table
RANGE_ONLY = ("premake", "retain", "archive", "archive_dir")


class PartitionSpec(StrictModel):
    """Partitioning of the table: by range of a date/timestamp (`interval`), by hash of a key (`hash`, the
    number of partitions) or by list of values (`values`, with an optional `default` partition)."""

    by: str = Field(description="the partition column (range: a not_null date, timestamptz or timestamp column)")
    interval: Literal["day", "week", "month", "year"] | None = Field(
        None, description="range partitions: the range of one partition (weeks start on Monday)")
    hash: int | None = Field(None, ge=2, le=MAX_HASH, description="hash partitions: how many (the modulus); all "
                             "are made with the table, named <table>_h0 .. _h<n-1>")
    values: list[Any] | None = Field(None, min_length=1, description="list partitions: one partition per value, "
                                     "named <table>_<value> (or _l<i> when the value is not a plain name)")
    default: bool = Field(False, description="list partitions: a DEFAULT partition (<table>_default) takes the "
                          "other values; without it a row whose value has no partition is quarantined "
                          "(rule partition.values)")
    premake: int = Field(2, ge=0, le=366, description="partitions kept ready ahead of the current one")
    retain: int | None = Field(
        None, ge=1, description="keep this many whole periods before the current one, in the partition's own "
        "unit: `24 months` (or 24) with interval month; `pgmill retention` detaches and drops older partitions")
    archive: Literal["parquet"] | None = Field(
        None, description="before dropping an expired partition, write it to a Parquet file in `archive_dir`")
    archive_dir: str = Field("archive", description="directory of the archives, relative to the project folder, or "
                             "an object store URL (s3://bucket/prefix, gs://..., any fsspec filesystem; needs "
                             "pip install 'pgmill[archive]')")

    @field_validator("retain", mode="before")
    @classmethod
    def _retain(cls, v: object, info: ValidationInfo) -> object:
        """`24 months` -> 24; the unit must be the partition's (a partition is kept or dropped whole)."""
        if not isinstance(v, str):
            return v
        m = re.fullmatch(r"\s*(\d+)\s*([a-z]+?)s?\s*", v.lower())
        interval = info.data.get("interval")
        if m is None or (interval is not None and m.group(2) != interval):
            raise ValueError(f"retain {v!r}: give a whole number of the partition's periods, e.g. "
                             f"'24 {interval or 'month'}s' (partitions are kept or dropped whole)")
        return int(m.group(1))

    @model_validator(mode="after")
    def _one_kind(self) -> PartitionSpec:
        given = [k for k in ("interval", "hash", "values") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"partition by {self.by!r}: give exactly one of interval (range: {{by: ordered_at, interval: "
                f"month}}), hash (the number of partitions: {{by: customer_id, hash: 8}}) or values (list: "
                f"{{by: region, values: [eu, us]}}); " + (f"got {' and '.join(given)}" if given else "got none"))
        if self.interval is None:
            extra = [f for f in RANGE_ONLY if f in self.model_fields_set]
            if extra:
                raise ValueError(f"partition {given[0]}: {', '.join(extra)} only apply to range partitions "
                                 f"(interval): a {self.kind} partition is made whole with its table and never "
                                 "expires; remove " + ", ".join(extra))
        if self.default and self.values is None:
            raise ValueError("partition default: true only applies to list partitions (values)")
        if self.values is not None:
            seen: dict[str, Any] = {}
            for v in self.values:
                if isinstance(v, (dict, list, float)):
                    raise ValueError(f"partition values: {v!r} is not a text, integer or null value")
                if str(v) in seen:
                    raise ValueError(f"partition values: {v!r} is listed twice")
                seen[str(v)] = v
            names = list_suffixes(self.values)
            if len(set(names)) != len(names) or (self.default and "default" in names):
                raise ValueError(f"partition values {self.values}: two of them would name the same partition "
                                 f"({', '.join(names)}); use values that differ as names")
        return self

    @property
    def kind(self) -> Literal["range", "hash", "list"]:
        return "range" if self.interval is not None else "hash" if self.hash is not None else "list"

    @property
    def period(self) -> str:
        """The interval of a range partition (what retention, premake and conversion work in)."""
        if self.interval is None:
            raise ValueError(f"a {self.kind} partition has no interval")
        return self.interval


def list_suffixes(values: list[Any]) -> list[str]:
    """What each list partition's name adds to its table's: the value itself when it is a short plain name
    (`eu`, `42`, `null`), else `l<i>` (its position in the list)."""
    out = []
    for i, v in enumerate(values):
        text = "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
        out.append(text if re.fullmatch(r"[a-z0-9_]{1,20}", text) else f"l{i}")
    return out


class Contract(StrictModel):
    """The contract of one table: its columns, key and rules, and what to do with rows that break them."""

    columns: dict[str, ColumnSpec]
    rules: list[RowRule] = Field(default_factory=list, description="per-row boolean expressions")
    on_failure: Policy = Field("quarantine", description="default policy for every rule")
    checks: TableChecks = Field(default_factory=TableChecks, description="table-level checks run in Postgres")
    extra_columns: Literal["ignore", "evolve", "quarantine"] = Field(
        "ignore",
        description="source fields not in the contract: ignore them (default), add them to the table "
        "as text (evolve), or quarantine rows that carry a value in them",
    )
    partition: PartitionSpec | None = Field(
        None, description="partition the table: by range of a date/timestamp ({by: ordered_at, interval: month}), "
        "by hash ({by: customer_id, hash: 8}) or by list ({by: region, values: [eu, us], default: true})"
    )
    distribution_key: str | None = Field(
        None, description="the column a sharded PostgreSQL (Citus) would distribute on: the primary key must "
        "include it, so moving the table there later is mechanical (docs/scaling.md)")

    @field_validator("columns")
    @classmethod
    def _names(cls, v: dict[str, ColumnSpec]) -> dict[str, ColumnSpec]:
        if not v:
            raise ValueError("a contract needs at least one column")
        for name in v:
            if not is_identifier(name):
                raise ValueError(f"column name {name!r} is not a plain SQL identifier (letters, digits, _)")
        return v

    @field_validator("partition")
    @classmethod
    def _partition(cls, v: PartitionSpec | None, info: ValidationInfo) -> PartitionSpec | None:
        columns: dict[str, ColumnSpec] | None = info.data.get("columns")
        if v is None or not columns:
            return v
        col = columns.get(v.by)
        if col is None:
            raise ValueError(f"partition column {v.by!r} is not a column of the contract (columns: {', '.join(columns)})")
        t = parse_type(col.type)
        if v.kind == "range" and t.sql not in PARTITION_TYPES:
            raise ValueError(f"partition column {v.by!r} is {col.type}; a range partition needs one of: "
                             f"{', '.join(PARTITION_TYPES)}")
        if v.kind == "list" and t.kind not in LIST_KINDS:
            raise ValueError(f"partition column {v.by!r} is {col.type}; a list partition needs a text, integer or "
                             "uuid column")
        if v.kind == "hash" and t.kind == "json":
            raise ValueError(f"partition column {v.by!r} is {col.type}; json values cannot be hash-partitioned")
        if v.values is not None and t.kind == "int" and any(
                x is not None and not re.fullmatch(r"-?\d+", str(x)) for x in v.values):
            raise ValueError(f"partition values {v.values}: {v.by!r} is {col.type}, every value must be an integer")
        if v.kind == "range" and not (col.not_null or col.primary_key):
            # no default partition: a NULL has nowhere to go, so the contract quarantines it up front
            raise ValueError(f"partition column {v.by!r} must be declared not_null: true (a row without a "
                             "value has no partition)")
        key = [n for n, c in columns.items() if c.primary_key]
        if key and v.by not in key:
            raise ValueError(
                f"the primary key ({', '.join(key)}) does not include the partition column {v.by!r}: PostgreSQL "
                f"enforces a key on a partitioned table only if it includes the partition column; add "
                f"primary_key: true to {v.by!r} or partition on a key column"
            )
        return v

    @field_validator("distribution_key")
    @classmethod
    def _distribution(cls, v: str | None, info: ValidationInfo) -> str | None:
        columns: dict[str, ColumnSpec] | None = info.data.get("columns")
        if v is None or not columns:
            return v
        col = columns.get(v)
        if col is None:
            raise ValueError(f"distribution_key {v!r} is not a column of the contract (columns: {', '.join(columns)})")
        if not (col.not_null or col.primary_key):
            raise ValueError(f"distribution_key {v!r} must be declared not_null: true (a sharded table places "
                             "every row by it)")
        key = [n for n, c in columns.items() if c.primary_key]
        if key and v not in key:
            # the partition column is in the key already (see _partition); a sharded table can enforce a
            # unique key only on each shard, so it must hold the distribution column too
            raise ValueError(
                f"the primary key ({', '.join(key)}) does not include the distribution_key {v!r}: a distributed "
                f"table can enforce a key only if it includes the distribution column; add primary_key: true "
                f"to {v!r}"
            )
        return v

    @property
    def primary_key(self) -> list[str]:
        return [n for n, c in self.columns.items() if c.primary_key]


# ---------------------------------------------------------------- sources


class SplitSpec(StrictModel):
    """Large files cut into byte ranges at record boundaries, each loaded (and checkpointed) on its own."""

    min_bytes: int = Field(256 << 20, ge=1, description="files at least this large (bytes) are split")
    parts: int | None = Field(None, ge=1, le=64,
                              description="ranges per file; default: the project's workers")


class CsvSource(StrictModel):
    kind: Literal["csv"]
    path: str = Field(description="file path or glob, relative to the project folder")
    delimiter: str = Field(",", min_length=1, max_length=1)
    quote: str = Field('"', min_length=1, max_length=1)
    header: bool = True
    encoding: str = Field("utf-8", description="file encoding; a BOM is always removed")
    null_values: list[str] = Field(default_factory=lambda: [""], description="strings read as NULL")
    split: SplitSpec | None = Field(None, description="load large files as byte ranges, in parallel")


class NdjsonSource(StrictModel):
    kind: Literal["ndjson"]
    path: str
    split: SplitSpec | None = Field(None, description="load large files as byte ranges, in parallel")


class ParquetSource(StrictModel):
    kind: Literal["parquet"]
    path: str
    split: SplitSpec | None = Field(
        None, description="load large files as ranges of whole row groups, in parallel (min_bytes: file size)")


class HttpPagination(StrictModel):
    style: Literal["none", "page", "offset", "cursor", "link"] = "none"
    page_param: str = "page"
    size_param: str = "per_page"
    size: int = Field(100, ge=1)
    start: int = Field(1, description="first page number (page style)")
    offset_param: str = "offset"
    cursor_param: str = "cursor"
    cursor_path: str = Field("next_cursor", description="dotted path of the next cursor in the response")
    concurrency: int = Field(1, ge=1, le=64, description="pages fetched at once (page and offset styles)")


class HttpSource(StrictModel):
    kind: Literal["http"]
    url: str
    records_path: str | None = Field(None, description="dotted path to the list of records; none: the body")
    params: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict, description="non-secret headers")
    auth_header: str = Field("Authorization", description="header that carries the secret")
    auth_env: str | None = Field(None, description="environment variable holding the header's value")
    pagination: HttpPagination = Field(default_factory=HttpPagination)
    cursor_param: str | None = Field(None, description="query parameter that receives the last cursor value")
    timeout_s: float = 30.0


class CdcSpec(StrictModel):
    """Change data capture: the table's changes streamed from a logical replication slot (docs/cdc.md)."""

    slot: str | None = Field(None, description="the replication slot's name; default pgmill_<pipeline>")
    publication: str | None = Field(
        None, description="an existing publication that includes the table; default: pgmill creates "
        "pgmill_<pipeline> for it (and `pgmill cdc drop` removes it)")
    soft_delete: str | None = Field(
        None, description="a timestamptz column of the target set to the source's commit time when the row is "
        "deleted, instead of deleting the target row (the contract must not name it)")
    max_lag_bytes: int | None = Field(
        None, ge=0, description="stop with an error when the slot holds back more WAL than this on the source "
        "(its retained WAL, checked after each 30 s of stream; default: no limit; the `cdc_slot` alert warns first)")

    @field_validator("slot", "publication", "soft_delete")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not is_identifier(v, dollar=False):
            raise ValueError(f"{v!r} must be a plain identifier (lower case letters, digits, _)")
        return v


class PostgresSource(StrictModel):
    kind: Literal["postgres"]
    url_env: str = Field(description="environment variable holding the source database URL")
    query: str | None = Field(None, description="a SELECT; or name a table")
    table: str | None = None
    batch_rows: int = Field(50_000, ge=1, description="rows fetched per round trip (at most the pipeline's batch_rows)")
    partitions: bool = Field(
        False, description="read each partition of a partitioned source `table` as a unit of its own, with its "
        "own resume point (they load in parallel, on threads, processes or Dask workers)")
    cdc: CdcSpec | None = Field(
        None, description="stream the `table`'s inserts, updates and deletes from a logical replication slot "
        "after one snapshot (`cdc: {}` for the defaults); the pipeline's mode must be merge")

    @field_validator("cdc", mode="before")
    @classmethod
    def _cdc_true(cls, v: Any) -> Any:
        return {} if v is True else (None if v is False else v)

    @model_validator(mode="after")
    def _one_of(self) -> PostgresSource:
        if (self.query is None) == (self.table is None):
            raise ValueError("give exactly one of `query` or `table`")
        if self.partitions and self.table is None:
            raise ValueError("partitions: true reads the partitions of a `table`, not of a query")
        if self.cdc is not None and (self.table is None or self.partitions):
            raise ValueError("cdc streams the changes of one `table` (not a query, not partitions: true)")
        return self


# The one list of source kinds: a new kind's spec joins this union (ingest.sources registers its reader).
SourceSpec = Annotated[
    CsvSource | NdjsonSource | ParquetSource | HttpSource | PostgresSource, Field(discriminator="kind")
]


def source_kind(spec: type[BaseModel]) -> str:
    """The `kind` tag of a source spec class, e.g. 'csv'."""
    (tag,) = get_args(spec.model_fields["kind"].annotation)
    return str(tag)


#: Each source spec class by its `kind` tag, read off SourceSpec.
SOURCE_SPECS: dict[str, type[StrictModel]] = {
    source_kind(cls): cls for cls in get_args(get_args(SourceSpec)[0])
}


# ---------------------------------------------------------------- project


class Pipeline(Scheduled):
    """One load: a source into a table, under a contract; with `schedule` or `every`, also on its own."""

    source: SourceSpec
    table: str = Field(description="target table, schema-qualified or not (default schema: public)")
    contract: str = Field(description="path of the contract file, relative to the project folder")
    mode: Literal["append", "replace", "merge"] = "append"
    cursor: str | None = Field(None, description="column for incremental loads and newest-wins merges")
    batch_rows: int = Field(50_000, ge=1, description="rows per batch (and per checkpoint); memory grows with it")
    follow: bool = Field(False, description="under `pgmill serve`: kept loading continuously (`pgmill run NAME "
                         "--follow`), restarted if it stops; instead of a schedule")

    @field_validator("table")
    @classmethod
    def _table(cls, v: str) -> str:
        parts = v.split(".")
        if len(parts) > 2 or not all(is_identifier(p) for p in parts):
            raise ValueError(f"table {v!r} must be 'name' or 'schema.name' with plain identifiers")
        return v

    @model_validator(mode="after")
    def _follow(self) -> Pipeline:
        if self.follow and self.scheduled:
            raise ValueError("follow: true loads continuously: drop `schedule`/`every` (the two would take turns "
                             "on the pipeline's lock)")
        problem = follow_problem(self) if self.follow else None
        if problem:
            raise ValueError(f"follow: true: {problem}")
        if is_cdc(self) and (self.mode != "merge" or self.cursor is not None):
            raise ValueError("a cdc source applies inserts, updates and deletes by key: give the pipeline "
                             "`mode: merge` and no `cursor` (the source's commit order is the order)")
        return self


def is_cdc(spec: Pipeline) -> bool:
    """Whether the pipeline streams changes from a replication slot (`cdc:` on a postgres source)."""
    return isinstance(spec.source, PostgresSource) and spec.source.cdc is not None


def follow_problem(spec: Pipeline) -> str | None:
    """Why the pipeline cannot be followed (`follow: true`, `pgmill run --follow`), or None: a replace rebuilds
    the table on every pass, and an HTTP or PostgreSQL source without the pipeline's `cursor` would be read
    whole on every pass."""
    if spec.mode == "replace":
        return "mode replace: each pass would rebuild the table; follow append or merge pipelines"
    if spec.source.kind in ("http", "postgres") and spec.cursor is None and not is_cdc(spec):
        return (f"a {spec.source.kind} source without the pipeline's `cursor` would be read whole on every "
                "pass; give it a cursor to follow it")
    return None


class Database(StrictModel):
    url: str | None = Field(
        None,
        description="connection URL of an existing PostgreSQL; none: the embedded server in .pgmill/. "
        "PGMILL_DATABASE_URL overrides it. Keep passwords out of this file: use the variable or PGPASSWORD.",
    )


class Retry(StrictModel):
    attempts: int = Field(5, ge=1, le=100)
    initial_s: float = Field(0.5, gt=0)
    max_s: float = Field(30.0, gt=0)


class ExecutorSpec(StrictModel):
    """Where a pipeline's units (files, ranges of split files) load: on threads of the `pgmill run` process,
    on a pool of local processes (parsing and validating are CPU-bound: processes escape the GIL), or on
    the workers of a Dask cluster (`pip install 'pgmill[dask]'`). Each unit commits its own checkpoints, so
    one that runs twice (a worker lost, a retry) resumes where its last checkpoint left it."""

    kind: Literal["threads", "processes", "dask"] = Field("threads", description="threads, processes or dask")
    address: str | None = Field(
        None, description="the Dask scheduler, tcp://HOST:PORT (or tls://); required with kind dask")
    workers: int | None = Field(
        None, ge=1, le=256, description="processes in the pool (kind processes); default: the project's workers")

    @model_validator(mode="after")
    def _address(self) -> ExecutorSpec:
        if self.kind == "dask" and not self.address:
            raise ValueError("executor kind dask needs the scheduler's address: address: tcp://HOST:8786")
        if self.kind != "dask" and self.address:
            raise ValueError(f"executor address is for kind dask, not {self.kind}")
        if self.address and not re.match(r"^(tcp|tls|inproc|ucx)://\S+$", self.address):
            raise ValueError(f"executor address {self.address!r} must look like tcp://HOST:PORT")
        return self


class Project(StrictModel):
    """pgmill.yaml"""

    database: Database = Field(default_factory=Database)
    pipelines: dict[str, Pipeline] = Field(default_factory=dict)
    retry: Retry = Field(default_factory=Retry)
    workers: int = Field(2, ge=1, le=64, description="pipelines (and files) loaded at once")
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec,
                                   description="where files and ranges load: threads, processes or a Dask cluster")
    models: ModelsConfig = Field(default_factory=ModelsConfig, description="SQL transformations in models/")
    tune: TuneConfig = Field(default_factory=TuneConfig, description="query tuning for queries/ and observed SQL")
    jobs: Jobs = Field(default_factory=Jobs, description="models, checks and tuning on schedules of their own")
    alerts: Alerts = Field(default_factory=Alerts, description="alert channels (apprise URLs) and rules")
    cost: CostConfig = Field(default_factory=CostConfig, description="prices and budget for cost per run")
