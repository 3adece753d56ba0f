"""`follow: true` pipelines under `pgmill serve`: each one a `pgmill run NAME --follow --wait` process,
started with the service, restarted when it ends, and stopped (SIGINT: the checkpoint in flight commits,
the run closes as succeeded) when the service stops.

A follower that ends soon after it started is restarted after a pause that doubles up to MAX_PAUSE_S; one
that had run for HEALTHY_S restarts at once. `--wait` queues a second service's follower behind the first
one's pipeline lock: it takes over if the first service dies.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from pgmill.schedule.runner import Handle, Runner

log = logging.getLogger("pgmill.serve")

PAUSE_S = 1.0
MAX_PAUSE_S = 60.0
HEALTHY_S = 60.0


@dataclass
class Follower:
    pipeline: str
    handle: Handle | None = None
    started: float = 0.0
    quick_ends: int = 0  # ends in a row, each soon after its start
    next_start: float = 0.0
    starts: int = 0


class Followers:
    """Keeps one follower process per pipeline alive."""

    def __init__(self, runner: Runner, pipelines: list[str]) -> None:
        self.runner = runner
        self.followers = [Follower(p) for p in pipelines]

    def keep(self) -> None:
        """Restart the followers that ended (after their pause), start those not running."""
        now = time.monotonic()
        for f in self.followers:
            if f.handle is not None:
                out = f.handle.poll()
                if out is None:
                    continue
                f.handle = None
                f.quick_ends = 0 if now - f.started >= HEALTHY_S else f.quick_ends + 1
                pause = min(MAX_PAUSE_S, PAUSE_S * 2 ** (f.quick_ends - 1)) if f.quick_ends else 0.0
                f.next_start = now + pause
                log.warning("follower of %s ended (%s); restarting in %.0f s", f.pipeline,
                            "ok" if out.ok else out.error, pause)
            if now >= f.next_start:
                f.handle = self.runner.start(("run", f.pipeline, "--follow", "--wait"))
                f.started, f.starts = now, f.starts + 1
                log.info("following %s", f.pipeline)

    def stop(self, grace_s: float) -> None:
        """Interrupt every follower; wait up to `grace_s` for them to close their runs."""
        live = [f.handle for f in self.followers if f.handle is not None]
        for h in live:
            h.interrupt()
        deadline = time.monotonic() + grace_s
        while any(h.poll() is None for h in live) and time.monotonic() < deadline:
            time.sleep(0.1)
        for f in self.followers:
            f.handle = None
