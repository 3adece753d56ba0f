"""Vectorized row checks: a raw batch in, typed good rows and explained bad rows out.

Every rule of the contract runs on every row as a polars expression; only the rows that break something
are visited one by one, to write their reasons in words.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from pgmill.config.spec import ColumnSpec, Contract, Policy
from pgmill.config.types import PgType, parse_type
from pgmill.errors import ConfigError

_INT_RANGE = {16: (-(2**15), 2**15 - 1), 32: (-(2**31), 2**31 - 1), 64: (-(2**63), 2**63 - 1)}
_NUMERIC_RE = r"^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*$"
_UUID_RE = r"^(?i)\{?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\}?$"
_TRUE = ["t", "true", "1", "yes", "y", "on"]
_FALSE = ["f", "false", "0", "no", "n", "off"]
_TS_FORMATS_TZ = ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M%#z")
_TS_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d")


@dataclass(frozen=True)
class Violation:
    column: str | None
    rule: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"column": self.column, "rule": self.rule, "message": self.message}


@dataclass
class Validated:
    """The outcome of checking one batch."""

    good: pl.DataFrame  # contract columns, typed, in contract order
    good_rows: pl.Series  # positions of the good rows in the input batch (UInt32)
    bad: list[tuple[int, list[Violation]]]  # (position in input batch, what it broke)
    warnings: dict[str, int] = field(default_factory=dict)  # rule key -> rows that broke a warn rule
    failures: list[tuple[int, Violation]] = field(default_factory=list)  # rules with policy `fail`


@dataclass(frozen=True)
class _Check:
    """One rule compiled to a polars expression that is True where the row breaks it."""

    key: str  # e.g. "total.min"
    column: str | None
    policy: Policy
    broken: pl.Expr
    describe: Any  # callable(value) -> str: the reason in words, given the value of `shows`
    shows: str | None = None  # the column of the typed frame whose value the reason quotes


class CompiledContract:
    """A contract turned into polars expressions, compiled once per pipeline."""

    def __init__(self, contract: Contract, *, name: str = "contract") -> None:
        self.contract = contract
        self.name = name
        self.types: dict[str, PgType] = {c: parse_type(s.type) for c, s in contract.columns.items()}
        self.columns = list(contract.columns)
        self.key = contract.primary_key
        for rule in contract.rules:
            try:
                pl.sql_expr(rule.expr)
            except Exception as exc:  # polars raises several classes for bad SQL
                raise ConfigError(f"{name}: rule {rule.name!r}: cannot parse expression {rule.expr!r}: {exc}") from exc

    def source_name(self, column: str) -> str:
        return self.contract.columns[column].source or column

    def checked_columns(self) -> list[str]:
        """Contract columns some rule reads. The others are text with no rule: any value is valid, so a
        loader that sends the source's own text to Postgres need not even parse them."""
        in_rules: set[str] = set()
        for rule in self.contract.rules:
            in_rules.update(pl.sql_expr(rule.expr).meta.root_names())
        out = []
        for col, spec in self.contract.columns.items():
            t = self.types[col]
            ruled = (spec.primary_key or spec.not_null or spec.accepted_values is not None or spec.min is not None
                     or spec.max is not None or spec.regex is not None or spec.max_length is not None
                     or (self.contract.partition is not None and self.contract.partition.by == col))
            if t.kind != "text" or t.precision is not None or ruled or col in in_rules:
                out.append(col)
        return out

    def policy(self, spec: ColumnSpec) -> Policy:
        return spec.on_failure or self.contract.on_failure

    # ------------------------------------------------------------ casting

    def _parse(self, col: str, raw: pl.Series) -> pl.Expr:
        """Expression that turns the raw column into its typed value (null where it does not parse)."""
        t = self.types[col]
        src = pl.col(f"__raw_{col}")
        dtype = raw.dtype
        if t.kind == "int":
            if dtype.is_integer():
                return src.cast(pl.Int64, strict=False)
            return _lenient(src.cast(pl.Utf8), lambda s: s.cast(pl.Int64, strict=False), pl.Int64)
        if t.kind == "float":
            if dtype.is_numeric():
                return src.cast(pl.Float64, strict=False)
            return _lenient(src.cast(pl.Utf8), lambda s: s.cast(pl.Float64, strict=False), pl.Float64)
        if t.kind == "numeric":
            # compared as a float where the text is a number (__num_<col>, see validate); loaded from the text
            # itself so that Postgres rounds it
            number = _lenient(src.cast(pl.Utf8), lambda s: s.cast(pl.Float64, strict=False), pl.Float64)
            return pl.when(pl.col(f"__num_{col}")).then(number)
        if t.kind == "text":
            return src.cast(pl.Utf8)
        if t.kind == "bool":
            if dtype == pl.Boolean:
                return src
            s = src.cast(pl.Utf8).str.strip_chars().str.to_lowercase()
            return pl.when(s.is_in(_TRUE)).then(True).when(s.is_in(_FALSE)).then(False).otherwise(None)
        if t.kind == "date":
            if dtype == pl.Date:
                return src
            if isinstance(dtype, pl.Datetime):
                return src.dt.date()
            return _lenient(src.cast(pl.Utf8), lambda s: s.str.to_date("%Y-%m-%d", strict=False), pl.Date)
        if t.kind in ("timestamp", "timestamptz"):
            tz = "UTC" if t.kind == "timestamptz" else None
            if isinstance(dtype, pl.Datetime):
                if tz is None:
                    return src.dt.replace_time_zone(None) if dtype.time_zone else src
                return src.dt.convert_time_zone("UTC") if dtype.time_zone else src.dt.replace_time_zone("UTC")
            if dtype == pl.Date:
                return src.cast(pl.Datetime("us", tz))
            return src.cast(pl.Utf8).map_batches(lambda s: _parse_timestamps(s, tz), return_dtype=pl.Datetime("us", tz))
        if t.kind == "uuid":
            s = src.cast(pl.Utf8).str.strip_chars()
            return pl.when(s.str.contains(_UUID_RE)).then(s).otherwise(None)
        # json: checked row by row in _json_failures; keep the text
        if dtype == pl.Utf8:
            return src
        return src.map_elements(lambda v: json.dumps(v, default=str), return_dtype=pl.Utf8)

    # ------------------------------------------------------------ rules

    def _checks(self) -> list[_Check]:
        checks: list[_Check] = []
        for col, spec in self.contract.columns.items():
            t = self.types[col]
            pol = self.policy(spec)
            v = pl.col(col)
            if spec.primary_key or spec.not_null:
                rule = "primary_key" if spec.primary_key else "not_null"
                what = "is part of the primary key" if spec.primary_key else "must not be null"
                checks.append(
                    _Check(
                        f"{col}.{rule}",
                        col,
                        "quarantine" if spec.primary_key and pol == "warn" else pol,
                        v.is_null() & pl.col(f"__raw_{col}").is_null(),
                        lambda _, c=col, w=what: f"{c} is missing but {w}",
                    )
                )
            if t.kind == "int" and t.bits in _INT_RANGE and t.bits != 64:
                lo, hi = _INT_RANGE[t.bits]
                checks.append(
                    _Check(f"{col}.type", col, "quarantine" if pol == "warn" else pol, (v < lo) | (v > hi),
                           lambda x, c=col, ty=t.sql: f"{c} = {x!r} is out of range for {ty}", f"__raw_{col}")
                )
            if t.kind == "numeric" and t.precision is not None:
                digits = t.precision - (t.scale or 0)
                checks.append(
                    _Check(
                        f"{col}.type", col, "quarantine" if pol == "warn" else pol,
                        v.abs() >= 10.0**digits,
                        lambda x, c=col, ty=t.sql: f"{c} = {x!r} does not fit {ty}", f"__raw_{col}",
                    )
                )
            if spec.accepted_values is not None:
                allowed = spec.accepted_values
                checks.append(
                    _Check(f"{col}.accepted_values", col, pol,
                           v.is_not_null() & ~v.cast(pl.Utf8).is_in([str(a) for a in allowed]),
                           lambda x, c=col, a=allowed: f"{c} = {_short(x)} is not one of {a}", f"__raw_{col}")
                )
            for bound, op in (("min", "lt"), ("max", "gt")):
                limit = getattr(spec, bound)
                if limit is None:
                    continue
                lit = _literal_for(t, limit, col)
                expr = v < lit if op == "lt" else v > lit
                word = "below the minimum" if bound == "min" else "above the maximum"
                checks.append(_Check(f"{col}.{bound}", col, pol, expr.fill_null(False),
                                     lambda x, c=col, w=word, b=limit: f"{c} = {_short(x)} is {w} {b!r}",
                                     f"__raw_{col}"))
            if spec.regex is not None:
                rx = spec.regex
                checks.append(_Check(f"{col}.regex", col, pol, ~v.cast(pl.Utf8).str.contains(rx).fill_null(True),
                                     lambda x, c=col, rx=rx: f"{c} = {_short(x)} does not match /{rx}/",
                                     f"__raw_{col}"))
            limit_len = spec.max_length or (t.precision if t.kind == "text" else None)
            if limit_len is not None:
                checks.append(_Check(f"{col}.max_length", col, pol,
                                     (v.cast(pl.Utf8).str.len_chars() > limit_len).fill_null(False),
                                     lambda x, c=col, n=limit_len: f"{c} is {len(str(x))} characters, over the limit "
                                     f"of {n}", col))
        part = self.contract.partition
        if part is not None and part.values is not None and not part.default:
            checks.append(self._partition_values(part.by, part.values))
        for row_rule in self.contract.rules:
            checks.append(
                _Check(f"rule.{row_rule.name}", None, row_rule.on_failure or self.contract.on_failure,
                       (~pl.sql_expr(row_rule.expr)).fill_null(False),
                       lambda _, n=row_rule.name, e=row_rule.expr: f"rule {n} failed: {e}")
            )
        return checks

    def _partition_values(self, col: str, values: list[Any]) -> _Check:
        """A list-partitioned table without a default partition has nowhere to put another value: such a row
        is quarantined (whatever the policy: PostgreSQL would reject it)."""
        v = pl.col(col).cast(pl.Utf8)
        listed = [str(a) for a in values if a is not None]
        if self.types[col].kind == "uuid":  # as PostgreSQL compares them: case, braces and hyphens aside
            v = v.str.to_lowercase().str.replace_all(r"[{}-]", "")
            listed = [re.sub(r"[{}-]", "", a.lower()) for a in listed]
        outside = v.is_not_null() & ~v.is_in(listed)
        spec = self.contract.columns[col]
        if None not in values and not (spec.not_null or spec.primary_key):  # else not_null reports it
            outside = outside | (v.is_null() & pl.col(f"__raw_{col}").is_null())
        return _Check(f"{col}.partition.values", col, "quarantine", outside,
                      lambda x, c=col, a=values: f"{c} = {_short(x)} has no partition: the table is list-partitioned "
                      f"on {c} with values {a} and no default partition", f"__raw_{col}")

    # ------------------------------------------------------------ entry point

    def validate(self, batch: pa.Table | pl.DataFrame, extra_policy_columns: list[str] | None = None,
                 only: list[str] | None = None, output: list[str] | None = None) -> Validated:
        """Check every rule on every row of `batch` (source column names) and split good from bad.

        `only`: the contract columns `batch` holds (at least `checked_columns()`); by default every contract
        column, a missing one read as null. `output`: the columns of the good rows (by default those checked)."""
        df = batch if isinstance(batch, pl.DataFrame) else pl.from_arrow(batch)
        assert isinstance(df, pl.DataFrame)
        n = df.height
        columns = self.columns if only is None else [c for c in self.columns if c in set(only)]
        raw_cols: dict[str, pl.Series] = {}
        for col in columns:
            name = self.source_name(col)
            if name in df.columns:
                raw_cols[col] = df.get_column(name)
            else:
                raw_cols[col] = pl.Series(name, [None] * n, dtype=pl.Utf8)
        extras = [(f"__extra{i}", df.get_column(e)) for i, e in enumerate(extra_policy_columns or []) if e in df.columns]
        frame = pl.DataFrame({**{f"__raw_{c}": s for c, s in raw_cols.items()},
                              **{f"{name}_src": s for name, s in extras}}).with_row_index("__pos")
        numeric = [c for c in columns if self.types[c].kind == "numeric"]
        type_checks = []
        for col in columns:
            spec = self.contract.columns[col]
            pol = self.policy(spec)
            ty = self.types[col].sql
            type_checks.append(
                _Check(f"{col}.type", col, "quarantine" if pol == "warn" else pol,
                       pl.col(col).is_null() & pl.col(f"__raw_{col}").is_not_null(),
                       lambda x, c=col, ty=ty: f"{c} = {_short(x)} is not a valid {ty}", f"__raw_{col}")
            )
        checks = type_checks + self._checks()
        flag_names = [f"__chk{i}" for i in range(len(checks))] + [name for name, _ in extras]
        if numeric:  # whether the text is a number as Postgres writes one (floats also parse inf and nan)
            frame = frame.with_columns(pl.col(f"__raw_{c}").cast(pl.Utf8).str.contains(_NUMERIC_RE)
                                       .alias(f"__num_{c}") for c in numeric)
        typed = frame.with_columns([self._parse(c, raw_cols[c]).alias(c) for c in columns])
        flags = typed.select([c.broken.alias(f"__chk{i}") for i, c in enumerate(checks)]
                             + [pl.col(f"{name}_src").is_not_null().alias(name) for name, _ in extras])
        json_bad = self._json_failures(typed)
        broken_mask = flags.select(pl.any_horizontal(flag_names).alias("x")).to_series() if flag_names else \
            pl.Series([False] * n, dtype=pl.Boolean)
        if json_bad:
            broken_mask = broken_mask | pl.Series([i in json_bad for i in range(n)], dtype=pl.Boolean)
        bad: list[tuple[int, list[Violation]]] = []
        failures: list[tuple[int, Violation]] = []
        warnings: dict[str, int] = {}
        quarantine_mask = pl.Series([False] * n, dtype=pl.Boolean)
        if broken_mask.any():
            bad, failures, warnings = _explain(checks, len(type_checks), extra_policy_columns or [], json_bad,
                                               broken_mask.arg_true(), flags, typed)
            bad_positions = [p for p, _ in bad]
            quarantine_mask = pl.Series([False] * n, dtype=pl.Boolean).scatter(bad_positions, True) if bad_positions else quarantine_mask
        # select, then filter: only the output columns are copied, not the raw ones beside them
        out_cols = columns if output is None else [c for c in columns if c in set(output)]
        out = typed.select(pl.col("__pos"), *(
            pl.when(pl.col(f"__num_{c}")).then(pl.col(f"__raw_{c}").cast(pl.Utf8).str.strip_chars()).alias(c)
            if c in numeric else pl.col(c) for c in out_cols))
        keep = out.filter(~quarantine_mask) if bad else out
        del typed, frame, flags
        return Validated(good=keep.drop("__pos"), good_rows=keep.get_column("__pos"), bad=bad, warnings=warnings,
                         failures=failures)

    def _json_failures(self, typed: pl.DataFrame) -> dict[int, str]:
        out: dict[int, str] = {}
        for col in self.columns:
            if self.types[col].kind != "json" or col not in typed.columns:
                continue
            for pos, val in enumerate(typed.get_column(col).to_list()):
                if val is None:
                    continue
                try:
                    json.loads(val)
                except ValueError:
                    out.setdefault(pos, col)
        return out


