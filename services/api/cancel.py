"""CancelRun, and the interrupt / rollback multitask strategies built on it.

A run no worker holds (queued, paused, waiting for approval) is cancelled here, in one
transaction with closing its approvals. A running run is cancelled by its worker: the api
records the request in Postgres and signals the workers; the holder cancels the current
node at once and records CANCELLED (a worker that misses the signal sees the request at
its next lease renewal, and a worker that claims the run later finds it there). With
action `rollback`, the run's checkpoints go too, so the thread is as it was before it.
"""

from __future__ import annotations

import asyncio
import logging

from graphmesh.bus import publish_event, publish_job, status_event
from graphmesh.bus.approvals import announcement, publish_outbox
from graphmesh.bus.control import publish_cancel
from graphmesh.errors import FailedPrecondition
from graphmesh.execution import error_proto
from graphmesh.rpc.convert import status_to_proto
from graphmesh.store import ApprovalStore, ControlStore, LeaseLost, RunRecord, RunStatus, RunStore, cancel_error

log = logging.getLogger(__name__)

CANCELLABLE_AT_REST = {RunStatus.QUEUED, RunStatus.PAUSED, RunStatus.WAITING_FOR_APPROVAL}
# How long CancelRun waits for the worker to confirm before answering with the request noted.
CONFIRM_SECONDS = 3.0


class Canceller:
    def __init__(self, store: RunStore, nc) -> None:
        self._store = store
        self._approvals = ApprovalStore(store)
        self._control = ControlStore(store)
        self._nc = nc
        self._js = nc.jetstream()

    async def cancel(self, run_id: str, *, reason: str, actor: str, action: str = "interrupt",
                     wait: bool = True) -> RunRecord:
        run = await self._store.get_run(run_id)
        if run.status is RunStatus.CANCELLED:
            return run  # cancelling twice returns the cancelled run
        if run.status.terminal:
            raise FailedPrecondition(f"run {run.run_id} already ended {run.status.value}; nothing to cancel",
                                     code="RUN_FINISHED", run_id=run.run_id)
        reason = reason or f"cancelled by {actor}"
        if run.status is RunStatus.RUNNING:
            return await self._cancel_running(run, reason, action, wait)
        try:
            return await self._cancel_at_rest(run, reason, action, actor)
        except LeaseLost:  # a worker claimed it meanwhile: cancel it there
            return await self._cancel_running(await self._store.get_run(run.run_id), reason, action, wait)

    async def _cancel_at_rest(self, run: RunRecord, reason: str, action: str, actor: str) -> RunRecord:
        error = cancel_error(reason)
        async with self._store.transaction() as conn:
            result = await self._store.transition(run.run_id, RunStatus.CANCELLED, epoch=None, error=error,
                                                  only_from=CANCELLABLE_AT_REST, conn=conn)
            _, outbox = await self._approvals.cancel_open(conn, run.run_id, actor=actor, reason=reason,
                                                          announce=announcement)
            if action == "rollback":
                await self._control.roll_back_checkpoints(conn, run)
        final = result.run
        # Committed: the run is cancelled whatever happens to the announcements. A lost event
        # is rebuilt by streams from the record, a lost job re-published by the reconciler.
        try:
            await publish_event(self._js, status_event(final.run_id, final.event_seq,
                                                       status_to_proto(RunStatus.CANCELLED),
                                                       status_to_proto(run.status), error_proto(error)))
            await publish_outbox(self._js, self._approvals, outbox)
            if result.next_run is not None:
                await publish_job(self._js, result.next_run)
        except Exception as exc:
            log.warning("run %s cancelled, announcing it failed (recovered later): %s", final.run_id, exc)
        return final

    async def _cancel_running(self, run: RunRecord, reason: str, action: str, wait: bool) -> RunRecord:
        requested = await self._control.request_cancel(run.run_id, reason=reason, action=action)
        if requested is None:  # it came to rest meanwhile
            return await self.cancel(run.run_id, reason=reason, actor="", action=action, wait=wait)
        try:
            await publish_cancel(self._nc, run.run_id, reason, action)
        except Exception as exc:
            # The request is in Postgres: the holder finds it at its next lease renewal.
            log.warning("run %s: cancel recorded, signalling its worker failed: %s", run.run_id, exc)
        if not wait:
            return requested
        deadline = asyncio.get_running_loop().time() + CONFIRM_SECONDS
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
            current = await self._store.get_run(run.run_id)
            if current.status is not RunStatus.RUNNING:
                return current
        return await self._store.get_run(run.run_id)
