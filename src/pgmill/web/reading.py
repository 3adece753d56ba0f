"""The dashboard's database session: read-only at the server (a page cannot change anything, whatever its
query), bounded in time, named in pg_stat_activity; and pgmill's schema brought up to date once per app."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pgmill.db.migrations import migrate
from pgmill.project import ProjectContext
from pgmill.web.view import Conn

STATEMENT_TIMEOUT_MS = 15_000


class Reader:
    def __init__(self, ctx: ProjectContext, application_name: str = "pgmill dashboard") -> None:
        self.ctx = ctx
        self.application_name = application_name
        self._migrated = False
        self._lock = threading.Lock()

    @contextmanager
    def session(self) -> Iterator[Conn]:
        self._migrate_once()
        conn = self.ctx.target.connect(autocommit=True, application_name=self.application_name)
        try:
            conn.execute("SET default_transaction_read_only = on")
            conn.execute("SELECT set_config('statement_timeout', %s, false)", (str(STATEMENT_TIMEOUT_MS),))
            yield conn
        finally:
            conn.close()

    def _migrate_once(self) -> None:
        with self._lock:
            if self._migrated:
                return
            with self.ctx.target.connect(application_name=self.application_name) as conn:
                migrate(conn)
            self._migrated = True
