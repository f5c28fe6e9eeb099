"""Run store: creates runs, hands out fenced leases, and enforces status transitions.

Every status change goes through `transition` (or `claim`), which checks the table in
statuses.py inside the UPDATE itself, so no service can move a run illegally.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import Any, AsyncIterator, Iterator

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from graphmesh.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from graphmesh.store.paging import filters, keyset_page, parse_uuid
from graphmesh.store.records import (
    VERSION_FIELDS,
    Claim,
    CreateResult,
    NewRun,
    RunError,
    RunRecord,
    TransitionResult,
)
from graphmesh.store.statuses import CLAIMABLE, IN_PROGRESS, TERMINAL, RunStatus, allowed_from, sql_set

log = logging.getLogger(__name__)


class LeaseLost(FailedPrecondition):
    """The run moved on under the caller: another worker took it, it was cancelled, or a
    concurrent operator action changed its status first."""

    default_code = "RUN_CHANGED"


SELECT_RUN = "SELECT * FROM gm_runs WHERE run_id = %s"
SELECT_BY_IDEMPOTENCY_KEY = "SELECT * FROM gm_runs WHERE owner = %s AND idempotency_key = %s"
SELECT_RUN_STATUS = "SELECT status FROM gm_runs WHERE run_id = %s"
# The run with how long it has been quiet, by Postgres' own clock (never the caller's: a
# host whose clock is ahead would think every run long quiet).
SELECT_RUN_QUIET = """
SELECT *, extract(epoch FROM now() - updated_at)::float8 AS quiet_seconds FROM gm_runs WHERE run_id = %s
"""
# A run that was created to interrupt the thread's active run and could not: it leaves the
# queue, and gives its idempotency key back so that a retry of the request tries again.
RELEASE_IDEMPOTENCY_KEY = "UPDATE gm_runs SET idempotency_key = NULL WHERE run_id = %s"
# One statement, one round trip: take (or find busy) the thread under its row lock and
# insert the run. The thread row is created with this run holding it, or, if it exists
# and is idle, taken by this run; RETURNING shows who holds it afterwards. A thread created
# before any run (ThreadService: no graph yet) becomes its first run's graph's.
CREATE_RUN = f"""
WITH thread AS (
    INSERT INTO gm_threads AS t (thread_id, graph, active_run_id, owner)
    VALUES (%(thread_id)s, %(graph)s, %(run_id)s, %(owner)s)
    ON CONFLICT (thread_id) DO UPDATE SET updated_at = now(), graph = coalesce(t.graph, EXCLUDED.graph),
        active_run_id = CASE WHEN t.active_run_id IS NULL AND coalesce(t.graph, EXCLUDED.graph) = EXCLUDED.graph
                             THEN EXCLUDED.active_run_id ELSE t.active_run_id END
    RETURNING t.graph, t.active_run_id
), run AS (
    INSERT INTO gm_runs (run_id, thread_id, graph, {", ".join(VERSION_FIELDS)}, status, owner,
        idempotency_key, metadata, input, multitask_strategy, sync, event_seq, trace_context, owner_roles,
        request_fingerprint, schedule_id, scheduled_for, webhook, options, run_after)
    SELECT %(run_id)s, %(thread_id)s, %(graph)s, {", ".join(f"%({f})s" for f in VERSION_FIELDS)},
        'QUEUED', %(owner)s, %(idempotency_key)s, %(metadata)s, %(input)s, %(multitask_strategy)s,
        %(sync)s, 1, %(trace_context)s, %(owner_roles)s, %(fingerprint)s, %(schedule_id)s, %(scheduled_for)s,
        %(webhook)s, %(options)s,
        CASE WHEN %(after_seconds)s > 0 THEN now() + make_interval(secs => %(after_seconds)s) END
    FROM thread WHERE thread.graph = %(graph)s
      AND (thread.active_run_id = %(run_id)s OR %(multitask_strategy)s IN ('enqueue', 'interrupt', 'rollback'))
    RETURNING *
)
SELECT thread.graph AS thread_graph, thread.active_run_id AS thread_active_run_id, run.*
FROM thread LEFT JOIN run ON true
"""
# Whether a run with no input has something to continue: a checkpoint of the thread's root
# graph, or a run on the thread (queued ahead of it, perhaps not yet started).
THREAD_CAN_CONTINUE = """
SELECT EXISTS (SELECT 1 FROM checkpoints WHERE thread_id = %(thread_id)s AND checkpoint_ns = '')
    OR EXISTS (SELECT 1 FROM gm_runs WHERE thread_id = %(thread_id)s) AS can_continue
