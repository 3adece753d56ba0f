"""`pgmill run --follow`: pipelines kept running as micro-batches until stopped.

A followed pipeline is one run per follow session: the run opens once (lock, setup), then loads pass after
pass, each pass an ordinary load of what is new (files not loaded yet, the rows after the cursor) in
checkpoints, with the contract, quarantine and the accounting identity as always. Between passes it waits
for a change in the source's folder (inotify, through watchfiles) or `interval_s`, whichever comes first:
the interval is also the backstop for a change the watch missed and the poll of sources without a folder
(HTTP APIs, PostgreSQL tables). When stopped (Ctrl-C, SIGTERM), the pass in flight finishes its checkpoint
and the run is closed as succeeded with every row accounted for, so `pgmill status` shows one line per
session, its counts growing while it runs. A pass that found nothing leaves no step; one that loaded a
file records, in its `load` step, the seconds from the file's arrival (modification time) to its last
checkpoint's commit (`arrival_to_queryable_s`).

A file is read only once complete: a file modified within the last `settle_s` seconds is left for a later
pass. Write files elsewhere and rename them into place (atomic, and loaded at the next pass), or let the
writer finish: a file still growing after `settle_s` of silence would be read as it is then, and its rest
would later be a changed file, loaded again.
"""

from __future__ import annotations

import glob
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pgmill.config.spec import Pipeline

#: seconds between passes when nothing changes, by default
INTERVAL_S = 1.0
#: seconds a file must stay unmodified before it is read, by default
SETTLE_S = 1.0


@dataclass
class Follow:
    """How to follow: the wait between passes, the quiet time a file needs, and the stop signal."""

    interval_s: float = INTERVAL_S
    settle_s: float = SETTLE_S
    stop: threading.Event = field(default_factory=threading.Event)

    def settled_before(self) -> float:
        """Files modified after this moment (epoch seconds) may still be being written."""
        return time.time() - self.settle_s

    def wait(self, folders: list[tuple[Path, bool]]) -> None:
        """Until a file changes in one of `folders` ((folder, recursive)), `interval_s` passes, or stop."""
        live = [(f, r) for f, r in folders if f.is_dir()]
        if not live:
            self.stop.wait(self.interval_s)
            return
        import watchfiles

        for _ in watchfiles.watch(*[f for f, _ in live], debounce=50, rust_timeout=max(1, int(self.interval_s * 1000)),
                                  yield_on_timeout=True, stop_event=self.stop, raise_interrupt=False,
                                  recursive=any(r for _, r in live)):
            return


def watched_folders(project_dir: Path, spec: Pipeline) -> list[tuple[Path, bool]]:
    """The folder a file source's path or glob reads from (recursive when the glob has `**`); none for
    the other sources."""
    pattern = getattr(spec.source, "path", None)
    if not isinstance(pattern, str):
        return []
    base = Path(pattern) if Path(pattern).is_absolute() else project_dir / pattern
    parts = base.parts
    fixed = next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts) - 1)
    return [(Path(*parts[:fixed]), "**" in pattern)]
