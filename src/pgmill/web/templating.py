"""Jinja2 for the dashboard: templates from pgmill/web/templates, autoescaped (data such as a quarantined
value `<script>` is text, never markup), undefined names an error, and the filters every page formats with."""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from pgmill.figures import ms, num, pct, size, span, usd, when


@cache
def environment() -> Environment:
    env = Environment(loader=PackageLoader("pgmill.web", "templates"), autoescape=select_autoescape(default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=num, pct=pct, usd=usd, ms=ms, size=size, span=span, when=when)
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def svg(markup: str) -> Markup:
    """SVG drawn by pgmill's chart functions (which escape every text they put in it), for a template."""
    return Markup(markup)  # noqa: S704 - built by our chart code from escaped parts
