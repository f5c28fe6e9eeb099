"""Data retention: purging one thread from every store (RunService.PurgeThread, e.g. a
deletion request), and the sweeps that enforce each graph's `retention` settings
(graphs/manifest.py `Retention`; run by services/api/retention.py). See docs/data.md.

A purge removes, in one Postgres transaction: the thread's runs, approvals, the audit
records of those runs and approvals, outbox rows, dead letters, spans, LangGraph
checkpoints, blobs and writes, and the thread row; inside the same transaction (before it
commits) the runs' JetStream event subjects are purged and the approvals' events deleted
from GM_APPROVALS. If NATS fails, the transaction rolls back and the purge can simply be
asked again (JetStream purges are idempotent). It leaves one audit record holding ids and
counts only.

The sweeps work in small batches, each its own short transaction, so they never hold
long locks; a sweep that finds nothing more to do for a graph moves on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

import psycopg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from psycopg.types.json import Jsonb

from graphmesh.bus.approvals import approval_subject
from graphmesh.bus.streams import APPROVALS_STREAM, EVENTS_STREAM, event_subject
from graphmesh.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from graphmesh.telemetry.tracing import trace_id_of
from graphs.manifest import GraphSpec, Retention

log = logging.getLogger(__name__)

__all__ = [
    "SYSTEM_ACTOR",
    "PurgeResult",
    "purge_thread",
    "retention_by_graph",
    "Sweeper",
]

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
                return await _purge(conn, js, thread_id, actor=actor, reason=reason, action=action,
                                    older_than_seconds=older_than_seconds)
    except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
        raise Unavailable(f"thread '{thread_id}' changed while it was being purged; retry", code="PURGE_CONFLICT") \
            from exc
    except psycopg.OperationalError as exc:
        raise Unavailable("Postgres is unreachable; retry shortly") from exc


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


async def _count(conn, sql: str, args: Iterable[Any]) -> int:
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
    deleted["audit_records"] = await _count(conn, "DELETE FROM gm_audit WHERE run_id = ANY(%s)", (run_ids,))
    # Outbox messages are keyed "<approval or run id>:<kind>".
    deleted["outbox"] = await _count(
        conn, "DELETE FROM gm_outbox WHERE split_part(msg_id, ':', 1) = ANY(%s)", (ids_text,))
    deleted["dead_letters"] = await _count(conn, "DELETE FROM gm_dead_letters WHERE run_id = ANY(%s)", (run_ids,))
    deleted["approvals"] = await _count(conn, "DELETE FROM gm_approvals WHERE approval_id = ANY(%s)", (approval_ids,))
    # The runs' spans, and the spans of their traces that name no run (e.g. the CreateRun
    # call) unless they name another thread: a client may have created several runs in one trace.
    deleted["spans"] = await _count(
        conn, "DELETE FROM gm_spans WHERE run_id = ANY(%s) OR (trace_id = ANY(%s) AND run_id IS NULL "
        "AND coalesce(attributes ->> 'graphmesh.thread_id', %s) = %s)",
        (run_texts, trace_ids, thread_id, thread_id))
    deleted["checkpoint_writes"] = await _count(conn, "DELETE FROM checkpoint_writes WHERE thread_id = %s",
                                                (thread_id,))
    deleted["checkpoint_blobs"] = await _count(conn, "DELETE FROM checkpoint_blobs WHERE thread_id = %s",
                                               (thread_id,))
    deleted["checkpoints"] = await _count(conn, "DELETE FROM checkpoints WHERE thread_id = %s", (thread_id,))
    deleted["runs"] = await _count(conn, "DELETE FROM gm_runs WHERE thread_id = %s", (thread_id,))
    deleted["threads"] = await _count(conn, "DELETE FROM gm_threads WHERE thread_id = %s", (thread_id,))

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
    return PurgeResult(thread_id, graph, deleted, row["record_id"])


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


async def _scan(js: JetStreamContext, stream: str, subject: str, start: datetime, *, limit: int | None = None):
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
        doomed = [seq async for seq, msg_id in _scan(js, APPROVALS_STREAM, approval_subject(graph), start)
                  if msg_id.split(":", 1)[0] in ids]
        for seq in doomed:
            try:
                await js.delete_msg(APPROVALS_STREAM, seq)
                deleted += 1
            except NotFoundError:
                pass  # aged out meanwhile
    return deleted


# -- retention settings ------------------------------------------------------------------

def retention_by_graph(specs: Iterable[GraphSpec]) -> dict[str, Retention]:
    """Per graph, the most generous setting across its versions (0, forever, wins)."""
    grouped: dict[str, list[Retention]] = {}
    for spec in specs:
        grouped.setdefault(spec.name, []).append(spec.retention)

    def generous(values: list[float]) -> float:
        return 0 if any(v == 0 for v in values) else max(values)

    return {name: Retention(
        threads_days=generous([r.threads_days for r in rs]),
        checkpoints_keep=int(generous([r.checkpoints_keep for r in rs])),
        events_days=generous([r.events_days for r in rs]),
        traces_days=generous([r.traces_days for r in rs]),
        reviews_days=generous([r.reviews_days for r in rs]),
    ) for name, rs in grouped.items()}


# -- the sweeps --------------------------------------------------------------------------

SELECT_EXPIRED_THREADS = f"""
SELECT t.thread_id FROM gm_threads t
WHERE t.graph = %(graph)s AND t.active_run_id IS NULL
  AND t.updated_at < now() - make_interval(secs => %(age)s)
  AND NOT EXISTS (SELECT 1 FROM gm_runs r WHERE r.thread_id = t.thread_id
      AND (r.status NOT IN {TERMINAL_SQL} OR r.finished_at IS NULL
           OR r.finished_at >= now() - make_interval(secs => %(age)s)))
  AND t.thread_id > %(after)s
