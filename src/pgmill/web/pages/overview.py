"""/ : what needs a look first (red, then amber), every pipeline and job with its health, open alerts."""

from __future__ import annotations

from pgmill.dashboard.overview import overview
from pgmill.web.pages.layout import page
from pgmill.web.view import View


def render(view: View) -> str:
    data = overview(view.conn, view.ctx)
    return page(view, "overview.html", "overview", "Overview", data=data)
