"""A JSON API on 127.0.0.1 for tests and benchmarks: paginated, slow, flaky and guarded on demand.

    with FakeApi(make_records(500), style="cursor", failure_rate=0.1) as api:
        source = api.source(records_path="data")   # the pgmill.yaml `source:` block for it

One server serves one dataset in one pagination style (page, offset, cursor, link, none) at `api.url`.
It can wait per page (`delay_s`), fail a share of requests at random (`failure_rate` over
`failure_kinds`: 429 and 503 with Retry-After, 500, connection resets before the answer, bodies cut
short), fail scripted requests (`fail_next`), go down after a number of pages (`outage_after`), demand a
bearer token, and filter records newer than a `since` parameter. Everything it served is in
`api.seen`, and `api.max_in_flight` says how many requests it ever answered at once.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import socket
import struct
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

FAILURE_KINDS = ("429", "503", "500", "reset", "truncate")


def make_records(n: int, start: int = 1, updated_from: datetime | None = None) -> list[dict[str, Any]]:
    """Order-like records with nested values, numbers with decimals and timestamps one minute apart."""
    t0 = updated_from or datetime(2024, 1, 1)
    out = []
    for i in range(start, start + n):
        out.append({
            "id": i,
            "customer": {"id": 100 + i % 7, "name": f"customer {i % 7}"},
            "status": "FOP"[i % 3],
            "total": round(i * 1.25, 2),
            "tags": ["a", "b", "c"][: i % 4],
            "updated_at": (t0 + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        })
    return out


@dataclass
class Seen:
    """One request as the server received it, and what it answered (a status, "reset" or "truncate")."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    outcome: str


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class FakeApi:
    records: list[Any]
    style: str = "page"  # page | offset | cursor | link | none
    page_size: int = 10  # when the client does not ask for a size
    max_page_size: int = 1000
    delay_s: float = 0.0  # per request, before answering
    failure_rate: float = 0.0
    failure_kinds: tuple[str, ...] = ("429", "503", "reset")
    retry_after: str | None = "0"  # sent with 429 and 503
    token: str | None = None  # required as "Bearer <token>" in `auth_header`
    auth_header: str = "Authorization"
    records_key: str | None = "data"  # None: the body is the list itself (not for cursor style)
    cursor_key: str = "next_cursor"  # dotted path of the next cursor in the body
    page_param: str = "page"
    size_param: str = "per_page"
    offset_param: str = "offset"
    cursor_param: str = "cursor"
    first_page: int = 1
    since_param: str | None = None  # filter: records whose `since_field` is later than the value
    since_field: str = "updated_at"
    relative_links: bool = False
    link_base: str | None = None  # where next links point (another server: another origin); default: here
    seed: int = 0
    path: str = "/items"

    seen: list[Seen] = field(default_factory=list, init=False)
    max_in_flight: int = field(default=0, init=False)
    pages_served: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(self.seed)
        self._scripted: deque[str] = deque()
        self._in_flight = 0
        self._outage_after: int | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ control

    def start(self) -> FakeApi:
        handler = type("Handler", (_Handler,), {"api": self})
        server = _Server(("127.0.0.1", 0), handler)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base(self) -> str:
        assert self._server is not None, "start the server first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return self.base + self.path

    def fail_next(self, kind: str, times: int = 1) -> None:
        """The next `times` requests fail as `kind` (one of FAILURE_KINDS, or any HTTP status)."""
        with self._lock:
            self._scripted.extend([kind] * times)

    def outage_after(self, pages: int | None) -> None:
        """Answer 503 to everything once `pages` pages have been served; None ends the outage."""
        with self._lock:
            self._outage_after = pages

    def source(self, concurrency: int = 1, pagination: dict[str, Any] | None = None,
               **overrides: Any) -> dict[str, Any]:
        """The pgmill `source:` block that reads this API; `overrides` are source keys, `pagination`
        overrides keys of its pagination block."""
        pag: dict[str, Any] = {"style": self.style}
        if self.style in ("page", "offset"):
            pag["size"] = self.page_size
        if self.style == "page" and self.first_page != 1:
            pag["start"] = self.first_page
        if self.style == "cursor":
            pag["cursor_path"] = self.cursor_key
        if concurrency != 1:
            pag["concurrency"] = concurrency
        pag.update(pagination or {})
        src: dict[str, Any] = {"kind": "http", "url": self.url}
        if self.records_key:
            src["records_path"] = self.records_key
        src.update(overrides)
        src["pagination"] = pag
        return src

    def requests_for(self, outcome: str = "200") -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.outcome == outcome]

    # ------------------------------------------------------------ answers

    def _failure(self) -> str | None:
        with self._lock:
            if self._scripted:
                return self._scripted.popleft()
            if self._outage_after is not None and self.pages_served >= self._outage_after:
                return "503"
            if self.failure_rate and self._rng.random() < self.failure_rate:
                return self._rng.choice(self.failure_kinds)
        return None

    def _visible(self, query: dict[str, str]) -> list[Any]:
        if self.since_param and query.get(self.since_param):
            since = _when(query[self.since_param])
            return [r for r in self.records if _when(r[self.since_field]) > since]
        return self.records

    def _size(self, query: dict[str, str]) -> int:
        return min(self.max_page_size, int(query.get(self.size_param, self.page_size)))

    def _wrap(self, items: list[Any], cursor: str | None = None) -> Any:
        if self.records_key is None:
            return items
        body: dict[str, Any] = {self.records_key: items, "count": len(items)}
        if self.style == "cursor":
            node = body
            *parents, leaf = self.cursor_key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = cursor
        return body

    def page(self, query: dict[str, str]) -> tuple[Any, dict[str, str]]:
        """Body and extra headers of a successful answer to `query`."""
        rows = self._visible(query)
        size = self._size(query)
        headers: dict[str, str] = {}
        if self.style == "none":
            return self._wrap(rows), headers
        if self.style == "page":
            p = int(query.get(self.page_param, self.first_page))
            lo = (p - self.first_page) * size
            return self._wrap(rows[max(0, lo):max(0, lo + size)]), headers
        if self.style == "offset":
            lo = int(query.get(self.offset_param, 0))
            return self._wrap(rows[lo:lo + size]), headers
        if self.style == "cursor":
            token = query.get(self.cursor_param)
            lo = int(base64.urlsafe_b64decode(token.encode()).decode()[1:]) if token else 0
            hi = lo + size
            nxt = base64.urlsafe_b64encode(f"o{hi}".encode()).decode() if hi < len(rows) else None
            return self._wrap(rows[lo:hi], nxt), headers
        if self.style == "link":
            p = int(query.get(self.page_param, 1))
            lo = (p - 1) * size
            if lo + size < len(rows):
                nq = dict(query)
                nq.update({self.page_param: str(p + 1), self.size_param: str(size)})
                target = f"{self.path}?{urlencode(nq)}"
                if self.link_base is not None:
                    target = self.link_base + target
                elif not self.relative_links:
                    target = self.base + target
                headers["Link"] = f'<{target}>; rel="next", <{self.base}{self.path}>; rel="first"'
            return self._wrap(rows[lo:lo + size]), headers
        raise ValueError(f"unknown style {self.style!r}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # many clients connecting at once must not overflow the accept queue (a dropped SYN costs a second)
    request_queue_size = 256


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body leave in one segment: split writes meet delayed ACKs and cost 40 ms a request
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    api: FakeApi

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the tests read `seen`, not a request log on stderr."""

    def do_GET(self) -> None:
        api = self.api
        with api._lock:
            api._in_flight += 1
            api.max_in_flight = max(api.max_in_flight, api._in_flight)
        try:
            self._answer(api)
        finally:
            with api._lock:
                api._in_flight -= 1

    def _answer(self, api: FakeApi) -> None:
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in self.headers.items()}

        def note(outcome: str) -> None:
            with api._lock:
                api.seen.append(Seen(parts.path, query, headers, outcome))

        if api.delay_s:
            threading.Event().wait(api.delay_s)
        if parts.path != api.path:
            note("404")
            return self._send(404, {"error": f"no such path {parts.path}"})
        if api.token is not None and headers.get(api.auth_header.lower()) != f"Bearer {api.token}":
            note("401")
            return self._send(401, {"error": "missing or wrong token"})
        failure = api._failure()
        if failure == "reset":
            note("reset")
            return self._reset()
        try:
            body, extra = api.page(query)
        except (ValueError, KeyError) as exc:
            note("400")
            return self._send(400, {"error": f"bad query: {exc}"})
        if failure == "truncate":
            note("truncate")
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            return self._reset()
        if failure is not None:
            note(failure)
            status = int(failure)
            retry = {"Retry-After": api.retry_after} if api.retry_after is not None and status in (429, 503) else {}
            return self._send(status, {"error": f"injected {status}"}, retry)
        with api._lock:
            api.pages_served += 1
        note("200")
        self._send(200, body, extra)

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _reset(self) -> None:
        """Drop the connection with a TCP reset, as a crashing proxy or server does."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
