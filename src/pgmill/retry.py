"""Retries: which failures are worth another attempt, how long to wait, and the one loop that does it.

Every step that talks to the database or an API retries through `RetryPolicy.call`: a load's setup, its
batches (resuming from the last checkpoint) and its ledger updates; table checks; model discovery, each
model's build and the transform run's bookkeeping; whether to re-tune after a run; DROP INDEX
CONCURRENTLY; role creation; each HTTP request of the HTTP source.

    policy = RetryPolicy.of(ctx.config.retry)        # the project's `retry:` settings
    run_id = policy.call(lambda: setup(...), on_retry=count)

- Which failures: `is_transient` (a lost connection, SQLSTATE classes 08 and 57P0x, serialization
  failure, deadlock, lock timeout, too many connections, network errors). A caller with its own
  classification passes `retry_if` (the HTTP source: 429 and 5xx; role creation: catalog races).
- How long: exponential backoff with full jitter, `backoff(n)` = uniform(0, min(max_s, initial_s * 2^(n-1)))
  before attempt n+1; a caller whose server names the wait (HTTP Retry-After) passes `wait`.
- How often: `attempts` in all. With `progress` (a counter of committed work, such as rows checkpointed),
  the count starts over whenever the counter moved since the last failure: a long load resuming from its
  checkpoints fails only when `attempts` failures come in a row without progress.
- When attempts run out, or the failure is not retryable, the last exception propagates unchanged; the
  step's caller maps it (`as_pgmill`) at the library's boundary.
- `on_retry` is called before each wait: where a load or transform run counts its retries
  (pgmill.runs.retries), and where the HTTP source logs and holds its other requests for Retry-After.

tenacity was the first choice; it is not used, because each of these loops needs its own stop (progress),
wait (Retry-After) and sleep (a pause that a stopping reader interrupts), which left it nothing to do.
"""

from __future__ import annotations

import contextlib
import errno
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

import psycopg
from psycopg import errors as pgerr

from pgmill.errors import DatabaseError, DatabaseUnavailable, PgmillError, TransientError

T = TypeVar("T")

#: called before each wait: the failure, the number of the attempt that failed (from 1), the wait in seconds
OnRetry = Callable[[BaseException, int, float], None]

# SQLSTATE classes and codes that a new attempt can get past
_TRANSIENT_SQLSTATES = {
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "55P03",  # lock_not_available
    "57P01",  # admin_shutdown
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now
    "53300",  # too_many_connections
}


def transient_sqlstate(state: str) -> bool:
    """Whether a failure with this SQLSTATE is worth another attempt (also read from the ledger's errors)."""
    return state in _TRANSIENT_SQLSTATES or state.startswith("08")


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TransientError | DatabaseUnavailable):
        return True
    if isinstance(exc, PgmillError):
        return False
    if isinstance(exc, psycopg.Error):
        state = getattr(exc, "sqlstate", None)
        if state and transient_sqlstate(state):
            return True
        # a connection that died mid-statement has no SQLSTATE
        return isinstance(exc, psycopg.OperationalError) and state is None
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    return False


def describe(exc: BaseException) -> str:
    """One line for the ledger and the user: what failed, without a traceback or a secret."""
    from pgmill.redact import redact

    if isinstance(exc, pgerr.DiskFull) or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC):
        return "disk full: free space on the database or the machine, then rerun (committed batches are kept)"
    if isinstance(exc, psycopg.Error):
        diag = exc.diag
        msg = diag.message_primary or str(exc).strip()
        detail = f" ({diag.message_detail})" if diag.message_detail else ""
        state = f" [SQLSTATE {exc.sqlstate}]" if exc.sqlstate else ""
        return redact(f"PostgreSQL: {msg}{detail}{state}")
    return redact(str(exc) or type(exc).__name__)


def backoff(attempt: int, initial: float, maximum: float) -> float:
    """Exponential backoff with full jitter: attempt 1 waits up to `initial`, doubling up to `maximum`."""
    return random.uniform(0, min(maximum, initial * 2 ** (attempt - 1)))


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """The boundary of a library entry point: what is left of a lost connection or a refusal by Postgres
    after the retries leaves as a PgmillError (TransientError, DatabaseError); pgmill's own errors, and
    bugs, pass unchanged."""
    try:
        yield
    except PgmillError:
        raise
    except Exception as exc:
        if is_transient(exc) or isinstance(exc, psycopg.Error):
            raise as_pgmill(exc) from exc
        raise


def as_pgmill(exc: BaseException) -> PgmillError:
    if isinstance(exc, PgmillError):
        return exc
    if is_transient(exc):
        return TransientError(describe(exc))
    if isinstance(exc, psycopg.Error):
        return DatabaseError(describe(exc))
    return PgmillError(f"unexpected {type(exc).__name__}: {describe(exc)}")


class RetrySettings(Protocol):
    """The `retry:` section of pgmill.yaml, as far as the policy reads it (config sits beside this module
    in the layer order, so it is not imported)."""

    @property
    def attempts(self) -> int: ...

    @property
    def initial_s(self) -> float: ...

    @property
    def max_s(self) -> float: ...


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts a step gets and how long it waits between them (see the module docstring)."""

    attempts: int = 5
    initial_s: float = 0.5
    max_s: float = 30.0

    @classmethod
    def of(cls, settings: RetrySettings) -> RetryPolicy:
        """The policy of a project's `retry:` settings (pgmill.config.spec.Retry)."""
        return cls(settings.attempts, settings.initial_s, settings.max_s)

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number `attempt` (from 1)."""
        return backoff(attempt, self.initial_s, self.max_s)

    def call(
        self,
        fn: Callable[[], T],
        *,
        on_retry: OnRetry | None = None,
        retry_if: Callable[[BaseException], bool] = is_transient,
        progress: Callable[[], int] | None = None,
        wait: Callable[[BaseException, int], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> T:
        """`fn()`, called again after each failure that `retry_if` accepts, until it returns or the
        attempts run out (then its last exception propagates). `progress`: a counter of committed work
        whose growth since the last failure starts the count over; `wait`: the wait after a failed attempt
        (default: `delay`); `sleep`: how to wait (a reader that may be stopped passes an interruptible one)."""
        attempt = 1
        mark = progress() if progress is not None else 0
        while True:
            try:
                return fn()
            except Exception as exc:
                if progress is not None:
                    now = progress()
                    if now != mark:  # work was committed since the last failure: faults far apart do not add up
                        attempt, mark = 1, now
                if attempt >= self.attempts or not retry_if(exc):
                    raise
                pause = wait(exc, attempt) if wait is not None else self.delay(attempt)
                if on_retry is not None:
                    on_retry(exc, attempt, pause)
                sleep(pause)
                attempt += 1