"""
THREAD_HAS_CHECKPOINT = """
SELECT 1 FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = '' AND checkpoint_id = %s
"""
# The owner of the thread's latest run; a thread with no run yet is its creator's.
THREAD_OWNER = """
SELECT coalesce(nullif((SELECT owner FROM gm_threads WHERE thread_id = %(thread_id)s), ''),
                (SELECT owner FROM gm_runs WHERE thread_id = %(thread_id)s ORDER BY created_at DESC LIMIT 1),
                '') AS owner
"""

# A claimable status (statuses.CLAIMABLE); a RUNNING run only once its holder's lease ran
# out; a delayed run only once it is due.
_CLAIMABLE_NOW = (f"r.status IN {sql_set(CLAIMABLE)} AND (r.status <> 'RUNNING' OR r.lease_expires_at < now())"
                  " AND (r.run_after IS NULL OR r.run_after <= now())")
# A claim succeeds only for the run that holds its thread, when it is queued or its
# previous holder's lease ran out. The epoch fences every later write.
CLAIM_RUN = f"""
WITH old AS (
    SELECT r.run_id, r.status, r.started_at FROM gm_runs r
    JOIN gm_threads t ON t.thread_id = r.thread_id AND t.active_run_id = r.run_id
    WHERE r.run_id = %(run_id)s AND {_CLAIMABLE_NOW}
    FOR UPDATE OF r
)
UPDATE gm_runs r SET status = 'RUNNING', lease_owner = %(worker)s,
    lease_expires_at = now() + make_interval(secs => %(lease)s),
    lease_epoch = r.lease_epoch + 1, started_at = coalesce(r.started_at, now()),
    updated_at = now(), event_seq = greatest(r.event_seq, %(min_seq)s) + 1,
    claims_without_result = r.claims_without_result + 1
FROM old WHERE r.run_id = old.run_id
RETURNING r.*, old.status AS previous_status, old.started_at AS previous_started_at
"""
# Why a claim failed, in one snapshot.
CLAIM_OBSTACLE = """
SELECT r.status, t.active_run_id = r.run_id AS holds_thread,
    extract(epoch FROM r.lease_expires_at - now()) AS remaining, r.run_after > now() AS not_due
FROM gm_runs r JOIN gm_threads t ON t.thread_id = r.thread_id WHERE r.run_id = %s
"""
RENEW_LEASE = """
UPDATE gm_runs SET lease_expires_at = now() + make_interval(secs => %s)
WHERE run_id = %s AND lease_epoch = %s AND status = 'RUNNING'
RETURNING cancel_reason, cancel_action
"""
TRANSITION = """
WITH run AS (
    UPDATE gm_runs SET status = %(target)s, updated_at = now(),
        event_seq = greatest(event_seq + 1, %(event_seq)s),
        error_code = %(error_code)s, error_message = %(error_message)s, error_node = %(error_node)s,
        finished_at = CASE WHEN %(terminal)s THEN now() ELSE finished_at END,
        resume_with = %(resume_with)s,
        claims_without_result = CASE WHEN %(target)s = 'RUNNING' THEN claims_without_result ELSE 0 END,
        lease_owner = CASE WHEN %(target)s = 'RUNNING' THEN lease_owner END,
        lease_expires_at = CASE WHEN %(target)s = 'RUNNING' THEN lease_expires_at END
    WHERE run_id = %(run_id)s AND status = ANY(%(allowed)s)
      AND (%(epoch)s::bigint IS NULL OR lease_epoch = %(epoch)s)
    RETURNING *
), thread AS (
    -- When a run ends, the oldest run queued behind it on the thread takes the thread.
    UPDATE gm_threads t SET updated_at = now(), active_run_id = (
        SELECT q.run_id FROM gm_runs q WHERE q.thread_id = run.thread_id AND q.status = 'QUEUED'
          AND q.run_id <> run.run_id ORDER BY q.created_at, q.run_id LIMIT 1)
    FROM run WHERE %(terminal)s AND t.thread_id = run.thread_id AND t.active_run_id = run.run_id
    RETURNING t.active_run_id
)
SELECT run.*, (SELECT active_run_id FROM thread) AS next_run_id FROM run
"""
LOCK_THREAD_OF_RUN = """
SELECT 1 FROM gm_threads WHERE thread_id = (SELECT thread_id FROM gm_runs WHERE run_id = %s) FOR UPDATE
"""
# Safety net: an idle thread with runs queued on it gives itself to the oldest.
ADOPT_STRANDED = """
UPDATE gm_threads t SET active_run_id = q.run_id, updated_at = now()
FROM (SELECT DISTINCT ON (thread_id) thread_id, run_id FROM gm_runs WHERE status = 'QUEUED'
      ORDER BY thread_id, created_at, run_id) q
