"""/quality : newly failing rules first, then per checked table its rules with their pass rate over the last
runs, completeness per column and duplicates with their samples (pgmill.quality_results)."""

from __future__ import annotations

import json
from typing import Any

from pgmill.dashboard.quality import quality
from pgmill.quality.svg import sparkline, trend_chart
from pgmill.web.pages.layout import page
from pgmill.web.templating import svg
from pgmill.web.view import View

SAMPLE_CHARS = 2_000


def render(view: View) -> str:
    asked = view.param("table")
    data = quality(view.conn, [asked] if asked else None, all_tables=view.links.static)
    charts: dict[str, str] = {}  # markup: templating.svg
    sparks: dict[str, str] = {}
    for t in data.details:
        charts[t.table] = svg(trend_chart(
            "rules passing per run", [f"run {run}" for run, _, _ in t.runs],
            [100.0 * ok / n if n else 100.0 for _, ok, n in t.runs], percent=True))
        for r in t.rules:
            sparks[r.anchor] = svg(sparkline([p.pass_rate for p in r.history]))
    return page(view, "quality.html", "quality", "Quality", data=data, charts=charts, sparks=sparks, dump=dump,
                asked=asked)


def dump(value: Any) -> str:
    """A sample as JSON text for a <pre> (the template escapes it), cut at SAMPLE_CHARS."""
    text = json.dumps(value, indent=1, default=str, ensure_ascii=False)
    return text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS] + "\n…"
