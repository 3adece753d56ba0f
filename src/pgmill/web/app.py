"""The ASGI app of `pgmill serve`: the shared guard (pgmill.httpauth) in front of the routes of each concern:
the dashboard's pages, /metrics and /healthz."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Protocol

from starlette.applications import Starlette
from starlette.middleware import Middleware

from pgmill.httpauth import DEFAULT_HOST, Guard, check_exposure, is_loopback
from pgmill.observe.metrics import Conn
from pgmill.project import ProjectContext
from pgmill.web import dashboard_routes, health_routes, metrics_routes
from pgmill.web.reading import Reader


class ServiceState(Protocol):
    """The scheduler running in this process (pgmill.schedule.service.Service fits): /healthz then requires
    that instance to be ticking, rather than looking at the newest one."""

    @property
    def instance(self) -> str: ...


def create_app(ctx: ProjectContext, *, token: str | None, allow_origins: Iterable[str] = (),
               service_state: ServiceState | None = None, host: str = DEFAULT_HOST,
               allow_writes: bool = False) -> Starlette:
    """The app for a server bound to `host`: beyond loopback it refuses to exist without a token; on loopback
    it answers only to localhost Host names. Browser origins other than localhost need `allow_origins`.
    The dashboard only reads unless `allow_writes` (then its actions POST with a CSRF token)."""
    check_exposure(host, token)
    target = ctx.target

    def connect() -> Conn:  # one connection per request: autocommit, reads only, named for pg_stat_activity
        return target.connect(autocommit=True, application_name="pgmill serve web")

    def instance() -> str | None:
        return service_state.instance if service_state is not None else None

    guard = Middleware(Guard, token=token, origins=tuple(allow_origins), local_host_only=is_loopback(host),
                       basic=True)
    pages = dashboard_routes.routes(Reader(ctx), allow_writes=allow_writes, csrf=secrets.token_urlsafe(32))
    app = Starlette(routes=[*pages, *metrics_routes.routes(connect, ctx.tables), *health_routes.routes(connect, instance)],
                    middleware=[guard])
    app.state.bound_host = host
    return app
