"""/runs/ID : one run: its steps as a Gantt chart (each stream's load split into read, validate and load;
then checks, models, tune), the row accounting identity with its numbers, the error in full, its cost."""

from __future__ import annotations

from datetime import datetime

from pgmill.dashboard.run_detail import PHASES, RunDetail, Step, run_detail
from pgmill.figures import span
from pgmill.web.charts import Bar, gantt
from pgmill.web.pages.layout import page
from pgmill.web.templating import svg
from pgmill.web.view import PageNotFound, View

MAX_LANES = 60  # steps drawn in the Gantt chart at most; the table lists them all


def _step_bars(step: Step, end: datetime, view: View) -> list[Bar]:
    finish = step.finished_at or end
    phases = step.phases
    spent = sum(phases.values())
    if step.kind == "load" and step.status == "succeeded" and spent > 0:
        bars, at = [], step.started_at
        for p in PHASES:
            share = phases.get(p, 0.0) / spent
            upto = at + (finish - step.started_at) * share
            bars.append(Bar(step.name, at, upto, p, f"{step.name}: {p} {phases.get(p, 0.0):.3f} s,"
                            f" {share:.0%} of the phases' time"))
            at = upto
        return bars
    href = view.links.run(step.linked_run) if step.linked_run is not None else None
    rows = f", {step.rows:,} rows" if step.rows is not None else ""
    return [Bar(step.name, step.started_at, finish, step.status,
                f"{step.name}: {step.status}, {span(step.seconds) if step.seconds is not None else 'running'}{rows}",
                href)]


def _chart(d: RunDetail, view: View) -> str:
    run = d.run
    end = d.end or view.now
    if run["status"] == "running":
        end = max(end, view.now)
    lanes = [f"run {d.run_id}"]
    bars = [Bar(lanes[0], run["started_at"], run["finished_at"] or end, run["status"],
                f"run {d.run_id}: {run['status']}", marked=run["retries"] > 0)]
    for s in d.steps:
        if s.name not in lanes:
            if len(lanes) > MAX_LANES:
                continue
            lanes.append(s.name)
        bars += _step_bars(s, end, view)
    markers = [(run["finished_at"], "the run ended here")] if run["finished_at"] is not None else []
    return gantt(f"Steps of run {d.run_id}, seconds from its start", lanes, bars, run["started_at"], end, markers)


def render(view: View, run_id: int) -> str:
    d = run_detail(view.conn, run_id)
    if d is None:
        raise PageNotFound(f"run {run_id} is not in pgmill.runs")
    return page(view, "run.html", "runs", f"Run {run_id}", d=d, run=d.run, chart=svg(_chart(d, view)),
                phases=PHASES, max_lanes=MAX_LANES)
