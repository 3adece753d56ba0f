"""/cost?month=YYYY-MM : what pgmill cost in a month (default: this one): to date and projected against the
budget and pgmill's targets, per GB processed, per pipeline and job per day."""

from __future__ import annotations

from pgmill.dashboard.cost import cost_page
from pgmill.errors import ConfigError
from pgmill.figures import usd
from pgmill.web.charts_bars import stacked_bars
from pgmill.web.pages.layout import page
from pgmill.web.templating import svg
from pgmill.web.view import View


def render(view: View) -> str:
    month = view.param("month") or None
    problem = None
    cfg = view.ctx.config.cost
    try:
        data = cost_page(view.conn, cfg, month, view.now)
    except ConfigError as exc:
        problem = str(exc)
        data = cost_page(view.conn, cfg, None, view.now)
    chart = stacked_bars(f"what the runs used per day, {data.report.month} (UTC)", [str(d.day) for d in data.days],
                         [("", [d.total_usd for d in data.days])], fmt=usd) if data.days_with_runs else ""
    return page(view, "cost.html", "cost", "Cost", data=data, chart=svg(chart), problem=problem)
