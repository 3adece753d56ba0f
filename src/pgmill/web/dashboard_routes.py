"""The dashboard's routes: GET for every page (read-only sessions), POST for the actions a server started
with `--allow-writes` offers, each behind the server's CSRF token. Pages hold no logic: pgmill.web.pages."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from html import escape

import psycopg
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from pgmill.errors import PgmillError
from pgmill.web.pages import ACTIONS, PAGES, render_run
from pgmill.web.reading import Reader
from pgmill.web.view import Action, Links, PageNotFound, View

#: what every page answers with: no caching, no framing, no scripts or requests to other sites
HEADERS = {
    "cache-control": "no-store",
    "content-security-policy": ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def routes(reader: Reader, *, allow_writes: bool, csrf: str, actions: tuple[Action, ...] = ACTIONS) -> list[Route]:
    links = Links(static=False)
    renderers: dict[str, Callable[[View], str]] = {p.name: p.render for p in PAGES}

    def respond(request: Request, draw: Callable[[View], str], notice: str | None = None) -> Response:
        try:
            with reader.session() as conn:
                now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
                view = View(reader.ctx, conn, now, links, dict(request.query_params), allow_writes, csrf, notice)
                body = draw(view)
        except PageNotFound as exc:
            return HTMLResponse(_problem("Not found", str(exc)), status_code=404, headers=HEADERS)
        except (PgmillError, psycopg.Error) as exc:
            return HTMLResponse(_problem("pgmill cannot read its tables", str(exc).strip()), status_code=503,
                                headers=HEADERS)
        return HTMLResponse(body, headers=HEADERS)

    def page_route(name: str) -> Callable[[Request], Response]:
        def handler(request: Request) -> Response:  # sync: Starlette runs it in its thread pool
            return respond(request, renderers[name])
        return handler

    def run_page(request: Request) -> Response:
        run_id = int(request.path_params["run_id"])
        return respond(request, lambda view: render_run(view, run_id))

    def action_route(action: Action) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            if not allow_writes:
                return HTMLResponse(_problem("Read-only", "this server was started without --allow-writes"),
                                    status_code=403, headers=HEADERS)
            form = {k: str(v) for k, v in (await request.form()).items()}
            if not hmac.compare_digest(form.get("csrf", "").encode(), csrf.encode()):
                return HTMLResponse(_problem("Refused", "missing or wrong CSRF token: reload the page and retry"),
                                    status_code=403, headers=HEADERS)
            def act() -> Response:
                try:
                    notice = action.run(reader.ctx, form)
                except PgmillError as exc:
                    notice = f"failed: {exc}"
                return respond(request, renderers[action.page], notice)

            return await run_in_threadpool(act)
        return handler

    out = [Route("/" if p.name == "overview" else f"/{p.name}", page_route(p.name), methods=["GET"]) for p in PAGES]
    out.append(Route("/runs/{run_id:int}", run_page, methods=["GET"]))
    out.extend(Route(a.path, action_route(a), methods=["POST"]) for a in actions)
    return out


def _problem(title: str, detail: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)} · pgmill</title></head>"
            f"<body><h1>{escape(title)}</h1><p>{escape(detail)}</p><p><a href=\"/\">Overview</a></p>"
            f"<p><small>{datetime.now(UTC):%Y-%m-%d %H:%M:%SZ}</small></p></body></html>")
