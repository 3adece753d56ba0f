"""A TCP proxy in front of the test server's Unix socket that drops connections, for fault tests.

    with FaultProxy(socket_file, drop_fraction=0.1, max_bytes=100_000, seed=7) as proxy:
        url = proxy.url(db_url)   # the same database, reached through 127.0.0.1:<ephemeral port>

Each accepted connection is, with probability `drop_fraction`, doomed: after a random number of bytes
(uniform in 0..max_bytes, counted over both directions after the startup packet) both sides are closed
abruptly (a TCP reset towards the client), as when a network path or a pooler dies mid-stream. The
proxy reads the startup packet itself, so it knows each connection's `application_name` and `user`;
`spare` (a predicate on those parameters) exempts connections from random drops, `doom` replaces the
random choice with a script (connection number from 0, parameters -> byte budget or None), and
`kill(pred)` drops live connections on demand (`client_only=True`: only towards the client, leaving the
server's session open until the proxy stops, as a NAT or pooler that forgets a flow does). `latency_s`
holds the server's first answer to each client message that long, as a round trip to a distant server
would (the benchmarks' remote PostgreSQL source). SSL and GSS encryption requests are answered "no".
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

_SSL_REQUEST = 80877103
_GSS_REQUEST = 80877104
_CANCEL_REQUEST = 80877102

Params = dict[str, str]


@dataclass
class Conn:
    """One proxied connection."""

    client: socket.socket
    number: int = 0  # in the order accepted, from 0
    params: Params = field(default_factory=dict)
    budget: int | None = None  # bytes before it is dropped; None: never (randomly)
    moved: int = 0
    dropped: bool = False
    orphaned: bool = False  # dropped towards the client only: the server's session stays open
    server: socket.socket | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    awaiting: bool = False  # a client message went out and no answer came back yet (latency_s)

    @property
    def application_name(self) -> str:
        return self.params.get("application_name", "")


def socket_file(db_url: str) -> Path:
    """The Unix socket file of a `postgresql://...?host=/socket/dir` URL."""
    info = conninfo_to_dict(db_url)
    return Path(str(info["host"])) / f".s.PGSQL.{info.get('port') or 5432}"


class FaultProxy:
    def __init__(self, target: Path | str, *, drop_fraction: float = 0.0, max_bytes: int = 100_000,
                 seed: int = 0, spare: Callable[[Params], bool] | None = None,
                 doom: Callable[[int, Params], int | None] | None = None, latency_s: float = 0.0) -> None:
        self.target = str(target)
        self.latency_s = latency_s
        self.drop_fraction = drop_fraction
        self.max_bytes = max_bytes
        self.spare = spare
        self.doom = doom
        self.rng = random.Random(seed)
        self.connections: list[Conn] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()

    # ------------------------------------------------------------ control

    def start(self) -> FaultProxy:
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind(("127.0.0.1", 0))
        lst.listen(64)
        self._listener = lst
        threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            conns = list(self.connections)
        for c in conns:
            c.orphaned = False
            self._drop(c, count=False)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._listener is not None, "start the proxy first"
        return int(self._listener.getsockname()[1])

    def url(self, db_url: str, **override: str) -> str:
        """`db_url`'s database and user, reached through the proxy."""
        info = conninfo_to_dict(db_url)
        user = override.get("user", str(info.get("user") or "postgres"))
        dbname = override.get("dbname", str(info.get("dbname") or "postgres"))
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}?sslmode=disable"

    def kill(self, pred: Callable[[Conn], bool], *, client_only: bool = False) -> int:
        """Drop every live connection for which `pred` holds; how many were dropped. `client_only`: reset
        only the client's side; the server's session lives on (until the proxy stops)."""
        with self._lock:
            conns = [c for c in self.connections if not c.dropped and c.server is not None and pred(c)]
        for c in conns:
            c.orphaned = client_only
            self._drop(c)
        return len(conns)

    @property
    def dropped(self) -> list[Conn]:
        with self._lock:
            return [c for c in self.connections if c.dropped]

    # ------------------------------------------------------------ plumbing

    def _accept_loop(self) -> None:
        lst = self._listener
        assert lst is not None
        while not self._stopping.is_set():
            try:
                client, _ = lst.accept()
            except OSError:
                return
            with self._lock:
                conn = Conn(client, len(self.connections))
                self.connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), name="fault-proxy-conn", daemon=True).start()

    def _serve(self, conn: Conn) -> None:
        try:
            startup = self._startup(conn)
            if startup is None:
                return self._drop(conn, count=False)
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.connect(self.target)
            server.sendall(startup)
            if self.doom is not None:
                conn.budget = self.doom(conn.number, conn.params)
            else:
                with self._lock:
                    doomed = self.rng.random() < self.drop_fraction
                    budget = self.rng.randint(0, self.max_bytes)
                if doomed and not (self.spare and self.spare(conn.params)):
                    conn.budget = budget
            conn.server = server
        except OSError:
            return self._drop(conn, count=False)
        threading.Thread(target=self._pump, args=(conn, server, conn.client), daemon=True).start()
        self._pump(conn, conn.client, server)

    def _startup(self, conn: Conn) -> bytes | None:
        """Read the client's startup packet (answering SSL/GSS requests with 'N'); parse its parameters."""
        while True:
            head = _recv_exact(conn.client, 8)
            if head is None:
                return None
            length, code = struct.unpack("!ii", head)
            body = _recv_exact(conn.client, length - 8) if length > 8 else b""
            if body is None:
                return None
            if code in (_SSL_REQUEST, _GSS_REQUEST):
                conn.client.sendall(b"N")
                continue
            if code == _CANCEL_REQUEST:
                return head + body
            parts = body.split(b"\x00")
            conn.params = {parts[i].decode(): parts[i + 1].decode() for i in range(0, len(parts) - 1, 2) if parts[i]}
            return head + body

    def _pump(self, conn: Conn, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):  # a side went away: end both below
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with conn.lock:
                    if conn.dropped:
                        return
                    conn.moved += len(data)
                    over = conn.budget is not None and conn.moved > conn.budget
                if over:
                    # forward a part of the chunk, so that the drop lands mid-message
                    keep = max(0, len(data) - (conn.moved - (conn.budget or 0)))
                    if keep:
                        dst.sendall(data[:keep])
                    self._drop(conn)
                    return
                if self.latency_s:
                    self._delay(conn, to_server=src is conn.client)
                dst.sendall(data)
        self._close(conn, reset=False)  # orderly end of one side (or a failed write): end both

    def _delay(self, conn: Conn, *, to_server: bool) -> None:
        """A request on its way marks the connection as waiting; the first answer after it waits `latency_s`."""
        if to_server:
            conn.awaiting = True
        elif conn.awaiting:
            conn.awaiting = False
            time.sleep(self.latency_s)

    def _drop(self, conn: Conn, count: bool = True) -> None:
        """Drop the connection abruptly; `count`: as a fault (else a clean-up)."""
        with conn.lock:
            if conn.dropped and count:
                return
            conn.dropped = conn.dropped or count
        self._close(conn, reset=True)

    @staticmethod
    def _close(conn: Conn, reset: bool) -> None:
        if reset:  # RST towards the client
            with contextlib.suppress(OSError):
                conn.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        for s in (conn.client, conn.server):
            if s is None or (s is conn.server and conn.orphaned):
                continue
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()


def _recv_exact(s: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        try:
            chunk = s.recv(n - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return buf


__all__ = ["Conn", "FaultProxy", "socket_file"]