ORDER BY t.thread_id LIMIT %(limit)s
"""
# Idle threads of the graph with more checkpoints in a namespace than it keeps; only those
# touched since the last sweep (a thread gets checkpoints only while a run holds it).
SELECT_LONG_THREADS = """
SELECT t.thread_id FROM gm_threads t
WHERE t.graph = %(graph)s AND t.active_run_id IS NULL AND t.thread_id > %(after)s
  AND t.updated_at >= %(since)s
  AND EXISTS (SELECT 1 FROM checkpoints c WHERE c.thread_id = t.thread_id
              GROUP BY c.checkpoint_ns HAVING count(*) > %(keep)s)
ORDER BY t.thread_id LIMIT %(limit)s
"""
# Spans a graph's runs recorded before the cutoff: their trace ids (a batch).
DELETE_OLD_RUN_SPANS = """
DELETE FROM gm_spans WHERE ctid IN (
    SELECT s.ctid FROM gm_spans s
    JOIN gm_runs r ON r.run_id = (CASE WHEN s.run_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                                       THEN s.run_id::uuid END)
    WHERE s.run_id IS NOT NULL AND r.graph = %(graph)s
      AND s.recorded_at < now() - make_interval(secs => %(age)s)
    LIMIT %(limit)s)
RETURNING trace_id
"""
# ... and the spans of those traces that name no run (e.g. the CreateRun call).
DELETE_OLD_TRACE_SPANS = """
DELETE FROM gm_spans WHERE trace_id = ANY(%(traces)s) AND run_id IS NULL
  AND recorded_at < now() - make_interval(secs => %(age)s)
"""
DELETE_ALL_OLD_SPANS = """
DELETE FROM gm_spans WHERE ctid IN (
    SELECT ctid FROM gm_spans WHERE recorded_at < now() - make_interval(secs => %(age)s) LIMIT %(limit)s)
"""
SELECT_EVENT_RUNS = f"""
SELECT run_id, finished_at FROM gm_runs
WHERE graph = %(graph)s AND status IN {TERMINAL_SQL}
  AND finished_at < now() - make_interval(secs => %(age)s)
  AND (finished_at, run_id) > (%(since)s::timestamptz, %(after)s::uuid)
