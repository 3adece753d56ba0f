"""validation.md: a header (project, database, date, pgmill's version, the window, the verdict), one table
per area of the brief (figure, threshold, status, source, window), then the notes."""

from __future__ import annotations

from pgmill.validate.model import Criterion, Validation, days, when

#: criteria of the brief that no figure of a project's tables can show, and where they are shown instead
NOT_FROM_DATA = (
    "Error handling tested and functional: pgmill's test suite (tests/test_faults.py, tests/test_crash_safety.py)",
    "Pipelines handle 10x data volume without redesign; storage scales automatically; processing scales "
    "horizontally: properties of the design (docs/architecture.md), not figures of this project",
)


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip() or "—"


def _status(c: Criterion) -> str:
    return {"pass": "pass", "fail": "**FAIL**", "not_measured": "not measured"}[c.status]


def render_markdown(v: Validation) -> str:
    """The report as markdown (validation.md)."""
    verdict = "pass" if v.ok else "**FAIL**"
    lines = [
        "# Validation against the brief's success criteria",
        "",
        "| | |",
        "| --- | --- |",
        f"| project | {_cell(v.project)} |",
        f"| database | `{_cell(v.database)}` |",
        f"| date | {when(v.as_of)} |",
        f"| pgmill | {_cell(v.version)} |",
        f"| window | the ledger and the table checks: last {days(v.since)} ({when(v.as_of - v.since)} to "
        f"{when(v.as_of)}); cost: the current month; latency: the latest tuning run |",
        f"| result | {verdict}: {v.count('pass')} passed, {v.count('fail')} failed, {v.count('not_measured')} not "
        f"measured (exit code {v.exit_code}) |",
        "",
        "A criterion without data is *not measured*, never *pass*. The result passes when every measured "
        "criterion passes.",
    ]
    areas: dict[str, list[Criterion]] = {}
    for c in v.criteria:
        areas.setdefault(c.area, []).append(c)
    for area, criteria in areas.items():
        lines += ["", f"## {area}", "", "| criterion | figure | threshold | status | source | window |",
                  "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {_cell(c.name)} | {_cell(c.figure)} | {_cell(c.threshold)} | {_status(c)} | "
                  f"{_cell(c.source)} | {_cell(c.window)} |" for c in criteria]
    noted = [c for c in v.criteria if c.note]
    if noted:
        lines += ["", "## Notes", ""]
        lines += [f"- **{c.name}** ({c.label}): {c.note}" for c in noted]
    lines += ["", "## Not measured from data", ""]
    lines += [f"- {item}" for item in NOT_FROM_DATA]
    return "\n".join(lines) + "\n"
