"""Operator controls in Postgres: cancel requests, retry and resume, rollback of a run's
checkpoints, dead letters, disabled nodes, and the worker roster."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from graphmesh.errors import FailedPrecondition
from graphmesh.store.records import RunError, RunRecord
from graphmesh.store.runs import RunStore, parse_run_id
from graphmesh.store.statuses import RETRYABLE, RunStatus, sql_set

REQUEST_CANCEL = """
UPDATE gm_runs SET cancel_reason = %s, cancel_action = %s
WHERE run_id = %s AND status = 'RUNNING' RETURNING *
"""
# A retry or resume needs the thread: it is idle, or already this run's.
TAKE_THREAD = """
UPDATE gm_threads SET active_run_id = %(run_id)s, updated_at = now()
WHERE thread_id = %(thread_id)s AND (active_run_id IS NULL OR active_run_id = %(run_id)s)
RETURNING thread_id
"""
ACTIVE_RUN_OF_THREAD = "SELECT active_run_id FROM gm_threads WHERE thread_id = %s"
RETRY = f"""
UPDATE gm_runs SET status = 'QUEUED', attempt = attempt + 1, updated_at = now(), finished_at = NULL,
    previous_errors = previous_errors || jsonb_build_array(jsonb_build_object(
        'code', coalesce(error_code, ''), 'message', coalesce(error_message, ''), 'node', coalesce(error_node, ''))),
    error_code = NULL, error_message = NULL, error_node = NULL, cancel_reason = NULL, cancel_action = NULL,
    resume_with = NULL, event_seq = event_seq + 1
WHERE run_id = %s AND status IN {sql_set(RETRYABLE)}
RETURNING *
"""
# LangGraph checkpoint rows written by one run (its id is in each checkpoint's metadata).
DELETE_RUN_WRITES = """
DELETE FROM checkpoint_writes w USING checkpoints c
WHERE c.thread_id = %(thread_id)s AND c.metadata ->> 'gm_run_id' = %(run_id)s
  AND w.thread_id = c.thread_id AND w.checkpoint_ns = c.checkpoint_ns AND w.checkpoint_id = c.checkpoint_id
"""
DELETE_RUN_CHECKPOINTS = """
DELETE FROM checkpoints WHERE thread_id = %(thread_id)s AND metadata ->> 'gm_run_id' = %(run_id)s
"""
INSERT_DEAD_LETTER = """
INSERT INTO gm_dead_letters (run_id, attempt, deliveries, worker_id, reason) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (run_id, attempt) DO NOTHING
"""
UPSERT_WORKER = """
INSERT INTO gm_workers (worker_id, address, capacity, active, draining, graphs, started_at, last_seen)
VALUES (%(worker_id)s, %(address)s, %(capacity)s, %(active)s, %(draining)s, %(graphs)s, %(started_at)s, now())
ON CONFLICT (worker_id) DO UPDATE SET address = EXCLUDED.address, capacity = EXCLUDED.capacity,
    active = EXCLUDED.active, draining = EXCLUDED.draining, graphs = EXCLUDED.graphs,
    started_at = EXCLUDED.started_at, last_seen = now()
