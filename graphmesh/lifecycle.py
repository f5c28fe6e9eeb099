"""Every change of a run's status, in one place.

A change is two halves. First the transition in Postgres, checked against the status table
(graphmesh/store/statuses.py), together with what must commit with it: closing or opening
approvals and their outbox rows, rolling back checkpoints, an audit record. Then, after the
commit, its announcements in order: the run's events, the approval events, and the jobs of
the runs it queued (the thread's next run, a hand-back, a retried or resumed run).

Postgres decides; the announcements only tell. Each one lost is recovered: streams rebuild
a lost terminal event from the record and step over a lost event, the outbox relay
re-publishes approval events, the reconciler re-dispatches a queued run.

Event numbers: Postgres holds each run's `event_seq` (the number of its latest status
event); the execution that holds the lease numbers the events in between (EventSink) and
hands its next number to the transition that ends it. `next_event_seq` is the one answer
when no execution is numbering (a hand-back, a dead letter, a deadline).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from nats.js import JetStreamContext

from graphmesh import secrets
from graphmesh.bus import dispatch_queued, last_sequence, make_event, publish_event, publish_job, status_event
from graphmesh.bus.approvals import announcement, publish_outbox
from graphmesh.bus.events import publish_event_pipelined
from graphmesh.jsonvalues import to_value
from graphmesh.store import ApprovalStore, ControlStore, DecideResult, RunError, RunRecord, RunStatus, RunStore
from graphmesh.store.audit import record_audit
from graphmesh.store.records import NewApproval
from graphmesh.store.statuses import CANCELLABLE_AT_REST
from graphmesh.v1 import run_pb2

log = logging.getLogger(__name__)

__all__ = ["AuditEntry", "RunLifecycle"]

# A delayed run's job goes out this long after run_after on this host's clock, so that
# Postgres' clock (which the claim reads) has passed it too.
DUE_MARGIN_SECONDS = 0.05
# The tasks waiting to publish delayed runs' jobs, kept alive until they have.
_due_timers: set[asyncio.Task] = set()


@dataclass(frozen=True)
class AuditEntry:
    """An audit record that commits with a transition (e.g. a refused node's policy_violation)."""

    actor: str
    action: str
    details: dict[str, Any]


class RunLifecycle:
    def __init__(self, store: RunStore, js: JetStreamContext) -> None:
        self._store = store
        self._approvals = ApprovalStore(store)
        self._control = ControlStore(store)
        self._js = js

    async def next_event_seq(self, run_id: str) -> int:
        """The next event number of a run when no execution numbered its events this time:
        an earlier execution may have published events Postgres never counted."""
        return await last_sequence(self._js, run_id) + 1

    # -- a run that was just created --------------------------------------------------

    async def announce_created(self, run: RunRecord, *, dispatch: bool) -> None:
        """CreateRun's QUEUED event (always number 1) and, when the run holds its thread, its
        job. Pipelined: streams order events by number whatever order JetStream stores them in."""
        acks = [await publish_event_pipelined(self._js, status_event(run.run_id, 1, RunStatus.QUEUED))]
        if dispatch and run.not_due():
            self._dispatch_when_due(run)
        elif dispatch:
            acks.append(asyncio.ensure_future(publish_job(self._js, run)))
        await asyncio.gather(*acks)

    async def _dispatch(self, run: RunRecord) -> None:
        """Publishes the job of a run that just took its thread (now, or when it is due)."""
        if run.not_due():
            self._dispatch_when_due(run)
        else:
            await publish_job(self._js, run)

    def _dispatch_when_due(self, run: RunRecord) -> None:
        """A delayed run's job, published by this process the moment the run comes due. Only
        a shortcut: the reconciler publishes every due run nobody did (reconcile.py), so a
        process that stops first loses no run, and a job a little early on this host's clock
        is dropped at the claim and published again by the reconciler."""
        async def later() -> None:
            await asyncio.sleep((run.run_after - datetime.now(timezone.utc)).total_seconds() + DUE_MARGIN_SECONDS)
            try:
                await publish_job(self._js, run, due=True)
                await self._store.touch([run.run_id])  # published: the reconciler's pass leaves it
            except Exception as exc:
                log.info("delayed run %s not published when due (the reconciler will): %s", run.run_id, exc)

        task = asyncio.get_running_loop().create_task(later())
        _due_timers.add(task)
        task.add_done_callback(_due_timers.discard)

    async def withdraw(self, run_id: str, error: RunError) -> RunRecord:
        """Cancels a run whose request failed after it was recorded (its idempotency key is
        released); LeaseLost when it is no longer queued."""
        result = await self._store.withdraw_queued(run_id, error)
        run = result.run
        try:
            acks = [await publish_event_pipelined(self._js, status_event(run.run_id, 1, RunStatus.QUEUED)),
                    await publish_event_pipelined(self._js, status_event(
                        run.run_id, run.event_seq, RunStatus.CANCELLED, RunStatus.QUEUED, run.error))]
            await asyncio.gather(*acks)
        except Exception as exc:
            log.warning("run %s withdrawn, announcing it failed (streams rebuild it): %s", run.run_id, exc)
        return run

    # -- the holder of a run's lease --------------------------------------------------

    async def finish(
        self,
        run: RunRecord,
        epoch: int | None,
        target: RunStatus,
        error: RunError | None,
        *,
        event_seq: int | None = None,
        roll_back: bool = False,
        audit: AuditEntry | None = None,
    ) -> RunRecord:
        """Records a run's outcome (or hands it back QUEUED), announces it and dispatches the
        thread's next run. `event_seq`: the status event's number, from the execution that
        numbered the events before it. With roll_back the run's checkpoints go in the same
        transaction (its thread is as it was before the run); with audit, that audit
        record. Known secrets are redacted from the error's message."""
        if error is not None:
            error = RunError(error.code, secrets.redact(error.message), error.node)
        seq = event_seq if event_seq is not None else await self.next_event_seq(run.run_id)
        async with self._store.transaction() as conn:
            result = await self._store.transition(run.run_id, target, epoch=epoch, event_seq=seq, error=error,
                                                  conn=conn)
            if roll_back:
                await self._control.roll_back_checkpoints(conn, run)
            if audit is not None:
                await record_audit(conn, audit.actor, audit.action, run_id=run.run_id, details=audit.details)
        final = result.run
        await publish_event(self._js, status_event(final.run_id, final.event_seq, target, run.status, error))
        if result.next_run is not None:
            await self._dispatch(result.next_run)
        if target is RunStatus.QUEUED:  # handed back at a step boundary: dispatch it again
            await publish_job(self._js, final)
        return final

    async def rest_waiting(self, run: RunRecord, epoch: int, requests: list[NewApproval], *,
                           first_seq: int) -> RunRecord:
        """Rests a running run as WAITING_FOR_APPROVAL with one approval request per
        interrupt, in one transaction; then one approval_requested event each (numbered from
        first_seq), the status event, and the approval events."""
        result, approvals, outbox = await self._approvals.rest_waiting(
            run, epoch=epoch, event_seq=first_seq + len(requests), approvals=requests,
            actor="system:worker", announce=announcement)
        for seq, approval in enumerate(approvals, start=first_seq):
            await publish_event(self._js, make_event(run.run_id, seq, approval_requested=run_pb2.ApprovalRequested(
                approval_id=approval.approval_id, node=approval.node, interrupt_id=approval.interrupt_id,
                payload=to_value(approval.payload))))
        final = result.run
        await publish_event(self._js, status_event(final.run_id, final.event_seq, final.status, RunStatus.RUNNING))
        await publish_outbox(self._js, self._approvals, outbox)
        return final

    # -- operator actions on a run no worker holds --------------------------------------

    async def cancel_at_rest(self, run: RunRecord, *, reason: str, action: str, actor: str,
                             error: RunError) -> RunRecord:
        """Cancels a queued, paused or waiting run in one transaction with closing its
        approvals (and, for `rollback`, removing its checkpoints). LeaseLost if a worker
        claimed it meanwhile."""
        async with self._store.transaction() as conn:
            result = await self._store.transition(run.run_id, RunStatus.CANCELLED, epoch=None, error=error,
                                                  only_from=CANCELLABLE_AT_REST, conn=conn)
            _, outbox = await self._approvals.cancel_open(conn, run.run_id, actor=actor, reason=reason,
                                                          announce=announcement)
            if action == "rollback":
                await self._control.roll_back_checkpoints(conn, run)
        final = result.run
        # Committed: the run is cancelled whatever happens to the announcements.
        try:
            await publish_event(self._js, status_event(final.run_id, final.event_seq, RunStatus.CANCELLED,
                                                       run.status, error))
            await publish_outbox(self._js, self._approvals, outbox)
            if result.next_run is not None:
                await self._dispatch(result.next_run)
        except Exception as exc:
            log.warning("run %s cancelled, announcing it failed (recovered later): %s", final.run_id, exc)
        return final

    async def retry(self, run: RunRecord) -> RunRecord:
        """Queues an ended run again as a new attempt and dispatches it."""
        queued = await self._control.retry(run.run_id)
        await dispatch_queued(self._js, queued, run.status)
        return queued

    async def resume(self, run: RunRecord, *, still_disabled: list[str]) -> RunRecord:
        """Queues a paused run again (refused while its node is still disabled) and dispatches it."""
        queued = await self._control.resume(run.run_id, still_disabled=still_disabled)
        await dispatch_queued(self._js, queued, RunStatus.PAUSED)
        return queued

    # -- decisions on approvals ---------------------------------------------------------

    async def decide(self, approval_id: str, *, kind: str, edited_value: Any, comment: str,
                     reviewer: str, audit_details: dict[str, Any] | None = None) -> DecideResult:
        """Records a decision (or an expiry); the run resumes once its last open approval is
        decided. Call `announce_decision` after, inside whatever trace span should carry it.
        `audit_details` join the decision's audit record (e.g. {"as_owner": true})."""
        return await self._approvals.decide(approval_id, kind=kind, edited_value=edited_value, comment=comment,
                                            reviewer=reviewer, announce=announcement, audit_details=audit_details)

    async def announce_decision(self, result: DecideResult, kind: str) -> None:
        """The run's approval_decided event, the resumed run's QUEUED event and job, the
        approval events."""
        approval = result.approval
        try:
            await publish_event(self._js, make_event(approval.run_id, result.event_seq,
                                approval_decided=run_pb2.ApprovalDecided(
                                    approval_id=approval.approval_id, decision=kind, reviewer=approval.reviewer)))
        except Exception as exc:
            log.warning("decision on %s recorded, announcing it failed: %s", approval.approval_id, exc)
        if result.resumed is not None:
            await dispatch_queued(self._js, result.resumed.run, RunStatus.WAITING_FOR_APPROVAL)
        await publish_outbox(self._js, self._approvals, result.outbox_ids)
