"""What `pgmill db status` reports."""

from __future__ import annotations

from typing import Any

from pgmill.db.connect import Target
from pgmill.errors import DatabaseUnavailable


def database_status(target: Target) -> dict[str, Any]:
    """Whether the project's database answers, where it is and what it runs, without starting it."""
    info: dict[str, Any] = {"url": target.display_url, "embedded": target.embedded is not None}
    if target.embedded is not None:
        st = target.embedded.status()
        info.update(running=st.running, pid=st.pid, data=str(st.pgdata))
        if not st.running:
            return info
    import psycopg

    try:
        with psycopg.connect(target.url, connect_timeout=5) as conn:
            row = conn.execute("SELECT current_setting('server_version'), pg_database_size(current_database()),"
                               " current_user").fetchone()
    except psycopg.OperationalError as exc:
        info["running"] = False
        info["error"] = str(DatabaseUnavailable(str(exc).strip()))
        return info
    assert row is not None
    info.update(running=True, server_version=row[0], database_bytes=int(row[1]), user=row[2])
    return info
