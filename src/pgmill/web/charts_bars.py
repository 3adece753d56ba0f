"""Bars drawn as inline SVG on the server, stacked by series (the quarantine page's rows per day and table;
the cost page's dollars per day, one series): every text in the drawing is escaped, since names and labels
come from the data."""

from __future__ import annotations

from collections.abc import Callable
from html import escape

PALETTE = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#0ea5e9", "#84cc16", "#ec4899")


def _count(v: float) -> str:
    return f"{v:,.0f}"


def stacked_bars(title: str, labels: list[str], series: list[tuple[str, list[float]]], *,
                 fmt: Callable[[float], str] = _count, w: int = 720, h: int = 170) -> str:
    """One bar per label (oldest left), stacked by series (name, a value per label; one unnamed series: plain
    bars, no legend); values shown with `fmt`; '' when all are zero."""
    totals = [sum(vals[i] for _, vals in series) for i in range(len(labels))]
    top = max(totals, default=0)
    if top <= 0:
        return ""
    pad, left, bottom = 8.0, 48.0, 22.0
    plot_h = h - pad - bottom
    step = (w - left - pad) / len(labels)
    bar_w = max(step * 0.75, 1.0)
    parts: list[str] = [
        f'<line x1="{left}" x2="{w - pad}" y1="{pad}" y2="{pad}" stroke="#e5e7eb"/>'
        f'<text x="{left - 6}" y="{pad + 4}" text-anchor="end" class="axis">{escape(fmt(top))}</text>'
        f'<line x1="{left}" x2="{w - pad}" y1="{h - bottom}" y2="{h - bottom}" stroke="#cbd5e1"/>'
        f'<text x="{left - 6}" y="{h - bottom + 3}" text-anchor="end" class="axis">{escape(fmt(0))}</text>']
    for i, label in enumerate(labels):
        x = left + i * step + (step - bar_w) / 2
        y = h - bottom
        for k, (name, vals) in enumerate(series):
            if vals[i] <= 0:
                continue
            bh = vals[i] / top * plot_h
            y -= bh
            what = f"{label}: {name}: " if name else f"{label}: "
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{bh:.1f}"'
                         f' fill="{PALETTE[k % len(PALETTE)]}"><title>{escape(what + fmt(vals[i]))}</title></rect>')
    parts.append(f'<text x="{left}" y="{h - 6}" class="axis">{escape(labels[0])}</text>'
                 f'<text x="{w - pad}" y="{h - 6}" text-anchor="end" class="axis">{escape(labels[-1])}</text>')
    legend = "".join(
        f'<span class="legend"><i style="background:{PALETTE[k % len(PALETTE)]}"></i>{escape(name)}</span>'
        for k, (name, _) in enumerate(series) if name)
    return (f'<figure class="chart"><figcaption>{escape(title)} {legend}</figcaption>'
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img"'
            f' aria-label="{escape(title)}">{"".join(parts)}</svg></figure>')