"""


@dataclass(frozen=True)
class DisabledNode:
    graph: str
    node: str
    reason: str
    disabled_by: str
    disabled_at: datetime


@dataclass(frozen=True)
class WorkerInfo:
    worker_id: str
    address: str
    capacity: int
    active: int
    draining: bool
    graphs: list[dict[str, str]]
    started_at: datetime
    last_seen: datetime


class ControlStore:
    def __init__(self, runs: RunStore) -> None:
        self._runs = runs

    async def request_cancel(self, run_id: str, *, reason: str, action: str) -> RunRecord | None:
        """Marks a running run for cancellation by its worker; None if it is not running."""
        async with self._runs.connection() as conn:
            row = await (await conn.execute(REQUEST_CANCEL, (reason, action, parse_run_id(run_id)))).fetchone()
        return RunRecord.from_row(row) if row else None

    async def retry(self, run_id: str) -> RunRecord:
        run = await self._runs.get_run(run_id)
        if run.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
            raise FailedPrecondition(f"run {run.run_id} is {run.status.value}; only FAILED or CANCELLED runs "
                                     "can be retried", code="RUN_NOT_RETRYABLE", run_id=run.run_id)
        async with self._runs.transaction() as conn:
            await self._take_thread(conn, run)
            row = await (await conn.execute(RETRY, (run.run_id,))).fetchone()
            if row is None:
                raise FailedPrecondition(f"run {run.run_id} changed while retrying; look again",
                                         code="RUN_CHANGED", run_id=run.run_id)
        return RunRecord.from_row(row)

    async def resume(self, run_id: str, *, still_disabled: list[str]) -> RunRecord:
        run = await self._runs.get_run(run_id)
        if run.status is not RunStatus.PAUSED:
            raise FailedPrecondition(f"run {run.run_id} is {run.status.value}; only PAUSED runs can be resumed",
                                     code="RUN_NOT_PAUSED", run_id=run.run_id)
        if still_disabled:
            raise FailedPrecondition(
                f"run {run.run_id} paused before node(s) {', '.join(still_disabled)}, which are still disabled; "
                "enable them first", code="NODE_DISABLED", run_id=run.run_id)
        result = await self._runs.transition(run.run_id, RunStatus.QUEUED, epoch=None,
                                             only_from={RunStatus.PAUSED})
        return result.run

    async def _take_thread(self, conn: psycopg.AsyncConnection, run: RunRecord) -> None:
        if await (await conn.execute(TAKE_THREAD, {"run_id": run.run_id, "thread_id": run.thread_id})).fetchone():
            return
        active = (await (await conn.execute(ACTIVE_RUN_OF_THREAD, (run.thread_id,))).fetchone())["active_run_id"]
        raise FailedPrecondition(f"thread '{run.thread_id}' is busy with run {active}; retry when it ends",
                                 code="THREAD_BUSY", run_id=str(active))

    async def roll_back_checkpoints(self, conn: psycopg.AsyncConnection, run: RunRecord) -> None:
        """Removes the checkpoints a run wrote: its thread is as it was before the run."""
        args = {"thread_id": run.thread_id, "run_id": run.run_id}
        await conn.execute(DELETE_RUN_WRITES, args)
        await conn.execute(DELETE_RUN_CHECKPOINTS, args)

    async def dead_letter(self, run: RunRecord, *, deliveries: int, worker_id: str, reason: str) -> None:
        async with self._runs.connection() as conn:
            await conn.execute(INSERT_DEAD_LETTER, (run.run_id, run.attempt, deliveries, worker_id, reason))

    # -- disabled nodes --------------------------------------------------------------------
    async def disable_node(self, graph: str, node: str, *, reason: str, actor: str) -> None:
        async with self._runs.connection() as conn:
            await conn.execute(
                "INSERT INTO gm_disabled_nodes (graph, node, reason, disabled_by) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (graph, node) DO UPDATE SET reason = EXCLUDED.reason, "
                "disabled_by = EXCLUDED.disabled_by, disabled_at = now()", (graph, node, reason, actor))

    async def enable_node(self, graph: str, node: str) -> bool:
        async with self._runs.connection() as conn:
            cur = await conn.execute("DELETE FROM gm_disabled_nodes WHERE graph = %s AND node = %s", (graph, node))
            return cur.rowcount == 1

    async def disabled_nodes(self, graph: str | None = None) -> list[DisabledNode]:
        sql, args = "SELECT * FROM gm_disabled_nodes", ()
        if graph is not None:
            sql, args = sql + " WHERE graph = %s", (graph,)
        async with self._runs.connection() as conn:
            rows = await (await conn.execute(sql + " ORDER BY graph, node", args)).fetchall()
        return [DisabledNode(**row) for row in rows]

    # -- worker roster ---------------------------------------------------------------------
    async def heartbeat(self, info: WorkerInfo) -> None:
        args = {**info.__dict__, "graphs": Jsonb(info.graphs)}
        async with self._runs.connection() as conn:
            await conn.execute(UPSERT_WORKER, args)

    async def forget_worker(self, worker_id: str) -> None:
        async with self._runs.connection() as conn:
            await conn.execute("DELETE FROM gm_workers WHERE worker_id = %s", (worker_id,))

    async def workers(self, *, seen_within_seconds: float) -> list[WorkerInfo]:
        async with self._runs.connection() as conn:
            rows = await (await conn.execute(
                "SELECT * FROM gm_workers WHERE last_seen > now() - make_interval(secs => %s) ORDER BY worker_id",
                (seen_within_seconds,))).fetchall()
        return [WorkerInfo(**row) for row in rows]


def cancel_error(reason: str, actor: str = "") -> RunError:
    return RunError("CANCELLED", reason or (f"cancelled by {actor}" if actor else "cancelled"))
