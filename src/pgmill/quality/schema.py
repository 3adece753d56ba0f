"""pgmill.quality_results (the history of every check) and the small sampling aggregate the checks use.

`MIGRATION` is meant for db/migrations.py; until it is there, `ensure_quality_schema` applies the same
idempotent DDL under the migrations' advisory lock.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pgmill.db.migrations import _LOCK_KEY, migrate

#: failing keys kept per rule (and per duplicate group): enough to find the rows, small enough to store
SAMPLE_SIZE = 10

QUALITY_DDL = """
CREATE SEQUENCE IF NOT EXISTS pgmill.quality_run_id;

CREATE TABLE IF NOT EXISTS pgmill.quality_results (
    id           bigserial PRIMARY KEY,
    run_id       bigint NOT NULL,
    table_name   text NOT NULL,
    rule         text NOT NULL,
    kind         text NOT NULL,
    columns      text[] NOT NULL DEFAULT '{}',
    rows_checked bigint NOT NULL,
    rows_failed  bigint NOT NULL,
    pass_rate    numeric(7,3) NOT NULL,
    threshold    numeric(7,3) NOT NULL,
    severity     text NOT NULL CHECK (severity IN ('warn','error')),
    status       text NOT NULL CHECK (status IN ('pass','warn','fail','error','skipped')),
    value        double precision,
    message      text,
    sample       jsonb NOT NULL DEFAULT '[]',
    detail       jsonb,
    measured_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS quality_results_trend ON pgmill.quality_results (table_name, rule, run_id DESC);
CREATE INDEX IF NOT EXISTS quality_results_run ON pgmill.quality_results (run_id);

-- keeps the first SAMPLE_SIZE values it sees: an aggregate whose memory does not grow with failing rows
CREATE OR REPLACE FUNCTION pgmill.quality_sample_add(acc jsonb[], item jsonb) RETURNS jsonb[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN cardinality(acc) >= {n} THEN acc ELSE acc || item END $$;
CREATE OR REPLACE FUNCTION pgmill.quality_sample_merge(a jsonb[], b jsonb[]) RETURNS jsonb[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT (a || b)[1:{n}] $$;
CREATE OR REPLACE AGGREGATE pgmill.quality_sample(jsonb) (
    SFUNC = pgmill.quality_sample_add, STYPE = jsonb[], INITCOND = '{{}}',
    COMBINEFUNC = pgmill.quality_sample_merge, PARALLEL = SAFE
);
""".replace("{n}", str(SAMPLE_SIZE)).replace("{{}}", "{}")

#: the tuple to append to db/migrations.py MIGRATIONS (its number is the next free one)
MIGRATION: tuple[int, str, str] = (3, "quality check results and the sampling aggregate", QUALITY_DDL)


def ensure_quality_schema(conn: psycopg.Connection[Any]) -> None:
    """Bring schema pgmill up to date and make sure pgmill.quality_results exists (idempotent)."""
    migrate(conn)
    present = conn.execute(
        "SELECT to_regclass('pgmill.quality_results') IS NOT NULL"
        " AND to_regprocedure('pgmill.quality_sample(jsonb)') IS NOT NULL"
    ).fetchone()
    if present and present[0]:
        if not conn.autocommit:
            conn.commit()
        return
    with conn.transaction():
        # the migrations' lock: two first checks at once must not race on CREATE TABLE / CREATE FUNCTION
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(QUALITY_DDL.encode())


_EXT_SCHEMA = ("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
               " WHERE e.extname = %s")


def extension_schema(conn: psycopg.Connection[Any], name: str) -> str | None:
    """The schema of contrib extension `name`, installing it into schema pgmill if it is missing;
    None when it cannot be installed (not shipped with the server, or no privilege)."""
    row = conn.execute(
        _EXT_SCHEMA, (name,)
    ).fetchone()
    if row:
        return str(row[0])
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('pgmill ddl'))")
            conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {} SCHEMA pgmill").format(sql.Identifier(name)))
    except psycopg.Error:
        return None
    row = conn.execute(
        _EXT_SCHEMA, (name,)
    ).fetchone()
    return str(row[0]) if row else None
