"""CancelRun for runs no worker holds: queued, paused or waiting for approval.

Cancelling a run that is executing on a worker needs the worker's cooperation (a signal
and a step-boundary stop) and comes with the operator-actions milestone.
"""

from __future__ import annotations

import logging

from graphmesh.bus import publish_event, publish_job, status_event
from graphmesh.bus.approvals import announcement, publish_outbox
from graphmesh.errors import FailedPrecondition, Unimplemented
from graphmesh.execution import error_proto
from graphmesh.rpc.convert import status_to_proto
from graphmesh.store import ApprovalStore, LeaseLost, RunError, RunRecord, RunStatus, RunStore

log = logging.getLogger(__name__)

CANCELLABLE_AT_REST = {RunStatus.QUEUED, RunStatus.PAUSED, RunStatus.WAITING_FOR_APPROVAL}


async def cancel_run(store: RunStore, approvals: ApprovalStore, js, run_id: str, *, reason: str,
                     actor: str) -> RunRecord:
    run = await store.get_run(run_id)
    if run.status is RunStatus.CANCELLED:
        return run  # cancelling twice returns the cancelled run
    if run.status.terminal:
        raise FailedPrecondition(f"run {run.run_id} already ended {run.status.value}; nothing to cancel",
                                 code="RUN_FINISHED", run_id=run.run_id)
    if run.status is RunStatus.RUNNING:
        raise Unimplemented(
            f"run {run.run_id} is executing on a worker; cancelling a running run is not supported "
            "in this release", run_id=run.run_id)
    error = RunError("CANCELLED", reason or f"cancelled by {actor}")
    try:
        async with store.transaction() as conn:
            result = await store.transition(run.run_id, RunStatus.CANCELLED, epoch=None, error=error,
                                            only_from=CANCELLABLE_AT_REST, conn=conn)
            _, outbox = await approvals.cancel_open(conn, run.run_id, actor=actor, reason=error.message,
                                                    announce=announcement)
    except LeaseLost:
        raise FailedPrecondition(f"run {run.run_id} changed status while being cancelled; look again",
                                 code="RUN_CHANGED", run_id=run.run_id) from None
    final = result.run
    await publish_event(js, status_event(final.run_id, final.event_seq, status_to_proto(RunStatus.CANCELLED),
                                         status_to_proto(run.status), error_proto(error)))
    await publish_outbox(js, approvals, outbox)
    if result.next_run is not None:
        await publish_job(js, result.next_run)
    return final
