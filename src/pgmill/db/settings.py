"""Server settings for the current transaction only: gone at its commit or rollback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql


def set_local(conn: psycopg.Connection[Any], settings: Mapping[str, str]) -> None:
    """`set_config(name, value, true)` for each setting, in one round trip (nothing to do when empty)."""
    if settings:
        calls = sql.SQL(", ").join(sql.SQL("set_config(%s, %s, true)") for _ in settings)
        conn.execute(sql.SQL("SELECT {}").format(calls), [x for kv in settings.items() for x in kv])
