"""/validation: the brief's success criteria against this project's data (pgmill.validate), as
`pgmill validate` reports them: figure, threshold, status, source and window of each."""

from __future__ import annotations

from pgmill.validate import Criterion, validate
from pgmill.web.pages.layout import page
from pgmill.web.view import View


def render(view: View) -> str:
    report = validate(view.conn, view.ctx)
    areas: dict[str, list[Criterion]] = {}
    for c in report.criteria:
        areas.setdefault(c.area, []).append(c)
    return page(view, "validation.html", "validation", "Validation", report=report, areas=areas)
