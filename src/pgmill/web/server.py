"""Run an ASGI app with uvicorn in a background thread (`pgmill serve`), and stop it cleanly."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from starlette.applications import Starlette

from pgmill.errors import ConfigError, PgmillError
from pgmill.httpauth import is_loopback

START_TIMEOUT_S = 10.0


def serve_http(app: Starlette, host: str, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    """Listen on host:port (port 0: any free port, see `bound_port`) and serve `app` until `stop_http`."""
    built_for = getattr(app.state, "bound_host", None)
    if built_for is not None and is_loopback(built_for) != is_loopback(host):
        raise ConfigError(f"the app was built for {built_for} (create_app(host=...)) but would listen on {host}: "
                          "its token and Host rules depend on the address, so build it for the one it serves")
    sock = _bind(host, port)  # here, so a port in use is an error in the caller's thread, not a dead thread
    config = uvicorn.Config(app, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="pgmill-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if server.should_exit or not thread.is_alive() or time.monotonic() > deadline:  # startup gave up
            stop_http(server, thread)
            sock.close()
            raise PgmillError(f"the HTTP server on {host}:{port} did not start")
        time.sleep(0.01)
    return server, thread


def stop_http(server: uvicorn.Server, thread: threading.Thread, timeout: float = 10.0) -> None:
    """Ask the server to finish the requests in flight and stop; wait for its thread."""
    server.should_exit = True  # uvicorn's main loop looks at it every tick
    thread.join(timeout)


def bound_port(server: uvicorn.Server) -> int:
    """The port a started server listens on (the one the OS chose, for port 0)."""
    return int(server.servers[0].sockets[0].getsockname()[1])


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock
