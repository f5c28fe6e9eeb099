"""Purging one thread from every store (RunService.PurgeThread, a deletion request; the
sweeper's expired threads), and deleting one finished run (RunService.DeleteRun). One Postgres transaction removes the thread's runs, approvals,
their audit records, outbox rows, webhook deliveries, dead letters, spans, checkpoints, blobs and writes and
the thread row; before it commits, the runs' JetStream event subjects are purged and the
approvals' events deleted, so if NATS fails the whole purge rolls back and can be asked
again. It leaves one audit record holding ids and counts only."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Iterable

from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from graphmesh.bus.approvals import approval_subject
from graphmesh.bus.streams import APPROVALS_STREAM, EVENTS_STREAM, event_subject
from graphmesh.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from graphmesh.store.audit import record_audit
from graphmesh.store.retention import (
    COUNT_RECENT_RUNS,
    ERASING,
    LOCK_RUN_FOR_DELETE,
    SELECT_RUN_APPROVALS,
    SELECT_THREAD_GRAPH,
    SELECT_THREAD_GRAPH_FOR_UPDATE,
    SELECT_THREAD_RUNS,
    SELECT_THREAD_RUNS_FOR_UPDATE,
    delete_run_rows,
    delete_thread_rows,
    delete_thread_spans,
)
from graphmesh.store.runs import postgres_errors_mapped
from graphmesh.store.statuses import IN_PROGRESS
from graphmesh.telemetry.tracing import trace_id_of

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "system:retention"
DAY_SECONDS = 24 * 3600.0
NATS_TIMEOUT = 5.0



@dataclass(frozen=True)
class PurgeResult:
    thread_id: str
    graph: str
    # Rows (Postgres) and messages (JetStream) removed, per store.
    deleted: dict[str, int]
    audit_record_id: int
    # What identifies the thread's spans, for the late-span follow-up.
    run_ids: list[str] = field(default_factory=list)
    trace_ids: list[str] = field(default_factory=list)


# -- purge -------------------------------------------------------------------------------

async def purge_thread(pool, js: JetStreamContext | None, thread_id: str, *, actor: str, reason: str,
                       action: str = "thread_purged", older_than_seconds: float | None = None,
                       authorize: Callable[[str], None] | None = None) -> PurgeResult | None:
    """Removes every trace of a thread. NOT_FOUND (THREAD_NOT_FOUND) for an unknown thread;
    `authorize(graph)` may refuse; FAILED_PRECONDITION (THREAD_ACTIVE) while one of its runs
    is in progress. With `older_than_seconds` (the retention sweep) the thread is left
    alone, returning None, unless every run of it ended more than that long ago."""
    if not thread_id:
        raise InvalidArgument("thread_id is required")
    if not reason.strip():
        raise InvalidArgument("reason is required: say why the thread is purged (it goes to the audit trail)",
                              code="REASON_REQUIRED")
    # A deadlock or serialization failure (the thread changed meanwhile) is UNAVAILABLE
    # STORE_CONFLICT, as everywhere: the purge can simply be asked again.
    with postgres_errors_mapped():
        async with pool.connection() as conn:
            # A fast refusal without locks first (a run being decided holds its row lock
            # and then wants the thread's: taking them in the other order could deadlock).
            await _refuse_if_busy(conn, thread_id, lock=False, authorize=authorize)
            async with conn.transaction():
                await conn.execute(ERASING)
                result = await _purge(conn, js, thread_id, actor=actor, reason=reason, action=action,
                                      older_than_seconds=older_than_seconds)
    if result is not None:
        follow_up_late_spans(pool, result.thread_id, result.run_ids, result.trace_ids)
    return result


async def _refuse_if_busy(conn, thread_id: str, *, lock: bool,
                          authorize: Callable[[str], None] | None = None) -> tuple[str, list[dict]]:
    thread = await (await conn.execute(SELECT_THREAD_GRAPH_FOR_UPDATE if lock else SELECT_THREAD_GRAPH,
                                       (thread_id,))).fetchone()
    if thread is None:
        raise NotFound(f"thread '{thread_id}' not found", code="THREAD_NOT_FOUND")
    if authorize is not None:
        authorize(thread["graph"])
    runs = await (await conn.execute(SELECT_THREAD_RUNS_FOR_UPDATE if lock else SELECT_THREAD_RUNS,
                                     (thread_id,))).fetchall()
    # In progress: a worker, a reviewer or an operator may still move the run.
    busy = [r for r in runs if r["status"] in IN_PROGRESS]
    if busy:
        listed = ", ".join(f"{r['run_id']} ({r['status']})" for r in busy)
        raise FailedPrecondition(
            f"thread '{thread_id}' has runs in progress: {listed}; cancel them first "
            f"(graphmesh runs cancel {busy[0]['run_id']}) and purge again", code="THREAD_ACTIVE",
            run_id=str(busy[0]["run_id"]))
    return thread["graph"], runs


async def _purge(conn, js, thread_id: str, *, actor: str, reason: str, action: str,
                 older_than_seconds: float | None) -> PurgeResult | None:
    graph, runs = await _refuse_if_busy(conn, thread_id, lock=True)
    if older_than_seconds is not None:
        row = await (await conn.execute(COUNT_RECENT_RUNS, (thread_id, older_than_seconds))).fetchone()
        if row["n"]:
            return None  # a run ended (or began) since the sweep picked the thread
    run_ids = [r["run_id"] for r in runs]
    run_texts = [str(r) for r in run_ids]
    trace_ids = sorted({t for t in (trace_id_of(r["trace_context"] or "") for r in runs) if t})
    approvals = await (await conn.execute(SELECT_RUN_APPROVALS, (run_ids,))).fetchall()
    approval_ids = [a["approval_id"] for a in approvals]

    deleted = await delete_thread_rows(conn, thread_id, run_ids=run_ids, approval_ids=approval_ids,
                                       trace_ids=trace_ids)

    # JetStream, before the commit: if NATS fails the rows stay and the purge can be retried.
    if js is not None:
        try:
            deleted["events"] = await purge_event_subjects(js, run_texts, count=True)
            deleted["approval_events"] = await delete_approval_events(js, approvals)
        except Exception as exc:
            log.warning("purge of thread %s rolled back: NATS failed: %s", thread_id, exc)
            raise Unavailable(f"NATS is unreachable; thread '{thread_id}' was not purged, retry shortly") from exc

    details = {"thread_id": thread_id, "graph": graph, "reason": reason, "deleted": deleted}
    record_id = await record_audit(conn, actor, action, details=details)
    log.info("%s thread %s of graph %s (%s): %s", action, thread_id, graph, actor,
             ", ".join(f"{k}={v}" for k, v in deleted.items() if v))
    return PurgeResult(thread_id, graph, deleted, record_id, run_texts, trace_ids)


# -- deleting one run --------------------------------------------------------------------

@dataclass(frozen=True)
class RunDeletion:
    run_id: str
    thread_id: str
    deleted: dict[str, int]
    audit_record_id: int


async def delete_run(pool, js: JetStreamContext, run_id: str, *, actor: str, reason: str) -> RunDeletion:
    """Removes one finished run (RunService.DeleteRun): its rows (delete_run_rows), its event
    subject and its approvals' events, in one transaction that rolls back if NATS fails.
    The thread and its checkpoints stay: they are the state later runs continue from.
    NOT_FOUND; FAILED_PRECONDITION while the run is in progress (RUN_ACTIVE), while its
    webhook delivery is pending (WEBHOOK_DELIVERY_PENDING), or when a schedule purges its
    thread once it ended (SCHEDULE_PURGES_THREAD). The caller checked who may delete it."""
    if not reason.strip():
        raise InvalidArgument("reason is required: say why the run is deleted (it goes to the audit trail)",
                              code="REASON_REQUIRED")
    with postgres_errors_mapped():
        async with pool.connection() as conn:
            async with conn.transaction():
                await conn.execute(ERASING)
                locked = await (await conn.execute(LOCK_RUN_FOR_DELETE, (run_id,))).fetchone()
                if locked is None:
                    raise NotFound(f"run '{run_id}' not found", run_id=run_id)
                ensure_deletable(run_id, locked)
                approvals = await (await conn.execute(SELECT_RUN_APPROVALS, ([locked["run_id"]],))).fetchall()
                trace_ids = [t for t in (trace_id_of(locked["trace_context"] or ""),) if t]
                deleted = await delete_run_rows(conn, locked["run_id"], thread_id=locked["thread_id"],
                                                trace_ids=trace_ids, approval_ids=[a["approval_id"] for a in approvals])
                try:
                    deleted["events"] = await purge_event_subjects(js, [run_id], count=True)
                    deleted["approval_events"] = await delete_approval_events(js, approvals)
                except Exception as exc:
                    log.warning("deletion of run %s rolled back: NATS failed: %s", run_id, exc)
                    raise Unavailable(f"NATS is unreachable; run '{run_id}' was not deleted, retry shortly") from exc
                details = {"run_id": run_id, "thread_id": locked["thread_id"], "graph": locked["graph"],
                           "reason": reason, "deleted": deleted}
                record_id = await record_audit(conn, actor, "run_deleted", details=details)
    log.info("run_deleted %s of thread %s (%s): %s", run_id, locked["thread_id"], actor,
             ", ".join(f"{k}={v}" for k, v in deleted.items() if v))
    follow_up_late_spans(pool, locked["thread_id"], [run_id], trace_ids)
    return RunDeletion(run_id, locked["thread_id"], deleted, record_id)


def ensure_deletable(run_id: str, run: dict) -> None:
    """FAILED_PRECONDITION when the run (a LOCK_RUN_FOR_DELETE row) may not be deleted now."""
    if run["status"] in IN_PROGRESS or run["holds_thread"]:
        raise FailedPrecondition(f"run '{run_id}' is {run['status']}: cancel it first (graphmesh runs cancel {run_id}) "
                                 "and delete it once it has ended", code="RUN_ACTIVE", run_id=run_id)
    if run["webhook_pending"]:
        raise FailedPrecondition(f"run '{run_id}' has a webhook delivery still pending (its body is built from the "
                                 "run): delete the run once it was delivered or gave up (graphmesh webhooks list)",
                                 code="WEBHOOK_DELIVERY_PENDING", run_id=run_id)
    if run["purging_schedule"]:
        raise FailedPrecondition(f"run '{run_id}' was fired by schedule {run['purging_schedule']}, which deletes its "
                                 "thread, with the run, once it has ended (on_run_completed=delete)",
                                 code="SCHEDULE_PURGES_THREAD", run_id=run_id)


# Processes export spans in batches (every 500 ms): a finished run's last spans may reach the
# trace store just after its thread was purged. They are deleted again this much later.
LATE_SPANS_SECONDS = 5.0
_followups: set = set()  # keeps the follow-up tasks alive until they finish


def follow_up_late_spans(pool, thread_id: str, run_ids: list[str], trace_ids: list[str],
                         delay: float = LATE_SPANS_SECONDS) -> None:
    """Schedules the second deletion of a purged thread's (or deleted run's) spans (best
    effort: the traces sweep catches anything a stopped process never got to)."""
    async def again() -> None:
        await asyncio.sleep(delay)
        try:
            async with pool.connection() as conn:
                await delete_thread_spans(conn, thread_id, run_ids, trace_ids)
        except Exception as exc:
            log.warning("late spans of thread %s (runs %s) not deleted: %s", thread_id, ", ".join(run_ids), exc)

    task = asyncio.get_running_loop().create_task(again())
    _followups.add(task)
    task.add_done_callback(_followups.discard)


async def purge_event_subjects(js: JetStreamContext, run_ids: Iterable[str], *, count: bool = False) -> int:
    """Purges the runs' event subjects in GM_EVENTS; with `count`, returns how many
    messages they held (one stream-info request per run more)."""
    total = 0
    for run_id in run_ids:
        subject = event_subject(run_id)
        if count:
            info = await js.stream_info(EVENTS_STREAM, subjects_filter=subject)
            total += (info.state.subjects or {}).get(subject, 0)
        await js.purge_stream(EVENTS_STREAM, subject=subject)
    return total


async def scan_subject(js: JetStreamContext, stream: str, subject: str, start: datetime, *, limit: int | None = None):
    """Yields (stream sequence, message id) of the subject's messages published from
    `start` on, headers only, up to the subject's last message when the scan began (at
    most `limit` of them)."""
    try:
        last = (await js.get_msg(stream, subject=subject)).seq  # the subject's last message
    except NotFoundError:
        return  # nothing on the subject
    config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start, headers_only=True)
    sub = await js.subscribe(subject, stream=stream, ordered_consumer=True, config=config)
    try:
        info = await sub.consumer_info()
        if not (info.num_pending or (info.delivered and info.delivered.consumer_seq)):
            return  # nothing since `start`
        seen = 0
        while limit is None or seen < limit:
            msg = await sub.next_msg(timeout=NATS_TIMEOUT)
            seq = msg.metadata.sequence.stream
            yield seq, (msg.headers or {}).get("Nats-Msg-Id", "")
            seen += 1
            if seq >= last:
                return
    finally:
        await sub.unsubscribe()


async def delete_approval_events(js: JetStreamContext, approvals: list[dict]) -> int:
    """Deletes the approvals' messages from GM_APPROVALS. They share a subject per graph with
    other approvals' events, so the graph's subject is scanned (headers only) from a little
    before the first approval was requested, and messages whose id names one are deleted."""
    by_graph: dict[str, list[dict]] = {}
    for a in approvals:
        by_graph.setdefault(a["graph"], []).append(a)
    deleted = 0
    for graph, items in by_graph.items():
        ids = {str(a["approval_id"]) for a in items}
        start = min(a["created_at"] for a in items) - timedelta(minutes=5)
        doomed = [seq async for seq, msg_id in scan_subject(js, APPROVALS_STREAM, approval_subject(graph), start)
                  if msg_id.split(":", 1)[0] in ids]
        for seq in doomed:
            try:
                await js.delete_msg(APPROVALS_STREAM, seq)
                deleted += 1
            except NotFoundError:
                pass  # aged out meanwhile
    return deleted
