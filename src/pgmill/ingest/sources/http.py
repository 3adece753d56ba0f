"""HTTP JSON APIs: paginated GETs turned into batches that resume at the last committed record.

A load is a *sweep*: from the first page to the page the API says is the last. Every batch carries where
the sweep stands after it (the page, offset, cursor or next URL still to read, how many of that page's
records are already in, how many records came before), committed with the batch's rows. A sweep cut short
by a crash or a failed attempt resumes there; a finished sweep makes the next run start a new one from the
first page, narrowed by `cursor_param` to records newer than the newest loaded. The filter value a sweep
started with stays with it until it ends, so a resumed sweep asks for the same pages it was reading.

Records are numbered from 1 within the sweep (`GET https://host/path:record 1234`): with page or offset
pagination the number names the page and item directly, and it is the same number after a resume.

Each request is retried on 429, 5xx, timeouts and broken connections, waiting as the API asks through
Retry-After or with jittered exponential backoff; when the attempts run out a TransientError lets the
runner retry the whole stream from the last checkpoint. Other answers (401, 403, 404, ...) fail at once.
The secret header is sent only to the origin the project names, never followed through a redirect, and
neither it nor query values that look like keys appear in errors, logs or record locations.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import threading
import time
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
import pyarrow as pa

from pgmill.config.spec import HttpSource
from pgmill.errors import SourceError, TransientError
from pgmill.ingest.sources.base import BadRecord, RawBatch, SourceState, Stream, StreamRequest
from pgmill.redact import HIDDEN, redact_text, redact_url
from pgmill.retry import RetryPolicy

log = logging.getLogger(__name__)

# Per-request retries; a request that still fails hands over to the runner's retries of the whole stream.
ATTEMPTS = 5
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 8.0
# A Retry-After longer than this is not slept through inside one request: the runner's backoff decides.
MAX_RETRY_AFTER_S = 60.0
_ERROR_BODY_CHARS = 300
_INT64 = (-(2**63), 2**63 - 1)
_RETRYABLE = {408, 425, 429}
_PERMANENT_5XX = {501, 505}

Locator = int | str | None  # page number, offset, cursor or next URL; None: the first request


# ---------------------------------------------------------------- redaction


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, parts.hostname, parts.port or {"http": 80, "https": 443}.get(scheme)


class _Scrubber:
    """Removes the secret (and its token, e.g. after "Bearer ") from any text that leaves the source."""

    def __init__(self, secret: str | None) -> None:
        words = [secret] if secret else []
        if secret:
            words += [w for w in secret.split() if len(w) >= 6]
        self.words = sorted(set(words), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for w in self.words:
            text = text.replace(w, HIDDEN)
        return text


# ---------------------------------------------------------------- responses


def _retry_after(value: str | None) -> float | None:
    """Seconds the API asks to wait (Retry-After as seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    v = value.strip()
    try:
        secs = float(v)
    except ValueError:
        try:
            when = parsedate_to_datetime(v)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        secs = (when - datetime.now(UTC)).total_seconds()
    if math.isnan(secs):
        return None
    return max(0.0, secs)


def _dig(body: Any, path: str) -> tuple[bool, Any]:
    """(found, value) at a dotted path; numeric parts index lists."""
    node = body
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def _json_default(o: Any) -> Any:
    if isinstance(o, Decimal):
        return float(o)
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def _json_text(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def _scalar_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict | list):
        return _json_text(v)
    return str(v)


def _column(values: list[Any]) -> Any:
    """One Arrow column from JSON values: native type when they agree, exact text otherwise."""
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return pa.nulls(len(values), pa.string())
    if kinds & {dict, list}:
        # once a column holds JSON documents, its scalars are documents too (a string keeps its quotes)
        return pa.array([None if v is None else _json_text(v) for v in values], pa.string())
    if kinds == {bool}:
        return pa.array(values, pa.bool_())
    if kinds == {int} and all(_INT64[0] <= v <= _INT64[1] for v in values if v is not None):
        return pa.array(values, pa.int64())
    if kinds == {str}:
        return pa.array(values, pa.string())
    # decimals (parsed exactly), mixed kinds and integers beyond int64 travel as their text
    return pa.array([None if v is None else _scalar_text(v) for v in values], pa.string())


def records_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Arrow table from JSON objects: one column per key (first-seen order), null where a key is missing."""
    names: dict[str, None] = {}
    for r in rows:
        for k in r:
            names.setdefault(k, None)
    return pa.table({n: _column([r.get(n) for r in rows]) for n in names})


@dataclass
class _Page:
    at: Locator  # what was asked for
    records: list[Any]
    nbytes: int
    last: bool
    next_at: Locator  # what to ask for next (meaningless when last)


class _Again(Exception):
    """An answer worth another request (429, 5xx, a timeout, a broken connection): what happened, and the
    wait the API asked for (Retry-After) if it did."""

    def __init__(self, shown: str, why: str, asked: float | None = None) -> None:
        super().__init__(why)
        self.shown = shown
        self.why = why
        self.asked = asked


# ---------------------------------------------------------------- the API


class _Api:
    """Requests against one HttpSource, with retries, shared rate-limit pauses and secret handling."""

    def __init__(self, spec: HttpSource, since: str | None) -> None:
        self.spec = spec
        self.pag = spec.pagination
        secret: str | None = None
        if spec.auth_env:
            secret = os.environ.get(spec.auth_env) or None
            if secret is None:
                raise SourceError(
                    f"environment variable {spec.auth_env} is not set; it holds the {spec.auth_header} header "
                    f"for {redact_url(spec.url)}"
                )
        self.secret = secret
        self.scrub = _Scrubber(secret)
        base = urlsplit(spec.url)
        self.origin = _origin(spec.url)
        host = base.netloc.rsplit("@", 1)[-1]
        self.label = self.scrub("GET " + urlunsplit((base.scheme, host, base.path, "", "")))
        self.base_params: dict[str, str] = dict(spec.params)
        if spec.cursor_param and since is not None:
            self.base_params[spec.cursor_param] = since
        self.send_size = self.pag.style in ("page", "offset") or "size" in self.pag.model_fields_set
        self.stop = threading.Event()
        self._gate_lock = threading.Lock()
        self._not_before = 0.0
        self.client = httpx.Client(
            timeout=httpx.Timeout(spec.timeout_s),
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "pgmill", **spec.headers},
            limits=httpx.Limits(max_connections=max(10, self.pag.concurrency),
                                max_keepalive_connections=max(10, self.pag.concurrency)),
        )

    def close(self) -> None:
        self.stop.set()
        self.client.close()

    # ------------------------------------------------------------ one request

    def _hold(self, seconds: float) -> None:
        with self._gate_lock:
            self._not_before = max(self._not_before, time.monotonic() + seconds)

    def _pause(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise TransientError(f"{self.label}: the read was stopped")

    def get(self, url: str, params: dict[str, str] | None) -> tuple[httpx.Response, str]:
        """The response to a GET and the request's redacted URL; retried as the module docstring says."""
        headers: dict[str, str] = {}
        if self.secret is not None and _origin(url) == self.origin:
            headers[self.spec.auth_header] = self.secret
        # read here, not at import: tests make the waits short
        policy = RetryPolicy(ATTEMPTS, RETRY_INITIAL_S, RETRY_MAX_S)

        def wait(exc: BaseException, attempt: int) -> float:
            asked = exc.asked if isinstance(exc, _Again) else None
            if asked is None:
                return policy.delay(attempt)
            return asked + random.uniform(0, RETRY_INITIAL_S / 10)

        def on_retry(exc: BaseException, attempt: int, pause: float) -> None:
            assert isinstance(exc, _Again)
            if exc.asked is not None:
                self._hold(exc.asked)  # every thread reading this API waits, not only the one that was told to
            log.warning("GET %s: %s; retry %d of %d in %.2f s", exc.shown, exc.why, attempt, ATTEMPTS - 1, pause)

        try:
            return policy.call(lambda: self._send(url, params, headers), retry_if=lambda e: isinstance(e, _Again),
                               wait=wait, on_retry=on_retry, sleep=self._pause)
        except _Again as exc:
            raise TransientError(f"GET {exc.shown}: {exc.why} (gave up after {ATTEMPTS} attempts)") from None

    def _send(self, url: str, params: dict[str, str] | None, headers: dict[str, str]) -> tuple[httpx.Response, str]:
        """One attempt of `get`: the response, or _Again for an answer worth another attempt."""
        wait_gate = self._not_before - time.monotonic()
        if wait_gate > 0:
            self._pause(wait_gate)
        try:
            request = self.client.build_request("GET", url, params=params, headers=headers)
        except httpx.InvalidURL as exc:
            raise SourceError(f"GET {self.scrub(redact_url(url))}: not a usable URL "
                              f"({self.scrub(redact_text(str(exc)))})") from None
        shown = self.scrub(redact_url(str(request.url)))
        try:
            resp = self.client.send(request)
        except httpx.TimeoutException:
            raise _Again(shown, f"no answer within {self.spec.timeout_s:g} s") from None
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
            raise SourceError(f"GET {shown}: cannot send the request ({self.scrub(redact_text(str(exc)))})") from None
        except (httpx.TransportError, httpx.DecodingError) as exc:
            why = f"connection failed ({type(exc).__name__}: {self.scrub(redact_text(str(exc))) or 'no detail'})"
            raise _Again(shown, why) from None
        status = resp.status_code
        if status < 300:
            return resp, shown
        if 300 <= status < 400:
            where = self.scrub(redact_url(resp.headers.get("location", "?")))
            raise SourceError(
                f"GET {shown}: HTTP {status} redirects to {where}; set the source's url to where it "
                "points (pgmill does not follow redirects, so credentials go only where the project says)"
            )
        if status not in _RETRYABLE and (status < 500 or status in _PERMANENT_5XX):
            raise SourceError(self._refusal(resp, shown))
        why = f"HTTP {status} {resp.reason_phrase}".rstrip()
        asked = _retry_after(resp.headers.get("retry-after"))
        if asked is not None and asked > MAX_RETRY_AFTER_S:
            raise TransientError(
                f"GET {shown}: {why}; the API asks to wait {asked:.0f} s, longer than the "
                f"{MAX_RETRY_AFTER_S:.0f} s pgmill waits within one request"
            )
        raise _Again(shown, why, asked)

    def _refusal(self, resp: httpx.Response, shown: str) -> str:
        status = resp.status_code
        parts = [f"GET {shown}: HTTP {status} {resp.reason_phrase}".rstrip()]
        if status in (401, 403):
            parts.append(f"check the credential in environment variable {self.spec.auth_env}" if self.spec.auth_env
                         else "the API wants credentials: set auth_env (and auth_header) on the source")
        elif status == 404:
            parts.append("check the source's url")
        msg = "; ".join(parts)
        text = " ".join(resp.text[:_ERROR_BODY_CHARS].split())
        return f"{msg}: {self.scrub(text)}" if text else msg

    # ------------------------------------------------------------ one page

    def _body(self, resp: httpx.Response, shown: str) -> Any:
        content = resp.content
        if not content.strip():
            return None
        try:
            return json.loads(content, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError) as exc:
            text = " ".join(resp.text[:120].split())
            raise SourceError(f"GET {shown}: the response is not JSON ({exc}): {self.scrub(text)!r}") from None

    def _records(self, body: Any, shown: str) -> list[Any]:
        path = self.spec.records_path
        if body is None:
            return []
        if path:
            found, node = _dig(body, path)
            if not found:
                keys = ", ".join(sorted(body)) if isinstance(body, dict) else type(body).__name__
                raise SourceError(f"GET {shown}: the response has no {path!r} (records_path); it has: {keys}")
            if node is None:
                return []
            if isinstance(node, list):
                return node
            return [node]
        if isinstance(body, list):
            return body
        if isinstance(body, dict):
            lists = sorted(k for k, v in body.items() if isinstance(v, list))
            if lists:
                raise SourceError(
                    f"GET {shown}: the response is an object, not a list of records; set records_path "
                    f"to the field that holds them (lists in it: {', '.join(lists)})"
                )
        return [body]

    def fetch(self, at: Locator) -> _Page:
        """One page of the sweep."""
        pag = self.pag
        params = dict(self.base_params)
        url = self.spec.url
        style = pag.style
        if style == "page":
            params[pag.page_param] = str(at)
        elif style == "offset":
            params[pag.offset_param] = str(at)
        elif style == "cursor" and at is not None:
            params[pag.cursor_param] = str(at)
        if self.send_size and style != "none":
            params[pag.size_param] = str(pag.size)
        if style == "link" and at is not None:
            url = str(at)
            params = {}  # the next link carries the whole query, filters included
        resp, shown = self.get(url, params or None)
        body = self._body(resp, shown)
        records = self._records(body, shown)
        n = len(records)
        size = len(resp.content)
        if style == "page":
            assert isinstance(at, int)
            return _Page(at, records, size, n < pag.size, at + 1)
        if style == "offset":
            assert isinstance(at, int)
            return _Page(at, records, size, n < pag.size, at + pag.size)
        if style == "cursor":
            found, nxt = _dig(body, pag.cursor_path) if body is not None else (False, None)
            if not found or nxt is None or nxt == "" or isinstance(nxt, bool) or n == 0:
                return _Page(at, records, size, True, None)
            nxt_s = str(nxt)
            if nxt_s == at:
                raise SourceError(f"GET {shown}: the API returned the same cursor ({nxt_s!r}) it was given; "
                                  "stopping instead of reading the page forever")
            return _Page(at, records, size, False, nxt_s)
        if style == "link":
            link = resp.links.get("next", {}).get("url")
            if not link:
                return _Page(at, records, size, True, None)
            nxt_url = urljoin(str(resp.url), link)
            if nxt_url == str(resp.url):
                raise SourceError(f"GET {shown}: the next link points to the same page; stopping instead of "
                                  "reading it forever")
            return _Page(at, records, size, False, nxt_url)
        return _Page(at, records, size, True, None)


# ---------------------------------------------------------------- page order


def _sequential(api: _Api, at: Locator) -> Generator[_Page, None, None]:
    while True:
        page = api.fetch(at)
        yield page
        if page.last:
            return
        at = page.next_at


def _concurrent(api: _Api, at: int, workers: int) -> Generator[_Page, None, None]:
    """Pages fetched `workers` at a time, handed over in order; pages past the last one are dropped."""
    step = 1 if api.pag.style == "page" else api.pag.size
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pgmill-http")
    pending: deque[Future[_Page]] = deque()
    nxt = at
    try:
        for _ in range(workers):
            pending.append(pool.submit(api.fetch, nxt))
            nxt += step
        while pending:
            page = pending.popleft().result()
            if page.last:
                yield page
                return
            pending.append(pool.submit(api.fetch, nxt))
            nxt += step
            yield page
    finally:
        # requests past the end may be waiting out a retry: wake them so the pool shuts down promptly
        api.stop.set()
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------- batches


def _fingerprint(spec: HttpSource) -> str:
    """Identifies what a sweep reads: a checkpoint from a differently configured source is not resumed."""
    doc = {
        "url": spec.url, "params": spec.params, "records_path": spec.records_path, "cursor_param": spec.cursor_param,
        "pagination": spec.pagination.model_dump(exclude={"concurrency"}),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _first(spec: HttpSource) -> Locator:
    style = spec.pagination.style
    if style == "page":
        return spec.pagination.start
    if style == "offset":
        return 0
    return None


@dataclass
class _Resume:
    at: Locator
    skip: int  # records of page `at` already committed
    done: int  # records of the sweep before those
    since: str | None


def _resume(spec: HttpSource, state: SourceState, sweep: str) -> _Resume:
    cp = state.checkpoint.get("http")
    if isinstance(cp, dict) and cp.get("sweep") == sweep and not cp.get("done"):
        at = cp.get("at")
        if spec.pagination.style in ("page", "offset"):
            at = int(at) if at is not None else _first(spec)
        since = cp.get("since")
        return _Resume(at, int(cp.get("skip") or 0), int(cp.get("records") or 0),
                       None if since is None else str(since))
    return _Resume(_first(spec), 0, 0, state.cursor_value if spec.cursor_param else None)


def read_http(spec: HttpSource, state: SourceState, batch_rows: int) -> Iterator[RawBatch]:
    """Batches of about `batch_rows` records, resuming the sweep the committed state describes."""
    sweep = _fingerprint(spec)
    res = _resume(spec, state, sweep)
    api = _Api(spec, res.since)
    workers = spec.pagination.concurrency
    if spec.pagination.style in ("page", "offset") and workers > 1:
        assert isinstance(res.at, int)
        pages = _concurrent(api, res.at, workers)
    else:
        pages = _sequential(api, res.at)
    try:
        yield from _batches(api, pages, res, sweep, batch_rows)
    finally:
        pages.close()
        api.close()


def _batches(api: _Api, pages: Iterator[_Page], res: _Resume, sweep: str, batch_rows: int) -> Iterator[RawBatch]:
    buf: list[Any] = []
    nbytes = 0
    done = res.done  # records before `buf`
    skip = res.skip

    def batch(at: Locator, skip_after: int, last: bool) -> RawBatch:
        nonlocal buf, nbytes, done
        cp: dict[str, Any] = {"sweep": sweep, "since": res.since, "records": done + len(buf)}
        cp.update({"done": True} if last else {"done": False, "at": at, "skip": skip_after})
        out = _raw_batch(api.label, buf, done, nbytes, {"http": cp})
        done += len(buf)
        buf, nbytes = [], 0
        return out

    for page in pages:
        items = page.records
        pos, skip = min(skip, len(items)), 0
        nbytes += page.nbytes
        ended = False
        while pos < len(items):
            take = items[pos:pos + batch_rows - len(buf)]
            buf.extend(take)
            pos += len(take)
            if len(buf) >= batch_rows:
                if pos < len(items):
                    yield batch(page.at, pos, False)
                else:
                    ended = page.last
                    yield batch(page.next_at, 0, page.last)
        if page.last:
            if not ended:
                yield batch(None, 0, True)
            return


def _raw_batch(label: str, records: list[Any], before: int, nbytes: int, checkpoint: dict[str, Any]) -> RawBatch:
    rows: list[dict[str, Any]] = []
    positions: list[int] = []
    bad: list[BadRecord] = []
    for k, rec in enumerate(records):
        number = before + k + 1
        if isinstance(rec, dict) and rec:
            rows.append(rec)
            positions.append(number)
        else:
            what = "an empty object" if isinstance(rec, dict) else f"a JSON {_json_kind(rec)}"
            bad.append(BadRecord(f"{label}:record {number}", _json_text(rec), f"record is {what}, not an object "
                                 "with fields"))
    table = records_table(rows) if rows else pa.table({})
    return RawBatch(table, label, positions, bad, nbytes, checkpoint=checkpoint, position_word="record")


def _json_kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float | Decimal):
        return "number"
    if isinstance(v, str):
        return "string"
    return "array"


def streams(spec: HttpSource, request: StreamRequest) -> list[Stream]:
    """One stream: the sweep, resumed where the committed state left it."""
    return [Stream(redact_url(spec.url), lambda: read_http(spec, request.state, request.batch_rows), None)]
