"""Where the database is, and the only place pgmill opens connections to it."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from pgmill.db.embedded import EmbeddedServer
from pgmill.errors import DatabaseError, DatabaseUnavailable
from pgmill.redact import redact

ENV_URL = "PGMILL_DATABASE_URL"


@dataclass
class Target:
    """The database a project works on: an embedded server or a URL."""

    url: str
    embedded: EmbeddedServer | None = None

    @property
    def display_url(self) -> str:
        return redact(self.url)

    def ensure_running(self) -> None:
        if self.embedded is not None:
            self.embedded.start()

    def connect(self, *, autocommit: bool = False, application_name: str = "pgmill") -> psycopg.Connection[tuple[Any, ...]]:
        """Open a connection (starting the embedded server on demand); errors name the redacted URL."""
        self.ensure_running()
        try:
            conn = psycopg.connect(
                self.url, autocommit=autocommit, application_name=application_name, connect_timeout=10
            )
        except psycopg.OperationalError as exc:
            if _permanent_connect_error(exc):
                raise DatabaseError(f"cannot connect to {self.display_url}: {redact(str(exc)).strip()}") from exc
            raise DatabaseUnavailable(
                f"cannot connect to {self.display_url}: {redact(str(exc)).strip()}"
            ) from exc
        except psycopg.Error as exc:  # pragma: no cover - e.g. bad URL syntax
            raise DatabaseError(f"cannot connect to {self.display_url}: {redact(str(exc)).strip()}") from exc
        conn.execute("SET TIME ZONE 'UTC'")
        if not autocommit:
            conn.commit()
        return conn


_PERMANENT_SQLSTATES = {"28P01", "28000", "3D000", "42704"}
_PERMANENT_WORDS = ("password authentication failed", "does not exist", "no pg_hba.conf entry",
                    "role \"", "invalid dsn", "invalid connection option")


def _permanent_connect_error(exc: psycopg.OperationalError) -> bool:
    """Bad credentials, a missing database or a malformed URL: retrying will not help."""
    if getattr(exc, "sqlstate", None) in _PERMANENT_SQLSTATES:
        return True
    text = str(exc).lower()
    return any(w in text for w in _PERMANENT_WORDS)


def resolve_target(project_dir: Path, configured_url: str | None) -> Target:
    """PGMILL_DATABASE_URL wins over database.url in pgmill.yaml; neither means the embedded server."""
    url = os.environ.get(ENV_URL) or configured_url
    if url:
        return Target(os.path.expandvars(url))
    server = EmbeddedServer(project_dir / ".pgmill")
    return Target(server.url(), embedded=server)


def close_quietly(conn: psycopg.Connection[Any] | None) -> None:
    """Close a connection that may already be broken: the failure that broke it is what matters."""
    if conn is not None:
        with contextlib.suppress(psycopg.Error):
            conn.close()
