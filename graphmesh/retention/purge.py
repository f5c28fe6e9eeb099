"""Purging one thread from every store (RunService.PurgeThread, a deletion request; the
sweeper's expired threads). One Postgres transaction removes the thread's runs, approvals,
their audit records, outbox rows, dead letters, spans, checkpoints, blobs and writes and
the thread row; before it commits, the runs' JetStream event subjects are purged and the
approvals' events deleted, so if NATS fails the whole purge rolls back and can be asked
again. It leaves one audit record holding ids and counts only."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable

import psycopg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from psycopg.types.json import Jsonb
from psycopg_pool import PoolTimeout

from graphmesh.bus.approvals import approval_subject
from graphmesh.bus.streams import APPROVALS_STREAM, EVENTS_STREAM, event_subject
from graphmesh.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from graphmesh.store.runs import postgres_error
from graphmesh.telemetry.tracing import trace_id_of

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "system:retention"
DAY_SECONDS = 24 * 3600.0
# Statuses in which a run may still change (a worker, a reviewer or an operator may move it).
IN_PROGRESS = ("QUEUED", "RUNNING", "PAUSED", "WAITING_FOR_APPROVAL")
TERMINAL_SQL = "('COMPLETED', 'FAILED', 'CANCELLED')"
# Holds one sweeper at a time across api replicas ("gm-retention", folded to 63 bits).
SWEEP_LOCK_KEY = 0x676D2D726574656E74696F6E & 0x7FFFFFFFFFFFFFFF
# LangGraph's channel of pending sends (langgraph.checkpoint.serde.types.TASKS).
TASKS_CHANNEL = "__pregel_tasks"
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
    try:
        async with pool.connection() as conn:
            # A fast refusal without locks first (a run being decided holds its row lock
            # and then wants the thread's: taking them in the other order could deadlock).
            await _refuse_if_busy(conn, thread_id, lock=False, authorize=authorize)
            async with conn.transaction():
                await conn.execute("SET LOCAL graphmesh.erasing = 'on'")
                result = await _purge(conn, js, thread_id, actor=actor, reason=reason, action=action,
                                      older_than_seconds=older_than_seconds)
        if result is not None:
            follow_up_late_spans(pool, result)
        return result
    except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
        raise Unavailable(f"thread '{thread_id}' changed while it was being purged; retry", code="PURGE_CONFLICT") \
            from exc
    except (psycopg.Error, PoolTimeout) as exc:
        mapped = postgres_error(exc)  # only connection trouble is UNAVAILABLE
        if mapped is exc:
            raise
        raise mapped from exc


async def _refuse_if_busy(conn, thread_id: str, *, lock: bool,
                          authorize: Callable[[str], None] | None = None) -> tuple[str, list[dict]]:
    lock_sql = " FOR UPDATE" if lock else ""
    thread = await (await conn.execute(
        f"SELECT graph FROM gm_threads WHERE thread_id = %s{lock_sql}", (thread_id,))).fetchone()
    if thread is None:
        raise NotFound(f"thread '{thread_id}' not found", code="THREAD_NOT_FOUND")
    if authorize is not None:
        authorize(thread["graph"])
    runs = await (await conn.execute(
        "SELECT run_id, status, trace_context FROM gm_runs WHERE thread_id = %s "
        f"ORDER BY created_at{lock_sql}", (thread_id,))).fetchall()
    busy = [r for r in runs if r["status"] in IN_PROGRESS]
    if busy:
        listed = ", ".join(f"{r['run_id']} ({r['status']})" for r in busy)
        raise FailedPrecondition(
            f"thread '{thread_id}' has runs in progress: {listed}; cancel them first "
            f"(graphmesh runs cancel {busy[0]['run_id']}) and purge again", code="THREAD_ACTIVE",
            run_id=str(busy[0]["run_id"]))
    return thread["graph"], runs


async def count_rows(conn, sql: str, args: Iterable[Any]) -> int:
    return (await conn.execute(sql, tuple(args))).rowcount


async def _purge(conn, js, thread_id: str, *, actor: str, reason: str, action: str,
                 older_than_seconds: float | None) -> PurgeResult | None:
    graph, runs = await _refuse_if_busy(conn, thread_id, lock=True)
    if older_than_seconds is not None:
        row = await (await conn.execute(
            "SELECT count(*) AS n FROM gm_runs WHERE thread_id = %s AND (finished_at IS NULL "
            "OR finished_at >= now() - make_interval(secs => %s))", (thread_id, older_than_seconds))).fetchone()
        if row["n"]:
            return None  # a run ended (or began) since the sweep picked the thread
    run_ids = [r["run_id"] for r in runs]
    run_texts = [str(r) for r in run_ids]
    trace_ids = sorted({t for t in (trace_id_of(r["trace_context"] or "") for r in runs) if t})
    approvals = await (await conn.execute(
        "SELECT approval_id, graph, created_at FROM gm_approvals WHERE run_id = ANY(%s)", (run_ids,))).fetchall()
    approval_ids = [a["approval_id"] for a in approvals]
    ids_text = run_texts + [str(a) for a in approval_ids]

    deleted: dict[str, int] = {}
    # Every audit record of an approval names its run too (and gm_audit is indexed by run).
    deleted["audit_records"] = await count_rows(conn, "DELETE FROM gm_audit WHERE run_id = ANY(%s)", (run_ids,))
    # Outbox messages are keyed "<approval or run id>:<kind>".
    deleted["outbox"] = await count_rows(
        conn, "DELETE FROM gm_outbox WHERE split_part(msg_id, ':', 1) = ANY(%s)", (ids_text,))
    deleted["dead_letters"] = await count_rows(conn, "DELETE FROM gm_dead_letters WHERE run_id = ANY(%s)", (run_ids,))
    deleted["approvals"] = await count_rows(conn, "DELETE FROM gm_approvals WHERE approval_id = ANY(%s)", (approval_ids,))
    # The runs' spans, and the spans of their traces that name no run (e.g. the CreateRun
    # call) unless they name another thread: a client may have created several runs in one trace.
    deleted["spans"] = await count_rows(conn, _delete_spans_sql(), (run_texts, trace_ids, thread_id, thread_id))
    deleted["checkpoint_writes"] = await count_rows(conn, "DELETE FROM checkpoint_writes WHERE thread_id = %s",
                                                (thread_id,))
    deleted["checkpoint_blobs"] = await count_rows(conn, "DELETE FROM checkpoint_blobs WHERE thread_id = %s",
                                               (thread_id,))
    deleted["checkpoints"] = await count_rows(conn, "DELETE FROM checkpoints WHERE thread_id = %s", (thread_id,))
    deleted["runs"] = await count_rows(conn, "DELETE FROM gm_runs WHERE thread_id = %s", (thread_id,))
    deleted["threads"] = await count_rows(conn, "DELETE FROM gm_threads WHERE thread_id = %s", (thread_id,))

    # JetStream, before the commit: if NATS fails the rows stay and the purge can be retried.
    if js is not None:
        try:
            deleted["events"] = await purge_event_subjects(js, run_texts, count=True)
            deleted["approval_events"] = await delete_approval_events(js, approvals)
        except Exception as exc:
            log.warning("purge of thread %s rolled back: NATS failed: %s", thread_id, exc)
            raise Unavailable(f"NATS is unreachable; thread '{thread_id}' was not purged, retry shortly") from exc

    details = {"thread_id": thread_id, "graph": graph, "reason": reason, "deleted": deleted}
    row = await (await conn.execute(
        "INSERT INTO gm_audit (actor, action, approval_id, run_id, details) VALUES (%s, %s, NULL, NULL, %s) "
        "RETURNING record_id", (actor, action, Jsonb(details)))).fetchone()
    log.info("%s thread %s of graph %s (%s): %s", action, thread_id, graph, actor,
             ", ".join(f"{k}={v}" for k, v in deleted.items() if v))
    return PurgeResult(thread_id, graph, deleted, row["record_id"], run_texts, trace_ids)


# Processes export spans in batches (every 500 ms): a finished run's last spans may reach the
# trace store just after its thread was purged. They are deleted again this much later.
LATE_SPANS_SECONDS = 5.0
_followups: set = set()  # keeps the follow-up tasks alive until they finish


def _delete_spans_sql() -> str:
    return ("DELETE FROM gm_spans WHERE run_id = ANY(%s) OR (trace_id = ANY(%s) AND run_id IS NULL "
            "AND coalesce(attributes ->> 'graphmesh.thread_id', %s) = %s)")


def follow_up_late_spans(pool, result: PurgeResult, delay: float = LATE_SPANS_SECONDS) -> None:
    """Schedules the second deletion of the purged thread's spans (best effort: the traces
    sweep catches anything a stopped process never got to)."""
    async def again() -> None:
        await asyncio.sleep(delay)
        try:
            async with pool.connection() as conn:
                await conn.execute(_delete_spans_sql(), (result.run_ids, result.trace_ids, result.thread_id,
                                                         result.thread_id))
        except Exception as exc:
            log.warning("late spans of purged thread %s not deleted: %s", result.thread_id, exc)

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