def _explain(checks: list[_Check], n_type: int, extras: list[str], json_bad: dict[int, str], idx: pl.Series,
             flags: pl.DataFrame, typed: pl.DataFrame
             ) -> tuple[list[tuple[int, list[Violation]]], list[tuple[int, Violation]], dict[str, int]]:
    """Reasons in words for the rows at `idx` (those that broke something), worded a check at a time: each
    check reads only the rows it flagged and the one column its reason quotes."""
    positions = idx.to_list()
    sub_flags = flags[idx]
    per_row: list[list[tuple[Policy, Violation, str]]] = [[] for _ in positions]
    unparsed: list[set[str | None]] = [set() for _ in positions]  # columns whose value did not parse
    for i, chk in enumerate(checks):
        hit = sub_flags.get_column(f"__chk{i}")
        if not hit.any():
            continue
        rows = hit.arg_true()
        values = typed.get_column(chk.shows).gather(idx.gather(rows)).to_list() if chk.shows else None
        rule = chk.key.split(".", 1)[1]
        for j, h in enumerate(rows.to_list()):
            if i < n_type:
                unparsed[h].add(chk.column)
            elif chk.column in unparsed[h]:
                continue  # a value that did not parse breaks no further rule of its column
            per_row[h].append((chk.policy, Violation(chk.column, rule, chk.describe(None if values is None else values[j])),
                               chk.key))
    for e, extra in enumerate(extras):
        name = f"__extra{e}"
        if name in sub_flags.columns:
            for h in sub_flags.get_column(name).arg_true().to_list():
                per_row[h].append(("quarantine", Violation(extra, "extra_column",
                                   f"{extra} is not in the contract (extra_columns: quarantine)"), f"{extra}.extra"))
    bad: list[tuple[int, list[Violation]]] = []
    failures: list[tuple[int, Violation]] = []
    warnings: dict[str, int] = {}
    for h, pos in enumerate(positions):
        viols = per_row[h]
        if pos in json_bad:
            c = json_bad[pos]
            viols.append(("quarantine", Violation(c, "type", f"{c} is not valid JSON"), f"{c}.type"))
        q = []
        for pol, v, key in viols:
            if pol == "fail":
                failures.append((pos, v))
            elif pol == "warn":
                warnings[key] = warnings.get(key, 0) + 1
            if pol != "warn":
                q.append(v)
        if q:
            bad.append((pos, q))
    return bad, failures, warnings


