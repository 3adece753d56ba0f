"""Delivering alert messages through apprise, every attempt recorded in pgmill.alert_deliveries.

A channel is an apprise URL whose secrets are `${VAR}` references, expanded from the environment only for
the attempt that uses them: the expanded URL is never stored, printed or logged, and every error text is
scrubbed of it and of each expanded value before it is recorded. A missing variable or a URL apprise cannot
use fails the delivery at once (retrying cannot help); anything else is retried with backoff
(pgmill.retry.backoff), `attempts` times, each attempt limited to `timeout`.

Channels are served in parallel, each in order, so a channel that hangs delays only its own messages; once a
message to a channel has failed every attempt, its other messages in the same evaluation get one attempt
each. A channel whose latest message failed is "failing": `delivery_health` says so (for /healthz and the
metrics), and the evaluation raises the `channel_failing` alert on the other channels.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg.rows import dict_row

from pgmill.config.alerts import ENV_REF, Alerts
from pgmill.config.duration import parse_duration
from pgmill.observe.conditions import Condition, stamp
from pgmill.redact import redact
from pgmill.retry import backoff

log = logging.getLogger("pgmill.alerts")

_GRACE_S = 1.0  # past the attempt's timeout, apprise's own error (it stops at the same limit) is waited for
_MIN_SECRET = 3  # shorter expanded values are not scrubbed out of error texts (they would garble them)
_DELIMITERS = re.compile(r"[/:@?&=#,;+\s]+")


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard to try: attempts per message and channel, one attempt's time limit, the backoff between."""

    attempts: int = 3
    timeout_s: float = 10.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 15.0

    @classmethod
    def from_config(cls, alerts: Alerts, *, backoff_initial_s: float = 1.0,
                    backoff_max_s: float = 15.0) -> DeliveryPolicy:
        return cls(alerts.attempts, parse_duration(alerts.timeout), backoff_initial_s, backoff_max_s)


@dataclass(frozen=True)
class Message:
    event_id: int
    title: str
    body: str
    level: str = "failure"  # info | success | warning | failure (apprise's notify types)


@dataclass
class ChannelResult:
    """How one message went on one channel."""

    channel: str
    event_id: int
    sent: bool
    attempts: int
    error: str | None
    latency_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class MissingVariable(Exception):
    """A channel's URL names an environment variable that is not set."""


