"""Streamable HTTP for the MCP server: loopback by default, a bearer token always, browser origins checked.

The token comes from the environment (never a flag: flags show up in `ps` and shell history). A web page
in the user's browser can reach a localhost port, so a request carrying an Origin header is refused unless
that origin is localhost or was allowed explicitly; DNS rebinding is stopped by the SDK's Host check.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import sys
from collections.abc import Iterable
from urllib.parse import urlsplit

from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from pgmill.errors import ConfigError

TOKEN_ENV = "PGMILL_MCP_TOKEN"
MIN_TOKEN_CHARS = 16
DEFAULT_HOST = "127.0.0.1"
PATH = "/mcp"
_LOCAL_NAMES = {"localhost", "127.0.0.1", "::1"}


def parse_address(text: str) -> tuple[str, int]:
    """'PORT', 'HOST:PORT' or '[IPv6]:PORT' -> (host, port); the host defaults to 127.0.0.1."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = DEFAULT_HOST, text
    host = host.strip("[]") or DEFAULT_HOST
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--http {text!r}: expected HOST:PORT or PORT, e.g. 127.0.0.1:8765")
    return host, int(port)


def token_from_env() -> str:
    token = os.environ.get(TOKEN_ENV, "")
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"refusing to serve MCP over HTTP without a bearer token: set {TOKEN_ENV} to a secret of at least "
            f"{MIN_TOKEN_CHARS} characters (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'); "
            "clients send it as 'Authorization: Bearer <token>'"
        )
    return token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_allowed(origin: str, extra: Iterable[str] = ()) -> bool:
    """A localhost origin (any port, http or https), or one of `extra` exactly."""
    if origin.rstrip("/").lower() in {e.rstrip("/").lower() for e in extra}:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and (parts.hostname or "") in _LOCAL_NAMES


class Guard:
    """ASGI middleware in front of every route: the Origin check, then the bearer token."""

    def __init__(self, app: ASGIApp, token: str, origins: Iterable[str]) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.origins = tuple(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan: starts the SDK's session manager
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        origin = headers.get(b"origin")
        if origin is not None and not origin_allowed(origin.decode("latin-1"), self.origins):
            await _deny(send, 403, "origin not allowed", {})
            return
        given = headers.get(b"authorization", b"")
        if not hmac.compare_digest(given, self.expected):  # constant time: no timing oracle on the token
            await _deny(send, 401, "missing or wrong bearer token", {b"www-authenticate": b'Bearer realm="pgmill"'})
            return
        await self.app(scope, receive, send)


async def _deny(send: Send, status: int, message: str, extra: dict[bytes, bytes]) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               *extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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
    return Guard(inner, token, origins)


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
