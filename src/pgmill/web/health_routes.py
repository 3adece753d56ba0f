"""GET /healthz: 200 when the database answers, the scheduler ticks and alerts get through; 503 naming
what is wrong otherwise."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pgmill.observe.metrics import Connect
from pgmill.observe.service_health import check_health


def routes(connect: Connect, instance: Callable[[], str | None]) -> list[Route]:
    def healthz(request: Request) -> JSONResponse:  # sync: Starlette runs it in its thread pool
        report = check_health(connect, instance=instance())
        return JSONResponse(report.as_dict(), status_code=200 if report.ok else 503,
                            headers={"cache-control": "no-store"})

    return [Route("/healthz", healthz, methods=["GET"])]