WHERE t.thread_id = q.thread_id AND t.active_run_id IS NULL
RETURNING q.run_id
"""
TOUCH_RUNS = "UPDATE gm_runs SET updated_at = now() WHERE run_id = ANY(%s)"
# Runs Postgres says should progress but that no live worker holds.
SELECT_ORPHANS = f"""
SELECT r.* FROM gm_runs r JOIN gm_threads t ON t.active_run_id = r.run_id
WHERE r.updated_at < now() - make_interval(secs => %(quiet)s)
  AND {_CLAIMABLE_NOW}
  AND (r.status <> 'QUEUED' OR %(queued_before)s::timestamptz IS NULL OR r.updated_at < %(queued_before)s)
ORDER BY r.updated_at LIMIT %(limit)s
"""
# Delayed runs that hold their thread, have come due and were not published since: their
# jobs go out now (reconcile.py touches them, so each is published once this way).
SELECT_DUE_DELAYED = """
SELECT r.* FROM gm_runs r JOIN gm_threads t ON t.active_run_id = r.run_id
WHERE r.status = 'QUEUED' AND r.run_after IS NOT NULL AND r.run_after <= now() AND r.updated_at < r.run_after
ORDER BY r.run_after LIMIT %(limit)s
"""


# The fields of a CreateRun that make it "the same request" for its idempotency key.
FINGERPRINT_FIELDS = ("graph", "graph_version", "thread_id", "input", "options")


def request_fingerprint(*, graph: str, graph_version: str, thread_id: str, graph_input,
                        options: dict[str, Any] | None = None) -> dict[str, str]:
    """Field -> SHA-256 (hex, 16 characters) of the field as the caller sent it: the pinned
    version ('' when routed), the thread id ('' when a new thread was asked for), the input
    (None when none) and the run options as canonical JSON. Metadata and the multitask
    strategy are not part of it. Runs recorded before options existed have no "options"
    digest, and fingerprint_differences compares only the fields both have."""
    values = {"graph": graph, "graph_version": graph_version, "thread_id": thread_id, "input": graph_input,
              "options": options}
    return {name: hashlib.sha256(json.dumps(values[name], sort_keys=True, separators=(",", ":"),
                                            default=str).encode()).hexdigest()[:16]
            for name in FINGERPRINT_FIELDS}


def fingerprint_differences(recorded: dict[str, str] | None, asked: dict[str, str]) -> list[str]:
    """The fields in which a request differs from the one recorded with its key (none when
    either has no fingerprint: runs created before fingerprints, or callers without one)."""
    if not recorded or not asked:
        return []
    return [name for name in FINGERPRINT_FIELDS if name in recorded and name in asked
            and recorded[name] != asked[name]]


def parse_run_id(run_id: str) -> str:
    return parse_uuid(run_id, "run")


# SQLSTATE classes of an OperationalError that mean "Postgres cannot serve us right now":
# connection exceptions, insufficient resources (too many connections), operator
# intervention (shutdown, crash recovery, a statement timeout) and system errors. A client
# error (no SQLSTATE) is a connection that failed or broke.
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")


def postgres_error(exc: Exception) -> Exception:
    """What a psycopg error means to a caller. Only connection trouble is UNAVAILABLE (worth
    retrying); a value over one of Postgres' limits (class 54, e.g. an index row over 8 KB)
    is INVALID_ARGUMENT; anything else is returned unchanged (INTERNAL, with a reference)."""
    if isinstance(exc, PoolTimeout):
        return Unavailable("Postgres is unreachable; retry shortly")
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(exc, psycopg.OperationalError) and (sqlstate is None or sqlstate[:2] in _UNAVAILABLE_CLASSES):
        return Unavailable("Postgres is unreachable; retry shortly")
    if sqlstate and (sqlstate.startswith("40") or sqlstate == "55P03"):
        # A deadlock, a serialization failure or a lock not available: transient, worth a retry.
        return Unavailable("the run store met a concurrent change; retry", code="STORE_CONFLICT")
    if sqlstate and sqlstate.startswith("54"):
        return InvalidArgument("a value in the request is too large for the run store "
                               f"({exc.__class__.__name__}); use shorter ids and names", code="VALUE_TOO_LARGE")
    return exc


@contextmanager
def postgres_errors_mapped(what: str = "Postgres error") -> Iterator[None]:
    """Raises what postgres_error makes of a psycopg error (or a pool time-out) in the block;
    the detail of a mapped one (host, user, auth) goes to the log, not to clients."""
    try:
        yield
    except (psycopg.Error, PoolTimeout) as exc:
        mapped = postgres_error(exc)
        if mapped is exc:
            raise
        log.warning("%s (%s): %s", what, type(mapped).__name__, exc)
        raise mapped from exc


class RunStore:
    """Thin async I/O over the gm_runs and gm_threads tables."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        with postgres_errors_mapped():
            async with self._pool.connection() as conn:
                yield conn

    async def create_run(self, new: NewRun) -> CreateResult:
        run_id = str(uuid.uuid4())
        params = {
            "run_id": run_id,
            "thread_id": new.thread_id,
            "graph": new.graph,
            "owner": new.owner,
            "idempotency_key": new.idempotency_key or None,
            "metadata": Jsonb(new.metadata),
            "input": Jsonb(new.input),
            "multitask_strategy": new.multitask_strategy,
            "sync": new.sync,
            "trace_context": new.trace_context,
            "owner_roles": Jsonb(sorted(new.owner_roles)),
            "fingerprint": Jsonb(new.fingerprint) if new.fingerprint else None,
            "schedule_id": new.schedule_id,
            "scheduled_for": new.scheduled_for,
            "webhook": Jsonb(new.webhook) if new.webhook else None,
            "options": Jsonb(new.options) if new.options else None,
            "after_seconds": new.after_seconds,
            **{f: new.versions.get(f, "") for f in VERSION_FIELDS},
        }
        async with self.connection() as conn:
            if new.idempotency_key:
                existing = await self._same_request(conn, new)
                if existing:
                    return CreateResult(existing, created=False, dispatch=False)
            try:
                row = await (await conn.execute(CREATE_RUN, params)).fetchone()
            except psycopg.errors.UniqueViolation:
                # A concurrent CreateRun with the same idempotency key won the race.
                existing = await self._same_request(conn, new)
                if existing is None:
                    raise
                return CreateResult(existing, created=False, dispatch=False)
            if row["run_id"] is not None:
                run = RunRecord.from_row(row)
                return CreateResult(run, created=True, dispatch=str(row["thread_active_run_id"]) == run.run_id)
            if row["thread_graph"] != new.graph:
                raise FailedPrecondition(
                    f"thread '{new.thread_id}' belongs to graph '{row['thread_graph']}', not '{new.graph}'",
                    code="THREAD_GRAPH_MISMATCH",
                )
            if new.idempotency_key:
                # The thread may be busy with the very run a concurrent same-key call created.
                existing = await self._same_request(conn, new)
                if existing:
                    return CreateResult(existing, created=False, dispatch=False)
            active = str(row["thread_active_run_id"])
            status = await (await conn.execute(SELECT_RUN_STATUS, (active,))).fetchone()
        raise FailedPrecondition(
            f"thread '{new.thread_id}' is busy with run {active} ({status['status'] if status else 'ending'}); "
            "retry when it ends or use multitask_strategy=enqueue",
            code="THREAD_BUSY",
            run_id=active,
        )

    async def _same_request(self, conn, new: NewRun) -> RunRecord | None:
        """The run recorded for the request's idempotency key, if any; ALREADY_EXISTS
        (IDEMPOTENCY_KEY_REUSED, naming the fields that differ) when that run was created by
        a different request."""
        cur = await conn.execute(SELECT_BY_IDEMPOTENCY_KEY, (new.owner, new.idempotency_key))
        row = await cur.fetchone()
        if row is None:
            return None
        run = RunRecord.from_row(row)
        differ = fingerprint_differences(row.get("request_fingerprint"), new.fingerprint)
        if differ:
            raise AlreadyExists(
                f"idempotency key {new.idempotency_key[:64]!r} belongs to a different request (run {run.run_id}): "
                f"its {', '.join(differ)} differ; use a new key for a new request",
                code="IDEMPOTENCY_KEY_REUSED", run_id=run.run_id)
        return run

    async def _by_idempotency_key(self, conn, owner: str, key: str) -> RunRecord | None:
        cur = await conn.execute(SELECT_BY_IDEMPOTENCY_KEY, (owner, key))
        row = await cur.fetchone()
        return RunRecord.from_row(row) if row else None

    async def get_run(self, run_id: str) -> RunRecord:
        run_id = parse_run_id(run_id)
        async with self.connection() as conn:
            row = await (await conn.execute(SELECT_RUN, (run_id,))).fetchone()
        if row is None:
            raise NotFound(f"run '{run_id}' not found", run_id=run_id)
        return RunRecord.from_row(row)

    async def get_run_quiet(self, run_id: str) -> tuple[RunRecord, float]:
        """The run and the seconds since its record last changed, measured by Postgres."""
        run_id = parse_run_id(run_id)
        async with self.connection() as conn:
            row = await (await conn.execute(SELECT_RUN_QUIET, (run_id,))).fetchone()
        if row is None:
            raise NotFound(f"run '{run_id}' not found", run_id=run_id)
        return RunRecord.from_row(row), max(0.0, float(row["quiet_seconds"]))

    async def withdraw_queued(self, run_id: str, error: RunError) -> TransitionResult:
        """Cancels a QUEUED run that must not stay queued (its request failed after it was
        recorded) and releases its idempotency key, in one transaction. LeaseLost if it is no
        longer queued (it took its thread and started meanwhile)."""
        async with self.transaction() as conn:
            result = await self.transition(run_id, RunStatus.CANCELLED, epoch=None, error=error,
                                           only_from={RunStatus.QUEUED}, conn=conn)
            await conn.execute(RELEASE_IDEMPOTENCY_KEY, (run_id,))
        return result

    async def list_runs(
        self,
        *,
        statuses: list[RunStatus] | None = None,
        graph: str = "",
        thread_id: str = "",
        page_size: int = 50,
        page_token: str = "",
        owner: str | None = None,
        graphs: list[str] | None = None,
    ) -> tuple[list[RunRecord], str]:
        """A page of runs, newest first. `owner` and `graphs` narrow it to what a caller may see."""
        where, args = filters(("owner = %s", owner), ("graph = ANY(%s)", graphs),
                              ("status = ANY(%s)", [s.value for s in statuses] if statuses else None),
                              ("graph = %s", graph), ("thread_id = %s", thread_id))
        return await keyset_page(self.connection, "gm_runs", "run_id", where, args, page_size=page_size,
                                 page_token=page_token, from_row=RunRecord.from_row)

    async def claim(
        self, run_id: str, *, worker_id: str, lease_seconds: float, min_event_seq: int = 0
    ) -> Claim | None:
        """Takes the run for execution; None when it is not claimable (done, held, or queued
        behind another run on its thread)."""
        args = {"run_id": run_id, "worker": worker_id, "lease": lease_seconds, "min_seq": min_event_seq}
        async with self.connection() as conn:
            row = await (await conn.execute(CLAIM_RUN, args)).fetchone()
        if row is None:
            return None
        run = RunRecord.from_row(row)
        return Claim(
            run=run,
            epoch=run.lease_epoch,
            event_seq=run.event_seq,
            previous_status=RunStatus(row["previous_status"]),
            resumed=row["previous_started_at"] is not None,
        )

    async def claim_obstacle(self, run_id: str) -> float | None:
        """Why a claim just failed: the seconds left on another holder's lease; 0 when the
        run has become claimable since (a lease lapsed between two statements: claim
        again); None when there is nothing to claim (it rests, ended, or waits its turn)."""
        async with self.connection() as conn:
            row = await (await conn.execute(CLAIM_OBSTACLE, (run_id,))).fetchone()
        if row is None or not row["holds_thread"] or row["status"] not in CLAIMABLE or row["not_due"]:
            return None  # a delayed run's job before its time: the reconciler publishes it when due
        if row["status"] == "RUNNING" and row["remaining"] is not None and row["remaining"] > 0:
            return float(row["remaining"])
        return 0.0

    async def renew_lease(self, run_id: str, epoch: int, lease_seconds: float) -> dict[str, Any] | None:
        """Extends the holder's lease. None if the run is no longer held; otherwise its
        cancel_reason and cancel_action (set when an operator asked to cancel it)."""
        async with self.connection() as conn:
            row = await (await conn.execute(RENEW_LEASE, (lease_seconds, run_id, epoch))).fetchone()
        return row

    async def transition(
        self,
        run_id: str,
        target: RunStatus,
        *,
        epoch: int | None,
        event_seq: int = 0,
        error: RunError | None = None,
        resume_with: dict[str, Any] | None = None,
        only_from: set[RunStatus] | None = None,
        conn: psycopg.AsyncConnection | None = None,
    ) -> TransitionResult:
        """Moves a run to `target` if the transition table allows it. With an epoch, only
        the lease holder may write; otherwise LeaseLost. Terminal statuses pass the thread
        on to the next queued run, returned for dispatch. `resume_with` (interrupt id ->
        value) is what the next execution resumes the graph with; any other transition
        clears it. `only_from` narrows the statuses the move may start from. Pass `conn` to
        take part in the caller's transaction."""
        allowed = allowed_from(target)
        if only_from is not None:
            allowed = [s for s in allowed if RunStatus(s) in only_from]
        args = {
            "run_id": run_id,
            "target": target.value,
            "allowed": allowed,
            "epoch": epoch,
            "event_seq": event_seq,
            "terminal": target in TERMINAL,
            "error_code": error.code if error else None,
            "error_message": error.message if error else None,
            "error_node": error.node if error else None,
            "resume_with": Jsonb(resume_with) if resume_with is not None else None,
        }
        if conn is not None:
            return await self._transition(conn, args)
        async with self.transaction() as own:
            return await self._transition(own, args)

    async def _transition(self, conn: psycopg.AsyncConnection, args: dict[str, Any]) -> TransitionResult:
        if args["terminal"]:
            # Lock the thread first, in its own statement: the hand-over query then sees a run
            # enqueued by a CreateRun that held the lock a moment ago (a fresh snapshot).
            await conn.execute(LOCK_THREAD_OF_RUN, (args["run_id"],))
        row = await (await conn.execute(TRANSITION, args)).fetchone()
        if row is None:
            raise LeaseLost(f"run {args['run_id']} cannot move to {args['target']} from here")
        next_run = None
        if row["next_run_id"] is not None:
            nxt = await (await conn.execute(SELECT_RUN, (row["next_run_id"],))).fetchone()
            next_run = RunRecord.from_row(nxt)
        return TransitionResult(RunRecord.from_row(row), next_run)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A connection inside one transaction, for changes that must land together."""
        async with self.connection() as conn:
            async with conn.transaction():
                yield conn

    async def record_migration(self, run_id: str, epoch: int, migration: dict[str, Any]) -> None:
        """Appends a checkpoint migration to the run (lease holder only)."""
        async with self.connection() as conn:
            cur = await conn.execute(
                "UPDATE gm_runs SET migrations = migrations || %s, updated_at = now() "
                "WHERE run_id = %s AND lease_epoch = %s", (Jsonb([migration]), run_id, epoch))
        if cur.rowcount != 1:
            raise LeaseLost(run_id)

    async def repin(self, run_id: str, epoch: int, versions: dict[str, str]) -> RunRecord:
        """Moves a held run to another version of its graph (a worker adopting a run whose
        own version no live worker serves); its checkpoint is migrated when it executes."""
        sets = ", ".join(f"{name} = %({name})s" for name in VERSION_FIELDS)
        async with self.connection() as conn:
            row = await (await conn.execute(
                f"UPDATE gm_runs SET {sets}, updated_at = now() "
                "WHERE run_id = %(run_id)s AND lease_epoch = %(epoch)s RETURNING *",
                {**versions, "run_id": run_id, "epoch": epoch})).fetchone()
        if row is None:
            raise LeaseLost(run_id)
        return RunRecord.from_row(row)

    async def adopt_stranded(self) -> int:
        """Gives idle threads to their oldest queued run; returns how many were adopted."""
        async with self.connection() as conn:
            return len(await (await conn.execute(ADOPT_STRANDED)).fetchall())

    async def touch(self, run_ids: list[str]) -> None:
        """Marks runs as just dispatched, so the reconciler leaves them a quiet period."""
        async with self.connection() as conn:
            await conn.execute(TOUCH_RUNS, (run_ids,))

    async def orphans(self, *, quiet_seconds: float, queued_before: datetime | None = None,
                      limit: int = 100) -> list[RunRecord]:
        """Runs that should progress, quiet for quiet_seconds, with no live lease. With
        `queued_before`, a queued run counts only if it was dispatched before then (one
        dispatched later is still waiting in the queue's backlog)."""
        args = {"quiet": quiet_seconds, "queued_before": queued_before, "limit": limit}
        async with self.connection() as conn:
            rows = await (await conn.execute(SELECT_ORPHANS, args)).fetchall()
        return [RunRecord.from_row(r) for r in rows]

    async def due_delayed(self, *, limit: int = 100) -> list[RunRecord]:
        """Delayed runs (after_seconds) whose time has come and whose job was not published
        since: each holds its thread, QUEUED."""
        async with self.connection() as conn:
            rows = await (await conn.execute(SELECT_DUE_DELAYED, {"limit": limit})).fetchall()
        return [RunRecord.from_row(r) for r in rows]

    async def run_by_idempotency_key(self, owner: str, key: str) -> RunRecord | None:
        async with self.connection() as conn:
            return await self._by_idempotency_key(conn, owner, key)

    async def load(self, graph: str, owner: str) -> dict[str, int]:
        """Runs of a graph not yet finished: all, the owner's, and those queued."""
        async with self.connection() as conn:
            row = await (await conn.execute(
                "SELECT count(*) AS in_progress, count(*) FILTER (WHERE owner = %s) AS owner_in_progress, "
                "count(*) FILTER (WHERE status = 'QUEUED') AS queued FROM gm_runs "
                f"WHERE graph = %s AND status IN {sql_set(IN_PROGRESS)}",
                (owner, graph))).fetchone()
        return dict(row)

    async def thread_owner(self, thread_id: str) -> str:
        """The thread's creator; for a thread recorded before creators were, the owner of its
        latest run ('' if neither: an unknown thread)."""
        async with self.connection() as conn:
            row = await (await conn.execute(THREAD_OWNER, {"thread_id": thread_id})).fetchone()
        return row["owner"]

    async def thread_can_continue(self, thread_id: str) -> bool:
        """Whether the thread has state a run without input continues: a checkpoint, or a run
        recorded on it (which will write one first)."""
        async with self.connection() as conn:
            row = await (await conn.execute(THREAD_CAN_CONTINUE, {"thread_id": thread_id})).fetchone()
        return bool(row["can_continue"])

    async def thread_has_checkpoint(self, thread_id: str, checkpoint_id: str) -> bool:
        """Whether the thread's root graph has that checkpoint (one a run may branch from)."""
        async with self.connection() as conn:
            row = await (await conn.execute(THREAD_HAS_CHECKPOINT, (thread_id, checkpoint_id))).fetchone()
        return row is not None

    async def thread_graph(self, thread_id: str) -> tuple[str | None, str | None]:
        """The graph a thread belongs to (None: created before any run, no graph yet) and its
        active run id."""
        async with self.connection() as conn:
            row = await (
                await conn.execute("SELECT graph, active_run_id FROM gm_threads WHERE thread_id = %s", (thread_id,))
            ).fetchone()
        if row is None:
            raise NotFound(f"thread '{thread_id}' not found")
        active = row["active_run_id"]
        return row["graph"], str(active) if active else None