def _lenient(text: pl.Expr, parse: Any, dtype: Any) -> pl.Expr:
    """parse(text), with the surrounding whitespace Postgres ignores stripped first, but only from the values
    that do not parse as they are (stripping every value costs more than the parse)."""

    def run(s: pl.Series) -> pl.Series:
        out: pl.Series = parse(s)
        retry = out.is_null() & s.is_not_null()
        if retry.any():
            idx = retry.arg_true()
            out = out.scatter(idx, parse(s.gather(idx).str.strip_chars()))
        return out

    return text.map_batches(run, return_dtype=dtype)


def _parse_timestamps(raw: pl.Series, tz: str | None) -> pl.Series:
    """ISO 8601 text to timestamps: Arrow's parser for the whole column when every value is clean (fast),
    else each accepted format in turn, each one only on the values still unparsed."""
    dtype = pl.Datetime("us", tz)
    with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):  # not all clean: the slow path
        return pl.Series(raw.name, pc.cast(raw.to_arrow(), pa.timestamp("us", tz=tz))).cast(dtype)
    s = raw.str.strip_chars()
    s = s.str.replace(" ", "T", literal=True)
    out = pl.Series(raw.name, [None] * len(s), dtype=dtype)
    todo = s.is_not_null()
    for fmt, with_tz in [*((f, True) for f in _TS_FORMATS_TZ), *((f, False) for f in _TS_FORMATS)]:
        if not todo.any():
            break
        idx = todo.arg_true()
        part = s.gather(idx).str.to_datetime(fmt, strict=False, time_unit="us", time_zone="UTC" if with_tz else tz)
        if with_tz and tz is None:
            part = part.dt.replace_time_zone(None)
        ok = part.is_not_null()
        if ok.any():
            out = out.scatter(idx.filter(ok), part.filter(ok))
            todo = todo.scatter(idx.filter(ok), False)
    return out


def _literal_for(t: PgType, value: Any, col: str) -> Any:
    import datetime as dt

    try:
        if t.kind in ("int", "float", "numeric"):
            return float(value)
        if t.kind == "date":
            return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
        if t.kind in ("timestamp", "timestamptz"):
            v = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
            if t.kind == "timestamptz" and v.tzinfo is None:
                v = v.replace(tzinfo=dt.UTC)
            return v
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"column {col}: bound {value!r} is not a valid {t.sql}") from exc


def _short(v: Any, limit: int = 60) -> str:
    s = repr(v)
    return s if len(s) <= limit else s[: limit - 5] + "...'"
