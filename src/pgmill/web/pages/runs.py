"""/runs : the runs of the last 24 hours or 7 days as a timeline (a lane per pipeline, a bar per run coloured
by status, outlined when it needed retries), filtered by pipeline and status; the newest as a table."""

from __future__ import annotations

from pgmill.dashboard.runs import MAX_BARS, MAX_ROWS, STATUSES, WINDOWS, RunRow, runs_page
from pgmill.figures import span, when
from pgmill.web.charts import Bar, timeline
from pgmill.web.pages.layout import page
from pgmill.web.templating import svg
from pgmill.web.view import View


def _title(r: RunRow) -> str:
    took = f"took {span(r.seconds)}" if r.seconds is not None else "still running"
    retries = f", {r.retries} retr{'y' if r.retries == 1 else 'ies'}" if r.retries else ""
    error = f"\n{r.error.splitlines()[0][:200]}" if r.error else ""
    return (f"run {r.run_id} · {r.pipeline} · {r.status} · started {when(r.started_at)}, {took}{retries},"
            f" {r.rows_read:,} rows read{error}")


def render(view: View) -> str:
    data = runs_page(view.conn, view.ctx, view.now, view.param("window"), view.param("pipeline") or None,
                     view.param("status") or None)
    bars = [Bar(r.pipeline, max(r.started_at, data.start), r.finished_at or data.end, r.status, _title(r),
                view.links.run(r.run_id), r.retries > 0, r.run_id) for r in data.runs]

    def lane_href(name: str) -> str:
        return view.links.page("runs", window=data.window, pipeline=name, status=data.status)

    caption = (f"Runs of the last {data.window}, {when(data.start)} to {when(data.end)}"
               + (f" (the newest {MAX_BARS:,} of {data.total:,})" if data.total > len(data.runs) else ""))
    chart = svg(timeline(caption, data.lanes, bars, data.start, data.end,
                         None if view.links.static else lane_href))
    return page(view, "runs.html", "runs", "Runs", data=data, chart=chart, windows=list(WINDOWS),
                statuses=STATUSES, max_rows=MAX_ROWS)
