"""How the service runs a job: each run in a process of its own, `python -m pgmill ...`.

A process per run can be stopped: a run past its timeout gets SIGINT (pgmill's interrupt path: the batch
in flight is rolled back, committed checkpoints stay), then SIGKILL if it does not stop in time. Its
memory is returned when it ends, and a run that crashes cannot take the service down with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

KILL_AFTER_S = 10.0  # after SIGINT, how long a run may take to roll back before SIGKILL


@dataclass
class Outcome:
    """How a run ended."""

    ok: bool
    run_id: int | None
    error: str | None
    cpu_seconds: float = 0.0


class Handle(Protocol):
    def poll(self) -> Outcome | None:
        """The outcome if the run has ended; None while it goes on."""

    def interrupt(self) -> None:
        """Ask the run to stop (it rolls back the batch in flight); it is killed if it does not."""


class Runner(Protocol):
    def start(self, command: tuple[str, ...]) -> Handle:
        """Start a run of `command` (a pgmill command line without --project and --json)."""


@dataclass
class ProcessHandle:
    proc: subprocess.Popen[bytes]
    stdout: IO[bytes]
    stderr: IO[bytes]
    started: float = field(default_factory=time.monotonic)
    interrupted_at: float | None = None
    outcome: Outcome | None = None

    def poll(self) -> Outcome | None:
        if self.outcome is not None:
            return self.outcome
        if self.interrupted_at is not None and time.monotonic() - self.interrupted_at > KILL_AFTER_S:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        # wait4 rather than Popen.poll: the child's CPU time comes with its exit status (a cost driver)
        try:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
        except ChildProcessError:  # reaped already
            pid, status, usage = self.proc.pid, 0, None
        if pid == 0:
            return None
        code = os.waitstatus_to_exitcode(status) if usage is not None else (self.proc.returncode or 0)
        self.proc.returncode = code
        self.outcome = _outcome(code, self.stdout, self.stderr)
        if usage is not None:
            self.outcome.cpu_seconds = usage.ru_utime + usage.ru_stime
        return self.outcome

    def interrupt(self) -> None:
        if self.interrupted_at is None and self.proc.poll() is None:
            self.interrupted_at = time.monotonic()
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)

    def wait(self, timeout: float) -> Outcome | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self.poll()
            if done is not None:
                return done
            time.sleep(0.05)
        return self.poll()


class ProcessRunner:
    """Runs each job as `python -m pgmill COMMAND --project DIR --json` with the service's environment."""

    def __init__(self, project_dir: Path) -> None:
        self.project_dir = project_dir

    def start(self, command: tuple[str, ...]) -> ProcessHandle:
        out = tempfile.TemporaryFile()
        err = tempfile.TemporaryFile()
        argv = [sys.executable, "-m", "pgmill", *command, "--project", str(self.project_dir), "--json"]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=self.project_dir,
                                env={**os.environ, "PGMILL_NO_COLOR": "1"}, preexec_fn=_die_with_parent)
        return ProcessHandle(proc, out, err)


def _die_with_parent() -> None:
    """In the child, before exec: if the service dies (SIGKILL included), the run dies too. Its batch in
    flight is rolled back by the server, its checkpoints stay, and the slot, whose lease then lapses, runs
    again under the next service: no run goes on unwatched, holding its pipeline's lock."""
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _outcome(code: int, stdout: IO[bytes], stderr: IO[bytes]) -> Outcome:
    stdout.seek(0)
    stderr.seek(0)
    text = stdout.read().decode("utf-8", "replace")
    errors = [ln.strip() for ln in stderr.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    stdout.close()
    stderr.close()
    run_id = _run_id(text)
    if code == 0:
        return Outcome(True, run_id, None)
    why = errors[-1] if errors else f"exited with code {code}"
    if code < 0:
        why = f"killed by signal {-code}" + (f" ({errors[-1]})" if errors else "")
    return Outcome(False, run_id, why.removeprefix("error: "))


def _run_id(text: str) -> int | None:
    """The run id a command's --json output names: its own, or its first load's."""
    try:
        doc: Any = json.loads(text)
    except ValueError:
        return None
    if isinstance(doc, dict):
        if isinstance(doc.get("run_id"), int):
            return int(doc["run_id"])
        loads = doc.get("loads")
        if isinstance(loads, list) and loads and isinstance(loads[0], dict) and isinstance(loads[0].get("run_id"), int):
            return int(loads[0]["run_id"])
    return None
