"""SVG charts of runs drawn on the server: the runs page's timeline (a lane per pipeline, a bar per run) and the
run page's Gantt chart (a lane per step, sub-bars per phase). Every text put in the SVG is escaped; a bar
with a link is an SVG <a href> (no script anywhere)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape

#: the fill of each kind of bar: a run's status, a step's status, or a load's phase
COLOURS = {
    "succeeded": "#16a34a", "failed": "#dc2626", "abandoned": "#f97316", "running": "#eab308",
    "skipped": "#94a3b8", "read": "#60a5fa", "validate": "#a78bfa", "load": "#1d4ed8",
}
OTHER = "#64748b"
LABEL_W = 170  # the lane labels' column
LANE_H = 22
BAR_H = 14
TOP = 26  # the legend's row
AXIS_H = 22
_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800)


@dataclass(frozen=True)
class Bar:
    lane: str
    start: datetime
    end: datetime
    kind: str  # a key of COLOURS (any other is drawn grey)
    title: str  # the tooltip: what the bar is, in words
    href: str | None = None  # where a click on it goes
    marked: bool = False  # drawn outlined, with a tick (a run that needed retries)
    run: int | None = None  # the run it stands for (the data-run attribute)


def _fmt_abs(step: float, t: datetime) -> str:
    t = t.astimezone(UTC)
    if step >= 86400:
        return t.strftime("%m-%d")
    return t.strftime("%H:%M:%S") if step < 60 else t.strftime("%H:%M")


def _fmt_rel(step: float, seconds: float) -> str:
    if step < 60:
        return f"+{seconds:g} s"
    if step < 3600:
        return f"+{seconds / 60:g} min"
    return f"+{seconds / 3600:g} h"


def _ticks(t0: datetime, t1: datetime, relative: bool, most: int = 8) -> list[tuple[datetime, str]]:
    """Round moments between t0 and t1 (whole minutes, hours, days in UTC; or seconds after t0)."""
    total = max((t1 - t0).total_seconds(), 1e-3)
    if relative and total < most:
        step: float = next((s for s in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1) if total / s <= most), 1)
    else:
        step = next((s for s in _STEPS if total / s <= most), _STEPS[-1])
    out = []
    if relative:
        k = 0
        while k * step <= total + 1e-9:
            out.append((t0 + timedelta(seconds=k * step), _fmt_rel(step, round(k * step, 3))))
            k += 1
        return out
    first = -(-t0.timestamp() // step) * step
    k = 0
    while first + k * step <= t1.timestamp():
        at = datetime.fromtimestamp(first + k * step, UTC)
        out.append((at, _fmt_abs(step, at)))
        k += 1
    return out


def _chart(caption: str, lanes: Sequence[str], bars: Sequence[Bar], t0: datetime, t1: datetime, *,
           relative: bool, lane_href: Callable[[str], str] | None = None,
           markers: Sequence[tuple[datetime, str]] = (), width: int = 1000) -> str:
    plot_w = width - LABEL_W - 12
    span = max((t1 - t0).total_seconds(), 1e-3)

    def x(t: datetime) -> float:
        return LABEL_W + max(0.0, min(1.0, (t - t0).total_seconds() / span)) * plot_w

    row = {name: i for i, name in enumerate(lanes)}
    height = TOP + LANE_H * max(len(lanes), 1) + AXIS_H
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}"'
             f' height="{height}" role="img" aria-label="{escape(caption)}"><title>{escape(caption)}</title>']
    kinds = list(dict.fromkeys(b.kind for b in bars))
    lx = float(LABEL_W)
    for kind in kinds:
        parts.append(f'<rect x="{lx:.0f}" y="6" width="10" height="10" fill="{COLOURS.get(kind, OTHER)}"/>'
                     f'<text x="{lx + 14:.0f}" y="15" class="axis">{escape(kind)}</text>')
        lx += 22 + 6.5 * len(kind)
    if any(b.marked for b in bars):
        parts.append(f'<rect x="{lx:.0f}" y="6" width="10" height="10" fill="#fff" stroke="#0f172a"'
                     f' stroke-width="2"/><text x="{lx + 14:.0f}" y="15" class="axis">retried</text>')
    bottom = TOP + LANE_H * max(len(lanes), 1)
    for i, name in enumerate(lanes):
        y = TOP + i * LANE_H
        if i % 2:
            parts.append(f'<rect x="{LABEL_W}" y="{y}" width="{plot_w}" height="{LANE_H}" fill="#f8fafc"/>')
        short = name if len(name) <= 24 else name[:23] + "…"
        label = f'<text x="{LABEL_W - 6}" y="{y + 15}" text-anchor="end" font-size="12"><title>{escape(name)}' \
                f'</title>{escape(short)}</text>'
        if lane_href is not None:
            label = f'<a href="{escape(lane_href(name))}">{label}</a>'
        parts.append(label)
    for at, text in _ticks(t0, t1, relative):
        tx = x(at)
        parts.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{TOP}" y2="{bottom}" stroke="#e2e8f0"/>'
                     f'<text x="{tx:.1f}" y="{bottom + 15}" text-anchor="middle" class="axis">{escape(text)}</text>')
    for b in bars:
        if b.lane not in row:
            continue
        x0, x1 = x(b.start), x(b.end)
        w = max(x1 - x0, 2.0)  # a run of a second in a week is still visible
        by = TOP + row[b.lane] * LANE_H + (LANE_H - BAR_H) / 2
        stroke = ' stroke="#0f172a" stroke-width="2"' if b.marked else ""
        data = f' data-run="{b.run}"' if b.run is not None else ""
        rect = (f'<rect class="bar {escape(b.kind)}"{data} x="{x0:.1f}" y="{by:.1f}" width="{w:.1f}"'
                f' height="{BAR_H}" fill="{COLOURS.get(b.kind, OTHER)}"{stroke}><title>{escape(b.title)}</title></rect>')
        if b.marked:
            rect += (f'<line x1="{x0 + w / 2:.1f}" x2="{x0 + w / 2:.1f}" y1="{by - 3:.1f}" y2="{by:.1f}"'
                     f' stroke="#0f172a" stroke-width="2"/>')
        parts.append(f'<a href="{escape(b.href)}">{rect}</a>' if b.href else rect)
    for at, text in markers:
        mx = x(at)
        parts.append(f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{TOP - 4}" y2="{bottom}" stroke="#0f172a"'
                     f' stroke-dasharray="3 3"><title>{escape(text)}</title></line>')
    parts.append("</svg>")
    return f'<figure class="chart">{"".join(parts)}<figcaption>{escape(caption)}</figcaption></figure>'


def timeline(caption: str, lanes: Sequence[str], bars: Sequence[Bar], start: datetime, end: datetime,
             lane_href: Callable[[str], str] | None = None) -> str:
    """Runs over a window of wall-clock time (UTC on the axis), a lane per pipeline."""
    return _chart(caption, lanes, bars, start, end, relative=False, lane_href=lane_href)


def gantt(caption: str, lanes: Sequence[str], bars: Sequence[Bar], start: datetime, end: datetime,
          markers: Sequence[tuple[datetime, str]] = ()) -> str:
    """Steps of one run, time on the axis counted from `start`; `markers` are dashed lines (the run's end)."""
    return _chart(caption, lanes, bars, start, end, relative=True, markers=markers)
