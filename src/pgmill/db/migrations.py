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
    ),    (
        3,
        "quality check results and the sampling aggregate",
        """
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
            AS $$ SELECT CASE WHEN cardinality(acc) >= 10 THEN acc ELSE acc || item END $$;
        CREATE OR REPLACE FUNCTION pgmill.quality_sample_merge(a jsonb[], b jsonb[]) RETURNS jsonb[]
            LANGUAGE sql IMMUTABLE PARALLEL SAFE
            AS $$ SELECT (a || b)[1:10] $$;
        CREATE OR REPLACE AGGREGATE pgmill.quality_sample(jsonb) (
            SFUNC = pgmill.quality_sample_add, STYPE = jsonb[], INITCOND = '{}',
            COMBINEFUNC = pgmill.quality_sample_merge, PARALLEL = SAFE
        );
        """,
    ),
    (
        4,
        "query tuning: tuning runs, index actions, workload snapshots",
        """
        CREATE TABLE IF NOT EXISTS pgmill.tuning_runs (
            run_id       bigserial PRIMARY KEY,
            mode         text NOT NULL CHECK (mode IN ('recommend','apply','auto','rollback')),
            started_at   timestamptz NOT NULL DEFAULT now(),
            finished_at  timestamptz,
            backend      text,
            status       text NOT NULL DEFAULT 'running',
            report       jsonb,
            rolled_back_by bigint
        );
        CREATE TABLE IF NOT EXISTS pgmill.index_actions (
            action_id    bigserial PRIMARY KEY,
            run_id       bigint NOT NULL REFERENCES pgmill.tuning_runs ON DELETE CASCADE,
            at           timestamptz NOT NULL DEFAULT clock_timestamp(),
            action       text NOT NULL CHECK (action IN
                           ('create','keep','drop','failed','drop_invalid','rollback_drop','trade')),
            schema_name  text NOT NULL,
            index_name   text NOT NULL,
            table_name   text NOT NULL,
            definition   text,
            size_bytes   bigint,
            reason       text,
            detail       jsonb
        );
        CREATE INDEX IF NOT EXISTS index_actions_run ON pgmill.index_actions (run_id, action_id);
        CREATE INDEX IF NOT EXISTS index_actions_index ON pgmill.index_actions (schema_name, index_name);
        CREATE TABLE IF NOT EXISTS pgmill.workload_snapshots (
            snapshot_id  bigserial PRIMARY KEY,
            run_id       bigint REFERENCES pgmill.tuning_runs ON DELETE SET NULL,
            taken_at     timestamptz NOT NULL DEFAULT now(),
            fingerprint  text NOT NULL,
            data_bytes   bigint NOT NULL,
            queries      jsonb NOT NULL
        );
        """,
    ),
    (
        5,
        "schedules: expected runs and the service instances that claim them",
        """
        CREATE TABLE IF NOT EXISTS pgmill.expected_runs (
            job            text NOT NULL,
            scheduled_for  timestamptz NOT NULL,
            state          text NOT NULL DEFAULT 'pending' CHECK (state IN
                             ('pending','running','succeeded','failed','timed_out','missed','skipped')),
            run_id         bigint,
            claimed_by     text,
            claimed_at     timestamptz,
            lease_until    timestamptz,
            started_at     timestamptz,
            finished_at    timestamptz,
            attempts       integer NOT NULL DEFAULT 0,
            error          text,
            created_at     timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (job, scheduled_for)
        );
        CREATE INDEX IF NOT EXISTS expected_runs_open ON pgmill.expected_runs (scheduled_for)
            WHERE state IN ('pending', 'running');
        CREATE INDEX IF NOT EXISTS expected_runs_state ON pgmill.expected_runs (state, scheduled_for);

        CREATE TABLE IF NOT EXISTS pgmill.service_instances (
            instance       text PRIMARY KEY,
            host           text NOT NULL,
            pid            integer NOT NULL,
            started_at     timestamptz NOT NULL DEFAULT now(),
            last_tick_at   timestamptz,
            tick_seconds   double precision NOT NULL,
            ticks          bigint NOT NULL DEFAULT 0,
            ticks_skipped  bigint NOT NULL DEFAULT 0,
            db_reconnects  bigint NOT NULL DEFAULT 0,
            stopped_at     timestamptz
        );
        """,
    ),
    (
        8,
        "metrics: indexes the scrape-time ledger queries read",
        """
        -- runs: every figure of the scrape (counts, rows, bytes, retries, durations) from the index alone;
        -- the same keys as runs_pipeline_started, which it replaces
        CREATE INDEX IF NOT EXISTS runs_pipeline_started_covering ON pgmill.runs (pipeline, started_at DESC)
            INCLUDE (status, finished_at, rows_read, rows_inserted, rows_updated, rows_unchanged,
                     rows_quarantined, rows_duplicate, bytes_read, retries);
        DROP INDEX IF EXISTS pgmill.runs_pipeline_started;

        -- expected runs by job and state, late slots, and the success-rate window, from the index alone
        CREATE INDEX IF NOT EXISTS expected_runs_job_state ON pgmill.expected_runs (job, state, scheduled_for)
            INCLUDE (started_at, attempts);

        -- the newest tuning run that measured latency
        CREATE INDEX IF NOT EXISTS tuning_runs_measured ON pgmill.tuning_runs (run_id DESC)
            WHERE status = 'succeeded' AND report ? 'applied';

        -- the indexes tuning kept
        CREATE INDEX IF NOT EXISTS index_actions_kept ON pgmill.index_actions (schema_name, index_name)
            WHERE action = 'keep';

        -- alert deliveries (migration 6, where it is in place with these columns): counts by channel and
        -- status, and the latest delivery of each channel
        DO $$
        BEGIN
            IF (SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass('pgmill.alert_deliveries')
                AND attname IN ('channel', 'status', 'at') AND NOT attisdropped) = 3 THEN
                CREATE INDEX IF NOT EXISTS alert_deliveries_channel_at
                    ON pgmill.alert_deliveries (channel, at DESC) INCLUDE (status);
            END IF;
        END
        $$;
        """,
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
