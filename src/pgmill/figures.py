"""Figures for people, one way everywhere pgmill shows them (the dashboard, `pgmill validate`): thousands
separated, percentages, dollars, milliseconds, sizes, durations, timestamps; a missing figure is '—'."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any


def num(v: Any) -> str:
    """1234567 -> '1,234,567'; None -> '—'."""
    if v is None:
        return "—"
    return f"{v:,.0f}" if isinstance(v, int) or float(v).is_integer() else f"{v:,.2f}"


def pct(v: float | None, digits: int = 1) -> str:
    """A fraction as a percentage: 0.9991 -> '99.9%'; None -> '—'."""
    return "—" if v is None else f"{v * 100:.{digits}f}%"


def usd(v: float | None) -> str:
    """Dollars: cents from $0.10 up; below that two significant digits ($0.0042, $0.000013), so the cost of
    a small run never reads as zero."""
    if v is None:
        return "—"
    if v == 0 or abs(v) >= 0.1:
        return f"${v:,.2f}"
    digits = min(max(4, 1 - math.floor(math.log10(abs(v)))), 10)
    return f"${v:.{digits}f}"


def ms(v: float | None) -> str:
    return "—" if v is None else f"{v:,.1f} ms" if v < 100 else f"{v:,.0f} ms"


def size(v: float | None) -> str:
    if v is None:
        return "—"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(v) < 1024 or unit == "TB":
            return f"{v:,.0f} {unit}" if unit == "B" else f"{v:,.1f} {unit}"
        v /= 1024
    return ""  # unreachable


def span(seconds: float | timedelta | None) -> str:
    """A duration for people: '850 ms', '42 s', '3 min 5 s', '2 h 10 min', '3 d 4 h'."""
    if seconds is None:
        return "—"
    s = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m} min {sec} s" if sec else f"{m} min"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(h, 24)
    return f"{d} d {h} h" if h else f"{d} d"


def when(t: datetime | None) -> str:
    """A timestamp in UTC to the second: '2026-12-03 17:20:05Z'."""
    return "—" if t is None else t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
