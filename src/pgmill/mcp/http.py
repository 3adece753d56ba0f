"""Streamable HTTP for the MCP server: loopback by default, a bearer token always, browser origins checked.

The rules (and the guard that applies them) are pgmill.httpauth's, shared with `pgmill serve`; here the
token is always required, and the SDK's own Host check stops DNS rebinding too.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp

from pgmill import httpauth
from pgmill.httpauth import is_loopback, origin_allowed, parse_address

__all__ = ["PATH", "TOKEN_ENV", "http_app", "origin_allowed", "parse_address", "serve", "token_from_env"]

TOKEN_ENV = "PGMILL_MCP_TOKEN"
PATH = "/mcp"


def token_from_env() -> str:
    return httpauth.token_from_env(TOKEN_ENV, "refusing to serve MCP over HTTP without a bearer token")


def http_app(server: MCPServer, host: str, token: str, origins: Iterable[str] = ()) -> ASGIApp:
    origins = tuple(origins)
    if is_loopback(host):
        local = [f"{scheme}://{name}{port}" for scheme in ("http", "https")
                 for name in ("127.0.0.1", "localhost", "[::1]") for port in ("", ":*")]
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1", "localhost", "[::1]", "127.0.0.1:*", "localhost:*", "[::1]:*"],
            allowed_origins=[*local, *origins],
        )
    else:
        # bound to a routable address on purpose: Host names are the operator's; Origin and token still hold
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    inner = server.streamable_http_app(streamable_http_path=PATH, transport_security=security, host=host)
    return httpauth.Guard(inner, token, origins, local_host_only=is_loopback(host))


def serve(server: MCPServer, host: str, port: int, origins: Iterable[str] = ()) -> None:
    """Serve until interrupted; refuses to start without the token."""
    import anyio
    import uvicorn

    app = http_app(server, host, token_from_env(), origins)
    if not is_loopback(host):
        print(f"warning: serving on {host}, reachable from other machines; the token is all that protects it",
              file=sys.stderr)
    print(f"pgmill MCP server on http://{host}:{port}{PATH} (bearer token from {TOKEN_ENV})", file=sys.stderr)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    anyio.run(uvicorn.Server(config).serve)
