"""The frame every page shares: the navigation bar, the project's name, when the page was drawn."""

from __future__ import annotations

from typing import Any

from pgmill.web.templating import render
from pgmill.web.view import View

NAV = (("overview", "Overview"), ("runs", "Runs"), ("quarantine", "Quarantine"), ("quality", "Quality"),
       ("queries", "Queries"), ("indexes", "Indexes"), ("cost", "Cost"), ("alerts", "Alerts"),
       ("validation", "Validation"))


def page(view: View, template: str, current: str, title: str, **data: Any) -> str:
    """Render `template` (which extends base.html) with the frame's variables and the page's `data`."""
    return render(template, view=view, links=view.links, nav=NAV, current=current, title=title,
                  project=view.ctx.dir.name, now=view.now, **data)
