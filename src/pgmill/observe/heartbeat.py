"""The heartbeat: `alerts.heartbeat_url` is pinged after every scheduler tick, so that a `pgmill serve` that
died, hung or lost its network is noticed from outside (healthchecks.io, Uptime Kuma, a cron monitor: they
alert when the pings stop). A failed ping is logged and counted, never raised.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from pgmill.observe.deliver import MissingVariable, expand, scrub
from pgmill.project import ProjectContext

log = logging.getLogger("pgmill.alerts")

DEFAULT_TIMEOUT_S = 5.0


@dataclass
class HeartbeatResult:
    ok: bool | None  # None: no heartbeat_url configured
    status: int | None = None
    error: str | None = None
    latency_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class HeartbeatStats:
    """This process's pings (the heartbeat is about the process: a new one starts counting afresh)."""

    pings: int = 0
    failures: int = 0
    last_ok_at: datetime | None = None
    last_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict[str, Any]:
        with self.lock:
            return {"pings": self.pings, "failures": self.failures, "last_error": self.last_error,
                    "last_ok_at": self.last_ok_at.isoformat() if self.last_ok_at else None}


STATS = HeartbeatStats()


def ping_heartbeat(ctx: ProjectContext, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                   transport: httpx.BaseTransport | None = None) -> HeartbeatResult:
    """GET `alerts.heartbeat_url` (its `${VAR}`s expanded now); failures are logged and counted, never raised."""
    template = ctx.config.alerts.heartbeat_url
    if not template:
        return HeartbeatResult(None)
    started = time.perf_counter()
    status: int | None = None
    try:
        url, secrets = expand(template)
    except MissingVariable as exc:
        error: str | None = f"heartbeat_url: {exc}"
    else:
        try:
            with httpx.Client(timeout=timeout_s, transport=transport, follow_redirects=True) as client:
                status = client.get(url).status_code
            error = None if status < 400 else f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = scrub(f"{type(exc).__name__}: {exc}", template, url, secrets)
    result = HeartbeatResult(error is None, status, error, round((time.perf_counter() - started) * 1000, 3))
    with STATS.lock:
        STATS.pings += 1
        if error is None:
            STATS.last_ok_at = datetime.now(UTC)
        else:
            STATS.failures += 1
            STATS.last_error = error
    if error is not None:
        log.warning("heartbeat ping failed: %s", error)
    return result
