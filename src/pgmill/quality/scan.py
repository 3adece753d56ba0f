"""The one aggregate scan: row count, completeness of every column and every per-row rule, in one query.

Each rule becomes a `count(*) FILTER (WHERE <row fails>)` and a sample of the failing rows' keys: the
smallest and the largest, through the built-in min/max over an array (C aggregates: a completeness rule
fails on millions of expected NULLs, and a per-row SQL-function call there cost more than the scan);
foreign keys are the anti-join `LEFT JOIN (SELECT DISTINCT key FROM parent) ... WHERE key IS NULL` folded
into the same scan, so checking a column against its parent does not read the checked table again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgmill.db.catalog import qualified, table_key
from pgmill.quality.results import RuleResult, broken, judged, verdict
from pgmill.quality.rules import Rule
from pgmill.quality.table_info import TableInfo, base_type

T = sql.Identifier("t")


def col(name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(T, sql.Identifier(name))


def sample_names(info: TableInfo, extra: tuple[str, ...] = ()) -> list[str]:
    """What identifies a failing row in a sample: its key and the offending values (no key: the whole row)."""
    return list(dict.fromkeys([*info.sample_key, *extra])) if info.sample_key else []


def sample_array(names: list[str]) -> sql.Composable:
    """The sampled values as a jsonb[] (ordered like the key, so min and max are the first and last keys)."""
    if not names:
        return sql.SQL("ARRAY[to_jsonb({})]").format(T)
    return sql.SQL("ARRAY[{}]").format(sql.SQL(", ").join(sql.SQL("to_jsonb({})").format(col(n)) for n in names))


def sample_objects(names: list[str], arrays: list[list[Any] | None]) -> list[Any]:
    """min/max arrays back to objects (or whole rows), without repeats."""
    out: list[Any] = []
    for arr in arrays:
        if arr is None:
            continue
        item = dict(zip(names, arr, strict=True)) if names else arr[0]
        if item not in out:
            out.append(item)
    return out


@dataclass
class AggregateScan:
    """The compiled query and how to read its one row back."""

    query: sql.Composed
    profile: list[str]  # columns whose non-null count follows count(*)
    failing: list[tuple[Rule, int, list[str]]]  # rule -> index of its (count, min, max), sampled names
    freshness: list[tuple[Rule, int]]  # rule -> index of its (age seconds, newest value, allowed seconds)
    broken: list[RuleResult]


def compile_aggregate(conn: psycopg.Connection[Any], info: TableInfo, rules: list[Rule]) -> AggregateScan:
    items: list[sql.Composable] = [sql.SQL("count(*)")]
    profile = list(info.columns)
    items += [sql.SQL("count({})").format(col(c)) for c in profile]
    joins: list[sql.Composable] = []
    failing: list[tuple[Rule, int, list[str]]] = []
    fresh: list[tuple[Rule, int]] = []
    bad: list[RuleResult] = []
    seen: dict[str, int] = {}  # identical conditions (not_null and completeness of a column) computed once
    for rule in rules:
        cond: sql.Composable
        if rule.kind in ("not_null", "completeness"):
            cond = sql.SQL("{} IS NULL").format(col(rule.columns[0]))
        elif rule.kind == "accepted_values":
            values = sql.SQL(", ").join(sql.Literal(v) for v in rule.params["values"])
            c = col(rule.columns[0])
            cond = sql.SQL("{} IS NOT NULL AND {} NOT IN ({})").format(c, c, values)
        elif rule.kind == "range":
            c = col(rule.columns[0])
            parts = [sql.SQL("{} < {}").format(c, sql.Literal(rule.params["min"]))] if rule.params["min"] is not None else []
            if rule.params["max"] is not None:
                parts.append(sql.SQL("{} > {}").format(c, sql.Literal(rule.params["max"])))
            cond = sql.SQL(" OR ").join(parts)
        elif rule.kind == "foreign_key":
            problem = _parent_problem(conn, rule)
            if problem:
                bad.append(broken(info.name, rule, problem))
                continue
            alias = sql.Identifier(f"fk_{len(joins)}")
            joins.append(sql.SQL(
                " LEFT JOIN (SELECT DISTINCT {pc} AS k FROM {parent} WHERE {pc} IS NOT NULL) AS {a}"
                " ON {a}.k = {c}"
            ).format(pc=sql.Identifier(rule.params["parent_column"]), parent=qualified(rule.params["parent"]),
                     a=alias, c=col(rule.columns[0])))
            cond = sql.SQL("{} IS NOT NULL AND {}.k IS NULL").format(col(rule.columns[0]), alias)
        elif rule.kind == "freshness":
            c = col(rule.columns[0])
            fresh.append((rule, len(items)))
            items += [
                sql.SQL("extract(epoch FROM now() - max({})::timestamptz)::float8").format(c),
                sql.SQL("max({})::text").format(c),
                sql.SQL("extract(epoch FROM {}::interval)::float8").format(sql.Literal(rule.params["max_age"])),
            ]
            continue
        else:
            continue
        names = sample_names(info, rule.columns)
        sample = sample_array(names)
        key = cond.as_string(conn) + "|" + sample.as_string(conn)
        if key not in seen:
            seen[key] = len(items)
            items += [sql.SQL("count(*) FILTER (WHERE {})").format(cond),
                      *(_null_rule_sample(info, rule, names, cond) or (
                          sql.SQL("min({}) FILTER (WHERE {})").format(sample, cond),
                          sql.SQL("max({}) FILTER (WHERE {})").format(sample, cond)))]
        failing.append((rule, seen[key], names))
    query = sql.SQL("SELECT {} FROM {} AS {}{}").format(
        sql.SQL(", ").join(items), info.ident, T, sql.SQL("").join(joins)
    )
    return AggregateScan(query, profile, failing, fresh, bad)


#: key types with a built-in min/max that orders like their jsonb does (numbers, strings, ISO dates)
_ORDERED_KEYS = frozenset({"smallint", "integer", "bigint", "numeric", "text", "character varying", "date",
                           "timestamp without time zone", "uuid"})


def _null_rule_sample(info: TableInfo, rule: Rule, names: list[str],
                      cond: sql.Composable) -> tuple[sql.Composable, sql.Composable] | None:
    """The first and last failing keys of a rule that fails on NULLs (not_null, completeness), as min/max of
    the key column itself, made jsonb once per result: the same sample as min/max over the jsonb array, whose
    per-row cost on a column with millions of expected NULLs was ~40% of the whole scan (5M rows: 8.5 s).
    None when the rule does not fit (no single-column key, another key type, the key is the rule's column)."""
    if rule.kind not in ("not_null", "completeness") or len(info.sample_key) != 1 or len(names) != 2:
        return None
    key = info.sample_key[0]
    if base_type(info.columns.get(key, "")) not in _ORDERED_KEYS:
        return None
    # [key, NULL]: the rule's column is NULL in every failing row; no failing row: NULL, as min/max give
    first, last = (sql.SQL("CASE WHEN {agg}({k}) FILTER (WHERE {c}) IS NOT NULL"
                           " THEN ARRAY[to_jsonb({agg}({k}) FILTER (WHERE {c})), NULL::jsonb] END").format(
        agg=sql.SQL(agg), k=col(key), c=cond) for agg in ("min", "max"))
    return first, last


def _parent_problem(conn: psycopg.Connection[Any], rule: Rule) -> str | None:
    from pgmill.quality.table_info import table_info

    parent = table_key(rule.params["parent"])
    info = table_info(conn, parent)
    if info is None:
        return f"the parent table {parent} does not exist"
    return info.missing((rule.params["parent_column"],))


def read_aggregate(table: str, scan: AggregateScan, row: tuple[Any, ...]) -> tuple[int, dict[str, int], list[RuleResult]]:
    """Row count, non-null count per column, and a result per rule from the scan's one row."""
    n = int(row[0])
    profile = {c: int(row[1 + i]) for i, c in enumerate(scan.profile)}
    out = list(scan.broken)
    for rule, i, names in scan.failing:
        failed = int(row[i])
        sample = sample_objects(names, [row[i + 1], row[i + 2]])
        out.append(judged(table, rule, n, failed, _message(rule, n, failed), sample=sample))
    for rule, i in scan.freshness:
        age, newest, allowed = row[i], row[i + 1], float(row[i + 2])
        if age is None:
            out.append(verdict(table, rule, False, f"no {rule.columns[0]} value at all: nothing is fresh"))
            continue
        ok = float(age) <= allowed
        msg = (f"newest {rule.columns[0]} is {newest} ({_age(float(age))} old); "
               f"allowed: {rule.params['max_age']}")
        out.append(verdict(table, rule, ok, msg, value=float(age),
                           detail={"newest": newest, "allowed_seconds": allowed}))
    return n, profile, out


def _message(rule: Rule, n: int, failed: int) -> str:
    what = {
        "not_null": "rows with no value",
        "completeness": "rows with no value",
        "accepted_values": "rows with a value outside the accepted list",
        "range": "rows out of range",
        "foreign_key": f"rows with no match in {rule.params.get('parent')}({rule.params.get('parent_column')})",
    }[rule.kind]
    pct = 100.0 * (n - failed) / n if n else 100.0
    return f"{failed:,} of {n:,} {what}; pass rate {pct:.2f}% (needs {rule.threshold:g}%)"


def _age(seconds: float) -> str:
    s = int(max(seconds, 0))
    days, rem = divmod(s, 86400)
    hours, rem = divmod(rem, 3600)
    minutes = rem // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {rem % 60}s"
