"""/quarantine (placeholder until its page lands)."""

from __future__ import annotations

from pgmill.web.pages.layout import page
from pgmill.web.view import View


def render(view: View) -> str:
    return page(view, "placeholder.html", "quarantine", "Quarantine")
