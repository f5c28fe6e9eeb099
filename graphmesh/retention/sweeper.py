"""The sweeps that enforce each graph's `retention` settings (graphmesh/manifest.py
`Retention`; run by services/api/retention.py), in small batches, each its own short
transaction, so they never hold long locks. See docs/data.md."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import psycopg
from nats.js import JetStreamContext

from graphmesh.bus.approvals import approval_subject
from graphmesh.bus.streams import APPROVALS_STREAM, EVENTS_STREAM
from graphmesh.errors import FailedPrecondition, NotFound, Unavailable
from graphmesh.manifest import GraphSpec, Retention
from graphmesh.retention.purge import DAY_SECONDS, SYSTEM_ACTOR, purge_event_subjects, purge_thread, scan_subject
from graphmesh.store.pruning import prune_thread_checkpoints
from graphmesh.store.retention import (
    DB_NOW,
    DELETE_ALL_OLD_SPANS,
    DELETE_OLD_RUN_SPANS,
    DELETE_OLD_TRACE_SPANS,
    ERASING,
    SELECT_EVENT_RUNS,
    SELECT_EXPIRED_THREADS,
    SELECT_LONG_THREADS,
    SELECT_OLD_REVIEWS,
    SWEEP_LOCK_KEY,
    SWEEP_UNLOCK,
    TRY_SWEEP_LOCK,
    delete_reviews,
)

log = logging.getLogger(__name__)

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
            got = await (await lock_conn.execute(TRY_SWEEP_LOCK, (SWEEP_LOCK_KEY,))).fetchone()
            if not got["ok"]:
                return {}
            try:
                return await self._sweep_all()
            finally:
                await lock_conn.execute(SWEEP_UNLOCK, (SWEEP_LOCK_KEY,))

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
                await conn.execute(ERASING)
                rows = await (await conn.execute(SELECT_OLD_REVIEWS, {
                    "graph": graph, "age": age, "limit": self.batch})).fetchall()
                await delete_reviews(conn, rows)
            deleted += len(rows)
            if len(rows) < self.batch:
                break
        if self.js is not None:
            await purge_approval_events_before(self.js, graph, datetime.now(timezone.utc) - timedelta(seconds=age))
        return deleted

    async def _db_now(self) -> datetime:
        async with self.pool.connection() as conn:
            return (await (await conn.execute(DB_NOW)).fetchone())["now"]

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
    async for seq, _ in scan_subject(js, APPROVALS_STREAM, subject, cutoff, limit=1):
        upto = seq  # the first message kept
    # JetStream purges the subject's messages up to, not including, `seq`.
    await js.purge_stream(APPROVALS_STREAM, subject=subject, seq=upto)
