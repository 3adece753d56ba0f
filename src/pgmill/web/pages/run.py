"""/runs/ID (placeholder until its page lands)."""

from __future__ import annotations

from pgmill.web.pages.layout import page
from pgmill.web.view import PageNotFound, View


def render(view: View, run_id: int) -> str:
    row = view.conn.execute("SELECT pipeline FROM pgmill.runs WHERE run_id = %s", (run_id,)).fetchone()
    if row is None:
        raise PageNotFound(f"run {run_id} is not in pgmill.runs")
    return page(view, "placeholder.html", "runs", f"Run {run_id}")
