"""/indexes : unused, duplicate, redundant, invalid and bloated indexes with their size and why; utilization;
the age of the statistics; the largest indexes."""

from __future__ import annotations

from pgmill.dashboard.indexes import KINDS, indexes_page
from pgmill.web.pages.layout import page
from pgmill.web.view import View


def render(view: View) -> str:
    data = indexes_page(view.conn, view.now)
    return page(view, "indexes.html", "indexes", "Indexes", data=data, kinds=KINDS)
