"""InvokeRun: small graphs executed inside the request, bounded by the call's deadline.

A sync run is an ordinary run record (same statuses, events and checkpoints) executed
by the api process itself; if it outlasts the deadline it is stopped and recorded as
FAILED with DEADLINE_EXCEEDED, never left behind as a ghost.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from graphmesh.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument
from graphmesh.execution import RunExecutor
from graphmesh.execution.saver import saver_for
from graphmesh.store import LeaseLost, NewRun, RunError, RunRecord, RunStatus, RunStore

# Part of the caller's deadline kept back to record the outcome and answer in time.
DEADLINE_MARGIN_SECONDS = 0.05


class SyncRunner:
    def __init__(self, *, store: RunStore, js, pool, registry, executor: RunExecutor, lease_seconds: float) -> None:
        self._store = store
        self._js = js
        self._pool = pool
        self._registry = registry
        self._executor = executor
        self._lease_seconds = lease_seconds
        self._holder = f"api-sync-{os.getpid()}"

    async def invoke(self, new: NewRun, spec, time_remaining: float | None) -> tuple[RunRecord, Any]:
        if not spec.sync_eligible:
            raise FailedPrecondition(
                f"graph '{spec.name}' is not sync-eligible; start it with CreateRun", code="NOT_SYNC_ELIGIBLE")
        if new.multitask_strategy != "reject":
            raise InvalidArgument("InvokeRun supports only multitask_strategy reject")
        budget = spec.limits.run_timeout_seconds
        if time_remaining is not None:
            budget = min(budget, time_remaining - DEADLINE_MARGIN_SECONDS)
        if budget <= 0:
            raise DeadlineExceeded("the call's deadline leaves no time to run; no run was created")
        # The run lives in its own task: when the caller's deadline cancels this handler,
        # the task still ends the run (completed, or FAILED with DEADLINE_EXCEEDED).
        return await asyncio.shield(asyncio.ensure_future(self._create_and_run(new, budget)))

    async def _create_and_run(self, new: NewRun, budget: float) -> tuple[RunRecord, Any]:
        deadline = asyncio.get_running_loop().time() + budget
        result = await self._store.create_run(new)
        run = result.run
        if not result.created:
            return run, await self._values(run)
        await self._executor.lifecycle.announce_created(run, dispatch=False)
        claim = await self._store.claim(run.run_id, worker_id=self._holder, lease_seconds=self._lease_seconds)
        if claim is None:  # cannot happen for a run we just created and hold; be explicit anyway
            raise FailedPrecondition(f"run {run.run_id} could not be started", run_id=run.run_id)
        execution = asyncio.ensure_future(self._executor.execute(claim))
        await asyncio.wait({execution}, timeout=max(deadline - asyncio.get_running_loop().time(), 0))
        if not execution.done():
            execution.cancel()
            await asyncio.gather(execution, return_exceptions=True)
        if not execution.cancelled():
            final = execution.result()  # finished, perhaps just in time; or raises its error
            return final, await self._values(final)
        message = f"synchronous run exceeded the call's deadline ({budget:.3f} s)"
        try:
            await self._executor.lifecycle.finish(claim.run, claim.epoch, RunStatus.FAILED,
                                                  RunError("DEADLINE_EXCEEDED", message))
        except LeaseLost:
            pass  # already recorded by someone else (e.g. the reconciler)
        raise DeadlineExceeded(message, run_id=run.run_id)

    async def _values(self, run: RunRecord) -> Any:
        spec = self._registry.get(run.graph, run.versions["graph_version"])
        graph = self._registry.compiled(spec.name, spec.version,
                                        checkpointer=saver_for(self._pool, spec, enforce_limits=False))
        state = await graph.aget_state({"configurable": {"thread_id": run.thread_id}})
        return state.values or {}
