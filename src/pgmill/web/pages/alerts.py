"""/alerts?since=1d|7d|30d : the alerts firing now, and the events of the window with each delivery attempt."""

from __future__ import annotations

from pgmill.dashboard.alerts import DEFAULT_WINDOW, WINDOWS, alerts_page
from pgmill.web.pages.layout import page
from pgmill.web.view import View


def render(view: View) -> str:
    window = view.param("since", DEFAULT_WINDOW)
    problem = None
    if window not in WINDOWS:
        problem = f"since={window!r}: choose one of {', '.join(WINDOWS)}"
        window = DEFAULT_WINDOW
    data = alerts_page(view.conn, view.now, window)
    return page(view, "alerts.html", "alerts", "Alerts", data=data, windows=list(WINDOWS), problem=problem,
                channels=sorted(view.ctx.config.alerts.channels))
