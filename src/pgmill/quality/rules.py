"""A contract's `checks:` section flattened into one list of rules, each with its threshold and severity."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pgmill.config.checks import (
    REFERENCES,
    AcceptedValues,
    Duplicates,
    ForeignKey,
    Rated,
    Severe,
    TableChecks,
    UniqueKey,
)
from pgmill.db.catalog import table_key

#: where each kind of rule is computed: the one aggregate scan, the one GROUP BY scan, or on its own
SCAN_KINDS = ("not_null", "completeness", "accepted_values", "range", "foreign_key", "freshness")
GROUP_KINDS = ("unique", "exact_rows")


@dataclass(frozen=True)
class Rule:
    """One check on one table: `name` is what quality_results and the report call it."""

    kind: str
    name: str
    columns: tuple[str, ...]
    threshold: float  # lowest passing pass rate, percent
    severity: str
    params: Mapping[str, Any] = field(default_factory=dict)


def _sev(spec: Severe | None, default: str) -> str:
    return spec.severity if spec is not None and spec.severity else default


def _thr(spec: Rated | None, default: float = 100.0) -> float:
    return float(spec.threshold) if spec is not None and spec.threshold is not None else default


def _name(kind: str, columns: tuple[str, ...]) -> str:
    return f"{kind}({', '.join(columns)})" if columns else kind


def flatten(checks: TableChecks, cursor: str | None = None) -> list[Rule]:
    """Every rule of `checks`, short forms expanded; `cursor` is the freshness column by default."""
    d = checks.severity
    rules: list[Rule] = []

    def add(kind: str, cols: tuple[str, ...], spec: Rated | Severe | None, threshold: float = 100.0,
            **params: Any) -> None:
        thr = _thr(spec, threshold) if isinstance(spec, Rated) or spec is None else 100.0
        rules.append(Rule(kind, _name(kind, cols), cols, thr, _sev(spec, d), params))

    for key in checks.unique:
        if isinstance(key, UniqueKey):
            add("unique", tuple(key.columns), key)
        else:
            add("unique", (key,) if isinstance(key, str) else tuple(key), None)
    not_null = checks.not_null if isinstance(checks.not_null, dict) else dict.fromkeys(checks.not_null)
    for col, nn in not_null.items():
        add("not_null", (col,), nn)
    for col, pct in checks.completeness.items():
        if isinstance(pct, Rated):
            add("completeness", (col,), pct)
        else:
            add("completeness", (col,), None, threshold=float(pct))
    for col, av in checks.accepted_values.items():
        spec = av if isinstance(av, AcceptedValues) else AcceptedValues(values=av)
        add("accepted_values", (col,), spec, values=tuple(spec.values))
    for col, rng in checks.ranges.items():
        add("range", (col,), rng, min=rng.min, max=rng.max)
    for col, fk in checks.foreign_keys.items():
        assert isinstance(fk, ForeignKey)  # the model turns short forms into ForeignKey
        m = REFERENCES.match(fk.references)
        assert m is not None
        schema, table = m.group(1, 2)
        parent = table_key(f"{schema}.{table}" if schema else table)
        add("foreign_key", (col,), fk, parent=parent, parent_column=m.group(3))
    if checks.freshness is not None:
        fresh = checks.freshness.column or cursor
        add("freshness", (fresh,) if fresh else (), checks.freshness, max_age=checks.freshness.max_age)
    rc = checks.row_count
    add("row_count", (), rc, min=rc.min if rc else None, max=rc.max if rc else None)
    if checks.volume is not None:
        v = checks.volume
        add("volume", (), v, runs=v.runs, k=v.k, min_runs=v.min_runs)
    if checks.duplicates is not None:
        _duplicates(checks.duplicates, d, rules)
    for q in checks.sql:
        rules.append(Rule("sql", q.name, (), _thr(q), _sev(q, d), {"query": q.query}))
    return rules


def _duplicates(dup: Duplicates, default: str, rules: list[Rule]) -> None:
    if dup.exact_rows:
        rules.append(Rule("exact_rows", "exact_rows", (), _thr(dup), _sev(dup, default)))
    if dup.near is not None:
        n = dup.near
        cols = tuple(n.columns)
        rules.append(Rule(
            "near_duplicates", _name("near_duplicates", cols), cols, _thr(n, _thr(dup)),
            _sev(n, _sev(dup, default)),
            {"method": n.method, "similarity": n.similarity, "max_distance": n.max_distance, "search": n.search,
             "max_seconds": n.max_seconds, "sample": n.sample},
        ))
