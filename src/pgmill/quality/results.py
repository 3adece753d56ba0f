"""What a check run found: one RuleResult per rule, grouped per table, and the run's verdict."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pgmill.errors import PgmillError
from pgmill.quality.rules import Rule


class QualityCheckFailed(PgmillError):
    """A table check of severity `error` failed (or could not run): downstream work must not use the table."""

    exit_code = 9


def worst_status(statuses: Iterable[str]) -> str:
    """A table's status from its rules': fail (or error) over warn over pass."""
    states = set(statuses)
    return "fail" if states & {"fail", "error"} else "warn" if "warn" in states else "pass"


@dataclass
class RuleResult:
    table: str
    rule: str
    kind: str
    columns: tuple[str, ...]
    rows_checked: int
    rows_failed: int
    threshold: float
    severity: str
    status: str  # pass | warn | fail | error | skipped
    message: str = ""
    value: float | None = None
    sample: list[Any] = field(default_factory=list)
    detail: dict[str, Any] | None = None

    @property
    def pass_rate(self) -> float:
        """Percent of checked rows that pass (100 for an empty table: nothing failed)."""
        if self.rows_checked <= 0:
            return 0.0 if self.rows_failed else 100.0
        return round(100.0 * (self.rows_checked - self.rows_failed) / self.rows_checked, 3)

    @property
    def blocking(self) -> bool:
        return self.status in ("fail", "error")

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table, "rule": self.rule, "kind": self.kind, "columns": list(self.columns),
            "rows_checked": self.rows_checked, "rows_failed": self.rows_failed, "pass_rate": self.pass_rate,
            "threshold": self.threshold, "severity": self.severity, "status": self.status,
            "message": self.message, "value": self.value, "sample": self.sample, "detail": self.detail,
        }


def judged(table: str, rule: Rule, rows_checked: int, rows_failed: int, message: str = "",
           **kw: Any) -> RuleResult:
    """A result whose status follows from its pass rate against the rule's threshold and severity."""
    r = RuleResult(table, rule.name, rule.kind, rule.columns, rows_checked, rows_failed, rule.threshold,
                   rule.severity, "pass", message, **kw)
    if r.pass_rate < rule.threshold:
        r.status = "fail" if rule.severity == "error" else "warn"
    return r


def verdict(table: str, rule: Rule, ok: bool, message: str, **kw: Any) -> RuleResult:
    """A result that passes or fails as a whole (freshness, row count, volume): one assertion checked."""
    status = "pass" if ok else ("fail" if rule.severity == "error" else "warn")
    return RuleResult(table, rule.name, rule.kind, rule.columns, 1, 0 if ok else 1, rule.threshold,
                      rule.severity, status, message, **kw)


def broken(table: str, rule: Rule, message: str) -> RuleResult:
    """A rule that could not run (a missing column, a failing query): it counts as a failure."""
    return RuleResult(table, rule.name, rule.kind, rule.columns, 0, 0, rule.threshold, rule.severity, "error",
                      message)


@dataclass
class TableResult:
    table: str
    rows: int
    results: list[RuleResult]

    @property
    def ok(self) -> bool:
        return not any(r.blocking for r in self.results)


@dataclass
class CheckReport:
    """The outcome of `run_checks`: `ok` is false when any error-severity rule failed or could not run."""

    run_id: int
    tables: list[TableResult]

    @property
    def results(self) -> list[RuleResult]:
        return [r for t in self.tables for r in t.results]

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables)

    @property
    def failed_tables(self) -> list[str]:
        """Tables downstream models must not build on."""
        return [t.table for t in self.tables if not t.ok]

    @property
    def failures(self) -> list[RuleResult]:
        return [r for r in self.results if r.blocking]

    @property
    def warnings(self) -> list[RuleResult]:
        return [r for r in self.results if r.status == "warn"]

    def raise_for_failures(self) -> None:
        """Raise QualityCheckFailed naming every failed error-severity rule; do nothing when all passed."""
        if self.ok:
            return
        lines = [f"{r.table}: {r.rule}: {r.message}" for r in self.failures]
        raise QualityCheckFailed(f"quality checks failed (check run {self.run_id}):\n  " + "\n  ".join(lines))

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "ok": self.ok, "failed_tables": self.failed_tables,
                "tables": [{"table": t.table, "rows": t.rows, "ok": t.ok,
                            "results": [r.as_dict() for r in t.results]} for t in self.tables]}