ORDER BY finished_at, run_id LIMIT %(limit)s
"""
SELECT_OLD_REVIEWS = f"""
SELECT a.approval_id, a.run_id FROM gm_approvals a JOIN gm_runs r ON r.run_id = a.run_id
WHERE a.graph = %(graph)s AND a.status <> 'PENDING'
  AND a.decided_at < now() - make_interval(secs => %(age)s)
  AND r.status IN {TERMINAL_SQL}
ORDER BY a.decided_at LIMIT %(limit)s
"""

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
NIL_UUID = "00000000-0000-0000-0000-000000000000"


@dataclass
class Sweeper:
    """One retention sweep per `sweep()` call, for every graph with settings.

    Keeps per-graph watermarks between sweeps (checkpoint pruning looks only at threads
    touched since the previous sweep, event purging only at runs finished since), so a
    long-lived process does work proportional to what changed; a new process starts
    from the beginning once.
    """

    pool: Any
    js: JetStreamContext | None
    retention: dict[str, Retention]
    batch: int = 100
    max_batches: int = 50  # per graph and kind of data in one sweep; the rest waits for the next
    _since: dict[tuple[str, str], Any] = field(default_factory=dict)
    _events_max_age: float | None = None

    async def sweep(self) -> dict[str, dict[str, int]]:
        """Returns counts per graph and kind of data ({} if another replica is sweeping)."""
        async with self.pool.connection() as lock_conn:
            got = await (await lock_conn.execute("SELECT pg_try_advisory_lock(%s) AS ok",
                                                  (SWEEP_LOCK_KEY,))).fetchone()
            if not got["ok"]:
                return {}
            try:
                return await self._sweep_all()
            finally:
                await lock_conn.execute("SELECT pg_advisory_unlock(%s)", (SWEEP_LOCK_KEY,))

    async def _sweep_all(self) -> dict[str, dict[str, int]]:
        report: dict[str, dict[str, int]] = {}
        for graph, r in sorted(self.retention.items()):
            counts: dict[str, int] = {}
            for kind, setting, step in (
                    ("threads_expired", r.threads_days, self.expire_threads),
                    ("checkpoints_pruned", r.checkpoints_keep, self.prune_checkpoints),
                    ("spans_deleted", r.traces_days, self.expire_spans),
                    ("event_subjects_purged", r.events_days, self.expire_events),
                    ("reviews_deleted", r.reviews_days, self.expire_reviews)):
                if not setting:
                    continue
                try:
                    counts[kind] = await step(graph, setting)
                except Exception as exc:  # one failing kind must not stop the others
                    log.warning("retention sweep of graph %s (%s) failed: %s", graph, kind, exc)
            if counts:
                report[graph] = counts
        try:
            if spans := await self.expire_unattributed_spans():
                report.setdefault("*", {})["spans_deleted"] = spans
        except Exception as exc:
            log.warning("retention sweep of unattributed spans failed: %s", exc)
        for graph, counts in report.items():
            if any(counts.values()):
                log.info("retention sweep of %s: %s", graph, ", ".join(f"{k}={v}" for k, v in counts.items()))
        return report

    # threads_days: finished threads go, with everything they own.
    async def expire_threads(self, graph: str, days: float) -> int:
        age = days * DAY_SECONDS
        expired, after = 0, ""
        for _ in range(self.max_batches):
            async with self.pool.connection() as conn:
                rows = await (await conn.execute(SELECT_EXPIRED_THREADS, {
                    "graph": graph, "age": age, "after": after, "limit": self.batch})).fetchall()
            for row in rows:
                after = row["thread_id"]
                try:
                    done = await purge_thread(self.pool, self.js, row["thread_id"], actor=SYSTEM_ACTOR,
                                              action="thread_expired", older_than_seconds=age,
                                              reason=f"retention: graph '{graph}' keeps finished threads "
                                                     f"{days:g} days")
                except (FailedPrecondition, NotFound):
                    continue  # a run started on it, or it went, since it was picked
                except Unavailable as exc:
                    if exc.code != "PURGE_CONFLICT":
                        raise  # Postgres or NATS away: the next sweep tries again
                    continue  # changed under the purge: the next sweep looks again
                expired += done is not None
            if len(rows) < self.batch:
                break
        return expired

    # checkpoints_keep: each idle thread keeps its newest N checkpoints per namespace.
    async def prune_checkpoints(self, graph: str, keep: int) -> int:
        keep = max(1, int(keep))
        key = (graph, "checkpoints")
        started = await self._db_now()
        since = self._since.get(key, EPOCH)
        pruned, after, complete, skipped = 0, "", False, False
        for _ in range(self.max_batches):
            async with self.pool.connection() as conn:
                rows = await (await conn.execute(SELECT_LONG_THREADS, {
                    "graph": graph, "after": after, "since": since, "keep": keep, "limit": self.batch})).fetchall()
            for row in rows:
                after = row["thread_id"]
                try:
                    pruned += await prune_thread_checkpoints(self.pool, row["thread_id"], keep)
                except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
                    skipped = True  # the thread changed under the prune; the next sweep tries again
            if len(rows) < self.batch:
                complete = True
                break
        if complete and not skipped:  # the next sweep looks only at threads touched from now (with a margin)
            self._since[key] = started - timedelta(minutes=1)
        return pruned

    # traces_days: spans of the graph's runs recorded before the cutoff.
    async def expire_spans(self, graph: str, days: float) -> int:
        age = days * DAY_SECONDS
        deleted = 0
        for _ in range(self.max_batches):
            async with self.pool.connection() as conn, conn.transaction():
                rows = await (await conn.execute(DELETE_OLD_RUN_SPANS, {
                    "graph": graph, "age": age, "limit": self.batch * 10})).fetchall()
                traces = sorted({r["trace_id"] for r in rows})
                extra = (await conn.execute(DELETE_OLD_TRACE_SPANS, {"traces": traces, "age": age})).rowcount \
                    if traces else 0
            deleted += len(rows) + extra
            if len(rows) < self.batch * 10:
                break
        return deleted

    async def expire_unattributed_spans(self) -> int:
        """When every graph limits its traces, no span may outlive the longest limit, whether
        or not it belongs to a run (RPC spans of reads, spans of runs since purged)."""
        limits = [r.traces_days for r in self.retention.values()]
        if not limits or not all(limits):
            return 0
        age = max(limits) * DAY_SECONDS
        deleted = 0
        for _ in range(self.max_batches):
            async with self.pool.connection() as conn:
                n = (await conn.execute(DELETE_ALL_OLD_SPANS, {"age": age, "limit": self.batch * 10})).rowcount
            deleted += n
            if n < self.batch * 10:
                break
        return deleted

    # events_days: the event subjects of the graph's runs that finished before the cutoff.
    async def expire_events(self, graph: str, days: float) -> int:
        if self.js is None:
            return 0
        age = days * DAY_SECONDS
        stream_age = await self._stream_max_age()
        if stream_age and age >= stream_age:
            return 0  # the stream's own max_age removes them first
        key = (graph, "events")
        if key not in self._since:  # older runs' events have aged out of the stream anyway
            now = await self._db_now()
            self._since[key] = (now - timedelta(seconds=stream_age), NIL_UUID) if stream_age else (EPOCH, NIL_UUID)
        since, after = self._since[key]
        purged = 0
        for _ in range(self.max_batches):
            async with self.pool.connection() as conn:
                rows = await (await conn.execute(SELECT_EVENT_RUNS, {
                    "graph": graph, "age": age, "since": since, "after": after, "limit": self.batch})).fetchall()
            for row in rows:
                await purge_event_subjects(self.js, [str(row["run_id"])])
                since, after = row["finished_at"], row["run_id"]
                self._since[key] = (since, after)
                purged += 1
            if len(rows) < self.batch:
                break
        return purged

    # reviews_days: decided approvals of finished runs, their audit records and events.
    async def expire_reviews(self, graph: str, days: float) -> int:
        age = days * DAY_SECONDS
        deleted = 0
        for _ in range(self.max_batches):
            async with self.pool.connection() as conn, conn.transaction():
                await conn.execute("SET LOCAL graphmesh.erasing = 'on'")
                rows = await (await conn.execute(SELECT_OLD_REVIEWS, {
                    "graph": graph, "age": age, "limit": self.batch})).fetchall()
                ids = [r["approval_id"] for r in rows]
                if ids:
                    await conn.execute("DELETE FROM gm_audit WHERE run_id = ANY(%s) AND approval_id = ANY(%s)",
                                       (sorted({r["run_id"] for r in rows}), ids))
                    await conn.execute("DELETE FROM gm_outbox WHERE split_part(msg_id, ':', 1) = ANY(%s)",
                                       ([str(i) for i in ids],))
                    await conn.execute("DELETE FROM gm_approvals WHERE approval_id = ANY(%s) AND status <> 'PENDING'",
                                       (ids,))
            deleted += len(ids)
            if len(ids) < self.batch:
                break
        if self.js is not None:
            await purge_approval_events_before(self.js, graph, datetime.now(timezone.utc) - timedelta(seconds=age))
        return deleted

    async def _db_now(self) -> datetime:
        async with self.pool.connection() as conn:
            return (await (await conn.execute("SELECT now() AS now")).fetchone())["now"]

    async def _stream_max_age(self) -> float:
        if self._events_max_age is None:
            info = await self.js.stream_info(EVENTS_STREAM)
            self._events_max_age = float(info.config.max_age or 0)
        return self._events_max_age


async def purge_approval_events_before(js: JetStreamContext, graph: str, cutoff: datetime) -> None:
    """Purges the graph's approval events published before `cutoff` (the subject is the
    graph's feed of requests and decisions; Postgres keeps the approvals themselves)."""
    subject = approval_subject(graph)
    info = await js.stream_info(APPROVALS_STREAM, subjects_filter=subject)
    if not (info.state.subjects or {}).get(subject):
        return
    upto = info.state.last_seq + 1  # none since the cutoff: everything the subject held goes
    async for seq, _ in _scan(js, APPROVALS_STREAM, subject, cutoff, limit=1):
        upto = seq  # the first message kept
    # JetStream purges the subject's messages up to, not including, `seq`.
    await js.purge_stream(APPROVALS_STREAM, subject=subject, seq=upto)


