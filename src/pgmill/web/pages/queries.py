"""/queries : the declared queries' p95 over the last tuning runs against their targets (a chart each),
regressions first, the index actions that changed them, and the top statements by total time."""

from __future__ import annotations

from pgmill.dashboard.queries import QueryTrend, queries_page
from pgmill.figures import ms
from pgmill.quality.svg import trend_chart
from pgmill.web.pages.layout import page
from pgmill.web.templating import svg
from pgmill.web.view import View


def _chart(q: QueryTrend) -> str:
    return trend_chart(f"{q.name}: p95 per measurement", [m.label for m in q.points], [m.p95_ms for m in q.points],
                       target=q.target_ms, fmt=ms)


RUN_SECTIONS = 10  # tuning runs shown with their measurements and index actions (the charts show them all)


def render(view: View) -> str:
    data = queries_page(view.conn)
    charts = {q.name: svg(_chart(q)) for q in data.queries}
    return page(view, "queries.html", "queries", "Queries", data=data, charts=charts, sections=RUN_SECTIONS)
