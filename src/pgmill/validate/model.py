"""What a validation is made of: one Criterion per measurable success criterion of the brief, and the
Validation that holds them with the project, the database, the date and the window."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

Status = Literal["pass", "fail", "not_measured"]

#: how each status reads for people (the JSON keeps the keys)
LABELS: dict[str, str] = {"pass": "pass", "fail": "fail", "not_measured": "not measured"}
DASH = "—"


@dataclass
class Criterion:
    """One criterion: this project's figure, where it comes from, the threshold, and the verdict. A criterion
    without data is `not_measured`, never `pass`; `note` then says why."""

    key: str  # stable id, e.g. "query_p95"
    area: str  # the brief's heading: "Query performance", "Pipeline reliability", ...
    name: str  # the criterion as the brief words it
    threshold: str  # "< 100 ms"
    status: Status
    figure: str = DASH  # the figure for people: "48.2 ms (worst of 3 declared queries)"
    value: float | None = None  # the figure held against the threshold, for scripts
    source: str = ""  # the table, query or file, and what is computed from it
    window: str = ""  # the time the figure covers
    note: str = ""  # why not measured, or what the figure means
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return LABELS[self.status]

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "area": self.area, "name": self.name, "threshold": self.threshold,
                "status": self.status, "figure": self.figure, "value": self.value, "source": self.source,
                "window": self.window, "note": self.note, "detail": self.detail}


def judge(value: float | None, passes: bool) -> Status:
    """`not_measured` without a value, else pass or fail."""
    if value is None:
        return "not_measured"
    return "pass" if passes else "fail"


@dataclass
class Validation:
    project: str
    database: str  # the URL, password removed
    as_of: datetime  # the database's clock
    version: str  # pgmill's
    since: timedelta  # the window of the ledger's criteria
    criteria: list[Criterion]

    def count(self, status: Status) -> int:
        return sum(1 for c in self.criteria if c.status == status)

    @property
    def ok(self) -> bool:
        """Every measured criterion passes (criteria not measured do not fail, but are listed)."""
        return self.count("fail") == 0

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def as_dict(self) -> dict[str, Any]:
        return {"project": self.project, "database": self.database, "as_of": self.as_of.isoformat(),
                "pgmill_version": self.version, "since_seconds": self.since.total_seconds(), "ok": self.ok,
                "counts": {s: self.count(s) for s in ("pass", "fail", "not_measured")},
                "criteria": [c.as_dict() for c in self.criteria]}


# ---------------------------------------------------------------- figures for people


def when(t: datetime | None) -> str:
    return "never" if t is None else f"{t.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def days(d: timedelta) -> str:
    """A window for people: '30 days', '12 hours'."""
    s = d.total_seconds()
    if s >= 86400 and s % 86400 == 0:
        n = int(s // 86400)
        return f"{n} day" if n == 1 else f"{n} days"
    if s >= 3600 and s % 3600 == 0:
        n = int(s // 3600)
        return f"{n} hour" if n == 1 else f"{n} hours"
    return f"{s:,.0f} s"