# -- checkpoint pruning ------------------------------------------------------------------

SELECT_THREAD_CHECKPOINTS = """
SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id, coalesce((checkpoint ->> 'v')::int, 0) AS v,
       metadata -> 'parents' ->> '' AS root
FROM checkpoints WHERE thread_id = %s ORDER BY checkpoint_ns, checkpoint_id DESC
"""
# A DeltaChannel rebuilds its value from older checkpoints: such threads are not pruned
# (as langgraph-checkpoint-postgres's own keep_latest refuses them).
SELECT_DELTA = """
SELECT 1 FROM checkpoints WHERE thread_id = %(t)s
  AND (metadata ? 'counters_since_delta_snapshot' OR metadata ? 'delta_writes_versioned')
UNION ALL
SELECT 1 FROM checkpoints c CROSS JOIN LATERAL jsonb_each(c.checkpoint -> 'channel_values') AS v
WHERE c.thread_id = %(t)s AND v.value = 'true'::jsonb AND EXISTS (
    SELECT 1 FROM checkpoint_blobs b WHERE b.thread_id = c.thread_id AND b.checkpoint_ns = c.checkpoint_ns
      AND b.channel = v.key AND b.version = c.checkpoint -> 'channel_versions' ->> v.key)
LIMIT 1
"""
HAS_SENDS = f"""
SELECT 1 FROM checkpoint_writes WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s
  AND channel = '{TASKS_CHANNEL}' LIMIT 1
"""
DELETE_CHECKPOINTS = """
WITH deleted AS (
    DELETE FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = ANY(%s)
    RETURNING checkpoint -> 'channel_versions' AS versions
)
SELECT DISTINCT v.key AS channel, v.value AS version FROM deleted CROSS JOIN LATERAL jsonb_each_text(deleted.versions) v
"""
REFERENCED_BLOBS = """
SELECT DISTINCT v.key AS channel, v.value AS version FROM checkpoints c
CROSS JOIN LATERAL jsonb_each_text(c.checkpoint -> 'channel_versions') v
WHERE c.thread_id = %s AND c.checkpoint_ns = %s
"""


