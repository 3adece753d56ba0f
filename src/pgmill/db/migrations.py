"""Versioned, idempotent migrations of pgmill's own schema `pgmill`.

Each migration runs once, in a transaction, under an advisory lock so that concurrent processes do not
race; the version table records what has been applied.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

#: failing values kept per rule (and per duplicate group), by the checks and by migration 3's sampling
#: aggregate: enough to find the rows, small enough to store. Databases keep the aggregate they were
#: migrated with, so a new value needs a new migration that replaces the aggregate's functions.
SAMPLE_SIZE = 10

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
    (
        3,
        "quality check results and the sampling aggregate",
        sql.SQL("""
        CREATE SEQUENCE IF NOT EXISTS pgmill.quality_run_id;

        CREATE TABLE IF NOT EXISTS pgmill.quality_results (
            id           bigserial PRIMARY KEY,
            run_id       bigint NOT NULL,
            table_name   text NOT NULL,
            rule         text NOT NULL,
            kind         text NOT NULL,
            columns      text[] NOT NULL DEFAULT '{{}}',
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
            AS $$ SELECT CASE WHEN cardinality(acc) >= {sample} THEN acc ELSE acc || item END $$;
        CREATE OR REPLACE FUNCTION pgmill.quality_sample_merge(a jsonb[], b jsonb[]) RETURNS jsonb[]
            LANGUAGE sql IMMUTABLE PARALLEL SAFE
            AS $$ SELECT (a || b)[1:{sample}] $$;
        CREATE OR REPLACE AGGREGATE pgmill.quality_sample(jsonb) (
            SFUNC = pgmill.quality_sample_add, STYPE = jsonb[], INITCOND = '{{}}',
            COMBINEFUNC = pgmill.quality_sample_merge, PARALLEL = SAFE
        );
        """).format(sample=sql.Literal(SAMPLE_SIZE)).as_string(),
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
        6,
        "alerts: state per rule and subject, events, delivery attempts",
        """
        CREATE TABLE IF NOT EXISTS pgmill.alert_state (
            rule           text NOT NULL,
            subject        text NOT NULL,
            kind           text NOT NULL,
            status         text NOT NULL CHECK (status IN ('firing','resolved')),
            since          timestamptz NOT NULL,
            last_seen      timestamptz NOT NULL,
            cleared_at     timestamptz,       -- firing, but its condition has been false since then
            last_notified  timestamptz,
            notifications  integer NOT NULL DEFAULT 0,
            occurrence     text,              -- e.g. the missed slot: a new one notifies again
            message        text NOT NULL,
            value          double precision,
            PRIMARY KEY (rule, subject)
        );
        CREATE INDEX IF NOT EXISTS alert_state_firing ON pgmill.alert_state (since DESC) WHERE status = 'firing';

        CREATE TABLE IF NOT EXISTS pgmill.alert_events (
            event_id     bigserial PRIMARY KEY,
            at           timestamptz NOT NULL DEFAULT now(),
            kind         text NOT NULL CHECK (kind IN
                           ('firing','renotify','resolved','digest','test','channel_failing')),
            rule         text,
            subject      text,
            title        text NOT NULL,
            message      text NOT NULL,
            value        double precision,
            channels     text[] NOT NULL DEFAULT '{}',
            undelivered  text[] NOT NULL DEFAULT '{}',  -- channels not yet sent to or given up on (the outbox)
            covers       bigint[]                       -- a digest: the events it carries
        );
        CREATE INDEX IF NOT EXISTS alert_events_at ON pgmill.alert_events (at DESC);
        CREATE INDEX IF NOT EXISTS alert_events_rule ON pgmill.alert_events (rule, subject, at DESC);
        CREATE INDEX IF NOT EXISTS alert_events_outbox ON pgmill.alert_events (at)
            WHERE undelivered <> '{}';

        CREATE TABLE IF NOT EXISTS pgmill.alert_deliveries (
            delivery_id  bigserial PRIMARY KEY,
            event_id     bigint NOT NULL REFERENCES pgmill.alert_events ON DELETE CASCADE,
            channel      text NOT NULL,
            attempt      integer NOT NULL,
            status       text NOT NULL CHECK (status IN ('sent','failed')),
            final        boolean NOT NULL,              -- the last attempt for this event and channel
            error        text,
            latency_ms   double precision NOT NULL,
            at           timestamptz NOT NULL DEFAULT clock_timestamp()
        );
        CREATE INDEX IF NOT EXISTS alert_deliveries_event ON pgmill.alert_deliveries (event_id, delivery_id);
        CREATE INDEX IF NOT EXISTS alert_deliveries_channel ON pgmill.alert_deliveries (channel, delivery_id DESC);
        CREATE INDEX IF NOT EXISTS alert_deliveries_at ON pgmill.alert_deliveries (at DESC);

        -- the alert conditions: a run's expected run; runs and slots over a window (success_rate)
        CREATE INDEX IF NOT EXISTS expected_runs_run ON pgmill.expected_runs (run_id) WHERE run_id IS NOT NULL;
        CREATE INDEX IF NOT EXISTS expected_runs_finished ON pgmill.expected_runs (finished_at);
        CREATE INDEX IF NOT EXISTS runs_finished ON pgmill.runs (finished_at);
        """,
    ),
    (
        7,
        "cost per run: the drivers each measured command used, shared among its runs, and their dollars",
        """
        CREATE SEQUENCE IF NOT EXISTS pgmill.cost_invocation_id;

        -- one row per run of a measured command (a load, the models' build), plus one for the command's
        -- work outside any run (setup, table checks, re-tuning); docs/cost.md has the allocation model
        CREATE TABLE IF NOT EXISTS pgmill.run_costs (
            cost_id             bigserial PRIMARY KEY,
            invocation          bigint NOT NULL,
            run_id              bigint UNIQUE,
            job                 text NOT NULL,
            started_at          timestamptz NOT NULL,
            finished_at         timestamptz NOT NULL,
            cpu_seconds         double precision NOT NULL,
            db_seconds          double precision,
            db_source           text CHECK (db_source IN ('pg_stat_statements', 'pg_stat_database')),
            bytes_written       bigint,
            storage_delta_bytes bigint,
            bytes_processed     bigint NOT NULL DEFAULT 0,
            database_bytes      bigint,
            files_bytes         bigint,
            compute_usd         double precision NOT NULL,
            database_usd        double precision,
            recorded_at         timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX IF NOT EXISTS run_costs_finished ON pgmill.run_costs (finished_at);
        CREATE INDEX IF NOT EXISTS run_costs_job ON pgmill.run_costs (job, finished_at);
        COMMENT ON COLUMN pgmill.run_costs.run_id IS 'the pgmill.runs row; NULL: the command''s work outside any run';
        COMMENT ON COLUMN pgmill.run_costs.cpu_seconds IS 'pgmill''s process CPU, user + system';
        COMMENT ON COLUMN pgmill.run_costs.db_seconds IS 'time the database spent on pgmill''s statements; NULL: not measured';
        COMMENT ON COLUMN pgmill.run_costs.bytes_written IS 'WAL bytes the database wrote; NULL: not measured';
        COMMENT ON COLUMN pgmill.run_costs.storage_delta_bytes IS 'growth of tables and indexes; NULL: not measured';
        COMMENT ON COLUMN pgmill.run_costs.bytes_processed IS 'source bytes read (pgmill.runs.bytes_read)';
        COMMENT ON COLUMN pgmill.run_costs.database_bytes IS 'the database''s size when the command ended';
        COMMENT ON COLUMN pgmill.run_costs.files_bytes IS 'pgmill''s own files when the command ended';
        COMMENT ON COLUMN pgmill.run_costs.compute_usd IS 'cpu_seconds at the prices of the day';
        COMMENT ON COLUMN pgmill.run_costs.database_usd IS 'db_seconds at the prices of the day; NULL: not measured';
        """,
    ),
    (
        8,
        "metrics: run totals kept by a trigger, indexes the scrape-time queries read",
        """
        -- run totals by pipeline and status: what a metrics scrape reads instead of aggregating all of
        -- pgmill.runs (whose history only grows). Triggers keep them in the transaction that ends a run; a
        -- run deleted later (retention) stays counted, as a Prometheus counter must.
        CREATE OR REPLACE FUNCTION pgmill.run_duration_bounds() RETURNS float8[]
            LANGUAGE sql IMMUTABLE PARALLEL SAFE
            AS $$ SELECT '{1,5,15,30,60,120,300,600,1800,3600,7200}'::float8[] $$;

        CREATE TABLE IF NOT EXISTS pgmill.run_totals (
            pipeline         text NOT NULL,
            status           text NOT NULL,
            runs             bigint NOT NULL,
            rows_read        bigint NOT NULL,
            rows_inserted    bigint NOT NULL,
            rows_updated     bigint NOT NULL,
            rows_unchanged   bigint NOT NULL,
            rows_quarantined bigint NOT NULL,
            rows_duplicate   bigint NOT NULL,
            bytes_read       bigint NOT NULL,
            retries          bigint NOT NULL,
            seconds          double precision NOT NULL,  -- summed durations of the runs with one
            timed            bigint NOT NULL,            -- runs with a duration (finished_at set)
            le               bigint[] NOT NULL,          -- cumulative: runs that took at most each bound
            last_finished_at timestamptz,
            PRIMARY KEY (pipeline, status)
        );

        -- add (k = 1) or take back (k = -1) one ended run
        CREATE OR REPLACE FUNCTION pgmill.run_totals_add(r pgmill.runs, k integer) RETURNS void
            LANGUAGE plpgsql AS $$
        DECLARE
            dur float8 := CASE WHEN r.finished_at IS NOT NULL
                               THEN greatest(date_part('epoch', r.finished_at - r.started_at), 0) END;
            cum bigint[] := ARRAY(SELECT CASE WHEN dur <= b.bound THEN k ELSE 0 END
                                  FROM unnest(pgmill.run_duration_bounds()) WITH ORDINALITY b(bound, i) ORDER BY b.i);
        BEGIN
            INSERT INTO pgmill.run_totals AS t (pipeline, status, runs, rows_read, rows_inserted, rows_updated,
                rows_unchanged, rows_quarantined, rows_duplicate, bytes_read, retries, seconds, timed, le,
                last_finished_at)
            VALUES (r.pipeline, r.status, k, k * r.rows_read, k * r.rows_inserted, k * r.rows_updated,
                k * r.rows_unchanged, k * r.rows_quarantined, k * r.rows_duplicate, k * r.bytes_read, k * r.retries,
                k * coalesce(dur, 0), CASE WHEN dur IS NULL THEN 0 ELSE k END, cum,
                CASE WHEN k > 0 THEN r.finished_at END)
            ON CONFLICT (pipeline, status) DO UPDATE SET
                runs = t.runs + excluded.runs, rows_read = t.rows_read + excluded.rows_read,
                rows_inserted = t.rows_inserted + excluded.rows_inserted,
                rows_updated = t.rows_updated + excluded.rows_updated,
                rows_unchanged = t.rows_unchanged + excluded.rows_unchanged,
                rows_quarantined = t.rows_quarantined + excluded.rows_quarantined,
                rows_duplicate = t.rows_duplicate + excluded.rows_duplicate,
                bytes_read = t.bytes_read + excluded.bytes_read, retries = t.retries + excluded.retries,
                seconds = t.seconds + excluded.seconds, timed = t.timed + excluded.timed,
                le = ARRAY(SELECT x + y FROM unnest(t.le, excluded.le) WITH ORDINALITY u(x, y, i) ORDER BY u.i),
                last_finished_at = greatest(t.last_finished_at, excluded.last_finished_at);
        END $$;

        CREATE OR REPLACE FUNCTION pgmill.run_totals_follow() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' AND OLD.status <> 'running' THEN
                PERFORM pgmill.run_totals_add(OLD, -1);
            END IF;
            IF NEW.status <> 'running' THEN
                PERFORM pgmill.run_totals_add(NEW, 1);
            END IF;
            RETURN NULL;
        END $$;

        -- a checkpoint's update of a running run fires nothing (the WHEN clauses): the load's hot path is as before
        CREATE OR REPLACE TRIGGER run_totals_insert AFTER INSERT ON pgmill.runs FOR EACH ROW
            WHEN (NEW.status <> 'running') EXECUTE FUNCTION pgmill.run_totals_follow();
        CREATE OR REPLACE TRIGGER run_totals_update AFTER UPDATE OF pipeline, status, started_at, finished_at,
                rows_read, rows_inserted, rows_updated, rows_unchanged, rows_quarantined, rows_duplicate,
                bytes_read, retries ON pgmill.runs FOR EACH ROW
            WHEN (OLD.status <> 'running' OR NEW.status <> 'running') EXECUTE FUNCTION pgmill.run_totals_follow();

        -- the totals of the ended runs in pgmill.runs, in one pass (no row updated twice: no bloat)
        CREATE OR REPLACE FUNCTION pgmill.run_totals_rebuild() RETURNS void LANGUAGE sql AS $$
            DELETE FROM pgmill.run_totals;
            WITH r AS (
                SELECT pipeline, status, rows_read, rows_inserted, rows_updated, rows_unchanged, rows_quarantined,
                       rows_duplicate, bytes_read, retries, finished_at,
                       CASE WHEN finished_at IS NOT NULL
                            THEN greatest(date_part('epoch', finished_at - started_at), 0) END AS d
                FROM pgmill.runs WHERE status <> 'running'),
            cum AS (
                SELECT pipeline, status, array_agg(n ORDER BY i) AS le FROM (
                    SELECT r.pipeline, r.status, b.i, count(*) FILTER (WHERE r.d <= b.bound) AS n
                    FROM r CROSS JOIN unnest(pgmill.run_duration_bounds()) WITH ORDINALITY b(bound, i)
                    GROUP BY 1, 2, 3) per_bound
                GROUP BY 1, 2)
            INSERT INTO pgmill.run_totals (pipeline, status, runs, rows_read, rows_inserted, rows_updated,
                rows_unchanged, rows_quarantined, rows_duplicate, bytes_read, retries, seconds, timed, le,
                last_finished_at)
            SELECT r.pipeline, r.status, count(*), sum(r.rows_read), sum(r.rows_inserted), sum(r.rows_updated),
                   sum(r.rows_unchanged), sum(r.rows_quarantined), sum(r.rows_duplicate), sum(r.bytes_read),
                   sum(r.retries), coalesce(sum(r.d), 0), count(r.d), min(cum.le), max(r.finished_at)
            FROM r JOIN cum USING (pipeline, status) GROUP BY r.pipeline, r.status;
        $$;

        -- the runs that ended before the triggers (which now hold writers off until this commits)
        SELECT pgmill.run_totals_rebuild();

        -- the runs going on (their checkpoints count as they commit)
        CREATE INDEX IF NOT EXISTS runs_running ON pgmill.runs (pipeline) WHERE status = 'running';

        -- the slots of a recent window by job and state, from the index alone
        CREATE INDEX IF NOT EXISTS expected_runs_due ON pgmill.expected_runs (scheduled_for) INCLUDE (job, state);

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
    (
        9,
        "quarantined rows per UTC day, pipeline and table, kept by triggers (the dashboard's quarantine page)",
        """
        -- what the dashboard reads instead of counting pgmill.quarantine, which can hold millions of rows:
        -- with 1,000,000 rows in 30 days an index-only scan of (quarantined_at) still took 1.6 s; this is
        -- 30 days x pipelines rows. Statement triggers over the transition tables cost one GROUP BY per
        -- COPY or DELETE (a checkpoint's quarantined rows, a replay's loaded rows).
        CREATE TABLE IF NOT EXISTS pgmill.quarantine_days (
            day          date NOT NULL,  -- quarantined_at's day in UTC
            pipeline     text NOT NULL,
            target_table text NOT NULL,
            rows         bigint NOT NULL,
            PRIMARY KEY (day, pipeline, target_table)
        );

        -- a statement's inserted or deleted rows (rows that come to 0 stay, read as nothing: deleting them
        -- would race a writer adding to the same day)
        CREATE OR REPLACE FUNCTION pgmill.quarantine_days_add() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                INSERT INTO pgmill.quarantine_days AS d (day, pipeline, target_table, rows)
                SELECT (quarantined_at AT TIME ZONE 'UTC')::date, pipeline, target_table, count(*)
                FROM new_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
                ON CONFLICT (day, pipeline, target_table) DO UPDATE SET rows = d.rows + excluded.rows;
            ELSE
                INSERT INTO pgmill.quarantine_days AS d (day, pipeline, target_table, rows)
                SELECT (quarantined_at AT TIME ZONE 'UTC')::date, pipeline, target_table, -count(*)
                FROM old_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
                ON CONFLICT (day, pipeline, target_table) DO UPDATE SET rows = d.rows + excluded.rows;
            END IF;
            RETURN NULL;
        END $$;

        -- a row moved to another day, pipeline or table (replay's UPDATE of violations does not fire it)
        CREATE OR REPLACE FUNCTION pgmill.quarantine_days_move() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO pgmill.quarantine_days AS d (day, pipeline, target_table, rows)
            VALUES ((OLD.quarantined_at AT TIME ZONE 'UTC')::date, OLD.pipeline, OLD.target_table, -1)
            ON CONFLICT (day, pipeline, target_table) DO UPDATE SET rows = d.rows + excluded.rows;
            INSERT INTO pgmill.quarantine_days AS d (day, pipeline, target_table, rows)
            VALUES ((NEW.quarantined_at AT TIME ZONE 'UTC')::date, NEW.pipeline, NEW.target_table, 1)
            ON CONFLICT (day, pipeline, target_table) DO UPDATE SET rows = d.rows + excluded.rows;
            RETURN NULL;
        END $$;

        CREATE OR REPLACE FUNCTION pgmill.quarantine_days_clear() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM pgmill.quarantine_days;
            RETURN NULL;
        END $$;

        DROP TRIGGER IF EXISTS quarantine_days_insert ON pgmill.quarantine;
        CREATE TRIGGER quarantine_days_insert AFTER INSERT ON pgmill.quarantine
            REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgmill.quarantine_days_add();
        DROP TRIGGER IF EXISTS quarantine_days_delete ON pgmill.quarantine;
        CREATE TRIGGER quarantine_days_delete AFTER DELETE ON pgmill.quarantine
            REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION pgmill.quarantine_days_add();
        DROP TRIGGER IF EXISTS quarantine_days_update ON pgmill.quarantine;
        CREATE TRIGGER quarantine_days_update AFTER UPDATE OF quarantined_at, pipeline, target_table
            ON pgmill.quarantine FOR EACH ROW EXECUTE FUNCTION pgmill.quarantine_days_move();
        DROP TRIGGER IF EXISTS quarantine_days_truncate ON pgmill.quarantine;
        CREATE TRIGGER quarantine_days_truncate AFTER TRUNCATE ON pgmill.quarantine
            FOR EACH STATEMENT EXECUTE FUNCTION pgmill.quarantine_days_clear();

        -- the rows there before the triggers (which hold writers off until this commits)
        LOCK TABLE pgmill.quarantine IN SHARE ROW EXCLUSIVE MODE;
        DELETE FROM pgmill.quarantine_days;
        INSERT INTO pgmill.quarantine_days (day, pipeline, target_table, rows)
        SELECT (quarantined_at AT TIME ZONE 'UTC')::date, pipeline, target_table, count(*)
        FROM pgmill.quarantine GROUP BY 1, 2, 3;
        """,
    ),
    (
        10,
        "cost and alert pages: the first measurement, storage measured in a window, digests in a window",
        """
        -- the cost report: when measuring began (min), and the sizes measured over a month, from the index alone
        CREATE INDEX IF NOT EXISTS run_costs_started ON pgmill.run_costs (started_at);
        CREATE INDEX IF NOT EXISTS run_costs_recorded ON pgmill.run_costs (recorded_at)
            INCLUDE (invocation, database_bytes, files_bytes);
        -- the digests that carried a window's alert events (list_alerts)
        CREATE INDEX IF NOT EXISTS alert_events_digests ON pgmill.alert_events (at) WHERE kind = 'digest';
        """,
    ),
    (
        11,
        "the runs page: runs by start over all pipelines, the runs of one measured command",
        """
        -- the runs of a time window over every pipeline (runs_pipeline_started serves one pipeline)
        CREATE INDEX IF NOT EXISTS runs_started ON pgmill.runs (started_at DESC);
        -- the other runs of the command a run belongs to (its cost row's invocation)
        CREATE INDEX IF NOT EXISTS run_costs_invocation ON pgmill.run_costs (invocation);
        """,
    ),
    (
        12,
        "archives: expired partitions written to Parquet before they were dropped",
        """
        CREATE TABLE IF NOT EXISTS pgmill.archives (
            archive_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            table_name text NOT NULL,
            partition_name text NOT NULL,
            bounds text NOT NULL,
            rows bigint NOT NULL,
            bytes bigint NOT NULL,
            sha256 text NOT NULL,
            path text NOT NULL,
            archived_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX IF NOT EXISTS archives_table ON pgmill.archives (table_name, archived_at);
        """,
    ),
    (
        13,
        "split files: one checkpoint per byte range",
        """
        -- the ranges a large file was cut into (planned once per content, committed with the first range's
        -- first checkpoint) and each range's progress; pgmill.files gets the file's row, complete when
        -- every range is
        CREATE TABLE IF NOT EXISTS pgmill.file_ranges (
            pipeline     text NOT NULL,
            path         text NOT NULL,
            sha256       text NOT NULL,
            range_start  bigint NOT NULL,
            range_end    bigint NOT NULL,
            first_line   bigint NOT NULL,
            records_done bigint NOT NULL DEFAULT 0,
            byte_offset  bigint NOT NULL,
            next_line    bigint NOT NULL,
            complete     boolean NOT NULL DEFAULT false,
            run_id       bigint,
            loaded_at    timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (pipeline, path, sha256, range_start)
        );
        """,
    ),
    (
        14,
        "arrival-to-queryable latency: load steps that measured it, by when they finished",
        """
        -- a followed pipeline is one long run: its recent load steps are found by their own time, not the run's
        CREATE INDEX IF NOT EXISTS run_steps_arrival ON pgmill.run_steps (finished_at)
            WHERE detail ? 'arrival_to_queryable_s';
        """,
    ),
    (
        15,
        "change data capture's counts: deletions applied, changes superseded within a batch",
        """
        ALTER TABLE pgmill.runs ADD COLUMN IF NOT EXISTS rows_deleted bigint NOT NULL DEFAULT 0;
        ALTER TABLE pgmill.runs ADD COLUMN IF NOT EXISTS rows_superseded bigint NOT NULL DEFAULT 0;
        ALTER TABLE pgmill.run_totals ADD COLUMN IF NOT EXISTS rows_deleted bigint NOT NULL DEFAULT 0;
        ALTER TABLE pgmill.run_totals ADD COLUMN IF NOT EXISTS rows_superseded bigint NOT NULL DEFAULT 0;

        -- the totals follow the two new counts (migration 8's functions, with them)
        CREATE OR REPLACE FUNCTION pgmill.run_totals_add(r pgmill.runs, k integer) RETURNS void
            LANGUAGE plpgsql AS $$
        DECLARE
            dur float8 := CASE WHEN r.finished_at IS NOT NULL
                               THEN greatest(date_part('epoch', r.finished_at - r.started_at), 0) END;
            cum bigint[] := ARRAY(SELECT CASE WHEN dur <= b.bound THEN k ELSE 0 END
                                  FROM unnest(pgmill.run_duration_bounds()) WITH ORDINALITY b(bound, i) ORDER BY b.i);
        BEGIN
            INSERT INTO pgmill.run_totals AS t (pipeline, status, runs, rows_read, rows_inserted, rows_updated,
                rows_unchanged, rows_quarantined, rows_duplicate, rows_deleted, rows_superseded, bytes_read, retries,
                seconds, timed, le, last_finished_at)
            VALUES (r.pipeline, r.status, k, k * r.rows_read, k * r.rows_inserted, k * r.rows_updated,
                k * r.rows_unchanged, k * r.rows_quarantined, k * r.rows_duplicate, k * r.rows_deleted,
                k * r.rows_superseded, k * r.bytes_read, k * r.retries,
                k * coalesce(dur, 0), CASE WHEN dur IS NULL THEN 0 ELSE k END, cum,
                CASE WHEN k > 0 THEN r.finished_at END)
            ON CONFLICT (pipeline, status) DO UPDATE SET
                runs = t.runs + excluded.runs, rows_read = t.rows_read + excluded.rows_read,
                rows_inserted = t.rows_inserted + excluded.rows_inserted,
                rows_updated = t.rows_updated + excluded.rows_updated,
                rows_unchanged = t.rows_unchanged + excluded.rows_unchanged,
                rows_quarantined = t.rows_quarantined + excluded.rows_quarantined,
                rows_duplicate = t.rows_duplicate + excluded.rows_duplicate,
                rows_deleted = t.rows_deleted + excluded.rows_deleted,
                rows_superseded = t.rows_superseded + excluded.rows_superseded,
                bytes_read = t.bytes_read + excluded.bytes_read, retries = t.retries + excluded.retries,
                seconds = t.seconds + excluded.seconds, timed = t.timed + excluded.timed,
                le = ARRAY(SELECT x + y FROM unnest(t.le, excluded.le) WITH ORDINALITY u(x, y, i) ORDER BY u.i),
                last_finished_at = greatest(t.last_finished_at, excluded.last_finished_at);
        END $$;

        CREATE OR REPLACE TRIGGER run_totals_update AFTER UPDATE OF pipeline, status, started_at, finished_at,
                rows_read, rows_inserted, rows_updated, rows_unchanged, rows_quarantined, rows_duplicate,
                rows_deleted, rows_superseded, bytes_read, retries ON pgmill.runs FOR EACH ROW
            WHEN (OLD.status <> 'running' OR NEW.status <> 'running') EXECUTE FUNCTION pgmill.run_totals_follow();

        CREATE OR REPLACE FUNCTION pgmill.run_totals_rebuild() RETURNS void LANGUAGE sql AS $$
            DELETE FROM pgmill.run_totals;
            WITH r AS (
                SELECT pipeline, status, rows_read, rows_inserted, rows_updated, rows_unchanged, rows_quarantined,
                       rows_duplicate, rows_deleted, rows_superseded, bytes_read, retries, finished_at,
                       CASE WHEN finished_at IS NOT NULL
                            THEN greatest(date_part('epoch', finished_at - started_at), 0) END AS d
                FROM pgmill.runs WHERE status <> 'running'),
            cum AS (
                SELECT pipeline, status, array_agg(n ORDER BY i) AS le FROM (
                    SELECT r.pipeline, r.status, b.i, count(*) FILTER (WHERE r.d <= b.bound) AS n
                    FROM r CROSS JOIN unnest(pgmill.run_duration_bounds()) WITH ORDINALITY b(bound, i)
                    GROUP BY 1, 2, 3) per_bound
                GROUP BY 1, 2)
            INSERT INTO pgmill.run_totals (pipeline, status, runs, rows_read, rows_inserted, rows_updated,
                rows_unchanged, rows_quarantined, rows_duplicate, rows_deleted, rows_superseded, bytes_read, retries,
                seconds, timed, le, last_finished_at)
            SELECT r.pipeline, r.status, count(*), sum(r.rows_read), sum(r.rows_inserted), sum(r.rows_updated),
                   sum(r.rows_unchanged), sum(r.rows_quarantined), sum(r.rows_duplicate), sum(r.rows_deleted),
                   sum(r.rows_superseded), sum(r.bytes_read),
                   sum(r.retries), coalesce(sum(r.d), 0), count(r.d), min(cum.le), max(r.finished_at)
            FROM r JOIN cum USING (pipeline, status) GROUP BY r.pipeline, r.status;
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
