"""Versioned, idempotent migrations of pgmill's own schema `pgmill`.

Each migration runs once, in a transaction, under an advisory lock so that concurrent processes do not
race; the version table records what has been applied.
"""

from __future__ import annotations

import psycopg

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "run ledger, state, quarantine, files",
        """
        CREATE TABLE IF NOT EXISTS pgmill.runs (
            run_id           bigserial PRIMARY KEY,
            pipeline         text NOT NULL,
            status           text NOT NULL CHECK (status IN ('running','succeeded','failed','abandoned')),
            mode             text,
            target_table     text,
            started_at       timestamptz NOT NULL DEFAULT now(),
            finished_at      timestamptz,
            rows_read        bigint NOT NULL DEFAULT 0,
            rows_inserted    bigint NOT NULL DEFAULT 0,
            rows_updated     bigint NOT NULL DEFAULT 0,
            rows_unchanged   bigint NOT NULL DEFAULT 0,
            rows_quarantined bigint NOT NULL DEFAULT 0,
            rows_duplicate   bigint NOT NULL DEFAULT 0,
            rows_warned      bigint NOT NULL DEFAULT 0,
            bytes_read       bigint NOT NULL DEFAULT 0,
            batches          integer NOT NULL DEFAULT 0,
            retries          integer NOT NULL DEFAULT 0,
            error            text,
            host             text,
            pid              integer
        );
        CREATE INDEX IF NOT EXISTS runs_pipeline_started ON pgmill.runs (pipeline, started_at DESC);

        CREATE TABLE IF NOT EXISTS pgmill.run_steps (
            step_id     bigserial PRIMARY KEY,
            run_id      bigint NOT NULL REFERENCES pgmill.runs ON DELETE CASCADE,
            name        text NOT NULL,
            status      text NOT NULL,
            started_at  timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz,
            rows        bigint,
            detail      jsonb
        );
        CREATE INDEX IF NOT EXISTS run_steps_run ON pgmill.run_steps (run_id);

        CREATE TABLE IF NOT EXISTS pgmill.state (
            pipeline    text PRIMARY KEY,
            state       jsonb NOT NULL DEFAULT '{}',
            cursor_value text,
            updated_at  timestamptz NOT NULL DEFAULT now(),
            run_id      bigint
        );

        CREATE TABLE IF NOT EXISTS pgmill.files (
            pipeline     text NOT NULL,
            path         text NOT NULL,
            size         bigint NOT NULL,
            sha256       text NOT NULL,
            records_done bigint NOT NULL DEFAULT 0,
            byte_offset  bigint NOT NULL DEFAULT 0,
            next_line    bigint NOT NULL DEFAULT 1,
            complete     boolean NOT NULL DEFAULT false,
            run_id       bigint,
            loaded_at    timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (pipeline, path, sha256)
        );

        CREATE TABLE IF NOT EXISTS pgmill.quarantine (
            id              bigserial PRIMARY KEY,
            run_id          bigint NOT NULL,
            pipeline        text NOT NULL,
            target_table    text NOT NULL,
            source_location text NOT NULL,
            record          jsonb,
            raw_text        text,
            violations      jsonb NOT NULL,
            quarantined_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX IF NOT EXISTS quarantine_pipeline ON pgmill.quarantine (pipeline, id);
        CREATE INDEX IF NOT EXISTS quarantine_run ON pgmill.quarantine (run_id);
        """,
    ),
    (
        2,
        "pipeline owner fencing",
        "ALTER TABLE pgmill.state ADD COLUMN IF NOT EXISTS owner_run bigint;",
    ),
)

_LOCK_KEY = 0x70676D696C6C  # "pgmill"


def migrate(conn: psycopg.Connection[object]) -> int:
    """Bring schema `pgmill` up to date; return the version now in place."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute("CREATE SCHEMA IF NOT EXISTS pgmill")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS pgmill.schema_version ("
            " version integer PRIMARY KEY, description text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        row = conn.execute("SELECT coalesce(max(version), 0) FROM pgmill.schema_version").fetchone()
        current = int(row[0]) if row else 0  # type: ignore[index]
        for version, description, ddl in MIGRATIONS:
            if version <= current:
                continue
            conn.execute(ddl.encode())
            conn.execute(
                "INSERT INTO pgmill.schema_version (version, description) VALUES (%s, %s)",
                (version, description),
            )
            current = version
    return current
