"""What a dashboard page is given: the project, a read-only connection, the clock, the request's parameters,
and how to link to other pages (a path on the server, a file name in the static export)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import psycopg

from pgmill.project import ProjectContext

Conn = psycopg.Connection[Any]


class PageNotFound(LookupError):
    """The page names something that does not exist (a run id): the server answers 404 with this text."""


@dataclass(frozen=True)
class Links:
    """Links between pages. On the server `page('runs', pipeline='x')` is `/runs?pipeline=x`; in the static
    export it is `runs.html` (the export has no query strings: filters are the server's)."""

    static: bool = False

    def page(self, name: str, **params: Any) -> str:
        if self.static:
            return "index.html" if name == "overview" else f"{name}.html"
        path = "/" if name == "overview" else f"/{name}"
        query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
        return f"{path}?{query}" if query else path

    def run(self, run_id: int) -> str:
        return f"run-{run_id}.html" if self.static else f"/runs/{run_id}"


@dataclass
class View:
    ctx: ProjectContext
    conn: Conn
    now: datetime
    links: Links
    params: Mapping[str, str] = field(default_factory=dict)
    allow_writes: bool = False  # `pgmill serve --allow-writes`: pages may offer actions (POST + CSRF token)
    csrf: str = ""  # the server's CSRF token, put in every form that POSTs
    notice: str | None = None  # the outcome of the action just taken, shown once at the top

    def param(self, name: str, default: str = "") -> str:
        return self.params.get(name, default)


@dataclass(frozen=True)
class Action:
    """A POST a page offers when the server was started with `--allow-writes`: `run(ctx, form)` does it
    (with its own connection, not the page's read-only one) and returns what to tell the user; the answer
    is then the page `page` with that notice. The route checks the CSRF token first."""

    path: str
    page: str
    run: Callable[[ProjectContext, dict[str, str]], str]