def expand(template: str, environ: Mapping[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """The URL with its `${VAR}`s filled in from the environment, and the values used (by name)."""
    env = os.environ if environ is None else environ
    names = list(dict.fromkeys(ENV_REF.findall(template)))
    missing = [n for n in names if not env.get(n)]
    if missing:
        raise MissingVariable(f"environment variable {', '.join(missing)} {'is' if len(missing) == 1 else 'are'}"
                              " not set")
    values = {n: env[n] for n in names}
    return ENV_REF.sub(lambda m: values[m.group(1)], template), values


def scrub(text: str, template: str, url: str, secrets: Mapping[str, str]) -> str:
    """`text` with the expanded URL put back as its template and each expanded value as its `${VAR}`, whole,
    URL-quoted, or any piece of it between URL delimiters (a plugin may quote one part of a token)."""
    text = text.replace(url, template)
    forms: dict[str, str] = {}
    for name, value in secrets.items():
        for piece in (value, *_DELIMITERS.split(value)):
            if len(piece) >= _MIN_SECRET:
                for form in (piece, quote(piece, safe=""), quote(piece)):
                    forms.setdefault(form, "${" + name + "}")
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, forms[form])
    return redact(text)


# ------------------------------------------------------------------ one attempt through apprise

_CAPTURED: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("pgmill_apprise_log", default=None)
_install_lock = threading.Lock()
_installed = False


class _Capture(logging.Filter):
    """apprise says why a notification failed only in its log, and its log can quote a token: during an
    attempt, its records are kept for the attempt (to be scrubbed and recorded) and go nowhere else. The
    attempt is found through a context variable, which apprise carries into the threads it dispatches on."""

    def filter(self, record: logging.LogRecord) -> bool:
        lines = _CAPTURED.get()
        if lines is None:
            return True
        if record.levelno >= logging.WARNING:
            lines.append(record.getMessage())
        return False


def _install_capture() -> None:
    global _installed
    with _install_lock:
        if not _installed:
            logger = logging.getLogger("apprise")
            logger.addFilter(_Capture())
            if logger.getEffectiveLevel() > logging.WARNING:
                logger.setLevel(logging.WARNING)
            _installed = True


_warm = False


def warm_up() -> None:
    """Import apprise and load its plugins (a second or more) before any attempt's clock starts."""
    global _warm
    with _install_lock:
        if _warm:
            return
        import apprise

        apprise.Apprise.instantiate("json://127.0.0.1/", asset=apprise.AppriseAsset(async_mode=False))
        _warm = True
    _install_capture()


def with_timeouts(url: str, timeout_s: float) -> str:
    """The URL with apprise's socket timeouts (`cto`, `rto`: any URL takes them) set, unless it sets them."""
    base, _, query = url.partition("?")
    params = [p for p in query.split("&") if p]
    have = {p.split("=", 1)[0].lower() for p in params}
    extra = [f"{k}={timeout_s:g}" for k in ("cto", "rto") if k not in have]
    return base + "?" + "&".join(params + extra) if extra else url


def _notify(url: str, msg: Message, timeout_s: float) -> tuple[str | None, bool]:
    """(error or None, whether the error is permanent) for one notification."""
    import apprise

    _install_capture()
    lines: list[str] = []
    token = _CAPTURED.set(lines)
    try:
        asset = apprise.AppriseAsset(async_mode=False)
        plugin = apprise.Apprise.instantiate(with_timeouts(url, timeout_s), asset=asset)
        if plugin is None:
            why = "; ".join(dict.fromkeys(lines))
            return "apprise cannot use this URL (unknown scheme or missing parts)" + (f": {why}" if why else ""), True
        ap = apprise.Apprise(asset=asset)
        ap.add(plugin)
        if ap.notify(body=msg.body, title=msg.title, notify_type=msg.level):
            return None, False
        return "; ".join(dict.fromkeys(lines)) or "apprise reported a failure without a reason", False
    except Exception as exc:  # a plugin's bug is this attempt's failure, never the evaluation's
        return f"{type(exc).__name__}: {exc}", False
    finally:
        _CAPTURED.reset(token)


def attempt(url: str, msg: Message, timeout_s: float) -> tuple[str | None, bool]:
    """One notification, given up after `timeout_s` (plus a grace) even if apprise has not returned."""
    box: list[tuple[str | None, bool]] = []
    ctx = contextvars.copy_context()
    worker = threading.Thread(target=lambda: box.append(ctx.run(_notify, url, msg, timeout_s)),
                              name="pgmill-alert-send", daemon=True)
    worker.start()
    worker.join(timeout_s + _GRACE_S)
    return box[0] if box else (f"no answer within {timeout_s:g} s", False)


# ------------------------------------------------------------------ recording

class Recorder:
    """Writes attempts from the channels' threads through one connection (autocommit), one at a time."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def attempt(self, event_id: int, channel: str, n: int, error: str | None, final: bool, latency_ms: float) -> None:
        with self.lock, self.conn.transaction():
            self.conn.execute(
                "INSERT INTO pgmill.alert_deliveries (event_id, channel, attempt, status, final, error, latency_ms)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (event_id, channel, n, "sent" if error is None else "failed", final, error, round(latency_ms, 3)))
            if final:
                self.conn.execute("UPDATE pgmill.alert_events SET undelivered = array_remove(undelivered, %s)"
                                  " WHERE event_id = %s", (channel, event_id))


def _send(rec: Recorder, channel: str, template: str, msg: Message, attempts: int, policy: DeliveryPolicy,
          sleep: Callable[[float], None]) -> ChannelResult:
    error: str | None = None
    latency = 0.0
    n = 0
    for n in range(1, attempts + 1):
        started = time.perf_counter()
        try:
            url, secrets = expand(template)
        except MissingVariable as exc:
            error, permanent = f"channel {channel}: {exc}", True
        else:
            error, permanent = attempt(url, msg, policy.timeout_s)
            error = None if error is None else scrub(error, template, url, secrets)
        latency = (time.perf_counter() - started) * 1000
        final = error is None or permanent or n == attempts
        rec.attempt(msg.event_id, channel, n, error, final, latency)
        if error is not None:
            log.warning("alert message %d to channel %s: attempt %d of %d failed: %s", msg.event_id, channel, n,
                        attempts, error)
        if final:
            break
        sleep(backoff(n, policy.backoff_initial_s, policy.backoff_max_s))
    return ChannelResult(channel, msg.event_id, error is None, n, error, round(latency, 3))


def _serve_channel(rec: Recorder, channel: str, template: str, messages: list[Message], policy: DeliveryPolicy,
                   sleep: Callable[[float], None]) -> list[ChannelResult]:
    out: list[ChannelResult] = []
    for msg in messages:
        broken = any(not r.sent for r in out)
        out.append(_send(rec, channel, template, msg, 1 if broken else policy.attempts, policy, sleep))
    return out


def deliver(conn: psycopg.Connection[Any], channels: Mapping[str, str], outgoing: Mapping[str, list[Message]],
            policy: DeliveryPolicy, *, sleep: Callable[[float], None] = time.sleep) -> list[ChannelResult]:
    """Send each channel its messages (channels in parallel), recording every attempt; the results."""
    rec = Recorder(conn)
    work = {ch: msgs for ch, msgs in outgoing.items() if msgs and ch in channels}
    if not work:
        return []
    warm_up()
    with ThreadPoolExecutor(max_workers=len(work), thread_name_prefix="pgmill-alerts") as pool:
        futures = [pool.submit(_serve_channel, rec, ch, channels[ch], msgs, policy, sleep)
                   for ch, msgs in work.items()]
        return [r for f in futures for r in f.result()]


# ------------------------------------------------------------------ health

_HEALTH = """
WITH recent AS (
    SELECT * FROM pgmill.alert_deliveries WHERE at > now() - interval '7 days'
), sent AS (
    SELECT channel, max(delivery_id) FILTER (WHERE status = 'sent') AS last_sent_id FROM recent GROUP BY channel
)
SELECT r.channel,
       (array_agg(r.status ORDER BY r.delivery_id DESC) FILTER (WHERE r.final))[1] AS last_status,
       (array_agg(r.error ORDER BY r.delivery_id DESC) FILTER (WHERE r.status = 'failed'))[1] AS last_error,
       max(r.at) AS last_attempt_at,
       max(r.at) FILTER (WHERE r.status = 'sent') AS last_sent_at,
       min(r.at) FILTER (WHERE r.final AND r.status = 'failed'
                         AND r.delivery_id > coalesce(s.last_sent_id, 0)) AS failing_since,
       count(*) FILTER (WHERE r.final AND r.status = 'failed'
                        AND r.delivery_id > coalesce(s.last_sent_id, 0)) AS messages_failed,
       count(*) FILTER (WHERE r.at > now() - interval '24 hours') AS attempts_24h,
       count(*) FILTER (WHERE r.at > now() - interval '24 hours' AND r.status = 'failed') AS failed_24h
FROM recent r JOIN sent s ON s.channel = r.channel
GROUP BY r.channel
"""


def _health_rows(conn: psycopg.Connection[Any]) -> dict[str, dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return {r["channel"]: r for r in cur.execute(_HEALTH).fetchall()}


def delivery_health(conn: psycopg.Connection[Any], channels: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Each channel's delivery health over the last 7 days: status `ok` (its latest message was sent),
    `failing` (it was not: `messages_failed` in a row since `failing_since`, `last_error`) or `unknown`."""
    rows = _health_rows(conn)
    out: dict[str, dict[str, Any]] = {}
    for ch in channels if channels is not None else sorted(rows):
        r = rows.get(ch)
        if r is None or r["last_status"] is None:
            out[ch] = {"status": "unknown", "last_attempt_at": None, "last_sent_at": None, "failing_since": None,
                       "messages_failed": 0, "last_error": None, "attempts_24h": 0, "failed_24h": 0}
            continue
        failing = r["last_status"] == "failed"
        out[ch] = {
            "status": "failing" if failing else "ok",
            "last_attempt_at": r["last_attempt_at"].isoformat(),
            "last_sent_at": r["last_sent_at"].isoformat() if r["last_sent_at"] else None,
            "failing_since": r["failing_since"].isoformat() if failing else None,
            "messages_failed": int(r["messages_failed"]) if failing else 0,
            "last_error": r["last_error"],
            "attempts_24h": int(r["attempts_24h"]),
            "failed_24h": int(r["failed_24h"]),
        }
    return out


def failing_channels(conn: psycopg.Connection[Any], channels: list[str]) -> list[Condition]:
    """The `channel_failing` condition: configured channels whose latest message could not be delivered."""
    out = []
    rows = _health_rows(conn)
    for ch in channels:
        r = rows.get(ch)
        if r is None or r["last_status"] != "failed":
            continue
        last = f"last delivered {stamp(r['last_sent_at'])}" if r["last_sent_at"] else "nothing delivered in 7 days"
        n = int(r["messages_failed"])
        since = r["failing_since"]
        out.append(Condition(ch, f"channel {ch} is failing: {n} message{'s' if n != 1 else ''} not delivered since"
                                 f" {stamp(since)} ({last}); last error: {r['last_error']}", float(n)))
    return out


