"""Table-level quality checks in a contract (run as SQL inside Postgres): the `checks:` section.

Every check has a short form for the common case and a long form that adds a `threshold` (the lowest
pass rate, in percent, that still passes; default 100) and a `severity` (`error` fails `pgmill check` and
`pgmill run`; `warn` only reports)::

    checks:
      unique: [order_id]                       # a column, or a list of columns for a composite key
      not_null: [customer_id, ordered_at]
      completeness: {email: 95}                # at least 95% of rows have a value
      accepted_values:
        status: [F, O, P]
        channel: {values: [web, app], threshold: 99, severity: warn}
      ranges: {total: {min: 0, max: 100000}}
      foreign_keys: {customer_id: shop.customers(customer_id)}
      freshness: {max_age: 1 day}              # newest value of the pipeline's cursor (or `column`)
      row_count: {min: 1}
      volume: {runs: 10, k: 3, severity: warn} # rows added vs. median +- k*MAD of the last runs
      duplicates: {exact_rows: true, near: {columns: [full_name], similarity: 0.8, max_seconds: 60}}
      sql:
        - name: discount_above_total
          query: SELECT * FROM shop.orders WHERE discount > total   # returns the failing rows
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from pgmill.config.base import IDENT, StrictModel

Severity = Literal["warn", "error"]

REFERENCES = re.compile(rf"^(?:({IDENT})\.)?({IDENT})\s*\(\s*({IDENT})\s*\)$")
_AGE = re.compile(r"^\s*\d+(\.\d+)?\s*(second|minute|hour|day|week|month)s?\s*$", re.IGNORECASE)


class Severe(StrictModel):
    """A check that passes or fails as a whole: only its severity can be set."""

    severity: Severity | None = Field(None, description="error fails the run; warn only reports (default: checks.severity)")


class Rated(Severe):
    """A check measured as a pass rate over the table's rows."""

    threshold: float | None = Field(None, ge=0, le=100, description="lowest pass rate in percent that passes (default 100)")


class UniqueKey(Rated):
    columns: list[str] = Field(min_length=1, description="the key; rows with a NULL in it are not compared")


class AcceptedValues(Rated):
    values: list[Any] = Field(min_length=1, description="the only values allowed (NULL passes; use not_null)")


class Range(Rated):
    min: float | int | str | None = Field(None, description="smallest allowed value (inclusive)")
    max: float | int | str | None = Field(None, description="largest allowed value (inclusive)")

    @model_validator(mode="after")
    def _bounded(self) -> Range:
        if self.min is None and self.max is None:
            raise ValueError("give `min`, `max` or both")
        return self


class ForeignKey(Rated):
    references: str = Field(description="parent table and column, as in SQL: shop.customers(customer_id)")

    @field_validator("references")
    @classmethod
    def _shape(cls, v: str) -> str:
        if not REFERENCES.match(v.strip()):
            raise ValueError(f"{v!r} is not 'schema.table(column)' or 'table(column)'")
        return v.strip()


class Freshness(Severe):
    column: str | None = Field(None, description="timestamp or date column (default: the pipeline's cursor)")
    max_age: str = Field(description="how old the newest value may be, e.g. '6 hours', '2 days'")

    @field_validator("max_age")
    @classmethod
    def _age(cls, v: str) -> str:
        if not _AGE.match(v):
            raise ValueError(f"{v!r} is not an age such as '30 minutes', '6 hours' or '2 days'")
        return v.strip()


class RowCount(Severe):
    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=0)


class Volume(Severe):
    """Rows added since the last check, against the rows added between the last `runs` checks."""

    runs: int = Field(10, ge=3, le=1000, description="how many past checks make the usual range")
    k: float = Field(3.0, gt=0, description="band half-width in MADs around the median")
    min_runs: int = Field(3, ge=2, description="past changes needed before anything is flagged")


class NearDuplicates(Rated):
    columns: list[str] = Field(min_length=1, description="text columns compared together")
    method: Literal["trigram", "levenshtein"] = Field(
        "trigram", description="pg_trgm similarity, or fuzzystrmatch levenshtein distance"
    )
    similarity: float = Field(0.8, gt=0, le=1, description="trigram: lowest similarity that is a match")
    max_distance: int = Field(2, ge=0, le=10, description="levenshtein: most edits that are a match")
    search: Literal["auto", "exact", "blocked"] = Field(
        "auto", description="exact compares every pair; blocked only values sharing a word-and-typo key (fast, "
        "may miss pairs two edits apart in one word); auto tries exact for 5 s on up to 10,000 values, then blocks"
    )
    max_seconds: float | None = Field(
        300, gt=0, description="stop after this long with status skipped (null: no limit)"
    )
    sample: int | None = Field(None, ge=2, description="compare a random sample of this many rows only")


class Duplicates(Rated):
    exact_rows: bool = Field(False, description="whole rows that appear more than once")
    near: NearDuplicates | None = Field(None, description="rows alike after normalizing case, spaces, accents")


class CustomSql(Rated):
    name: str = Field(pattern=rf"^{IDENT}$")
    query: str = Field(min_length=1, description="a SELECT returning the failing rows")


class TableChecks(StrictModel):
    """Checks run on the whole table after it is loaded or built (`pgmill check`)."""

    severity: Severity = Field("error", description="default severity of every check")
    sample_key: list[str] | None = Field(
        None, description="columns that identify a row in samples (default: the contract's primary key)"
    )
    unique: list[str | list[str] | UniqueKey] = Field(default_factory=list)
    not_null: list[str] | dict[str, Rated] = Field(default_factory=list)
    completeness: dict[str, float | Rated] = Field(default_factory=dict, description="column: lowest % of rows with a value")
    accepted_values: dict[str, list[Any] | AcceptedValues] = Field(default_factory=dict)
    ranges: dict[str, Range] = Field(default_factory=dict)
    foreign_keys: dict[str, str | ForeignKey] = Field(default_factory=dict, description="column: parent(column)")
    freshness: Freshness | None = None
    row_count: RowCount | None = None
    volume: Volume | None = None
    duplicates: Duplicates | None = None
    sql: list[CustomSql] = Field(default_factory=list, description="queries returning failing rows")

    @field_validator("completeness")
    @classmethod
    def _percent(cls, v: dict[str, float | Rated]) -> dict[str, float | Rated]:
        for col, pct in v.items():
            if isinstance(pct, int | float) and not 0 <= pct <= 100:
                raise ValueError(f"completeness of {col!r} must be a percentage between 0 and 100")
        return v

    @field_validator("foreign_keys")
    @classmethod
    def _refs(cls, v: dict[str, str | ForeignKey]) -> dict[str, str | ForeignKey]:
        return {col: ForeignKey(references=ref) if isinstance(ref, str) else ref for col, ref in v.items()}
