"""Which failures are worth retrying, and how long to wait between attempts."""

from __future__ import annotations

import errno
import random

import psycopg
from psycopg import errors as pgerr

from pgmill.errors import DatabaseError, DatabaseUnavailable, PgmillError, TransientError

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


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TransientError | DatabaseUnavailable):
        return True
    if isinstance(exc, PgmillError):
        return False
    if isinstance(exc, psycopg.Error):
        state = getattr(exc, "sqlstate", None)
        if state in _TRANSIENT_SQLSTATES or (state or "").startswith("08"):
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


def as_pgmill(exc: BaseException) -> PgmillError:
    if isinstance(exc, PgmillError):
        return exc
    if is_transient(exc):
        return TransientError(describe(exc))
    if isinstance(exc, psycopg.Error):
        return DatabaseError(describe(exc))
    return PgmillError(f"unexpected {type(exc).__name__}: {describe(exc)}")