async def prune_thread_checkpoints(pool, thread_id: str, keep: int) -> int:
    """Keeps the newest `keep` checkpoints of each namespace of an idle thread (always its
    latest, plus the parent its latest reads pending sends from when it predates
    checkpoint format v4), their pending writes and every blob a kept checkpoint
    references; deletes the other checkpoints, their writes and the blobs only they used.
    A subgraph call's namespace goes with the root checkpoint it started from.

    One REPEATABLE READ transaction per thread, as langgraph-checkpoint-postgres prunes:
    what a run writes meanwhile is neither seen nor deleted. Returns checkpoints deleted."""
    keep = max(1, keep)
    async with pool.connection() as conn:
        async with conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            idle = await (await conn.execute(
                "SELECT 1 FROM gm_threads WHERE thread_id = %s AND active_run_id IS NULL", (thread_id,))).fetchone()
            if idle is None:
                return 0  # a run holds it (its rollback may need older checkpoints)
            if await (await conn.execute(SELECT_DELTA, {"t": thread_id})).fetchone():
                log.info("thread %s uses a DeltaChannel: its checkpoints are not pruned", thread_id)
                return 0
            rows = await (await conn.execute(SELECT_THREAD_CHECKPOINTS, (thread_id,))).fetchall()
            by_ns: dict[str, list[dict]] = {}
            for row in rows:  # newest first within each namespace
                by_ns.setdefault(row["checkpoint_ns"], []).append(row)
            kept: dict[str, list[str]] = {}
            for ns, items in by_ns.items():
                ids = [r["checkpoint_id"] for r in items[:keep]]
                head = items[0]
                if head["v"] < 4 and head["parent_checkpoint_id"] and head["parent_checkpoint_id"] not in ids and \
                        await (await conn.execute(HAS_SENDS, (thread_id, ns, head["parent_checkpoint_id"]))).fetchone():
                    ids.append(head["parent_checkpoint_id"])
                kept[ns] = ids
            root_all = {r["checkpoint_id"] for r in by_ns.get("", [])}
            root_kept = set(kept.get("", []))
            # A subgraph call's namespace ("node:task id") goes with the saved root checkpoint it started from.
            calls = [ns for ns, items in by_ns.items() if ":" in ns and items[0]["root"] in root_all
                     and items[0]["root"] not in root_kept]
            deleted = 0
            for ns in calls:
                for table in ("checkpoint_writes", "checkpoint_blobs"):
                    await conn.execute(f"DELETE FROM {table} WHERE thread_id = %s AND checkpoint_ns = %s",
                                       (thread_id, ns))
                deleted += await _count(conn, "DELETE FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = %s",
                                        (thread_id, ns))
            for ns, items in by_ns.items():
                if ns in calls:
                    continue
                doomed = [r["checkpoint_id"] for r in items if r["checkpoint_id"] not in kept[ns]]
                if not doomed:
                    continue
                await conn.execute("DELETE FROM checkpoint_writes WHERE thread_id = %s AND checkpoint_ns = %s "
                                   "AND checkpoint_id = ANY(%s)", (thread_id, ns, doomed))
                freed = await (await conn.execute(DELETE_CHECKPOINTS, (thread_id, ns, doomed))).fetchall()
                deleted += len(doomed)
                # A kept checkpoint whose parent went is left without one.
                await conn.execute("UPDATE checkpoints SET parent_checkpoint_id = NULL WHERE thread_id = %s "
                                   "AND checkpoint_ns = %s AND parent_checkpoint_id = ANY(%s)",
                                   (thread_id, ns, doomed))
                referenced = {(r["channel"], r["version"]) for r in await (await conn.execute(
                    REFERENCED_BLOBS, (thread_id, ns))).fetchall()}
                garbage: dict[str, list[str]] = {}
                for r in freed:
                    if (r["channel"], r["version"]) not in referenced:
                        garbage.setdefault(r["channel"], []).append(r["version"])
                for channel, versions in garbage.items():
                    await conn.execute("DELETE FROM checkpoint_blobs WHERE thread_id = %s AND checkpoint_ns = %s "
                                       "AND channel = %s AND version = ANY(%s)", (thread_id, ns, channel, versions))
            return deleted

