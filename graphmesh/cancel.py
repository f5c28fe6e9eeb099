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

from graphmesh.bus.control import publish_cancel
from graphmesh.errors import FailedPrecondition, GraphmeshError, Unavailable
from graphmesh.lifecycle import RunLifecycle
from graphmesh.store import ControlStore, LeaseLost, RunError, RunRecord, RunStatus, RunStore, cancel_error

log = logging.getLogger(__name__)

# How long CancelRun waits for the worker to confirm before answering with the request noted.
CONFIRM_SECONDS = 3.0


class Canceller:
    def __init__(self, store: RunStore, nc) -> None:
        self._store = store
        self._control = ControlStore(store)
        self._lifecycle = RunLifecycle(store, nc.jetstream())
        self._nc = nc

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

    async def interrupt_active(self, run: RunRecord, strategy: str, *, actor: str) -> RunRecord:
        """The new run waits behind the active one, which is cancelled now; when it ends the
        thread passes to the new run (keeping, or rolling back, what it wrote). If the active
        run cannot be cancelled, the new run must not quietly wait behind it as if `enqueue`
        had been asked: it is withdrawn (CANCELLED, MULTITASK_CANCEL_FAILED, its idempotency
        key released so that a retry tries again) and the caller gets the reason."""
        active = None
        try:
            _, active = await self._store.thread_graph(run.thread_id)
            if not active or active == run.run_id:
                return run
            await self.cancel(active, reason=f"interrupted by run {run.run_id}", actor=actor, action=strategy,
                              wait=False)
            return run
        except FailedPrecondition as exc:
            if exc.code == "RUN_FINISHED":  # it ended meanwhile: the thread passes on as asked
                return run
            failure: Exception = exc
        except Exception as exc:
            failure = exc
        log.warning("run %s: could not %s active run %s: %r", run.run_id, strategy, active, failure)
        why = failure.message if isinstance(failure, GraphmeshError) else "internal error (see the api log)"
        what = f"active run {active}" if active else f"the active run of thread '{run.thread_id}'"
        try:
            await self._lifecycle.withdraw(run.run_id, RunError(
                "MULTITASK_CANCEL_FAILED", f"multitask_strategy={strategy}: could not cancel {what}: {why}"))
        except LeaseLost:
            # It is no longer queued: the active run ended and this one took the thread.
            return await self._store.get_run(run.run_id)
        except Exception as exc:
            log.warning("run %s: could not withdraw it either: %r", run.run_id, exc)
            message = (f"multitask_strategy={strategy}: could not cancel {what} ({why}); run {run.run_id} was "
                       f"recorded and, since withdrawing it failed too, is queued behind it: cancel it, or it "
                       "starts when that run ends")
        else:
            message = (f"multitask_strategy={strategy}: could not cancel {what} ({why}); run {run.run_id} was "
                       "withdrawn (CANCELLED, MULTITASK_CANCEL_FAILED) and its idempotency key released: "
                       "retry the request")
        status_error = Unavailable if isinstance(failure, Unavailable) else FailedPrecondition
        raise status_error(message, code="MULTITASK_CANCEL_FAILED", run_id=active or "")

    async def _cancel_at_rest(self, run: RunRecord, reason: str, action: str, actor: str) -> RunRecord:
        return await self._lifecycle.cancel_at_rest(run, reason=reason, action=action, actor=actor,
                                                    error=cancel_error(reason))

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
