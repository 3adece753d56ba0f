"""/quarantine : rows quarantined per table per day, the rules broken most, the newest rows with their source
file and line; replay (a POST with the CSRF token) when the server was started with `--allow-writes`."""

from __future__ import annotations

import re

from pgmill.dashboard.quarantine import quarantine, replay_rows
from pgmill.project import ProjectContext
from pgmill.web.charts_bars import stacked_bars
from pgmill.web.pages.layout import page
from pgmill.web.templating import svg
from pgmill.web.view import Action, View

_IDS = re.compile(r"[\s,]+")


def render(view: View) -> str:
    static = view.links.static
    data = quarantine(view.conn, view.ctx, view.now, None if static else view.param("pipeline") or None,
                      None if static else view.param("rule") or None)
    chart = stacked_bars(
        "rows quarantined per day (UTC), by target table", [d.isoformat() for d in data.days],
        [(t, [data.counts.get((d, t), 0) for d in data.days]) for t in data.tables])
    return page(view, "quarantine.html", "quarantine", "Quarantine", data=data, chart=svg(chart),
                writes=view.allow_writes and not static)


def replay(ctx: ProjectContext, form: dict[str, str]) -> str:
    """The replay action: the form's pipeline (checked against pgmill.yaml) and optional ids."""
    pipeline = form.get("pipeline", "").strip()
    words = [w for w in _IDS.split(form.get("ids", "")) if w]
    if not all(w.isdigit() for w in words):
        return "nothing replayed: ids must be quarantine row numbers"
    return replay_rows(ctx, pipeline, [int(w) for w in words] or None)


REPLAY = Action("/quarantine/replay", "quarantine", replay)
