"""The dashboard's pages, in the order of the navigation bar. Each module renders one page from a `View`
(pgmill.web.view) with the library's data (pgmill.dashboard, pgmill.validate) and one template."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pgmill.web.pages import (
    alerts,
    cost,
    indexes,
    overview,
    quality,
    quarantine,
    queries,
    run,
    runs,
    validation,
)
from pgmill.web.view import Action, View


@dataclass(frozen=True)
class Page:
    name: str  # the path (/NAME, `/` for the overview) and the export's file name (NAME.html)
    title: str
    render: Callable[[View], str]


#: the pages in the navigation bar; the run page (/runs/ID) is reached from the others
PAGES: tuple[Page, ...] = (
    Page("overview", "Overview", overview.render),
    Page("runs", "Runs", runs.render),
    Page("quarantine", "Quarantine", quarantine.render),
    Page("quality", "Quality", quality.render),
    Page("queries", "Queries", queries.render),
    Page("indexes", "Indexes", indexes.render),
    Page("cost", "Cost", cost.render),
    Page("alerts", "Alerts", alerts.render),
    Page("validation", "Validation", validation.render),
)

render_run: Callable[[View, int], str] = run.render

#: the POSTs pages offer when writes are allowed (`pgmill serve --allow-writes`)
ACTIONS: tuple[Action, ...] = (quarantine.REPLAY,)
