"""The run store's SQL schema as an ordered list of migrations.

LangGraph's checkpoint tables are created by AsyncPostgresSaver.setup(); these are ours.
Migrations run under an advisory lock, so concurrent starters are safe.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import tuple_row

from graphmesh.errors import FailedPrecondition

# A process-wide lock key for schema changes ("graphmesh" in ASCII, folded to 63 bits).
MIGRATION_LOCK_KEY = 0x67726170686D657368 & 0x7FFFFFFFFFFFFFFF
MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(%s)"

MIGRATIONS: list[str] = [
    """
    CREATE TABLE IF NOT EXISTS gm_schema_migrations (
        version integer PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE gm_threads (
        thread_id text PRIMARY KEY,
        graph text NOT NULL,
        -- The run that holds the thread; NULL when idle. The one-run-per-thread rule lives here.
        active_run_id uuid,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE gm_runs (
        run_id uuid PRIMARY KEY,
        thread_id text NOT NULL REFERENCES gm_threads (thread_id),
        graph text NOT NULL,
        graph_version text NOT NULL,
        prompt_version text NOT NULL DEFAULT '',
        model_route text NOT NULL DEFAULT '',
        tool_version text NOT NULL DEFAULT '',
        state_schema_version text NOT NULL DEFAULT '',
        status text NOT NULL CHECK (status IN ('QUEUED', 'RUNNING', 'PAUSED',
            'WAITING_FOR_APPROVAL', 'COMPLETED', 'FAILED', 'CANCELLED')),
        attempt integer NOT NULL DEFAULT 1,
        error_code text,
        error_message text,
        error_node text,
        previous_errors jsonb NOT NULL DEFAULT '[]',
        owner text NOT NULL DEFAULT '',
        idempotency_key text,
        metadata jsonb NOT NULL DEFAULT '{}',
        input jsonb,
        multitask_strategy text NOT NULL DEFAULT 'reject',
        sync boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now(),
        started_at timestamptz,
        updated_at timestamptz NOT NULL DEFAULT now(),
        finished_at timestamptz,
        -- Fenced lease: a worker may write only while it holds lease_epoch.
        lease_owner text,
        lease_expires_at timestamptz,
        lease_epoch bigint NOT NULL DEFAULT 0,
        -- Last per-run event sequence number handed out.
        event_seq bigint NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX gm_runs_idempotency ON gm_runs (owner, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX gm_runs_thread ON gm_runs (thread_id, created_at);
    CREATE INDEX gm_runs_status ON gm_runs (status, created_at);
    CREATE INDEX gm_runs_page ON gm_runs (created_at DESC, run_id DESC);
    -- A second guard under the thread lock: never two progressing runs on one thread.
    CREATE UNIQUE INDEX gm_runs_one_progressing_per_thread ON gm_runs (thread_id)
        WHERE status IN ('RUNNING', 'PAUSED', 'WAITING_FOR_APPROVAL');
    """,
    """
    -- What the next execution resumes the graph with: interrupt id -> resume value.
    ALTER TABLE gm_runs ADD COLUMN resume_with jsonb;
    CREATE TABLE gm_approvals (
        approval_id uuid PRIMARY KEY,
        run_id uuid NOT NULL REFERENCES gm_runs (run_id),
        thread_id text NOT NULL,
        graph text NOT NULL,
        graph_version text NOT NULL,
        node text NOT NULL,
        interrupt_id text NOT NULL,
        payload jsonb NOT NULL,
        required_role text NOT NULL DEFAULT '',
        status text NOT NULL CHECK (status IN ('PENDING', 'APPROVED', 'REJECTED', 'EDITED',
            'EXPIRED', 'CANCELLED')),
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz,
        decision_kind text,
        edited_value jsonb,
        comment text,
        reviewer text,
        decided_at timestamptz,
        -- Set when the decision has been handed to the run's resume.
        consumed boolean NOT NULL DEFAULT false,
        UNIQUE (run_id, interrupt_id)
    );
    CREATE INDEX gm_approvals_status ON gm_approvals (status, created_at);
    CREATE INDEX gm_approvals_page ON gm_approvals (created_at DESC, approval_id DESC);
    CREATE INDEX gm_approvals_expiry ON gm_approvals (expires_at) WHERE status = 'PENDING';
    CREATE TABLE gm_audit (
        record_id bigserial PRIMARY KEY,
        time timestamptz NOT NULL DEFAULT now(),
        actor text NOT NULL,
        action text NOT NULL,
        approval_id uuid,
        run_id uuid,
        details jsonb NOT NULL DEFAULT '{}'
    );
    CREATE INDEX gm_audit_run ON gm_audit (run_id, record_id);
    CREATE FUNCTION gm_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'gm_audit is append-only';
    END $$;
    CREATE TRIGGER gm_audit_append_only BEFORE UPDATE OR DELETE ON gm_audit
        FOR EACH ROW EXECUTE FUNCTION gm_audit_append_only();
    -- Transactional outbox: bus messages written with the change they announce, published
    -- after commit, and re-published by a relay if the publisher died in between.
    CREATE TABLE gm_outbox (
        id bigserial PRIMARY KEY,
        subject text NOT NULL,
        msg_id text NOT NULL,
        payload bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    );
    """,
    """
    -- Cancellation asked of a running run: its worker stops it and records CANCELLED.
    ALTER TABLE gm_runs ADD COLUMN cancel_reason text;
    ALTER TABLE gm_runs ADD COLUMN cancel_action text;
    -- Claims since the run last came to rest: each one beyond the first is an execution
    -- that ended without recording a result (its worker crashed or was killed).
    ALTER TABLE gm_runs ADD COLUMN claims_without_result integer NOT NULL DEFAULT 0;
    -- Runs stopped after too many executions that ended without a result, kept for inspection.
    CREATE TABLE gm_dead_letters (
        run_id uuid NOT NULL REFERENCES gm_runs (run_id),
        attempt integer NOT NULL,
        deliveries integer NOT NULL,
        worker_id text NOT NULL,
        reason text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (run_id, attempt)
    );
    -- Nodes an operator switched off: a run about to execute one pauses before it.
    CREATE TABLE gm_disabled_nodes (
        graph text NOT NULL,
        node text NOT NULL,
        reason text NOT NULL,
        disabled_by text NOT NULL,
        disabled_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (graph, node)
    );
    -- Live workers, announced by heartbeat.
    CREATE TABLE gm_workers (
        worker_id text PRIMARY KEY,
        address text NOT NULL,
        capacity integer NOT NULL,
        active integer NOT NULL,
        draining boolean NOT NULL,
        graphs jsonb NOT NULL,
        started_at timestamptz NOT NULL,
        last_seen timestamptz NOT NULL DEFAULT now()
    );
    """,
    """
    -- Operator-set rollout weights per graph (version -> percent); absent: the manifest's.
    CREATE TABLE gm_rollouts (
        graph text PRIMARY KEY,
        weights jsonb NOT NULL,
        previous jsonb,
        updated_by text NOT NULL,
        reason text NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE gm_rollout_history (
        id bigserial PRIMARY KEY,
        graph text NOT NULL,
        action text NOT NULL,
        weights jsonb NOT NULL,
        previous jsonb,
        actor text NOT NULL,
        reason text NOT NULL,
        time timestamptz NOT NULL DEFAULT now()
    );
    """,
    """
    -- Checkpoint migrations applied while a run executed (see execution/migration.py).
    ALTER TABLE gm_runs ADD COLUMN migrations jsonb NOT NULL DEFAULT '[]';
    """,
    """
    -- The W3C traceparent of the span that created the run: the run's trace.
    ALTER TABLE gm_runs ADD COLUMN trace_context text NOT NULL DEFAULT '';
    -- The trace store (telemetry/span_store.py): finished spans of every process.
    CREATE TABLE gm_spans (
        trace_id text NOT NULL,
        span_id text NOT NULL,
        parent_span_id text NOT NULL,
        name text NOT NULL,
        service text NOT NULL,
        kind text NOT NULL,
        start_ns bigint NOT NULL,
        end_ns bigint NOT NULL,
        status text NOT NULL,
        status_message text NOT NULL,
        attributes jsonb NOT NULL,
        run_id text,
        recorded_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (trace_id, span_id)
    );
    CREATE INDEX gm_spans_run ON gm_spans (run_id) WHERE run_id IS NOT NULL;
    CREATE INDEX gm_spans_recorded ON gm_spans (recorded_at);
    """,
    """
    -- Static API tokens (auth/tokens.py): only their SHA-256 is stored.
    CREATE TABLE gm_api_tokens (
        token_id text PRIMARY KEY,
        principal text NOT NULL,
        roles jsonb NOT NULL,
        graphs jsonb NOT NULL,
        token_hash text NOT NULL UNIQUE,
        created_by text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        revoked_at timestamptz
    );
    -- The roles the run's owner held when it created the run (node policies check them).
    ALTER TABLE gm_runs ADD COLUMN owner_roles jsonb NOT NULL DEFAULT '[]';
    -- The audit trail stays append-only, except for a purge or a retention sweep, which
    -- announce themselves with SET LOCAL graphmesh.erasing = 'on' in their transaction.
    CREATE OR REPLACE FUNCTION gm_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' AND current_setting('graphmesh.erasing', true) = 'on' THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'gm_audit is append-only';
    END $$;
    """,
    """
    -- What the retention sweeper (graphmesh/retention.py) looks up by graph and age.
    CREATE INDEX gm_threads_graph_updated ON gm_threads (graph, updated_at);
    CREATE INDEX gm_runs_graph_finished ON gm_runs (graph, finished_at) WHERE finished_at IS NOT NULL;
    CREATE INDEX gm_approvals_graph_decided ON gm_approvals (graph, decided_at) WHERE status <> 'PENDING';
    """,
    """
    -- What interrupt() returns once decided (graphmesh/resume.py), fixed at request time.
    -- Approvals requested before this column keep the decision record they were asked with.
    ALTER TABLE gm_approvals ADD COLUMN resume_shape text NOT NULL DEFAULT 'record'
        CHECK (resume_shape IN ('plain', 'human_interrupt', 'hitl', 'record'));
    """,
    """
    -- What a run's CreateRun asked for (field -> digest: graph, pinned version, thread,
    -- input), so that an idempotency key reused for a different request is refused instead
    -- of answering with the first run. Runs created before this column have none (NULL).
    ALTER TABLE gm_runs ADD COLUMN request_fingerprint jsonb;
    """,
    """
    -- What review history and audit searches look up (ListApprovals, ListAuditRecords): by
    -- thread and by reviewer in the approvals' page order, by actor in record order, by time.
    CREATE INDEX gm_approvals_thread ON gm_approvals (thread_id, created_at DESC, approval_id DESC);
    CREATE INDEX gm_approvals_reviewer ON gm_approvals (reviewer, created_at DESC, approval_id DESC)
        WHERE reviewer IS NOT NULL;
    CREATE INDEX gm_audit_actor ON gm_audit (actor, record_id);
    CREATE INDEX gm_audit_time ON gm_audit (time);
    -- A purged or expired thread's record names the thread only in its details (no run).
    CREATE INDEX gm_audit_thread_erased ON gm_audit ((details->>'thread_id')) WHERE run_id IS NULL;
    """,
    """
    -- Schedules (crons) and webhooks (docs/schedules.md, docs/webhooks.md). A run records the
    -- schedule and the fire time that made it, and the webhook it notifies.
    ALTER TABLE gm_runs ADD COLUMN schedule_id uuid, ADD COLUMN scheduled_for timestamptz,
        ADD COLUMN webhook jsonb;
    CREATE INDEX gm_runs_schedule ON gm_runs (schedule_id, scheduled_for) WHERE schedule_id IS NOT NULL;
    CREATE TABLE gm_schedules (
        schedule_id uuid PRIMARY KEY,
        -- Who the schedule acts as: its creator, with the roles and graphs it held then.
        owner text NOT NULL,
        owner_roles text[] NOT NULL DEFAULT '{}',
        owner_graphs text[] NOT NULL DEFAULT '{}',
        graph text NOT NULL,
        graph_version text NOT NULL DEFAULT '',
        cron text NOT NULL,
        timezone text NOT NULL DEFAULT 'UTC',
        input jsonb NOT NULL DEFAULT '{}',
        metadata jsonb NOT NULL DEFAULT '{}',
        end_time timestamptz,
        -- A fixed thread every fire joins; NULL: a new thread per fire.
        thread_id text,
        multitask_strategy text NOT NULL DEFAULT 'enqueue',
        -- A new thread per fire: keep it, or delete it once its run has ended.
        on_run_completed text NOT NULL DEFAULT 'keep' CHECK (on_run_completed IN ('keep', 'delete')),
        missed_policy text NOT NULL DEFAULT 'skip' CHECK (missed_policy IN ('skip', 'catch_up')),
        catch_up_limit integer NOT NULL DEFAULT 10 CHECK (catch_up_limit >= 0),
        webhook jsonb,
        paused boolean NOT NULL DEFAULT false,
        -- The next scheduled time not yet handled; NULL once the schedule has ended.
        next_fire_at timestamptz,
        last_fire_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX gm_schedules_due ON gm_schedules (next_fire_at) WHERE NOT paused AND next_fire_at IS NOT NULL;
    CREATE INDEX gm_schedules_page ON gm_schedules (created_at DESC, schedule_id DESC);
    -- One row per scheduled time handled: the primary key makes a fire happen once, however
    -- many api replicas look at the schedule. MISSED: skipped after an outage (policy);
    -- FAILED: the run could not be created (e.g. refused by admission limits).
    CREATE TABLE gm_schedule_fires (
        schedule_id uuid NOT NULL REFERENCES gm_schedules (schedule_id) ON DELETE CASCADE,
        fire_time timestamptz NOT NULL,
        outcome text NOT NULL CHECK (outcome IN ('FIRED', 'MISSED', 'FAILED')),
        run_id uuid,
        manual boolean NOT NULL DEFAULT false,
        detail text NOT NULL DEFAULT '',
        recorded_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (schedule_id, fire_time)
    );
    -- The webhook outbox: one delivery per status change a run's webhook asked for, written
    -- by the trigger below in the transaction that changed the status, whatever the path
    -- (a worker's finish, a cancel, the reconciler), so no crash can lose one.
    CREATE TABLE gm_webhook_deliveries (
        delivery_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        run_id uuid NOT NULL,
        event_seq bigint NOT NULL,
        run_status text NOT NULL,
        url text NOT NULL,
        status text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED')),
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL DEFAULT now(),
        -- A sender's claim on the delivery while it posts (a crashed sender's claim lapses).
        locked_until timestamptz,
        -- Built at the first attempt and sent unchanged by every retry and replay.
        payload jsonb,
        last_error text NOT NULL DEFAULT '',
        last_status_code integer,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        delivered_at timestamptz,
        UNIQUE (run_id, event_seq)
    );
    CREATE INDEX gm_webhook_deliveries_due ON gm_webhook_deliveries (next_attempt_at) WHERE status = 'PENDING';
    CREATE INDEX gm_webhook_deliveries_page ON gm_webhook_deliveries (created_at DESC, delivery_id DESC);
    CREATE FUNCTION gm_enqueue_webhook() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.status IN ('COMPLETED', 'FAILED', 'CANCELLED')
           OR (NEW.status = 'WAITING_FOR_APPROVAL' AND coalesce((NEW.webhook->>'on_waiting')::boolean, false)) THEN
            INSERT INTO gm_webhook_deliveries (run_id, event_seq, run_status, url)
            VALUES (NEW.run_id, NEW.event_seq, NEW.status, NEW.webhook->>'url')
            ON CONFLICT (run_id, event_seq) DO NOTHING;
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER gm_runs_webhook AFTER UPDATE OF status ON gm_runs FOR EACH ROW
        WHEN (NEW.webhook IS NOT NULL AND NEW.status IS DISTINCT FROM OLD.status)
        EXECUTE FUNCTION gm_enqueue_webhook();
    """,
    """
    -- The LangGraph HTTP API (docs/langgraph-api.md). Threads exist before their first run,
    -- with no graph yet, and carry the client's metadata (agent-chat-ui lists threads by
    -- metadata.graph_id); their status is derived from their latest run, not stored.
    ALTER TABLE gm_threads ALTER COLUMN graph DROP NOT NULL;
    ALTER TABLE gm_threads ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}';
    ALTER TABLE gm_threads ADD COLUMN owner text NOT NULL DEFAULT '';
    CREATE INDEX gm_threads_metadata ON gm_threads USING gin (metadata jsonb_path_ops);
    CREATE INDEX gm_threads_created ON gm_threads (created_at DESC);
    -- A run's LangGraph options (RunOptions as JSON: stream modes, config, context, static
    -- interrupts, a checkpoint to branch from, a Command). NULL: none.
    ALTER TABLE gm_runs ADD COLUMN options jsonb;
    -- A raw resume value (a RESPOND decision: what Command(resume=...) passes to interrupt()).
    ALTER TABLE gm_approvals DROP CONSTRAINT gm_approvals_status_check;
    ALTER TABLE gm_approvals ADD CONSTRAINT gm_approvals_status_check CHECK (status IN ('PENDING',
        'APPROVED', 'REJECTED', 'EDITED', 'EXPIRED', 'CANCELLED', 'RESPONDED'));
    ALTER TABLE gm_approvals ADD COLUMN resume_value jsonb;
    -- Assistants: a graph with a stored configuration. One system assistant per declared
    -- graph (uuid5 of its name, as LangGraph's server makes it) is upserted by every api.
    CREATE TABLE gm_assistants (
        assistant_id uuid PRIMARY KEY,
        graph text NOT NULL,
        name text NOT NULL,
        description text NOT NULL DEFAULT '',
        config jsonb NOT NULL DEFAULT '{}',
        context jsonb NOT NULL DEFAULT '{}',
        metadata jsonb NOT NULL DEFAULT '{}',
        version integer NOT NULL DEFAULT 1,
        system boolean NOT NULL DEFAULT false,
        owner text NOT NULL DEFAULT '',
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX gm_assistants_graph ON gm_assistants (graph, created_at DESC);
    CREATE INDEX gm_assistants_metadata ON gm_assistants USING gin (metadata jsonb_path_ops);
    """,
    """
    -- A schedule's LangGraph run options (RunOptions as JSON, as gm_runs.options keeps them),
    -- given to every run it fires: LangGraph crons carry config, context and static interrupts.
    -- NULL: none.
    ALTER TABLE gm_schedules ADD COLUMN options jsonb;
    """,
    """
    -- A thread's owner is always stored: its creator (CreateThread, or the run that created
    -- it). Threads made by runs before the column existed take their latest run's owner, as
    -- it was read until now, so thread listings filter on the column through its index
    -- instead of looking up every thread's latest run.
    UPDATE gm_threads t SET owner = lr.owner
    FROM (SELECT DISTINCT ON (thread_id) thread_id, owner FROM gm_runs
          ORDER BY thread_id, created_at DESC, run_id DESC) lr
    WHERE t.owner = '' AND lr.thread_id = t.thread_id;
    CREATE INDEX gm_threads_owner ON gm_threads (owner, created_at DESC);
    """,
    """
    -- A delayed run (RunOptions.after_seconds): no claim before run_after, and its job is
    -- published once it is due (the reconciler looks up the due ones through the index).
    ALTER TABLE gm_runs ADD COLUMN run_after timestamptz;
    CREATE INDEX gm_runs_delayed ON gm_runs (run_after) WHERE run_after IS NOT NULL AND status = 'QUEUED';
    """,
]


SELECT_SCHEMA_VERSION = "SELECT coalesce(max(version), 0) FROM gm_schema_migrations"
INSERT_SCHEMA_VERSION = "INSERT INTO gm_schema_migrations (version) VALUES (%s)"


async def schema_version(conn: psycopg.AsyncConnection) -> int:
    """The schema version a database is at (`graphmesh doctor`); whatever the connection's rows."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(SELECT_SCHEMA_VERSION)
        (version,) = await cur.fetchone()
    return version


SELECT_DATABASE_ENCODING = ("SELECT current_database(), pg_encoding_to_char(encoding) FROM pg_database "
                            "WHERE datname = current_database()")


async def check_encoding(conn: psycopg.AsyncConnection) -> None:
    """Refuses a database not encoded UTF8: under SQL_ASCII, psycopg hands text back as
    bytes, and every status read would fail as an internal error later."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(SELECT_DATABASE_ENCODING)
        # Under SQL_ASCII these very values come back as bytes.
        database, encoding = (v.decode() if isinstance(v, bytes) else v for v in await cur.fetchone())
    if encoding != "UTF8":
        raise FailedPrecondition(
            f"database '{database}' is encoded {encoding}; graphmesh needs UTF8. Create it with "
            f"`CREATE DATABASE {database} ENCODING 'UTF8' TEMPLATE template0` (or initdb -E UTF8) "
            "and point GRAPHMESH_DATABASE_URL at it", code="DATABASE_ENCODING")


async def migrate(conn: psycopg.AsyncConnection) -> int:
    """Applies missing migrations; returns the schema version. Safe to call concurrently.
    Refuses a database that is not UTF8 (check_encoding) before changing anything."""
    await check_encoding(conn)
    async with conn.transaction():
        await conn.execute(MIGRATION_LOCK, (MIGRATION_LOCK_KEY,))
        await conn.execute(MIGRATIONS[0])
        cur = await conn.execute(SELECT_SCHEMA_VERSION)
        (current,) = await cur.fetchone()
        for version, sql in enumerate(MIGRATIONS[1:], start=1):
            if version <= current:
                continue
            await conn.execute(sql)
            await conn.execute(INSERT_SCHEMA_VERSION, (version,))
        return len(MIGRATIONS) - 1
