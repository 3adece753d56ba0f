"""GET /metrics: pgmill's tables in the Prometheus exposition format, read at scrape time."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from pgmill.errors import PgmillError
from pgmill.observe.metrics import Connect, registry_for


def routes(connect: Connect, project_tables: Sequence[str] = ()) -> list[Route]:
    registry = registry_for(connect, project_tables)

    def metrics(request: Request) -> Response:  # sync: Starlette runs it in its thread pool
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        try:
            body = encoder(registry)
        except (PgmillError, psycopg.Error) as exc:
            return PlainTextResponse(f"pgmill cannot read its tables: {str(exc).strip()}\n", status_code=503)
        return Response(body, media_type=content_type)

    return [Route("/metrics", metrics, methods=["GET"])]
