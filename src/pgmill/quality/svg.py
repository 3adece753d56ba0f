"""Small inline SVG charts for the quality report and the dashboard: a trend line with axes (and an optional
target line), bars, and a sparkline. Every text put in them is escaped."""

from __future__ import annotations

from collections.abc import Callable
from html import escape


def _points(values: list[float], w: float, h: float, pad: float, lo: float, hi: float,
            left: float | None = None) -> list[tuple[float, float]]:
    left = pad if left is None else left
    span = (hi - lo) or 1.0
    step = (w - left - pad) / max(len(values) - 1, 1)
    return [(left + i * step, h - pad - (v - lo) / span * (h - 2 * pad)) for i, v in enumerate(values)]


def trend_chart(title: str, labels: list[str], values: list[float], *, percent: bool = False,
                color: str = "#2563eb", w: int = 420, h: int = 150, target: float | None = None,
                fmt: Callable[[float], str] | None = None) -> str:
    """A line over past runs, oldest left; `percent` fixes the scale to 0-100. `target`: a dashed horizontal
    line at that value (the scale includes it); `fmt` formats the axis and point labels."""
    if not values:
        return ""
    lo, hi = (0.0, 100.0) if percent else (min(values), max(values))
    if target is not None and not percent:
        lo, hi = min(lo, target), max(hi, target)
    if not percent and lo == hi:
        lo, hi = lo - 1, hi + 1
    pad, left = 24.0, 64.0  # the left margin holds the axis labels ("1,234,567")
    pts = _points(values, w, h, pad, lo, hi, left)
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)

    def default(v: float) -> str:
        return f"{v:.0f}%" if percent else f"{v:,.0f}"

    show = fmt or default
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"><title>{escape(labels[i])}: {escape(show(values[i]))}'
        f"</title></circle>" for i, (x, y) in enumerate(pts))
    grid = "".join(
        f'<line x1="{left}" x2="{w - pad}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
        f'<text x="{left - 6}" y="{y + 3:.1f}" text-anchor="end" class="axis">{escape(show(v))}</text>'
        for v, y in ((lo, h - pad), (hi, pad)))
    goal = ""
    if target is not None:
        y = h - pad - (target - lo) / ((hi - lo) or 1.0) * (h - 2 * pad)
        goal = (f'<line class="target" x1="{left}" x2="{w - pad}" y1="{y:.1f}" y2="{y:.1f}" stroke="#dc2626"'
                f' stroke-dasharray="5 4"><title>target: {escape(show(target))}</title></line>'
                f'<text x="{w - pad}" y="{y - 4:.1f}" text-anchor="end" class="axis">target {escape(show(target))}'
                f"</text>")
    return (
        f'<figure class="chart"><figcaption>{escape(title)}</figcaption>'
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img"'
        f' aria-label="{escape(title)}">{grid}{goal}'
        f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"/>{dots}'
        f'<text x="{left}" y="{h - 6}" class="axis">{escape(labels[0])}</text>'
        f'<text x="{w - pad}" y="{h - 6}" text-anchor="end" class="axis">{escape(labels[-1])}</text>'
        f"</svg></figure>"
    )


def sparkline(values: list[float], *, w: int = 90, h: int = 22) -> str:
    """Pass rate (0-100) over past runs, with the latest point marked."""
    if len(values) < 2:
        return ""
    pts = _points(values, w, h, 3.0, 0.0, 100.0)
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
    x, y = pts[-1]
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="spark" viewBox="0 0 {w} {h}" width="{w}" height="{h}">'
            f'<polyline fill="none" stroke="#64748b" stroke-width="1.5" points="{path}"/>'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="#0f172a"/></svg>')
