"""Who may talk to pgmill's HTTP servers (`pgmill mcp --http`, `pgmill serve`): one set of rules, one guard.

- Loopback by default. Bound beyond loopback, a bearer token is required: a port on a routable address is
  reachable from other machines, and the token is then all that protects it.
- A web page in the user's browser can reach a localhost port, so a request carrying an Origin header is
  refused unless that origin is localhost or was allowed explicitly.
- Bound to loopback, the Host header must name the loopback too: a page on evil.example whose DNS answer
  changes to 127.0.0.1 (DNS rebinding) sends `Host: evil.example` and is refused.
- The token is compared in constant time, and comes from the environment (flags show up in `ps`).
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import os
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from pgmill.errors import ConfigError

MIN_TOKEN_CHARS = 16
DEFAULT_HOST = "127.0.0.1"
_LOCAL_NAMES = {"localhost", "127.0.0.1", "::1"}
_TOKEN_HINT = ("e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'; "
               "clients send it as 'Authorization: Bearer <token>'")


def parse_address(text: str, flag: str = "--http") -> tuple[str, int]:
    """'PORT', 'HOST:PORT' or '[IPv6]:PORT' -> (host, port); the host defaults to 127.0.0.1."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = DEFAULT_HOST, text
    host = host.strip("[]") or DEFAULT_HOST
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{flag} {text!r}: expected HOST:PORT or PORT, e.g. 127.0.0.1:8765")
    return host, int(port)


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


def host_is_local(host_header: str) -> bool:
    """A Host header naming the loopback ('localhost:8080', '127.0.0.1', '[::1]:9000')."""
    return (urlsplit(f"//{host_header}").hostname or "") in _LOCAL_NAMES


def token_from_env(env: str, refusal: str) -> str:
    """The bearer token in `env`; ConfigError starting with `refusal` when it is missing or too short."""
    token = os.environ.get(env, "")
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"{refusal}: set {env} to a secret of at least {MIN_TOKEN_CHARS} characters "
                          f"({_TOKEN_HINT})")
    return token


def check_exposure(host: str, token: str | None) -> None:
    """Refuse a bind beyond loopback without a token, and a token too short to be a secret."""
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"the bearer token must be at least {MIN_TOKEN_CHARS} characters ({_TOKEN_HINT})")
    if token is None and not is_loopback(host):
        raise ConfigError(f"refusing to serve on {host} without a bearer token: an address beyond loopback is "
                          f"reachable from other machines ({_TOKEN_HINT})")


class Guard:
    """ASGI middleware in front of every route: the Origin check, the Host check (when bound to loopback),
    then the bearer token (when there is one).

    With `basic`, a browser may give the token as the password of HTTP Basic authentication (any user name):
    a browser cannot add a bearer header to the pages it navigates, but it asks for a password when told
    `WWW-Authenticate: Basic`. The token is compared in constant time either way."""

    def __init__(self, app: ASGIApp, token: str | None, origins: Iterable[str] = (), *,
                 local_host_only: bool = False, basic: bool = False) -> None:
        self.app = app
        self.token = token
        self.expected = f"Bearer {token}".encode() if token is not None else None
        self.origins = tuple(origins)
        self.local_host_only = local_host_only
        self.basic = basic

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan (the MCP SDK starts its session manager there)
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        origin = headers.get(b"origin")
        if origin is not None and not origin_allowed(origin.decode("latin-1"), self.origins):
            await _deny(send, 403, "origin not allowed", [])
            return
        if self.local_host_only and not host_is_local(headers.get(b"host", b"").decode("latin-1")):
            await _deny(send, 421, "host not allowed: this server answers to localhost only", [])
            return
        if self.expected is not None and not self._authorized(headers.get(b"authorization", b"")):
            challenges = [(b"www-authenticate", b'Bearer realm="pgmill"')]
            if self.basic:  # a browser prompts for the Basic one (it knows no Bearer)
                challenges.append((b"www-authenticate", b'Basic realm="pgmill", charset="UTF-8"'))
            await _deny(send, 401, "missing or wrong bearer token", challenges)
            return
        await self.app(scope, receive, send)

    def _authorized(self, given: bytes) -> bool:
        assert self.expected is not None and self.token is not None
        if hmac.compare_digest(given, self.expected):  # constant time: no timing oracle on the token
            return True
        if not (self.basic and given[:6].lower() == b"basic "):
            return False
        try:
            _user, _, password = base64.b64decode(given[6:].strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(password.encode(), self.token.encode())


async def _deny(send: Send, status: int, message: str, extra: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
